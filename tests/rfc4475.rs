//! The RFC 4475 torture messages, byte for byte, against the real daemon over UDP and TCP.
//!
//! Each message goes from its own socket (or connection) on loopback; the test waits a
//! bounded time for the final response with the message's Call-ID and compares it with
//! [`CASES`], which records what RFC 4475's text asks of an endpoint for every message and
//! why. Every refusal and every drop must also show up in
//! `ivrd_sip_messages_rejected_total`. Afterwards a normal call must still be answered.
//!
//! The messages live in `tests/data/rfc4475/` (from RFC 4475 via the MIT-licensed fixtures
//! of rtckit/php-sip; see the README there). UDP and TCP each get a fresh daemon: the RFC
//! messages carry fixed Call-IDs and branches, and the second copy of an INVITE would
//! otherwise be taken for a retransmission of the first.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::daemon::metric_sum;
use support::sip::{header_uri, SipMessage};
use support::{token, Daemon, DaemonOpts};

/// What a message deserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A final response with this status.
    Status(u16),
    /// Over TCP: nothing while the body may still come; this status once the sender closes
    /// its side and the stream has ended inside the message.
    AtEof(u16),
    /// No response; the guard drops it and counts it.
    Dropped,
    /// No response: a valid response that matches none of ivrd's transactions, which a UA
    /// discards (RFC 3261 §17.1.3). rsipstack does that; nothing is counted.
    Ignored,
}

use Expect::*;

struct Case {
    file: &'static str,
    section: &'static str,
    udp: Expect,
    tcp: Expect,
    /// A header line the response must contain, where the RFC names one.
    header: Option<&'static str>,
    why: &'static str,
}

const fn case(
    file: &'static str,
    section: &'static str,
    expect: Expect,
    why: &'static str,
) -> Case {
    Case {
        file,
        section,
        udp: expect,
        tcp: expect,
        header: None,
        why,
    }
}

impl Case {
    const fn over_tcp(self, tcp: Expect) -> Case {
        Case { tcp, ..self }
    }

    const fn with_header(self, header: &'static str) -> Case {
        Case {
            header: Some(header),
            ..self
        }
    }
}

