//! Headless Chromium (Debian `chromium`), driven through `chromedriver` (Debian
//! `chromium-driver`) over the W3C WebDriver protocol on 127.0.0.1: for tests that need a
//! real browser, like the WebRTC test phone.
//!
//! Each [`Browser`] has its own chromedriver and a fresh profile directory; the microphone is
//! Chromium's fake capture device playing a WAV file (looped). Every WebDriver call is bounded,
//! and on drop the session is ended and every process started for it is killed.

use super::{free_tcp_port, wait_for, ChildGuard, TempDir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Bound on one WebDriver command (starting the browser is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Browser {
    base: String,
    session: String,
    agent: ureq::Agent,
    /// `--user-data-dir`: unique, so the browser's processes can be found by it.
    profile: TempDir,
    driver: ChildGuard,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose microphone plays `microphone`
    /// (a WAV file, looped). Panics with a clear message when either is not installed.
    #[track_caller]
    pub fn start(microphone: &Path) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: the WebRTC tests need Debian's chromium and \
                 chromium-driver (scripts/setup.sh test installs them)"
            );
        }
        let port = free_tcp_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let driver = ChildGuard::spawn(cmd, "chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(COMMAND_TIMEOUT))
            .build()
            .into();
        let ready = wait_for(Duration::from_secs(15), || {
            let mut r = agent.get(format!("{base}/status")).call().ok()?;
            let v: Value = r.body_mut().read_json().ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        });
        assert!(
            ready.is_some(),
            "chromedriver did not become ready within 15 s"
        );

        let profile = TempDir::new("chromium-profile");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            // Containers often have a tiny /dev/shm, where Chromium's renderers then crash.
            "--disable-dev-shm-usage".into(),
            "--use-fake-ui-for-media-stream".into(),
            "--use-fake-device-for-media-stream".into(),
            format!("--use-file-for-fake-audio-capture={}", microphone.display()),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1100,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut browser = Browser {
            base,
            session: String::new(),
            agent,
            profile,
            driver,
        };
        let created = browser.command("POST", "/session", Some(caps));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`. Panics with the driver's message on an error.
    #[track_caller]
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, Some(b)) => self.agent.post(&url).send_json(b),
            (_, None) => self.agent.post(&url).send_json(json!({})),
        };
        let mut resp = sent.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let v: Value = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {status}, not JSON: {e}"));
        if status >= 400 {
            panic!(
                "WebDriver {method} {path}: {status} {}: {}",
                v["value"]["error"], v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.command(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    #[track_caller]
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs an asynchronous `script`: it finishes by calling `arguments[arguments.length-1]`.
    #[track_caller]
    pub fn js_async(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            &self.session_path("/execute/async"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Polls `expression` (a JavaScript expression) every 20 ms until it is truthy; its value,
    /// or `None` after `timeout`.
    pub fn wait_js(&self, expression: &str, timeout: Duration) -> Option<Value> {
        let script = format!("return ({expression});");
        wait_for(timeout, || {
            let v = self.js(&script, json!([]));
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            truthy.then_some(v)
        })
    }

    /// Clicks the element matching a CSS selector, as a user would (WebDriver element click).
    #[track_caller]
    pub fn click(&self, css: &str) {
        let found = self.command(
            "POST",
            &self.session_path("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        let id = found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"));
        self.command(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            None,
        );
    }

    /// Saves a PNG screenshot of the current tab.
    #[track_caller]
    pub fn screenshot(&self, to: &Path) {
        let b64 = self.command("GET", &self.session_path("/screenshot"), None);
        let png = decode_base64(b64.as_str().expect("screenshot is a base64 string"));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).expect("create screenshot dir");
        }
        std::fs::write(to, png).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
    }

    /// Opens a new tab and switches to it.
    #[track_caller]
    pub fn new_tab(&self) {
        let tab = self.command(
            "POST",
            &self.session_path("/window/new"),
            Some(json!({ "type": "tab" })),
        );
        let handle = tab["handle"].clone();
        self.command(
            "POST",
            &self.session_path("/window"),
            Some(json!({ "handle": handle })),
        );
    }

    /// Closes the current tab (the page gets `pagehide`, as when a person closes it) and
    /// switches to a remaining one.
    #[track_caller]
    pub fn close_tab(&self) {
        let left = self.command("DELETE", &self.session_path("/window"), None);
        if let Some(handle) = left.as_array().and_then(|h| h.first()).cloned() {
            self.command(
                "POST",
                &self.session_path("/window"),
                Some(json!({ "handle": handle })),
            );
        }
    }

    /// The browser's own processes (found by their unique profile directory).
    fn browser_pids(&self) -> Vec<u32> {
        let marker = format!("--user-data-dir={}", self.profile.path().display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Kills the browser at once (SIGKILL to its processes): no `pagehide`, no goodbye,
    /// as when it crashes or the machine drops off the network.
    pub fn kill_browser(&self) {
        let pids = self.browser_pids();
        assert!(!pids.is_empty(), "no browser process found to kill");
        kill(&pids);
        let gone = wait_for(Duration::from_secs(5), || {
            self.browser_pids().is_empty().then_some(())
        });
        assert!(gone.is_some(), "browser processes survived SIGKILL");
    }

    pub fn profile_dir(&self) -> PathBuf {
        self.profile.path().to_path_buf()
    }
}

fn kill(pids: &[u32]) {
    let mut cmd = Command::new("kill");
    cmd.arg("-KILL").arg("--");
    for pid in pids {
        cmd.arg(pid.to_string());
    }
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self.agent.delete(&url).call();
        }
        // Whatever the session left behind (or all of it, after a failed command).
        let left = self.browser_pids();
        if !left.is_empty() {
            kill(&left);
        }
        self.driver.kill();
    }
}

/// Standard base64 (RFC 4648, with padding), as WebDriver sends screenshots.
pub fn decode_base64(text: &str) -> Vec<u8> {
    fn value(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    }
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}
