//! A strict, allocation-light reading of one SIP message as it came off the wire: the start
//! line, the header fields (unfolded, names as sent) and the bytes after the blank line.
//! rsipstack's parser is deliberately lenient; this one records exactly where a message
//! departs from RFC 3261 §7 so the guard can answer instead of guessing.

use std::borrow::Cow;

/// The first line, split but not judged beyond its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Response {
        version: &'a str,
        code: &'a str,
        reason: &'a str,
    },
}

/// A start line that is not `Method SP Request-URI SP SIP-Version` or a Status-Line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadStart {
    /// Still recognisably a request (a method token, then a URI or a SIP version), so the
    /// sender is owed a 400 that says what is wrong.
    Request(&'static str),
    /// Not SIP at all, or a broken Status-Line: nothing to answer.
    Garbage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    /// Folded lines joined with one space (RFC 3261 §7.3.1), outer whitespace trimmed.
    pub value: Cow<'a, str>,
}

impl Header<'_> {
    /// Whether this is `long` or its compact form `short` (RFC 3261 §7.3.3). Header
    /// names are case-insensitive.
    pub fn is(&self, long: &str, short: Option<&str>) -> bool {
        self.name.eq_ignore_ascii_case(long)
            || short.is_some_and(|s| self.name.eq_ignore_ascii_case(s))
    }
}

/// One message, read strictly. `problem` is the first syntax error seen, if any; the rest
/// is still filled in as far as it could be, so that a 400 can echo Via, From, To, Call-ID
/// and CSeq even for a broken request.
#[derive(Debug)]
pub struct Message<'a> {
    pub start: Result<StartLine<'a>, BadStart>,
    pub headers: Vec<Header<'a>>,
    /// Everything after the blank line that ends the headers (the body, and for UDP maybe
    /// trailing noise beyond Content-Length).
    pub rest: &'a [u8],
    pub problem: Option<&'static str>,
}

impl<'a> Message<'a> {
    pub fn read(bytes: &'a [u8]) -> Message<'a> {
        // `head` keeps the CRLF that ends the last header line, so every line in it is
        // CRLF-terminated when the message is well formed.
        let (head, rest, mut problem) = match find(bytes, b"\r\n\r\n") {
            Some(end) => (&bytes[..end + 2], &bytes[end + 4..], None),
            None => (
                bytes,
                &bytes[bytes.len()..],
                Some("no blank line after the header fields"),
            ),
        };
        // Lines split at LF, without the empty piece after a final LF. (A head that is
        // only "\n" gives no line instead of one empty line: the same reading, as the
        // missing blank line is the problem recorded first either way.)
        let head = head.strip_suffix(b"\n").unwrap_or(head);
        let mut unread = (!head.is_empty()).then_some(head);
        let pieces = std::iter::from_fn(move || {
            let r = unread?;
            match memchr::memchr(b'\n', r) {
                Some(i) => {
                    unread = Some(&r[i + 1..]);
                    Some(&r[..i])
                }
                None => {
                    unread = None;
                    Some(r)
                }
            }
        });
        let mut lines = pieces.map(|raw| match raw.strip_suffix(b"\r") {
            Some(line) if memchr::memchr(b'\r', line).is_none() => Ok(line),
            Some(line) => Err(line),
            None => Err(raw),
        });
        // UTF-8 is checked once for the whole head; a line is then a slice of that text
        // (its ends sit next to LF or CR, so on character boundaries). Only a head that
        // is not UTF-8 is checked line by line, to find the line at fault.
        let head_text = std::str::from_utf8(head).ok();
        let text = |line: &'a [u8]| match head_text {
            Some(t) => {
                let at = line.as_ptr() as usize - head.as_ptr() as usize;
                Ok(&t[at..at + line.len()])
            }
            None => std::str::from_utf8(line),
        };
        let start = match lines.next() {
            Some(Ok(first)) => match text(first) {
                Ok(line) => StartLine::parse(line),
                Err(_) => Err(BadStart::Garbage),
            },
            Some(Err(first)) => {
                problem.get_or_insert("line not terminated by CRLF");
                match text(first) {
                    Ok(line) => StartLine::parse(line.trim_end_matches('\r')),
                    Err(_) => Err(BadStart::Garbage),
                }
            }
            None => Err(BadStart::Garbage),
        };
        let mut headers: Vec<Header<'a>> = Vec::with_capacity(16);
        for line in lines {
            let line = line.unwrap_or_else(|line| {
                problem.get_or_insert("line not terminated by CRLF");
                line
            });
            let Ok(line) = text(line) else {
                problem.get_or_insert("header line is not UTF-8");
                continue;
            };
            if line.starts_with([' ', '\t']) {
                // Continuation of the previous field (LWS folding).
                match headers.last_mut() {
                    Some(last) => {
                        let folded = line.trim_matches([' ', '\t']);
                        if !folded.is_empty() {
                            let value = last.value.to_mut();
                            if !value.is_empty() {
                                value.push(' ');
                            }
                            value.push_str(folded);
                        }
                    }
                    None => {
                        problem.get_or_insert("continuation line before any header field");
                    }
                }
                continue;
            }
            match line.split_once(':') {
                Some((name, value)) => {
                    // HCOLON allows whitespace between the name and the colon.
                    let name = name.trim_end_matches([' ', '\t']);
                    if !is_token(name) {
                        problem.get_or_insert("header field name is not a token");
                    }
                    headers.push(Header {
                        name,
                        value: Cow::Borrowed(value.trim_matches([' ', '\t'])),
                    });
                }
                None => {
                    problem.get_or_insert("header line without a colon");
                }
            }
        }
        Message {
            start,
            headers,
            rest,
            problem,
        }
    }

