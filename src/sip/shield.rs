//! Who may talk to ivrd, and how fast. A phone line on the internet is hit all day by
//! scanners and by broken PBXs retrying in loops; real callers must not notice. Pure: the
//! time comes in, a decision goes out; the guard socket applies it before the SIP stack
//! spends anything on the message.
//!
//! - An allow-list of trunk addresses/networks (when set): everyone else gets 403.
//! - A User-Agent deny-list for known scanners (sipvicious' "friendly-scanner" and kin):
//!   dropped without an answer, so the scanner learns nothing.
//! - A token bucket per source address for requests that start something (INVITE,
//!   REGISTER, and other out-of-dialog requests): a flood from one source is dropped early
//!   and cannot slow the answers to everyone else.
//! - Before any of that, a cheaper bucket per source for raw datagrams, checked before a
//!   message is even parsed: a source sending far more than any trunk would costs one
//!   table lookup per datagram, not a parse.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at once; beyond this, new sources share one bucket (a spoofed-source
/// flood must not grow memory without bound).
const MAX_SOURCES: usize = 65_536;
/// A source idle this long forgets its bucket.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct ShieldConfig {
    /// Datagrams per second per source before parsing (a busy trunk sends a few per call).
    pub datagram_rate: f64,
    /// Networks allowed to send SIP; empty = anyone.
    pub allow: Vec<IpNet>,
    /// Networks never rate-limited: your trunks and PBXs, which carry many callers each.
    pub trusted: Vec<IpNet>,
    /// Requests starting a dialog or registration, per second per source.
    pub rate: f64,
    /// How many may come at once before the rate applies.
    pub burst: f64,
    /// Lower-case User-Agent fragments of scanners.
    pub deny_user_agents: Vec<String>,
}

