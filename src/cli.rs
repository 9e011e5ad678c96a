//! `ivrd outage ...`: a client of the running daemon's admin API. It reads the admin
//! address and token file from the same config the daemon uses, so on a host running ivrd
//! `ivrd outage start ...` just works.

use crate::config::LoadedConfig;
use crate::outage::OutageSpec;
use std::path::PathBuf;
use std::time::Duration;

pub struct Client {
    base: String,
    token: String,
    actor: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach the daemon at {url}: {reason} (is ivrd running?)")]
    Unreachable { url: String, reason: String },
    #[error("the daemon refused: {status} {message}")]
    Refused { status: u16, message: String },
}

impl Client {
    /// From the config (admin.listen, token file), with optional overrides.
    pub fn new(
        cfg: &LoadedConfig,
        url: Option<String>,
        token_file: Option<PathBuf>,
    ) -> Result<Client, CliError> {
        let base = match url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let addr = cfg.config.admin.listen.ok_or_else(|| {
                    CliError::Setup(format!(
                        "{}: admin.listen is off; pass --url",
                        cfg.path.display()
                    ))
                })?;
                format!("http://{addr}")
            }
        };
        let file = token_file.unwrap_or_else(|| cfg.token_file.clone());
        let token = std::fs::read_to_string(&file)
            .map_err(|e| {
                CliError::Setup(format!(
                    "cannot read the admin token {}: {e}",
                    file.display()
                ))
            })?
            .trim()
            .to_string();
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        Ok(Client {
            base,
            token,
            actor: format!("{user}@{} via cli", host.trim()),
        })
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// Any API call with an optional JSON body.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, CliError> {
        self.send(method, path, body)
    }

    /// A POST with a text body (a CSV import).
    pub fn send_text(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<serde_json::Value, CliError> {
        let url = format!("{}{path}", self.base);
        let result = self
            .agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("X-Ivrd-Actor", &self.actor)
            .header("Content-Type", content_type)
            .send(body);
        Self::answer(url, result)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, CliError> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let agent = self.agent();
        let result = match (method, body) {
            ("PUT", b) => agent
                .put(&url)
                .header("Authorization", &auth)
                .header("X-Ivrd-Actor", &self.actor)
                .send_json(b.unwrap_or(serde_json::Value::Null)),
            ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => agent
                .delete(&url)
                .header("Authorization", &auth)
                .header("X-Ivrd-Actor", &self.actor)
                .call(),
            (_, Some(b)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("X-Ivrd-Actor", &self.actor)
                .send_json(b),
            (_, None) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("X-Ivrd-Actor", &self.actor)
                .send_empty(),
        };
        Self::answer(url, result)
    }

    /// The response as JSON, or the daemon's refusal.
    fn answer(
        url: String,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value, CliError> {
        let mut resp = result.map_err(|e| CliError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let json: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        if status >= 400 {
            let message = json
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| json.to_string());
            return Err(CliError::Refused { status, message });
        }
        Ok(json)
    }

    pub fn start(&self, spec: &OutageSpec) -> Result<serde_json::Value, CliError> {
        let body = serde_json::to_value(spec).map_err(|e| CliError::Setup(e.to_string()))?;
        self.send("POST", "/api/outages", Some(body))
    }

    pub fn stop(&self, id: &str) -> Result<(), CliError> {
        self.send("DELETE", &format!("/api/outages/{id}"), None)
            .map(|_| ())
    }

    pub fn list(&self) -> Result<serde_json::Value, CliError> {
        self.send("GET", "/api/outages", None)
    }

    pub fn reload(&self) -> Result<serde_json::Value, CliError> {
        self.send("POST", "/api/reload", None)
    }

    pub fn calls(&self) -> Result<serde_json::Value, CliError> {
        self.send("GET", "/api/calls", None)
    }

    pub fn agents(&self) -> Result<serde_json::Value, CliError> {
        self.send("GET", "/api/agents", None)
    }

    pub fn set_agent(&self, id: &str, state: &str) -> Result<serde_json::Value, CliError> {
        let body = serde_json::json!({ "state": state });
        self.send("POST", &format!("/api/agents/{id}/state"), Some(body))
    }
}

/// A value safe as one path segment (`+` and other reserved characters escaped).
pub fn path_part(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// One line per agent for humans.
pub fn format_agents(list: &serde_json::Value) -> String {
    let Some(items) = list.as_array() else {
        return list.to_string();
    };
    if items.is_empty() {
        return "no agents".into();
    }
    items
        .iter()
        .map(|a| {
            let s = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
            let since = a.get("for_s").and_then(|v| v.as_u64()).unwrap_or(0);
            let queues = a
                .get("queues")
                .and_then(|v| v.as_array())
                .map(|q| {
                    q.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let after = a
                .get("after_call")
                .and_then(|v| v.as_str())
                .map(|x| format!("\t(then {x})"))
                .unwrap_or_default();
            format!(
                "{}\t{}\tfor {since}s\tqueues={queues}\t{}{after}",
                s("id"),
                s("state"),
                s("name")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per outage for humans.
pub fn format_outages(list: &serde_json::Value) -> String {
    let Some(items) = list.as_array() else {
        return list.to_string();
    };
    if items.is_empty() {
        return "no outages".into();
    }
    items
        .iter()
        .map(|o| {
            let s = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
            let scope = o
                .get("scope")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let active = if o.get("active").and_then(|v| v.as_bool()) == Some(true) {
                "active"
            } else {
                "scheduled"
            };
            let what = o
                .get("message")
                .and_then(|v| v.as_str())
                .map(|m| format!("\"{m}\""))
                .unwrap_or_else(|| format!("prompt {}", s("prompt")));
            format!(
                "{}\t{active}\tscope={scope}\tsource={}\tby={}\texpires={}\t{what}",
                s("id"),
                s("source"),
                s("updated_by"),
                s("expires_at")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
