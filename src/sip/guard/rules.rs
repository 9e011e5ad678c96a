//! What RFC 3261 says about a message, decided on the raw fields before rsipstack sees them:
//! syntax (§7, §25) where rsipstack is lenient or gives up silently, and the UAS checks of
//! §8.2 that do not depend on call state (unknown method, URI scheme, Require, Accept).
//! Everything that needs a dialog or a body parser stays with the call code.

use super::message::{
    has_scheme, is_token, is_token_byte, scheme_of, sip_version_numbers, BadStart, Message,
    StartLine,
};
use std::borrow::Cow;

/// How the message arrived: it decides what Content-Length means (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram is one message; Content-Length may be absent (body = rest of the
    /// datagram) but must not claim more than arrived.
    Datagram,
    /// The stream framer already cut the message at Content-Length.
    Stream,
}

/// The decision on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    /// Answer with this status (requests only, never ACK).
    Refuse(Refusal),
    /// Drop without a word, counted under this reason.
    Discard(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub phrase: &'static str,
    /// Goes into a `Warning: 399` so a human reading a trace learns what was wrong.
    pub why: Cow<'static, str>,
    /// Label for `ivrd_sip_messages_rejected_total{reason}`.
    pub reason: &'static str,
    /// Extra header fields the status calls for (Unsupported, Allow, Accept).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(
        code: u16,
        phrase: &'static str,
        reason: &'static str,
        why: impl Into<Cow<'static, str>>,
    ) -> Self {
        Refusal {
            code,
            phrase,
            why: why.into(),
            reason,
            headers: Vec::new(),
        }
    }

    pub fn too_large() -> Self {
        Refusal::new(513, "Message Too Large", "too_large", "message too large")
    }

    pub fn bad_request(why: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(400, "Bad Request", "malformed", why)
    }

    fn with(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Methods rsipstack parses. Any other token is an extension method that ivrd cannot
/// serve: rsipstack would drop it, RFC 3261 §8.2.1 wants 501.
pub const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "PRACK",
    "UPDATE",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// Request-URI schemes a call can be addressed with.
const SUPPORTED_SCHEMES: &[&str] = &["sip", "sips", "tel"];

/// Header fields that occur once (RFC 3261 §20, "single value"); two of them make the
/// request ambiguous (RFC 4475 §3.3.8, §3.3.9).
const SINGLE: &[(&str, Option<&str>)] = &[
    ("From", Some("f")),
    ("To", Some("t")),
    ("Call-ID", Some("i")),
    ("CSeq", None),
    ("Max-Forwards", None),
    ("Content-Length", Some("l")),
    ("Content-Type", Some("c")),
];

/// Fields every request and response carries (RFC 3261 §8.1.1). Max-Forwards is left out
/// on purpose: RFC 2543 requests lack it and RFC 4475 §3.4.1 wants them accepted.
const REQUIRED: &[(&str, Option<&str>)] = &[
    ("Via", Some("v")),
    ("From", Some("f")),
    ("To", Some("t")),
    ("Call-ID", Some("i")),
    ("CSeq", None),
];

/// Judges a request or response; `allow` is the Allow value to send with a 501.
pub fn judge(m: &Message, transport: Transport, allow: &str) -> Outcome {
    match m.start {
        Err(BadStart::Request(why)) => Outcome::Refuse(Refusal::bad_request(why)),
        Err(BadStart::Garbage) => Outcome::Discard("unparseable"),
        Ok(StartLine::Response { version, code, .. }) => response(m, version, code),
        Ok(StartLine::Request {
            method,
            uri,
            version,
        }) => match request(m, method, uri, version, transport, allow) {
            // An ACK never gets a response (RFC 3261 §17); a bad one is just dropped.
            Err(r) if method == "ACK" => Outcome::Discard(r.reason),
            Err(r) => Outcome::Refuse(r),
            Ok(()) => Outcome::Accept,
        },
    }
}

fn request(
    m: &Message,
    method: &str,
    uri: &str,
    version: &str,
    transport: Transport,
    allow: &str,
) -> Result<(), Refusal> {
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(match sip_version_numbers(version) {
            Some(_) => Refusal::new(
                505,
                "Version Not Supported",
                "version",
                format!("only SIP/2.0 is supported, not {}", printable(version)),
            ),
            None => Refusal::bad_request("SIP-Version is not SIP/x.y"),
        });
    }
    request_uri(uri).map_err(Refusal::bad_request)?;
    if let Some(problem) = m.problem {
        return Err(Refusal::bad_request(problem));
    }
    // §8.2.1 comes first: an unknown method is 501 even when the rest is odd (RFC 4475
    // §3.1.2.18 prefers 501 over 400 for NEWMETHOD with a mismatched CSeq).
    if !KNOWN_METHODS.contains(&method) {
        let mut r = Refusal::new(
            501,
            "Not Implemented",
            "unknown_method",
            "method not implemented",
        );
        if !allow.is_empty() {
            r = r.with("Allow", allow.to_string());
        }
        return Err(r);
    }
    identity(m, Some(method)).map_err(Refusal::bad_request)?;
    request_fields(m).map_err(Refusal::bad_request)?;
    content_length(m, transport)
        .map_err(|why| Refusal::new(400, "Bad Request", "bad_content_length", why))?;
    semantics(m, method, uri)
}

