//! One dialog on the side that answered the INVITE (RFC 3261 §12.1.1, §12.2): what the
//! dialog remembers from the INVITE, the responses it sends (our To tag, Record-Route and
//! Contact where §12.1.1 wants them), the requests it sends inside the dialog (BYE, REFER:
//! Request-URI, Route set, CSeq), and the checks on requests the peer sends inside it
//! (CSeq order, target refresh). Bytes in, bytes out: the guard already read the message,
//! [`super::txn`] keeps the retransmissions, the driver moves the packets.

use super::guard::echo::{line, response_head};
use super::guard::message::Message;
use super::guard::{address, address_param, split_top};
use super::txn::{cseq, MAGIC_COOKIE};
use std::net::SocketAddr;

/// Which dialog a message belongs to (§12): the Call-ID and both tags, ours first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// For a request the peer sent: the To tag is ours, the From tag theirs. `None` when
    /// the request has no To tag (it is not inside a dialog).
    pub fn of_request(m: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: m.first("Call-ID", Some("i"))?.to_string(),
            local_tag: tag(m.first("To", Some("t"))?)?,
            remote_tag: tag(m.first("From", Some("f"))?).unwrap_or_default(),
        })
    }

    /// What names the dialog on our side, borrowed from `m`: the Call-ID and our tag (in
    /// To of a request the peer sent, in From of a response to ours). The route table
    /// needs no more, and reads it from every message.
    pub fn ours<'m>(m: &'m Message) -> Option<(&'m str, &'m str)> {
        let ours = if m.is_request() {
            m.first("To", Some("t"))
        } else {
            m.first("From", Some("f"))
        };
        Some((m.first("Call-ID", Some("i"))?, tag_of(ours?)?))
    }

    /// For a response to a request we sent inside the dialog: the From tag is ours.
    pub fn of_response(m: &Message) -> Option<DialogId> {
        Some(DialogId {
            call_id: m.first("Call-ID", Some("i"))?.to_string(),
            local_tag: tag(m.first("From", Some("f"))?)?,
            remote_tag: tag(m.first("To", Some("t"))?).unwrap_or_default(),
        })
    }
}

/// The `tag` parameter of a From or To value.
fn tag(value: &str) -> Option<String> {
    tag_of(value).map(str::to_string)
}

fn tag_of(value: &str) -> Option<&str> {
    address_param(value, "tag").ok().flatten().flatten()
}

/// Our side of the signalling, as the peer must see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// The Via transport token: `UDP` or `TCP`.
    pub transport: &'static str,
    /// `host:port` for our Via.
    pub sent_by: String,
    /// Our Contact URI (no angle brackets).
    pub contact: String,
}

/// A body and its type.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// A response to any request, inside a dialog or not: the fields §8.2.6 copies (the top
/// Via stamped with `source`, where the request came from), `to_tag` on a To without one,
/// then `contact`, `headers` and the body.
pub fn response(
    req: &Message,
    source: Option<SocketAddr>,
    to_tag: &str,
    (code, phrase): (u16, &str),
    contact: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Body>,
) -> Vec<u8> {
    let mut r = response_head(req, code, phrase, to_tag, source);
    if let Some(contact) = contact {
        line(&mut r, "Contact", &format!("<{contact}>"));
    }
    finish(r, headers, body)
}

/// Whether a response to an INVITE with this status opens (or confirms) the dialog.
pub fn opens(code: u16) -> bool {
    (101..300).contains(&code)
}

/// Appends the extra header fields, the body's type and length, the blank line and the body.
pub fn finish(mut r: String, headers: &[(&str, &str)], body: Option<Body>) -> Vec<u8> {
    for (name, value) in headers {
        line(&mut r, name, value);
    }
    let bytes = body.map(|b| b.bytes).unwrap_or_default();
    if let Some(b) = body {
        line(&mut r, "Content-Type", b.content_type);
    }
    r.push_str("Content-Length: ");
    r.push_str(&bytes.len().to_string());
    r.push_str("\r\n\r\n");
    let mut out = r.into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// Why the dialog refuses a request the peer sent inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub code: u16,
    pub phrase: &'static str,
}

/// A request of ours inside the dialog, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    /// Where it goes first: the first route's URI, or the remote target (§12.2.1.1,
    /// §16.12.1.1 for the strict-routing case).
    pub next_hop: String,
    pub cseq: u32,
}

