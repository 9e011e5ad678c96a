//! A small SIP message and SDP model for the test peers.
//!
//! This is deliberately independent of the daemon's SIP stack: it parses what arrives on
//! the wire (or in SIPp's message trace) just well enough for tests to assert on it, and
//! it is lenient about what it does not need (unknown headers are kept verbatim).

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// One parsed SIP request or response.
#[derive(Clone, Debug)]
pub struct SipMessage {
    /// The first line, without its line ending: `INVITE sip:x@y SIP/2.0` or `SIP/2.0 200 OK`.
    pub start_line: String,
    /// Headers in wire order, folded lines joined, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (cut to Content-Length when that header is present).
    pub body: String,
}

/// Compact header forms (RFC 3261 7.3.3, RFC 3515, RFC 3892, RFC 3265, RFC 4028).
const COMPACT: &[(&str, &str)] = &[
    ("i", "call-id"),
    ("m", "contact"),
    ("e", "content-encoding"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("f", "from"),
    ("s", "subject"),
    ("k", "supported"),
    ("t", "to"),
    ("v", "via"),
    ("r", "refer-to"),
    ("b", "referred-by"),
    ("o", "event"),
    ("u", "allow-events"),
    ("x", "session-expires"),
];

/// Lower-case long form of a header name, so `v`, `Via` and `VIA` compare equal.
fn canonical_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    COMPACT
        .iter()
        .find(|(short, _)| *short == lower)
        .map(|(_, long)| (*long).to_string())
        .unwrap_or(lower)
}

impl SipMessage {
    /// Parses one message from a datagram (or one message out of a trace).
    pub fn parse(data: &[u8]) -> Result<SipMessage, String> {
        let text = String::from_utf8_lossy(data);
        // Header/body separator: CRLF CRLF per RFC 3261; accept bare LF LF from sloppy peers.
        let (head, body) = match text.find("\r\n\r\n") {
            Some(i) => (&text[..i], &text[i + 4..]),
            None => match text.find("\n\n") {
                Some(i) => (&text[..i], &text[i + 2..]),
                None => (&text[..], ""),
            },
        };
        let mut lines = head.lines();
        let start_line = lines
            .next()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .ok_or("empty message")?;
        if !(start_line.starts_with("SIP/2.0 ") || start_line.ends_with(" SIP/2.0")) {
            return Err(format!("not a SIP start line: {start_line:?}"));
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            let line = line.trim_end_matches('\r');
            if line.starts_with(' ') || line.starts_with('\t') {
                // Folded continuation of the previous header.
                let last = headers
                    .last_mut()
                    .ok_or_else(|| format!("continuation without header: {line:?}"))?;
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header without colon: {line:?}"))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut msg = SipMessage {
            start_line,
            headers,
            body: body.to_string(),
        };
        if let Some(len) = msg.header("Content-Length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {len:?}"))?;
            if msg.body.len() < len {
                return Err(format!(
                    "body shorter ({}) than Content-Length ({len})",
                    msg.body.len()
                ));
            }
            msg.body.truncate(len);
        }
        Ok(msg)
    }

    pub fn is_request(&self) -> bool {
        !self.start_line.starts_with("SIP/2.0 ")
    }

    /// Request method (`INVITE`), or `None` for a response.
    pub fn method(&self) -> Option<&str> {
        if self.is_request() {
            self.start_line.split_whitespace().next()
        } else {
            None
        }
    }

    /// Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        if self.is_request() {
            self.start_line.split_whitespace().nth(1)
        } else {
            None
        }
    }

    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        if self.is_request() {
            return None;
        }
        self.start_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// First value of a header (compact forms understood, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = canonical_name(name);
        self.headers
            .iter()
            .find(|(n, _)| canonical_name(n) == want)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order (separate header lines; commas are not split).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let want = canonical_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| canonical_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `(number, method)` from CSeq.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = it.next()?.to_string();
        Some((n, m))
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// The `branch` parameter of the topmost Via.
    pub fn top_via_branch(&self) -> Option<String> {
        let via = self.header("Via")?;
        // A Via header may carry several comma-separated values; the first is the top one.
        let top = via.split(',').next()?;
        param(top, "branch")
    }

    /// Content-Type without parameters, lower-cased.
    pub fn content_type(&self) -> Option<String> {
        self.header("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// The `tag` parameter of a From/To style header.
    pub fn tag(&self, header: &str) -> Option<String> {
        self.header(header).and_then(header_tag)
    }

    /// Serialises back to wire form (CRLF line ends, Content-Length kept as parsed).
    pub fn to_wire(&self) -> String {
        let mut s = String::new();
        s.push_str(&self.start_line);
        s.push_str("\r\n");
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.push_str(&self.body);
        s
    }

    /// One line for logs: start line plus CSeq.
    pub fn summary(&self) -> String {
        format!(
            "{} [{}]",
            self.start_line,
            self.header("CSeq").unwrap_or("no CSeq")
        )
    }
}

impl fmt::Display for SipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wire())
    }
}

/// Value of a `;name=value` parameter in a header value or URI (case-insensitive name).
pub fn param(value: &str, name: &str) -> Option<String> {
    for part in value.split(';').skip(1) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let end = v.find([',', '>', ' ']).unwrap_or(v.len());
            return Some(v[..end].to_string());
        }
    }
    None
}