fn response(m: &Message, version: &str, code: &str) -> Outcome {
    let code_ok = code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit())
        && (b'1'..=b'6').contains(&code.as_bytes()[0]);
    if !version.eq_ignore_ascii_case("SIP/2.0") || !code_ok || m.problem.is_some() {
        return Outcome::Discard("malformed_response");
    }
    // Only what matching a client transaction needs: a peer's odd display name must not
    // cost us the answer to our BYE or REFER.
    if identity(m, None).is_err() {
        return Outcome::Discard("malformed_response");
    }
    // RFC 3261 §8.1.3.3: a UA discards a response with more than one Via; it can only be
    // meant for a proxy, and following it could send traffic to a broadcast address
    // (RFC 4475 §3.3.10).
    let vias: usize = m
        .values("Via", Some("v"))
        .map(|v| split_top(v, b',').count())
        .sum();
    if vias != 1 {
        return Outcome::Discard("response_via");
    }
    Outcome::Accept
}

/// Request-URI = SIP-URI / SIPS-URI / absoluteURI, without enclosing <> or whitespace
/// (RFC 4475 §3.1.2.7, §3.1.2.8).
fn request_uri(uri: &str) -> Result<(), &'static str> {
    if uri
        .bytes()
        .any(|b| b <= b' ' || b >= 0x7f || b"<>\"".contains(&b))
    {
        return Err("Request-URI contains characters a URI cannot have");
    }
    let scheme = scheme_of(uri).ok_or("Request-URI has no scheme")?;
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let rest = &uri[scheme.len() + 1..];
        // '@' cannot appear unescaped after the userinfo, so the first one ends it.
        let hostpart = rest.split_once('@').map_or(rest, |(_, h)| h);
        if hostpart.contains('?') {
            // Headers are not allowed in a Request-URI (RFC 3261 §19.1.5; RFC 4475
            // §3.1.2.11).
            return Err("Request-URI carries URI headers");
        }
        let host = match hostpart.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => hostpart.split([':', ';']).next().unwrap_or_default(),
        };
        if host.is_empty() {
            return Err("Request-URI has no host");
        }
    }
    Ok(())
}

/// The fields that identify a transaction, in requests and responses alike: present,
/// single where they must be, CSeq within 32 bits (RFC 4475 §3.1.2.4, §3.1.2.5) and naming
/// the request's method (§3.1.2.17). `method` is None for a response.
fn identity(m: &Message, method: Option<&str>) -> Result<(), Cow<'static, str>> {
    for (long, short) in REQUIRED {
        if m.count(long, *short) == 0 {
            return Err(format!("missing {long}").into());
        }
    }
    for (long, short) in SINGLE {
        if m.count(long, *short) > 1 {
            return Err(format!("more than one {long}").into());
        }
    }
    let cseq = m.first("CSeq", None).unwrap_or_default();
    let (number, cseq_method) = cseq
        .split_once([' ', '\t'])
        .map(|(n, rest)| (n, rest.trim_start_matches([' ', '\t'])))
        .ok_or("CSeq is not number and method")?;
    if !number.bytes().all(|b| b.is_ascii_digit()) || number.parse::<u32>().is_err() {
        return Err("CSeq number is not a 32-bit unsigned integer".into());
    }
    if !is_token(cseq_method) {
        return Err("CSeq method is not a token".into());
    }
    if method.is_some_and(|method| method != cseq_method) {
        return Err("CSeq method differs from the request method".into());
    }
    let call_id = m.first("Call-ID", Some("i")).unwrap_or_default();
    if call_id.is_empty() || call_id.bytes().any(|b| b <= b' ') {
        return Err("Call-ID is empty or contains whitespace".into());
    }
    Ok(())
}