/// RFC 4475 section by section (and `test.dat`, the fixture set's own extra message).
/// One line per message: file, section, expected outcome, why.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // 3.1.1 Valid messages: processed.
    case("wsinv", "3.1.1.1", Status(481), "valid; the To tag makes it in-dialog, and ivrd has no such dialog (RFC 3261 §12.2.2)"),
    case("intmeth", "3.1.1.2", Status(501), "valid; an extension method ivrd does not implement (§8.2.1)").with_header("Allow: "),
    case("esc01", "3.1.1.3", Status(200), "valid INVITE with a PCMU offer: answered"),
    case("escnull", "3.1.1.4", Status(405), "valid REGISTER; ivrd is no registrar (RFC 4475 §3.3.7: 405 suits an endpoint)"),
    case("esc02", "3.1.1.5", Status(501), "valid; RE%47IST%45R is not REGISTER (no escapes in a method): unknown method"),
    case("lwsdisp", "3.1.1.6", Status(200), "valid OPTIONS"),
    case("longreq", "3.1.1.7", Status(200), "valid INVITE with very long fields: answered"),
    case("dblreq", "3.1.1.8", Status(405), "valid REGISTER; the INVITE after it is datagram noise (§18.3), over TCP a second message"),
    case("semiuri", "3.1.1.9", Status(200), "valid OPTIONS, ';' in the userinfo"),
    case("transports", "3.1.1.10", Status(200), "valid OPTIONS, unusual transports in lower Vias"),
    case("mpart01", "3.1.1.11", Status(405), "valid MESSAGE with a multipart body; ivrd takes no MESSAGE"),
    case("unreason", "3.1.1.12", Ignored, "valid response, no transaction of ours"),
    case("noreason", "3.1.1.13", Ignored, "valid response with an empty reason phrase, no transaction of ours"),
    // 3.1.2 Invalid messages: a request gets 400, a response is dropped.
    case("badinv01", "3.1.2.1", Status(400), "empty Via and Contact parameters"),
    case("clerr", "3.1.2.2", Status(400), "Content-Length beyond the datagram (TCP: the body may still come; 400 when the stream ends)").over_tcp(AtEof(400)),
    case("ncl", "3.1.2.3", Status(400), "negative Content-Length (TCP: unframeable, 400 and close)"),
    case("scalar02", "3.1.2.4", Status(400), "CSeq number beyond 2^32-1"),
    case("scalarlg", "3.1.2.5", Dropped, "response with CSeq beyond 2^32-1: discarded"),
    case("quotbal", "3.1.2.6", Status(400), "unterminated quoted string in To"),
    case("ltgtruri", "3.1.2.7", Status(400), "Request-URI enclosed in <>"),
    case("lwsruri", "3.1.2.8", Status(400), "whitespace inside the Request-URI"),
    case("lwsstart", "3.1.2.9", Status(400), "several SP between Request-Line elements"),
    case("trws", "3.1.2.10", Status(400), "SP after the SIP-Version"),
    case("escruri", "3.1.2.11", Status(400), "headers in the Request-URI (the RFC finds 400 acceptable)"),
    case("baddate", "3.1.2.12", Status(200), "non-GMT Date: the RFC advises rejecting only if Date matters; ivrd ignores it and answers"),
    case("regbadct", "3.1.2.13", Status(400), "Contact URI with '?' outside <>"),
    case("badaspec", "3.1.2.14", Status(400), "spaces inside <> in To"),
    case("baddn", "3.1.2.15", Status(400), "unquoted display names with commas"),
    case("badvers", "3.1.2.16", Status(505), "SIP/7.0: 505 Version Not Supported"),
    case("mismatch01", "3.1.2.17", Status(400), "OPTIONS with CSeq method INVITE"),
    case("mismatch02", "3.1.2.18", Status(501), "unknown method, mismatched CSeq: the RFC prefers 501 to 400"),
    case("bigcode", "3.1.2.19", Dropped, "response code 4294967301: discarded"),
    case("test", "-", Status(400), "no SIP-Version, a header line without colon, no Via (answered to the sender)"),
    // 3.2 Transaction layer.
    case("badbranch", "3.2.1", Status(200), "branch is only the magic cookie: the RFC allows falling back to RFC 2543 matching"),
    // 3.3 Application layer.
    case("insuf", "3.3.1", Status(400), "no Call-ID, From or To"),
    case("unkscm", "3.3.2", Status(416), "unknown Request-URI scheme"),
    case("novelsc", "3.3.3", Status(416), "soap.beep is registered but never a target ivrd accepts"),
    case("unksm2", "3.3.4", Status(405), "REGISTER with odd schemes in To/From/Contact; ivrd is no registrar"),
    case("bext01", "3.3.5", Status(420), "Require lists unknown extensions; a UAS ignores Proxy-Require")
        .with_header("Unsupported: nothingSupportsThis, nothingSupportsThisEither"),
    case("invut", "3.3.6", Status(415), "INVITE body of unknown type").with_header("Accept: application/sdp"),
    case("regaut01", "3.3.7", Status(405), "REGISTER with an unknown auth scheme: endpoints answer 405"),
    case("multi01", "3.3.8", Status(400), "two Call-IDs, CSeqs, Froms and Tos"),
    case("mcl01", "3.3.9", Status(400), "two Content-Lengths (TCP: unframeable, 400 and close)"),
    case("bcast", "3.3.10", Dropped, "200 with two Vias, one broadcast: a UA discards it (§8.1.3.3)"),
    case("zeromf", "3.3.11", Status(200), "Max-Forwards 0 stops proxies; an endpoint processes the OPTIONS"),
    case("cparam01", "3.3.12", Status(405), "REGISTER to a non-registrar"),
    case("cparam02", "3.3.13", Status(405), "REGISTER to a non-registrar"),
    case("regescrt", "3.3.14", Status(405), "REGISTER to a non-registrar"),
    case("sdp01", "3.3.15", Status(406), "Accept excludes application/sdp, which the answer needs: 406 with Warning")
        .with_header("Warning: 399 "),
    // 3.4 Backward compatibility.
    case("inv2543", "3.4.1", Status(200), "RFC 2543 INVITE (no branch, From tag, Contact or Content-Length): answered"),
];

/// How long to wait for a final response, and how long silence must last to count as none.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    Udp,
    Tcp,
}

/// What came back for one message.
#[derive(Debug)]
struct Seen {
    /// The final response for the message's Call-ID, if any.
    last: Option<SipMessage>,
    /// Status lines of everything received, in order, for the report.
    all: Vec<String>,
}

