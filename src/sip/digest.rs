//! HTTP digest authentication for agents that REGISTER (RFC 3261 §22, RFC 2617 with MD5
//! and `qop=auth`). Pure: the registrar passes the header, the password, the current Unix
//! time and its secret.
//!
//! Nonces are stateless: `TIME.MAC`, where MAC is MD5 over the registrar's secret and TIME,
//! so any nonce ivrd handed out in the last `NONCE_LIFETIME` verifies without a table, and a
//! forged or old one does not (an old one is answered with `stale=true`, so phones retry
//! without asking their user again).

use md5::{Digest, Md5};

/// How long a nonce is good for.
pub const NONCE_LIFETIME_S: u64 = 300;

/// The fields of an `Authorization: Digest ...` header that the check needs, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// What checking credentials found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Right password, but the nonce is too old: challenge again with `stale=true`.
    Stale,
    Invalid,
}

/// Parses `Digest k=v, k="v", ...`; None for another scheme or without the required fields.
pub fn parse(header: &str) -> Option<DigestResponse> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut r = DigestResponse::default();
    for (k, v) in params_of(params) {
        let slot = match k.to_ascii_lowercase().as_str() {
            "username" => &mut r.username,
            "realm" => &mut r.realm,
            "nonce" => &mut r.nonce,
            "uri" => &mut r.uri,
            "response" => &mut r.response,
            "algorithm" => {
                r.algorithm = Some(v);
                continue;
            }
            "qop" => {
                r.qop = Some(v);
                continue;
            }
            "nc" => {
                r.nc = Some(v);
                continue;
            }
            "cnonce" => {
                r.cnonce = Some(v);
                continue;
            }
            _ => continue,
        };
        *slot = v;
    }
    let required = [&r.username, &r.realm, &r.nonce, &r.uri, &r.response];
    (required.iter().all(|f| !f.is_empty())).then_some(r)
}

/// `k=v` pairs, values unquoted (a quoted value may hold commas and escaped quotes).
fn params_of(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.trim().is_empty() {
            return out;
        }
        if chars.next() != Some('=') {
            continue;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            value = value.trim().to_string();
        }
        out.push((key.trim().to_string(), value));
    }
}

/// The `WWW-Authenticate` value for a challenge.
pub fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}")
}

/// A nonce for now.
pub fn make_nonce(secret: &[u8], now_unix: u64) -> String {
    format!("{now_unix:x}.{}", mac(secret, now_unix))
}

fn mac(secret: &[u8], t: u64) -> String {
    let mut h = Md5::new();
    h.update(secret);
    h.update(b":");
    h.update(t.to_string().as_bytes());
    hex(&h.finalize())
}

/// Checks a response to our challenge for `method` against the user's password.
pub fn verify(
    r: &DigestResponse,
    method: &str,
    password: &str,
    realm: &str,
    secret: &[u8],
    now_unix: u64,
) -> Verdict {
    if r.realm != realm
        || r.algorithm
            .as_deref()
            .is_some_and(|a| !a.eq_ignore_ascii_case("md5"))
    {
        return Verdict::Invalid;
    }
    let Some((t, m)) = r.nonce.split_once('.') else {
        return Verdict::Invalid;
    };
    let Ok(t) = u64::from_str_radix(t, 16) else {
        return Verdict::Invalid;
    };
    if mac(secret, t) != m {
        return Verdict::Invalid;
    }
    let ha1 = md5_hex(&format!("{}:{realm}:{password}", r.username));
    let ha2 = md5_hex(&format!("{method}:{}", r.uri));
    let expected = match (r.qop.as_deref(), &r.nc, &r.cnonce) {
        (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
            md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", r.nonce))
        }
        (None, _, _) => md5_hex(&format!("{ha1}:{}:{ha2}", r.nonce)),
        _ => return Verdict::Invalid,
    };
    if !constant_time_eq(
        expected.as_bytes(),
        r.response.to_ascii_lowercase().as_bytes(),
    ) {
        return Verdict::Invalid;
    }
    if now_unix.saturating_sub(t) > NONCE_LIFETIME_S || t > now_unix + 5 {
        return Verdict::Stale;
    }
    Verdict::Valid
}

fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's example, with our realm and nonce format.
    fn answer(nonce: &str, password: &str, qop: bool) -> String {
        let ha1 = md5_hex(&format!("alice:ivrd:{password}"));
        let ha2 = md5_hex("REGISTER:sip:127.0.0.1:5060");
        let response = if qop {
            md5_hex(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"))
        } else {
            md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
        };
        let q = if qop {
            ", qop=auth, nc=00000001, cnonce=\"0a4f113b\""
        } else {
            ""
        };
        format!(
            "Digest username=\"alice\", realm=\"ivrd\", nonce=\"{nonce}\", \
             uri=\"sip:127.0.0.1:5060\", response=\"{response}\", algorithm=MD5{q}"
        )
    }

    #[test]
    fn the_right_password_verifies_with_and_without_qop() {
        let secret = b"s3cret";
        let nonce = make_nonce(secret, 1000);
        for qop in [true, false] {
            let r = parse(&answer(&nonce, "pw", qop)).unwrap();
            assert_eq!(r.username, "alice");
            assert_eq!(
                verify(&r, "REGISTER", "pw", "ivrd", secret, 1010),
                Verdict::Valid
            );
            assert_eq!(
                verify(&r, "REGISTER", "nope", "ivrd", secret, 1010),
                Verdict::Invalid
            );
            assert_eq!(
                verify(&r, "INVITE", "pw", "ivrd", secret, 1010),
                Verdict::Invalid
            );
        }
    }

    #[test]
    fn forged_and_old_nonces_are_refused() {
        let secret = b"s3cret";
        let forged = make_nonce(b"other", 1000);
        let r = parse(&answer(&forged, "pw", true)).unwrap();
        assert_eq!(
            verify(&r, "REGISTER", "pw", "ivrd", secret, 1000),
            Verdict::Invalid
        );
        let old = make_nonce(secret, 1000);
        let r = parse(&answer(&old, "pw", true)).unwrap();
        let later = 1000 + NONCE_LIFETIME_S + 1;
        assert_eq!(
            verify(&r, "REGISTER", "pw", "ivrd", secret, later),
            Verdict::Stale
        );
    }

    #[test]
    fn headers_that_are_not_digest_or_miss_fields_do_not_parse() {
        assert!(parse("Basic YWxhZGRpbjpvcGVuc2VzYW1l").is_none());
        assert!(parse("Digest username=\"a\", realm=\"r\"").is_none());
        assert!(parse("").is_none());
        assert!(parse("Digest").is_none());
        let r = parse("Digest username=\"a\\\"b\", realm=r, nonce=\"n,1\", uri=\"u\", response=x")
            .unwrap();
        assert_eq!(
            (r.username.as_str(), r.realm.as_str(), r.nonce.as_str()),
            ("a\"b", "r", "n,1")
        );
        assert!(challenge("ivrd", "n", true).ends_with("stale=true"));
    }
}