    /// Values of every field named `long` or `short`, in order.
    pub fn values<'s>(
        &'s self,
        long: &'s str,
        short: Option<&'s str>,
    ) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |h| h.is(long, short))
            .map(|h| h.value.as_ref())
    }

    pub fn first(&self, long: &str, short: Option<&str>) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.is(long, short))
            .map(|h| h.value.as_ref())
    }

    pub fn count(&self, long: &str, short: Option<&str>) -> usize {
        self.headers.iter().filter(|h| h.is(long, short)).count()
    }

    pub fn is_request(&self) -> bool {
        matches!(
            self.start,
            Ok(StartLine::Request { .. }) | Err(BadStart::Request(_))
        )
    }

    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            Ok(StartLine::Request { method, .. }) => Some(method),
            _ => None,
        }
    }

    /// The body: `rest` as far as Content-Length says (UDP may carry trailing bytes beyond
    /// it); all of `rest` without a readable one.
    pub fn body(&self) -> &'a [u8] {
        let length = self
            .first("Content-Length", Some("l"))
            .and_then(|l| l.trim().parse::<usize>().ok())
            .unwrap_or(self.rest.len());
        &self.rest[..length.min(self.rest.len())]
    }
}

impl<'a> StartLine<'a> {
    fn parse(line: &'a str) -> Result<StartLine<'a>, BadStart> {
        if starts_with_ignore_case(line, "SIP/") {
            // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase; the phrase may be
            // empty, and some stacks drop the space before it.
            let mut parts = line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default();
            let code = parts.next().ok_or(BadStart::Garbage)?;
            let reason = parts.next().unwrap_or_default();
            return Ok(StartLine::Response {
                version,
                code,
                reason,
            });
        }
        let parts: Vec<&str> = line.split(' ').collect();
        let method = parts[0];
        if !is_token(method) {
            return Err(BadStart::Garbage);
        }
        match parts.as_slice() {
            [method, uri, version] if has_scheme(uri) || is_sip_version(version) => {
                Ok(StartLine::Request {
                    method,
                    uri,
                    version,
                })
            }
            // A method token followed by something with a URI scheme or a SIP version:
            // meant as a request, so worth a 400 rather than silence.
            [_, rest @ ..] if rest.iter().any(|p| has_scheme(p) || is_sip_version(p)) => {
                Err(BadStart::Request(
                    "Request-Line must be Method SP Request-URI SP SIP-Version, single spaces",
                ))
            }
            _ => Err(BadStart::Garbage),
        }
    }
}

/// `token` of RFC 3261 §25.1.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `scheme ":"` at the start (RFC 3986 §3.1).
pub fn has_scheme(s: &str) -> bool {
    scheme_of(s).is_some()
}

pub fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut bytes = scheme.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    (first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))).then_some(scheme)
}