/// The dialog as the UAS: created from the INVITE we answer.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    local: Local,
    /// The INVITE's To value with our tag: From of our requests.
    local_party: String,
    /// The INVITE's From value (with their tag): To of our requests.
    remote_party: String,
    /// The peer's Contact URI: where our requests go (unless a route says otherwise).
    remote_target: String,
    /// The INVITE's Record-Route URIs, in order, with their parameters (§12.1.1).
    route_set: Vec<String>,
    /// The highest CSeq the peer used in this dialog.
    remote_cseq: u32,
    local_cseq: u32,
}

impl Dialog {
    /// The dialog an INVITE opens once we answer it with `local_tag`. `first_cseq` is the
    /// CSeq of our first request (any number below 2^31, §8.1.1.5).
    pub fn new(
        invite: &Message,
        local_tag: &str,
        local: Local,
        first_cseq: u32,
    ) -> Result<Dialog, &'static str> {
        let call_id = invite.first("Call-ID", Some("i")).ok_or("no Call-ID")?;
        let from = invite.first("From", Some("f")).ok_or("no From")?;
        let to = invite.first("To", Some("t")).ok_or("no To")?;
        let from_uri = address(from).map_err(|_| "unreadable From")?.uri;
        // No Contact (RFC 2543 peers may leave it out): the From URI is all there is.
        let remote_target = match invite.first("Contact", Some("m")) {
            Some(c) => {
                let first = split_top(c, b',').next().unwrap_or(c);
                address(first).map_err(|_| "unreadable Contact")?.uri
            }
            None => from_uri,
        };
        let route_set = invite
            .values("Record-Route", None)
            .flat_map(|v| split_top(v, b','))
            .filter_map(|rr| address(rr).ok().map(|a| a.uri.to_string()))
            .collect();
        let (remote_cseq, _) = cseq(invite).ok_or("unreadable CSeq")?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: tag(from).unwrap_or_default(),
            },
            local,
            local_party: format!("{to};tag={local_tag}"),
            remote_party: from.to_string(),
            remote_target: remote_target.to_string(),
            route_set,
            remote_cseq,
            local_cseq: first_cseq.saturating_sub(1),
        })
    }

    pub fn id(&self) -> &DialogId {
        &self.id
    }

    pub fn local(&self) -> &Local {
        &self.local
    }

    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// Our response to `req` (the INVITE or a request inside the dialog), which came from
    /// `source`. Responses to the INVITE from 101 to 299 carry the Record-Route and our
    /// Contact (§12.1.1).
    pub fn response(
        &self,
        req: &Message,
        source: SocketAddr,
        status: (u16, &str),
        headers: &[(&str, &str)],
        body: Option<Body>,
    ) -> Vec<u8> {
        let mut r = response_head(req, status.0, status.1, &self.id.local_tag, Some(source));
        if req.method() == Some("INVITE") && opens(status.0) {
            r.push_str(&self.opening_fields(req));
        }
        finish(r, headers, body)
    }

    /// What a response that opens the dialog adds after the copied fields: the
    /// INVITE's Record-Route and our Contact (§12.1.1).
    pub fn opening_fields(&self, invite: &Message) -> String {
        let mut r = String::with_capacity(128);
        for rr in invite.values("Record-Route", None) {
            line(&mut r, "Record-Route", rr);
        }
        line(&mut r, "Contact", &format!("<{}>", self.local.contact));
        r
    }

    /// A request of ours inside the dialog (BYE, REFER, INFO...): the next CSeq, the route
    /// set, a Via with `branch` (after the magic cookie) and `rport`.
    pub fn request(
        &mut self,
        method: &str,
        branch: &str,
        headers: &[(&str, &str)],
        body: Option<Body>,
    ) -> Outgoing {
        self.local_cseq += 1;
        let loose = self.route_set.first().is_none_or(|r| uri_param(r, "lr"));
        // Strict routing (a pre-RFC 3261 proxy): the first route becomes the
        // Request-URI and the remote target the last route (§12.2.1.1).
        let (request_uri, routes): (&str, Vec<&str>) = if loose {
            let routes = self.route_set.iter().map(String::as_str).collect();
            (&self.remote_target, routes)
        } else {
            let mut routes: Vec<&str> = self.route_set[1..].iter().map(String::as_str).collect();
            routes.push(&self.remote_target);
            (&self.route_set[0], routes)
        };
        let next_hop = match (loose, routes.first()) {
            (true, Some(first)) => first.to_string(),
            _ => request_uri.to_string(),
        };
        let mut r = String::with_capacity(512);
        r.push_str(method);
        r.push(' ');
        r.push_str(request_uri);
        r.push_str(" SIP/2.0\r\n");
        let via = format!(
            "SIP/2.0/{} {};branch={MAGIC_COOKIE}{branch};rport",
            self.local.transport, self.local.sent_by
        );
        line(&mut r, "Via", &via);
        line(&mut r, "Max-Forwards", "70");
        for route in routes {
            line(&mut r, "Route", &format!("<{route}>"));
        }
        line(&mut r, "From", &self.local_party);
        line(&mut r, "To", &self.remote_party);
        line(&mut r, "Call-ID", &self.id.call_id);
        line(&mut r, "CSeq", &format!("{} {method}", self.local_cseq));
        if !matches!(method, "BYE" | "ACK" | "CANCEL") {
            line(&mut r, "Contact", &format!("<{}>", self.local.contact));
        }
        Outgoing {
            bytes: finish(r, headers, body),
            next_hop,
            cseq: self.local_cseq,
        }
    }

    /// Checks a request the peer sent inside the dialog (not ACK or CANCEL, which reuse
    /// the INVITE's CSeq) and takes in what it changes: its CSeq, and for a re-INVITE or
    /// UPDATE with a Contact the new remote target (§12.2.2).
    pub fn check_request(&mut self, req: &Message) -> Result<(), Refused> {
        let method = req.method().unwrap_or_default();
        if matches!(method, "ACK" | "CANCEL") {
            return Ok(());
        }
        let Some((number, _)) = cseq(req) else {
            return Err(Refused {
                code: 400,
                phrase: "Bad Request",
            });
        };
        if number < self.remote_cseq {
            return Err(Refused {
                code: 500,
                phrase: "Server Internal Error",
            });
        }
        self.remote_cseq = number;
        if matches!(method, "INVITE" | "UPDATE") {
            if let Some(uri) = req
                .first("Contact", Some("m"))
                .and_then(|c| address(split_top(c, b',').next()?).ok())
            {
                self.remote_target = uri.uri.to_string();
            }
        }
        Ok(())
    }
}