/// The rest of a request's fields that rsipstack or the call code read: Max-Forwards,
/// every Via, From, To and Contact.
fn request_fields(m: &Message) -> Result<(), Cow<'static, str>> {
    if let Some(mf) = m.first("Max-Forwards", None) {
        // Over 255 is tolerated (RFC 4475 §3.1.2.4: process as if absent); not digits is not.
        if mf.is_empty() || !mf.bytes().all(|b| b.is_ascii_digit()) {
            return Err("Max-Forwards is not a number".into());
        }
    }
    for via in m.values("Via", Some("v")) {
        for parm in split_top(via, b',') {
            via_parm(parm)?;
        }
    }
    for (name, short) in [("From", "f"), ("To", "t")] {
        let value = m.first(name, Some(short)).unwrap_or_default();
        check_address(value).map_err(|why| format!("{name}: {why}"))?;
    }
    for contact in m.values("Contact", Some("m")) {
        if contact == "*" {
            continue;
        }
        for element in split_top(contact, b',') {
            check_address(element).map_err(|why| format!("Contact: {why}"))?;
        }
    }
    Ok(())
}

/// Content-Length = 1*DIGIT, and over UDP no more than what arrived (RFC 3261 §18.3).
fn content_length(m: &Message, transport: Transport) -> Result<(), &'static str> {
    let Some(value) = m.first("Content-Length", Some("l")) else {
        return Ok(());
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Content-Length is not a non-negative number");
    }
    let length = value
        .parse::<usize>()
        .map_err(|_| "Content-Length is too large")?;
    if transport == Transport::Datagram && length > m.rest.len() {
        return Err("Content-Length is larger than the body");
    }
    Ok(())
}

/// §8.2 checks that need no state, in the RFC's order.
fn semantics(m: &Message, method: &str, uri: &str) -> Result<(), Refusal> {
    if method == "ACK" {
        return Ok(());
    }
    let scheme = scheme_of(uri).unwrap_or_default();
    if !SUPPORTED_SCHEMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        // §8.2.2.1; RFC 4475 §3.3.2 and §3.3.3 (a registered but atypical scheme is
        // still one ivrd never accepts).
        return Err(Refusal::new(
            416,
            "Unsupported URI Scheme",
            "unsupported_uri_scheme",
            format!("URI scheme {} is not supported", printable(scheme)),
        ));
    }
    if method != "CANCEL" {
        // §8.2.2.3: ivrd implements no option tags, so anything required is unsupported.
        // Proxy-Require is for proxies and ignored by a UAS (RFC 4475 §3.3.5).
        let tags: Vec<&str> = m
            .values("Require", None)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if !tags.is_empty() {
            let unsupported = tags
                .iter()
                .map(|t| printable(t))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Refusal::new(
                420,
                "Bad Extension",
                "bad_extension",
                "required extension not supported",
            )
            .with("Unsupported", unsupported));
        }
    }
    if method == "INVITE" && !accepts_sdp(m) {
        // The answer to an INVITE carries SDP; a caller that accepts no SDP cannot be
        // answered (RFC 4475 §3.3.15 names 406 with a Warning, or 400).
        return Err(Refusal::new(
            406,
            "Not Acceptable",
            "not_acceptable",
            "the answer needs application/sdp, which Accept excludes",
        )
        .with("Accept", "application/sdp".into()));
    }
    Ok(())
}

/// Whether the Accept fields (if any) admit application/sdp. No Accept means SDP
/// (RFC 3261 §20.1); an empty one means nothing is acceptable.
fn accepts_sdp(m: &Message) -> bool {
    let mut any = false;
    for value in m.values("Accept", None) {
        any = true;
        for range in value.split(',') {
            let media = range.split(';').next().unwrap_or_default().trim();
            let (kind, sub) = media.split_once('/').unwrap_or((media, ""));
            let kind_ok = kind == "*" || kind.eq_ignore_ascii_case("application");
            let sub_ok = sub == "*" || sub.eq_ignore_ascii_case("sdp");
            if kind_ok && sub_ok {
                return true;
            }
        }
    }
    !any
}