/// `"SIP" "/" 1*DIGIT "." 1*DIGIT` (literal case-insensitive, RFC 3261 §7.1).
pub fn is_sip_version(s: &str) -> bool {
    sip_version_numbers(s).is_some()
}

pub fn sip_version_numbers(s: &str) -> Option<(&str, &str)> {
    let rest = s.get(4..).filter(|_| starts_with_ignore_case(s, "SIP/"))?;
    let (major, minor) = rest.split_once('.')?;
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then_some((major, minor))
}

/// ASCII case-insensitive prefix test on bytes: slicing the str could split a character.
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_folded_headers_and_compact_names() {
        let m = Message::read(
            b"INVITE sip:a@b SIP/2.0\r\nTO :\r\n sip:x@y ;   tag    = 1\r\nv: SIP/2.0/UDP h\r\n\r\nbody",
        );
        assert_eq!(
            m.start,
            Ok(StartLine::Request {
                method: "INVITE",
                uri: "sip:a@b",
                version: "SIP/2.0"
            })
        );
        assert_eq!(m.problem, None);
        assert_eq!(m.first("to", Some("t")), Some("sip:x@y ;   tag    = 1"));
        assert_eq!(m.first("via", Some("v")), Some("SIP/2.0/UDP h"));
        assert_eq!(m.rest, b"body");
    }

    #[test]
    fn classifies_start_lines() {
        let start = StartLine::parse;
        assert!(matches!(
            start("SIP/2.0 100 "),
            Ok(StartLine::Response { code: "100", .. })
        ));
        assert!(matches!(
            start("INVITE  sip:a@b  SIP/2.0"),
            Err(BadStart::Request(_))
        ));
        assert!(matches!(
            start("OPTIONS sip:a@b SIP/2.0  "),
            Err(BadStart::Request(_))
        ));
        assert!(matches!(start("INVITE sip:a@b"), Err(BadStart::Request(_))));
        assert!(matches!(start("GET / HTTP/1.1"), Err(BadStart::Garbage)));
        assert!(matches!(start("\u{1}\u{2}"), Err(BadStart::Garbage)));
    }

    #[test]
    fn multibyte_characters_at_the_version_prefix() {
        // Found by fuzzing (sip_guard): the "SIP/" test sliced the line at byte 4, inside
        // U+FEFF here, and panicked.
        assert_eq!(
            StartLine::parse("'~:\u{feff}\u{5927}\u{505c}\u{96fb}"),
            Err(BadStart::Garbage)
        );
        assert_eq!(sip_version_numbers("SI\u{e9}/2.0"), None);
        let m = Message::read("'~:\u{feff}\u{5927}\r\nVia: x\r\n\r\n".as_bytes());
        assert_eq!(m.start, Err(BadStart::Garbage));
    }

    #[test]
    fn records_the_first_problem() {
        let m = Message::read(b"OPTIONS sip:a@b SIP/2.0\r\nFoobar roobar\r\nX: 1\r\n\r\n");
        assert_eq!(m.problem, Some("header line without a colon"));
        let m = Message::read(b"OPTIONS sip:a@b SIP/2.0\r\nX: 1\nY: 2\r\n\r\n");
        assert_eq!(m.problem, Some("line not terminated by CRLF"));
        let m = Message::read(b"OPTIONS sip:a@b SIP/2.0\r\nX: 1\r\n");
        assert_eq!(m.problem, Some("no blank line after the header fields"));
    }

    #[test]
    fn versions_and_schemes() {
        assert_eq!(sip_version_numbers("SIP/7.0"), Some(("7", "0")));
        assert_eq!(sip_version_numbers("sip/2.0"), Some(("2", "0")));
        assert_eq!(sip_version_numbers("SIP/2"), None);
        assert_eq!(scheme_of("soap.beep://x"), Some("soap.beep"));
        assert_eq!(scheme_of("<sip:x>"), None);
        assert_eq!(scheme_of("1abc:x"), None);
    }

    #[test]
    fn the_body_stops_where_content_length_says() {
        let m = Message::read(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nv=0junk");
        assert_eq!(m.body(), b"v=0");
        let m = Message::read(b"INVITE sip:a@b SIP/2.0\r\nl: 99\r\n\r\nv=0");
        assert_eq!(m.body(), b"v=0");
    }
}