#[test]
fn rfc4475_torture_messages_are_handled_as_the_rfc_says() {
    assert_eq!(CASES.len(), 50, "the table covers every message");
    let mut report = String::new();
    let mut scores = Vec::new();
    for net in [Net::Udp, Net::Tcp] {
        let mut daemon = Daemon::start(DaemonOpts::default());
        let mut passed = 0;
        for case in CASES {
            let bytes = std::fs::read(data_dir().join(format!("{}.dat", case.file)))
                .unwrap_or_else(|e| panic!("{}.dat: {e}", case.file));
            let expect = match net {
                Net::Udp => case.udp,
                Net::Tcp => case.tcp,
            };
            let rejected_before = rejected(&daemon);
            let seen = match net {
                Net::Udp => over_udp(&daemon, &bytes, expect),
                Net::Tcp => over_tcp(&daemon, &bytes, expect),
            };
            let counted = rejected(&daemon) > rejected_before;
            let verdict = judge(case, expect, &seen, counted).map(|()| String::new());
            if verdict.is_ok() {
                passed += 1;
            }
            report.push_str(&format!(
                "{:?} {:<11} {:<9} expect {:<12} got {:<40} {}\n",
                net,
                case.file,
                case.section,
                format!("{expect:?}"),
                seen.all.join(", "),
                verdict.unwrap_or_else(|e| format!("{e} ({})", case.why)),
            ));
        }
        normal_call_still_works(&daemon);
        assert!(daemon.is_running(), "ivrd died during the {net:?} run");
        scores.push(format!("{passed}/{} ({net:?})", CASES.len()));
    }
    let score = format!("RFC 4475: {} as the RFC says", scores.join(", "));
    println!("{report}{score}");
    assert!(
        scores.iter().all(|s| s.starts_with("50/50")),
        "{report}{score}"
    );
}

/// The size limit over UDP is `security.max_message_bytes`, not the SIP stack's 8 KiB
/// buffer: a 20 KB OPTIONS (a long header, as some PBXs send with big SDP or many Record-
/// Routes) is answered 200; one past the configured limit gets 513.
#[test]
fn datagrams_up_to_the_configured_limit_are_read_whole() {
    let options = |pad: usize, call_id: &str| {
        format!(
            "OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{call_id}\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "p".repeat(pad)
        )
    };
    let status = |daemon: &Daemon, msg: &str| {
        over_udp(daemon, msg.as_bytes(), Status(0))
            .last
            .and_then(|m| m.status())
    };
    let daemon = Daemon::start(DaemonOpts {
        extra_yaml: "security: {max_message_bytes: 30000}\n".into(),
        ..DaemonOpts::default()
    });
    assert_eq!(status(&daemon, &options(20_000, &token())), Some(200));
    let rejected_before = rejected(&daemon);
    assert_eq!(status(&daemon, &options(31_000, &token())), Some(513));
    assert!(rejected(&daemon) > rejected_before, "the 513 is counted");
    assert_eq!(status(&daemon, &options(100, &token())), Some(200));
}

/// Compares what came back with the table; Err says what is wrong.
fn judge(case: &Case, expect: Expect, seen: &Seen, counted: bool) -> Result<(), String> {
    let status = seen.last.as_ref().and_then(SipMessage::status);
    match expect {
        Status(want) | AtEof(want) => {
            let Some(got) = status else {
                return Err(format!("MISMATCH: no final response, wanted {want}"));
            };
            if got != want {
                return Err(format!("MISMATCH: {got}, wanted {want}"));
            }
            if let (Some(line), Some(resp)) = (case.header, &seen.last) {
                if !resp.to_wire().contains(line) {
                    return Err(format!("MISMATCH: response lacks {line:?}"));
                }
            }
            if want >= 400 && !counted {
                return Err(
                    "MISMATCH: refusal not counted in ivrd_sip_messages_rejected_total".into(),
                );
            }
        }
        Dropped | Ignored => {
            if !seen.all.is_empty() {
                return Err(format!("MISMATCH: wanted silence, got {:?}", seen.all));
            }
            if expect == Dropped && !counted {
                return Err(
                    "MISMATCH: drop not counted in ivrd_sip_messages_rejected_total".into(),
                );
            }
        }
    }
    Ok(())
}

fn over_udp(daemon: &Daemon, bytes: &[u8], expect: Expect) -> Seen {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(bytes, daemon.sip_udp).unwrap();
    let call_id = call_id_of(bytes);
    let mut seen = Seen {
        last: None,
        all: Vec::new(),
    };
    let wait = if matches!(expect, Dropped | Ignored) {
        SILENCE
    } else {
        ANSWER_WAIT
    };
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            break;
        };
        let Ok(msg) = SipMessage::parse(&buf[..n]) else {
            seen.all.push("<unparseable>".into());
            continue;
        };
        seen.all.push(msg.start_line.clone());
        if is_final_for(&msg, call_id.as_deref()) {
            if msg.status().is_some_and(|s| (200..300).contains(&s)) {
                hang_up_udp(&sock, daemon.sip_udp, &msg);
            }
            seen.last = Some(msg);
            break;
        }
    }
    seen
}

