//! Flood and scanner protection, from outside: a scanner's requests go unanswered, a
//! source outside the allow-list gets 403, and a flood of INVITEs from one source is cut
//! off early while a caller from another source is still answered inside the ring budget.
//! Loopback only: the flood comes from 127.0.0.2, the caller from 127.0.0.1 (Linux routes
//! all of 127/8 to the loopback interface).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::caller::{Caller, CallerOpts};
use support::{metric_sum, Daemon, DaemonOpts};

fn request(method: &str, target: SocketAddr, from: SocketAddr, n: u32, user_agent: &str) -> String {
    format!(
        "{method} sip:100@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-sec-{n}\r\n\
         From: <sip:probe@{from}>;tag=t{n}\r\n\
         To: <sip:100@{target}>\r\n\
         Call-ID: sec-{n}@{from}\r\n\
         CSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: {user_agent}\r\n\
         Contact: <sip:probe@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends one request from `bind` and returns the first response line, if any comes.
fn ask(daemon: &Daemon, bind: &str, method: &str, ua: &str) -> Option<String> {
    let sock = UdpSocket::bind(bind).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let from = sock.local_addr().unwrap();
    let n = rand_n();
    sock.send_to(
        request(method, daemon.sip_udp, from, n, ua).as_bytes(),
        daemon.sip_udp,
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) => {
                let text = String::from_utf8_lossy(&buf[..len]).to_string();
                let first = text.lines().next().unwrap_or("").to_string();
                // Skip provisional responses.
                if !first.starts_with("SIP/2.0 1") {
                    return Some(first);
                }
            }
            Err(_) => return None,
        }
    }
    None
}

fn rand_n() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() as u32
}

#[test]
fn scanner_user_agents_get_no_answer_and_others_do() {
    let daemon = Daemon::start_default();
    assert_eq!(
        ask(&daemon, "127.0.0.1:0", "OPTIONS", "friendly-scanner").as_deref(),
        None,
        "a scanner must learn nothing"
    );
    assert_eq!(
        ask(&daemon, "127.0.0.1:0", "OPTIONS", "Yealink SIP-T46S").as_deref(),
        Some("SIP/2.0 200 OK")
    );
    let metrics = daemon.metrics();
    assert_eq!(
        metric_sum(
            &metrics,
            "ivrd_sip_messages_rejected_total",
            &[("reason", "scanner")]
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn sources_outside_the_allow_list_get_403() {
    let daemon = Daemon::start(DaemonOpts {
        extra_yaml: "security:\n  allow: [\"127.0.0.1/32\"]\n".into(),
        ..DaemonOpts::default()
    });
    assert_eq!(
        ask(&daemon, "127.0.0.2:0", "INVITE", "PBX").as_deref(),
        Some("SIP/2.0 403 Forbidden")
    );
    assert_eq!(
        ask(&daemon, "127.0.0.1:0", "OPTIONS", "PBX").as_deref(),
        Some("SIP/2.0 200 OK")
    );
}

#[test]
fn an_invite_flood_from_one_source_does_not_delay_other_callers() {
    let daemon = Daemon::start(DaemonOpts {
        extra_yaml: "security:\n  rate_per_source: 20\n  burst_per_source: 40\n".into(),
        ..DaemonOpts::default()
    });
    let target = daemon.sip_udp;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
            let from = sock.local_addr().unwrap();
            let mut sent = 0u32;
            let started = Instant::now();
            let until = started + Duration::from_secs(8);
            // 2,000 new INVITEs a second: a hundred times the per-source limit, what a
            // scanner or a looping PBX sends. (A flood that fills the socket's kernel buffer
            // faster than any process reads is for the firewall; see README "Security".)
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for _ in 0..20 {
                    let msg = request("INVITE", target, from, sent, "flooder");
                    let _ = sock.send_to(msg.as_bytes(), target);
                    sent += 1;
                }
                let due = started + Duration::from_micros(u64::from(sent) * 500);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
            sent
        })
    };
    let flood_started = Instant::now();
    thread::sleep(Duration::from_millis(500));
    // Real callers from another address during the flood, spread over 3 s of it.
    let mut answers = Vec::new();
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(700));
        let caller = Caller::new(target, CallerOpts::default());
        let ok = caller.invite(Duration::from_secs(5));
        assert_eq!(ok.status(), Some(200), "{}", caller.sip_trace());
        answers.push(caller.time_to_status(200).expect("answered"));
        let _ = caller.bye(Duration::from_secs(3));
    }
    if let Some(rest) = Duration::from_secs(4).checked_sub(flood_started.elapsed()) {
        thread::sleep(rest);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    let metrics = daemon.metrics();
    let limited = metric_sum(
        &metrics,
        "ivrd_limits_hit_total",
        &[("limit", "invite_rate")],
    );
    eprintln!("flood: {sent} INVITEs sent, {limited} dropped by the rate limit; caller answer times {answers:?}");
    assert!(limited > 0.0 && sent > 5000, "flood not limited: {metrics}");
    for a in answers {
        assert!(
            a < Duration::from_millis(4000),
            "answered after the ring budget: {a:?}"
        );
    }
    assert_eq!(
        metric_sum(&metrics, "ivrd_ring_budget_exceeded_total", &[]),
        0.0,
        "{metrics}"
    );
}