/// `via-parm = sent-protocol LWS sent-by *( SEMI via-params )`, with LWS allowed around
/// the slashes (RFC 3261 §25.1; RFC 4475 §3.1.1.1 uses all of it).
fn via_parm(parm: &str) -> Result<(), Cow<'static, str>> {
    let bad =
        |why: &'static str| -> Result<(), Cow<'static, str>> { Err(format!("Via: {why}").into()) };
    let mut rest = parm.trim();
    if rest.is_empty() {
        return bad("empty value");
    }
    let mut protocol = [""; 3];
    for (i, slot) in protocol.iter_mut().enumerate() {
        if i > 0 {
            rest = rest.trim_start();
            match rest.strip_prefix('/') {
                Some(r) => rest = r.trim_start(),
                None => return bad("sent-protocol is not name/version/transport"),
            }
        }
        let end = rest
            .find(|c: char| !c.is_ascii() || !is_token_byte(c as u8))
            .unwrap_or(rest.len());
        *slot = &rest[..end];
        rest = &rest[end..];
        if slot.is_empty() {
            return bad("sent-protocol is not name/version/transport");
        }
    }
    if !protocol[0].eq_ignore_ascii_case("SIP") || protocol[1] != "2.0" {
        return bad("sent-protocol is not SIP/2.0");
    }
    if !rest.starts_with([' ', '\t']) {
        return bad("no space before sent-by");
    }
    let (sent_by, params) = match split_top(rest, b';').collect::<Vec<_>>().split_first() {
        Some((first, params)) => (first.trim(), params.to_vec()),
        None => return bad("no sent-by"),
    };
    host_port(sent_by).map_err(|why| Cow::Owned(format!("Via: {why}")))?;
    for p in params {
        param(p).map_err(|why| Cow::Owned(format!("Via: {why}")))?;
    }
    Ok(())
}

/// `host [ COLON port ]`, host being a name, IPv4 or [IPv6].
fn host_port(s: &str) -> Result<(), &'static str> {
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("unterminated IPv6 reference")?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("bad IPv6 address");
            }
            ("v6", after.trim_start().strip_prefix(':'))
        }
        None => match s.split_once(':') {
            Some((h, p)) => (h.trim_end(), Some(p)),
            None => (s, None),
        },
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err("sent-by host is not a host name or address");
    }
    if let Some(port) = port {
        let port = port.trim();
        if port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return Err("port is not a number up to 65535");
        }
    }
    Ok(())
}

/// A parsed From/To/Contact value: where the URI is and what parameters follow it.
#[derive(Debug)]
pub struct Address<'a> {
    pub uri: &'a str,
    pub params: Vec<(&'a str, Option<&'a str>)>,
}

impl Address<'_> {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// `( name-addr / addr-spec ) *( SEMI param )` (RFC 3261 §20.10, §20.20, §20.39). The
/// cases RFC 4475 tortures: unbalanced quotes (§3.1.2.6), spaces inside <> (§3.1.2.14),
/// unquoted non-token display names (§3.1.2.15), an addr-spec whose URI needs <>
/// (§3.1.2.13) and empty parameters (§3.1.2.1).
pub fn address(value: &str) -> Result<Address<'_>, &'static str> {
    let (uri, params) = uri_and_params(value)?;
    let params = match params {
        None => Vec::new(),
        Some(params) => split_top(params, b';')
            .map(param)
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Address { uri, params })
}

/// One parameter of an address as [`address`] gives it (`Ok(None)`: not there;
/// `Ok(Some(None))`: there without a value), every parameter checked, none collected:
/// the route and the guard look up a tag in every message.
pub fn address_param<'a>(
    value: &'a str,
    name: &str,
) -> Result<Option<Option<&'a str>>, &'static str> {
    let (_, params) = uri_and_params(value)?;
    let mut found = None;
    for p in params
        .into_iter()
        .flat_map(|params| split_top(params, b';'))
    {
        let (n, v) = param(p)?;
        if found.is_none() && n.eq_ignore_ascii_case(name) {
            found = Some(v);
        }
    }
    Ok(found)
}

/// [`address`]'s checks alone, with nothing kept (the guard's rules on every message).
fn check_address(value: &str) -> Result<(), &'static str> {
    let (_, params) = uri_and_params(value)?;
    params.map_or(Ok(()), |params| {
        split_top(params, b';').try_for_each(|p| param(p).map(|_| ()))
    })
}