fn over_tcp(daemon: &Daemon, bytes: &[u8], expect: Expect) -> Seen {
    let mut stream = TcpStream::connect(daemon.sip_tcp).unwrap();
    stream.write_all(bytes).unwrap();
    let call_id = call_id_of(bytes);
    let mut reader = StreamReader::default();
    let mut seen = Seen {
        last: None,
        all: Vec::new(),
    };
    if matches!(expect, AtEof(_)) {
        // The body may still be on its way: nothing must be answered yet.
        if let Some(msg) = reader.next(&mut stream, SILENCE) {
            seen.all.push(format!("early {}", msg.start_line));
            return seen;
        }
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let wait = if matches!(expect, Dropped | Ignored) {
        SILENCE
    } else {
        ANSWER_WAIT
    };
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(msg) = reader.next(&mut stream, left) else {
            break;
        };
        seen.all.push(msg.start_line.clone());
        if is_final_for(&msg, call_id.as_deref()) {
            if msg.status().is_some_and(|s| (200..300).contains(&s)) {
                hang_up_tcp(&mut stream, &mut reader, &msg);
            }
            seen.last = Some(msg);
            break;
        }
    }
    seen
}

/// A final response to the message with this Call-ID (any, when the message had none).
fn is_final_for(msg: &SipMessage, call_id: Option<&str>) -> bool {
    msg.status().is_some_and(|s| s >= 200) && (call_id.is_none() || msg.call_id() == call_id)
}

/// The first Call-ID (or compact `i`) field of the first message in the bytes.
fn call_id_of(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim().to_string())
    })
}

/// ACK and BYE for an answered torture INVITE, so the call does not linger.
fn in_dialog(ok: &SipMessage, method: &str, transport: &str, local: SocketAddr) -> String {
    let (cseq, _) = ok.cseq().unwrap_or((1, String::new()));
    let cseq = if method == "BYE" { cseq + 1 } else { cseq };
    let target = ok.header("Contact").map(header_uri).unwrap_or_default();
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{}\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        token(),
        ok.header("From").unwrap_or_default(),
        ok.header("To").unwrap_or_default(),
        ok.call_id().unwrap_or_default(),
    )
}

fn hang_up_udp(sock: &UdpSocket, daemon: SocketAddr, ok: &SipMessage) {
    let local = sock.local_addr().unwrap();
    for method in ["ACK", "BYE"] {
        let _ = sock.send_to(in_dialog(ok, method, "UDP", local).as_bytes(), daemon);
    }
}

fn hang_up_tcp(stream: &mut TcpStream, reader: &mut StreamReader, ok: &SipMessage) {
    let local = stream.local_addr().unwrap();
    for method in ["ACK", "BYE"] {
        if stream
            .write_all(in_dialog(ok, method, "TCP", local).as_bytes())
            .is_err()
        {
            return;
        }
    }
    // Best effort: let the BYE's answer arrive before the connection goes.
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match reader.next(stream, left) {
            Some(m) if m.cseq().is_some_and(|(_, method)| method == "BYE") => return,
            Some(_) => {}
            None => return,
        }
    }
}

/// Cuts SIP messages out of what a TCP connection delivers (Content-Length framing).
#[derive(Default)]
struct StreamReader {
    buf: Vec<u8>,
}

impl StreamReader {
    fn next(&mut self, stream: &mut TcpStream, wait: Duration) -> Option<SipMessage> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(msg) = self.cut() {
                return Some(msg);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return self.cut(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn cut(&mut self) -> Option<SipMessage> {
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]);
        let body: usize = head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| {
                let name = name.trim();
                name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")
            })
            .and_then(|(_, value)| value.trim().parse().ok())
            .unwrap_or(0);
        if self.buf.len() < end + body {
            return None;
        }
        let msg = SipMessage::parse(&self.buf[..end + body]).ok();
        self.buf.drain(..end + body);
        msg
    }
}

/// Sum of `ivrd_sip_messages_rejected_total` over every reason.
fn rejected(daemon: &Daemon) -> f64 {
    metric_sum(&daemon.metrics(), "ivrd_sip_messages_rejected_total", &[])
}

fn normal_call_still_works(daemon: &Daemon) {
    let caller = support::caller::Caller::new(daemon.sip_udp, Default::default());
    let answer = caller.invite(Duration::from_secs(10));
    assert_eq!(
        answer.status(),
        Some(200),
        "after the torture messages a normal call must still be answered: {}",
        answer.summary()
    );
    let bye = caller.bye(Duration::from_secs(5));
    assert_eq!(bye.status(), Some(200), "BYE: {}", bye.summary());
}

fn data_dir() -> PathBuf {
    support::repo_root().join("tests/data/rfc4475")
}