/// The `tag` parameter of a name-addr header (`"x" <sip:a@b;p=1>;tag=abc`).
pub fn header_tag(value: &str) -> Option<String> {
    // Header parameters follow the closing '>' when the URI is bracketed; URI parameters
    // inside the brackets must not be mistaken for them.
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    param(params, "tag")
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` -> `sip:a@b`) or an addr-spec.
pub fn header_uri(value: &str) -> String {
    if let (Some(a), Some(b)) = (value.find('<'), value.rfind('>')) {
        if a < b {
            return value[a + 1..b].to_string();
        }
    }
    // addr-spec form: header parameters start at the first ';'.
    value.split(';').next().unwrap_or("").trim().to_string()
}

/// Resolves the host:port of a `sip:` URI to a socket address (default port 5060).
pub fn uri_socket_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("SIP:"))?;
    // Drop user part, URI parameters and headers.
    let hostport = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = hostport.split([';', '?']).next()?;
    let (host, port) = if let Some(stripped) = hostport.strip_prefix('[') {
        // IPv6 reference: [::1]:5060
        let (h, p) = stripped.split_once(']')?;
        (
            h.to_string(),
            p.strip_prefix(':').unwrap_or("5060").to_string(),
        )
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (hostport.to_string(), "5060".to_string()),
        }
    };
    let port: u16 = port.parse().ok()?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    (host.as_str(), port).to_socket_addrs().ok()?.next()
}

/// Standard reason phrase for the status codes the test peers send.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// The audio part of an SDP body, as far as the tests care.
#[derive(Clone, Debug, Default)]
pub struct Sdp {
    /// Connection address that applies to the audio stream (media-level c= wins).
    pub connection: Option<IpAddr>,
    /// Port of the first `m=audio` line.
    pub audio_port: u16,
    /// Payload types of the first `m=audio` line, in order.
    pub payload_types: Vec<u8>,
    /// `a=rtpmap` entries: (pt, "PCMU/8000").
    pub rtpmaps: Vec<(u8, String)>,
    /// Direction of the audio stream; `sendrecv` when no attribute says otherwise.
    pub direction: String,
    /// The `o=` line's session version.
    pub origin_version: Option<u64>,
}

impl Sdp {
    pub fn parse(body: &str) -> Result<Sdp, String> {
        let mut sdp = Sdp {
            direction: "sendrecv".into(),
            ..Sdp::default()
        };
        let mut in_audio = false;
        let mut seen_audio = false;
        let mut session_dir: Option<String> = None;
        let mut media_dir: Option<String> = None;
        let mut session_c: Option<IpAddr> = None;
        let mut media_c: Option<IpAddr> = None;
        for line in body.lines() {
            let line = line.trim_end();
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "o" => {
                    sdp.origin_version =
                        value.split_whitespace().nth(2).and_then(|v| v.parse().ok())
                }
                "c" => {
                    // c=IN IP4 127.0.0.1
                    let ip = value
                        .split_whitespace()
                        .nth(2)
                        .and_then(|a| a.split('/').next())
                        .and_then(|a| a.parse().ok());
                    if in_audio {
                        media_c = ip;
                    } else if !seen_audio {
                        session_c = ip;
                    }
                }
                "m" => {
                    let mut it = value.split_whitespace();
                    let media = it.next().unwrap_or("");
                    in_audio = media == "audio" && !seen_audio;
                    if in_audio {
                        seen_audio = true;
                        sdp.audio_port = it
                            .next()
                            .and_then(|p| p.split('/').next())
                            .and_then(|p| p.parse().ok())
                            .ok_or_else(|| format!("bad m= line {line:?}"))?;
                        let _proto = it.next();
                        sdp.payload_types = it.filter_map(|pt| pt.parse().ok()).collect();
                    }
                }
                "a" => {
                    let dir = matches!(value, "sendrecv" | "sendonly" | "recvonly" | "inactive");
                    if dir {
                        if in_audio {
                            media_dir = Some(value.to_string());
                        } else if !seen_audio {
                            session_dir = Some(value.to_string());
                        }
                    } else if let Some(map) = value.strip_prefix("rtpmap:") {
                        if in_audio {
                            if let Some((pt, enc)) = map.split_once(' ') {
                                if let Ok(pt) = pt.parse() {
                                    sdp.rtpmaps.push((pt, enc.trim().to_string()));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if !seen_audio {
            return Err("no m=audio line".into());
        }
        sdp.connection = media_c.or(session_c);
        if let Some(d) = media_dir.or(session_dir) {
            sdp.direction = d;
        }
        Ok(sdp)
    }

    /// Encoding name (upper-case, e.g. `PCMU`) of a payload type: rtpmap first, then the
    /// static assignments of RFC 3551.
    pub fn encoding(&self, pt: u8) -> Option<String> {
        if let Some((_, enc)) = self.rtpmaps.iter().find(|(p, _)| *p == pt) {
            return enc.split('/').next().map(|e| e.to_ascii_uppercase());
        }
        match pt {
            0 => Some("PCMU".into()),
            8 => Some("PCMA".into()),
            9 => Some("G722".into()),
            _ => None,
        }
    }

    /// Payload type mapped to `telephone-event`, if any.
    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.payload_types
            .iter()
            .copied()
            .find(|pt| self.encoding(*pt).as_deref() == Some("TELEPHONE-EVENT"))
    }

    /// First audio codec (not telephone-event / CN) on the m= line.
    pub fn first_audio_pt(&self) -> Option<u8> {
        self.payload_types.iter().copied().find(|pt| {
            !matches!(
                self.encoding(*pt).as_deref(),
                Some("TELEPHONE-EVENT") | Some("CN")
            )
        })
    }

    /// Where RTP for this stream should go.
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.connection?, self.audio_port))
    }
}