/// The facts of a request the shield judges.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// No To tag: it starts something (a call, a registration, a query).
    pub out_of_dialog: bool,
    pub user_agent: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Answer 403 Forbidden; the label says why.
    Forbid(&'static str),
    /// Drop without an answer; the label says why.
    Drop(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by source address, bounded in memory.
#[derive(Default)]
struct Buckets {
    by_source: HashMap<IpAddr, Bucket>,
    /// Shared by sources beyond `MAX_SOURCES`.
    overflow: Option<Bucket>,
    swept: Option<Instant>,
}

impl Buckets {
    /// Takes a token for `source`; false when its bucket is empty.
    fn take(&mut self, now: Instant, source: IpAddr, rate: f64, burst: f64) -> bool {
        self.sweep(now);
        let fresh = Bucket {
            tokens: burst,
            at: now,
        };
        let bucket = if self.by_source.len() < MAX_SOURCES || self.by_source.contains_key(&source) {
            self.by_source.entry(source).or_insert(fresh)
        } else {
            self.overflow.get_or_insert(fresh)
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets idle sources now and then, so the table holds the active ones only.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < IDLE / 6)
        {
            return;
        }
        self.swept = Some(now);
        self.by_source
            .retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
    }
}

pub struct Shield {
    cfg: ShieldConfig,
    requests: Buckets,
    datagrams: Buckets,
}

impl Shield {
    pub fn new(cfg: ShieldConfig) -> Self {
        Shield {
            cfg,
            requests: Buckets::default(),
            datagrams: Buckets::default(),
        }
    }

    /// The cheap check for every datagram, before it is parsed.
    pub fn admit_datagram(&mut self, now: Instant, source: IpAddr) -> bool {
        if self.is_trusted(source) {
            return true;
        }
        let rate = self.cfg.datagram_rate;
        self.datagrams.take(now, source, rate, rate)
    }

    /// Judges a request from `source` at `now`. Responses are not judged (the transaction
    /// layer ignores those it did not ask for).
    pub fn check(&mut self, now: Instant, source: IpAddr, req: Request<'_>) -> Decision {
        if !self.cfg.allow.is_empty() && !self.cfg.allow.iter().any(|n| n.contains(&source)) {
            return Decision::Forbid("not_allowed");
        }
        if let Some(ua) = req.user_agent {
            let ua = ua.to_ascii_lowercase();
            if self
                .cfg
                .deny_user_agents
                .iter()
                .any(|d| ua.contains(d.as_str()))
            {
                return Decision::Drop("scanner");
            }
        }
        // In-dialog requests (BYE, ACK, re-INVITE) belong to calls already admitted, and
        // CANCEL/ACK must never be refused: they end things. Trunks carry many callers.
        if !req.out_of_dialog || matches!(req.method, "ACK" | "CANCEL") || self.is_trusted(source) {
            return Decision::Allow;
        }
        let (rate, burst) = (self.cfg.rate, self.cfg.burst);
        if self.requests.take(now, source, rate, burst) {
            Decision::Allow
        } else {
            Decision::Drop("rate_limited")
        }
    }

    fn is_trusted(&self, source: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|n| n.contains(&source))
    }

    /// Sources with a request bucket (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.requests.by_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ShieldConfig {
        ShieldConfig {
            datagram_rate: 100.0,
            allow: Vec::new(),
            trusted: Vec::new(),
            rate: 10.0,
            burst: 5.0,
            deny_user_agents: vec!["friendly-scanner".into(), "sipvicious".into()],
        }
    }

    const INVITE: Request = Request {
        method: "INVITE",
        out_of_dialog: true,
        user_agent: Some("Yealink SIP-T46S"),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_flooding_source_is_limited_and_others_are_not() {
        let mut s = Shield::new(cfg());
        let t0 = Instant::now();
        let flood: Vec<Decision> = (0..100)
            .map(|_| s.check(t0, ip("10.0.0.66"), INVITE))
            .collect();
        assert_eq!(
            flood.iter().filter(|d| **d == Decision::Allow).count(),
            5,
            "the burst"
        );
        assert_eq!(
            s.check(t0, ip("10.0.0.7"), INVITE),
            Decision::Allow,
            "another caller"
        );
        // The rate refills: 10/s -> one more every 100 ms.
        assert_eq!(
            s.check(t0 + Duration::from_millis(100), ip("10.0.0.66"), INVITE),
            Decision::Allow
        );
        assert_eq!(
            s.check(t0 + Duration::from_millis(110), ip("10.0.0.66"), INVITE),
            Decision::Drop("rate_limited")
        );
    }

    #[test]
    fn dialog_requests_are_never_rate_limited() {
        let mut s = Shield::new(cfg());
        let t0 = Instant::now();
        for _ in 0..50 {
            s.check(t0, ip("10.0.0.1"), INVITE);
        }
        for method in ["BYE", "ACK", "INFO"] {
            let r = Request {
                method,
                out_of_dialog: false,
                user_agent: None,
            };
            assert_eq!(s.check(t0, ip("10.0.0.1"), r), Decision::Allow, "{method}");
        }
        let cancel = Request {
            method: "CANCEL",
            out_of_dialog: true,
            user_agent: None,
        };
        assert_eq!(s.check(t0, ip("10.0.0.1"), cancel), Decision::Allow);
    }

    #[test]
    fn scanners_are_dropped_and_strangers_forbidden() {
        let mut s = Shield::new(cfg());
        let t0 = Instant::now();
        let scan = Request {
            user_agent: Some("Friendly-Scanner"),
            ..INVITE
        };
        assert_eq!(s.check(t0, ip("1.2.3.4"), scan), Decision::Drop("scanner"));
        let mut c = cfg();
        c.allow = vec!["192.0.2.0/24".parse().unwrap(), "::1/128".parse().unwrap()];
        let mut s = Shield::new(c);
        assert_eq!(s.check(t0, ip("192.0.2.9"), INVITE), Decision::Allow);
        assert_eq!(s.check(t0, ip("::1"), INVITE), Decision::Allow);
        assert_eq!(
            s.check(t0, ip("198.51.100.1"), INVITE),
            Decision::Forbid("not_allowed")
        );
    }

    #[test]
    fn datagrams_beyond_the_raw_rate_are_refused_before_parsing() {
        let mut s = Shield::new(cfg());
        let t0 = Instant::now();
        let admitted = (0..1000)
            .filter(|_| s.admit_datagram(t0, ip("10.0.0.66")))
            .count();
        assert_eq!(admitted, 100);
        assert!(s.admit_datagram(t0, ip("10.0.0.7")));
    }

    #[test]
    fn idle_sources_are_forgotten_and_memory_is_bounded() {
        let mut s = Shield::new(cfg());
        let t0 = Instant::now();
        for i in 0..1000u32 {
            s.check(t0, IpAddr::from(i.to_be_bytes()), INVITE);
        }
        assert_eq!(s.tracked(), 1000);
        s.check(t0 + IDLE * 2, ip("10.9.9.9"), INVITE);
        assert_eq!(s.tracked(), 1);
    }

    #[test]
    fn trusted_trunks_are_not_rate_limited() {
        let mut c = cfg();
        c.trusted = vec!["192.0.2.10/32".parse().unwrap()];
        let mut s = Shield::new(c);
        let t0 = Instant::now();
        let trunk = ip("192.0.2.10");
        assert!((0..1000).all(|_| s.admit_datagram(t0, trunk)));
        assert!((0..1000).all(|_| s.check(t0, trunk, INVITE) == Decision::Allow));
    }
}