/// The URI of an address and, after its ';', the parameters' text, unsplit.
fn uri_and_params(value: &str) -> Result<(&str, Option<&str>), &'static str> {
    let s = value.trim_matches([' ', '\t']);
    if s.is_empty() {
        return Err("empty value");
    }
    let (uri, after_uri) = if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted_end(quoted).ok_or("unterminated quoted string")?;
        let rest = quoted[end..].trim_start();
        let inner = rest
            .strip_prefix('<')
            .ok_or("display name not followed by <URI>")?;
        bracketed(inner)?
    } else if let Some(lt) = s.find(['<', '"']).filter(|&i| s.as_bytes()[i] == b'<') {
        // Unquoted display names are tokens. Bytes beyond ASCII are let through: some
        // PBXs send UTF-8 names unquoted, and refusing those callers helps nobody; the
        // separators that make the field ambiguous (RFC 4475 §3.1.2.15) are not.
        let display = &s[..lt];
        let word_ok = |w: &str| w.bytes().all(|b| is_token_byte(b) || b >= 0x80);
        if !display.split([' ', '\t']).all(word_ok) {
            return Err("display name must be tokens or a quoted string");
        }
        bracketed(&s[lt + 1..])?
    } else {
        // addr-spec: the URI ends at the first ';', and must not contain what would
        // force <> (RFC 3261 §20: comma, question mark).
        let end = s.find(';').unwrap_or(s.len());
        let uri = s[..end].trim_end_matches([' ', '\t']);
        if uri.bytes().any(|b| b <= b' ' || b"?,<>\"".contains(&b)) || !has_scheme(uri) {
            return Err("URI outside <> must be a plain addr-spec");
        }
        (uri, &s[end..])
    };
    let after_uri = after_uri.trim_start_matches([' ', '\t']);
    if after_uri.is_empty() {
        return Ok((uri, None));
    }
    let Some(params) = after_uri.strip_prefix(';') else {
        return Err("unexpected text after the URI");
    };
    Ok((uri, Some(params)))
}

/// The URI inside `<...>` and what follows `>`.
fn bracketed(inner: &str) -> Result<(&str, &str), &'static str> {
    let (uri, after) = inner.split_once('>').ok_or("missing > after the URI")?;
    if uri
        .bytes()
        .any(|b| b <= b' ' || b >= 0x7f || b"<\"".contains(&b))
    {
        return Err("URI in <> contains spaces or characters a URI cannot have");
    }
    if !has_scheme(uri) {
        return Err("URI in <> has no scheme");
    }
    Ok((uri, after))
}

/// `generic-param = token [ EQUAL gen-value ]`, LWS allowed around '='.
fn param(p: &str) -> Result<(&str, Option<&str>), &'static str> {
    let p = p.trim_matches([' ', '\t']);
    let (name, value) = match p.split_once('=') {
        Some((n, v)) => (
            n.trim_end_matches([' ', '\t']),
            Some(v.trim_start_matches([' ', '\t'])),
        ),
        None => (p, None),
    };
    if name.is_empty() {
        return Err("empty parameter");
    }
    if !is_token(name) {
        return Err("parameter name is not a token");
    }
    match value {
        None => Ok((name, None)),
        Some(v) if v.starts_with('"') => match quoted_end(&v[1..]) {
            Some(end) if end + 1 == v.len() => Ok((name, Some(v))),
            _ => Err("bad quoted parameter value"),
        },
        // token, or a host (IPv6 references for received/maddr)
        Some(v) if !v.is_empty() && v.bytes().all(|b| is_token_byte(b) || b"[]:".contains(&b)) => {
            Ok((name, Some(v)))
        }
        Some(_) => Err("bad parameter value"),
    }
}

/// Index just past the closing quote of a quoted-string whose opening quote was already
/// consumed, honouring `\` escapes.
fn quoted_end(s: &(impl AsRef<[u8]> + ?Sized)) -> Option<usize> {
    let mut escaped = false;
    for (i, &b) in s.as_ref().iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Splits at `sep` where it is not inside a quoted string or <...>. Lazy: most callers
/// want the first piece only (the top Via, the first Contact), and every message passes here.
pub fn split_top(s: &str, sep: u8) -> SplitTop<'_> {
    SplitTop { rest: Some(s), sep }
}

/// The pieces of [`split_top`].
pub struct SplitTop<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        // At a cut nothing is open (no quote, no <, no escape), so each piece is scanned
        // from a fresh state.
        match top_level(s.as_bytes(), self.sep) {
            Some(cut) => {
                self.rest = Some(&s[cut + 1..]);
                Some(&s[..cut])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Where the first `sep` outside quotes and <...> is. Jumps from one byte that matters to
/// the next (memchr) rather than stepping through each: this runs on every Via, From, To
/// and Contact of every message.
fn top_level(bytes: &[u8], sep: u8) -> Option<usize> {
    let mut at = 0;
    loop {
        let i = at + memchr::memchr3(sep, b'"', b'<', &bytes[at..])?;
        at = match bytes[i] {
            b'"' => i + 1 + quoted_end(&bytes[i + 1..])?,
            b'<' => i + 1 + memchr::memchr(b'>', &bytes[i + 1..])? + 1,
            _ => return Some(i),
        };
    }
}

/// A value echoed into a Warning: printable ASCII only, bounded.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests;