/// Whether a URI carries a parameter (`;lr`), names case-insensitive. Only the URI's own
/// parameters count, not its headers (`?...`).
pub fn uri_param(uri: &str, name: &str) -> bool {
    let without_headers = uri.split('?').next().unwrap_or(uri);
    without_headers
        .split(';')
        .skip(1)
        .any(|p| p.split('=').next().unwrap_or(p).eq_ignore_ascii_case(name))
}

/// The reason phrase of a status code ivrd sends (RFC 3261 §21); another code gets its
/// class's.
pub fn phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => match code / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirection",
            4 => "Request Failure",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Where a SIP URI says to send: host, port and transport (§19.1.1, §18.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop<'a> {
    /// A name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: &'a str,
    /// The port, or the scheme's default (5060, 5061 for sips).
    pub port: u16,
    /// The `transport` parameter, lower case as written (`udp` when absent, `tls` for sips).
    pub transport: &'a str,
}

/// Reads `sip:[user[:password]@]host[:port][;params][?headers]`. `None` for another scheme
/// or an unreadable host/port.
pub fn hop(uri: &str) -> Option<Hop<'_>> {
    let (scheme, rest) = uri.split_once(':')?;
    let secure = if scheme.eq_ignore_ascii_case("sips") {
        true
    } else if scheme.eq_ignore_ascii_case("sip") {
        false
    } else {
        return None;
    };
    let rest = rest.split('?').next().unwrap_or(rest);
    let (hostport, params) = rest.split_once(';').unwrap_or((rest, ""));
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None if secure => 5061,
        None => 5060,
    };
    let transport = params
        .split(';')
        .find_map(|p| {
            let (n, v) = p.split_once('=')?;
            n.eq_ignore_ascii_case("transport").then_some(v)
        })
        .unwrap_or(if secure { "tls" } else { "udp" });
    Some(Hop {
        host,
        port,
        transport,
    })
}

#[cfg(test)]
mod tests;
