//! A test caller: a small but protocol-correct SIP UAC over UDP on 127.0.0.1, with an RTP
//! endpoint that records everything it receives and sends audio and RFC 4733 DTMF.
//!
//! One [`Caller`] is one call. A background "SIP thread" does what a UA's transaction layer
//! does on its own: retransmits our requests (T1 doubling), ACKs final responses (and
//! re-ACKs retransmitted 2xx), answers requests from the daemon (BYE, OPTIONS, INFO,
//! NOTIFY, re-INVITE, REFER per [`ReferPolicy`]) and re-sends cached responses when a
//! request is retransmitted. The test thread issues requests and waits (always bounded)
//! for what it expects. Every SIP message in or out is logged with its [`Instant`].

use super::audio::{g711_encode, g711_silence};
use super::sip::{header_tag, header_uri, reason_phrase, uri_socket_addr, Sdp, SipMessage};
use super::{token, wait_for};
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// RFC 3261 timers.
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// Timer B / F: 64 * T1.
pub const TX_TIMEOUT: Duration = Duration::from_secs(32);
/// RTP packet time.
pub const PTIME: Duration = Duration::from_millis(20);

/// What the caller does when the daemon sends REFER.
#[derive(Clone, Debug)]
pub enum ReferPolicy {
    /// `202 Accepted`, then (if `notify_trying`) a NOTIFY with sipfrag `SIP/2.0 100 Trying`
    /// and, `notify_delay` later, a final NOTIFY with sipfrag `SIP/2.0 <final_status>`.
    Accept {
        final_status: u16,
        notify_trying: bool,
        notify_delay: Duration,
    },
    /// A final response to the REFER, e.g. 603 Decline or 405.
    Reject(u16),
}

impl ReferPolicy {
    /// 202, NOTIFY 100 Trying, NOTIFY `status` 100 ms later.
    pub fn accept(status: u16) -> ReferPolicy {
        ReferPolicy::Accept {
            final_status: status,
            notify_trying: true,
            notify_delay: Duration::from_millis(100),
        }
    }
}

/// What the caller sends as audio once the call is answered.
#[derive(Clone, Debug)]
pub enum AudioSource {
    /// No RTP at all (so symmetric RTP has nothing to latch onto).
    Nothing,
    /// G.711 silence every 20 ms.
    Silence,
    /// These 8 kHz samples once, then silence.
    Samples(Arc<Vec<i16>>),
}

/// How the call is placed.
#[derive(Clone, Debug)]
pub struct CallerOpts {
    /// Request-URI user part (the dialled number).
    pub user: String,
    /// The From URI's user part: the caller ID the daemon sees ("caller": not a number).
    pub from_user: String,
    /// Audio payload types offered, in preference order (0 = PCMU, 8 = PCMA, 9 = G722...).
    pub codecs: Vec<u8>,
    /// Payload type offered for telephone-event/8000 (None: not offered).
    pub telephone_event: Option<u8>,
    /// INVITE without SDP; the answer goes in the ACK.
    pub late_offer: bool,
    /// ACK 2xx responses (false: never, to test the daemon's 2xx retransmission).
    pub auto_ack: bool,
    pub refer: ReferPolicy,
    pub audio: AudioSource,
    /// Put a second, otherwise unused socket's port in the SDP, while sending and receiving
    /// RTP on the main socket: tests symmetric RTP (packets should move to the main socket
    /// once ours arrive).
    pub decoy_sdp_port: bool,
    /// Send RFC 4733 events with this payload type even if the answer did not negotiate
    /// telephone-event. Only for peers that never do (SIPp's built-in UAS); daemon tests
    /// leave it `None` so a missing telephone-event in the answer shows up.
    pub force_dtmf_pt: Option<u8>,
}

impl Default for CallerOpts {
    fn default() -> Self {
        CallerOpts {
            user: "5551000".into(),
            from_user: "caller".into(),
            codecs: vec![0, 8],
            telephone_event: Some(101),
            late_offer: false,
            auto_ack: true,
            refer: ReferPolicy::accept(200),
            audio: AudioSource::Silence,
            decoy_sdp_port: false,
            force_dtmf_pt: None,
        }
    }
}

/// Direction of a logged SIP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Sent,
    Received,
}

/// One SIP message in the caller's log.
#[derive(Clone, Debug)]
pub struct SipEvent {
    pub at: Instant,
    pub dir: Dir,
    pub peer: SocketAddr,
    pub msg: SipMessage,
    /// A retransmission of an earlier message (ours or the daemon's).
    pub retransmission: bool,
}

/// One received RTP packet.
#[derive(Clone, Debug)]
pub struct RtpPacket {
    pub at: Instant,
    pub from: SocketAddr,
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

impl RtpPacket {
    /// Parses an RTP packet (RFC 3550); `None` for anything else (RTCP, garbage).
    pub fn parse(data: &[u8], at: Instant, from: SocketAddr) -> Option<RtpPacket> {
        if data.len() < 12 || data[0] >> 6 != 2 {
            return None;
        }
        let pt = data[1] & 0x7F;
        if (72..=76).contains(&pt) {
            return None; // RTCP packet types 200-204 seen through the RTP header layout
        }
        let cc = usize::from(data[0] & 0x0F);
        let mut start = 12 + 4 * cc;
        if data[0] & 0x10 != 0 {
            // Header extension: 16-bit profile, 16-bit length in 32-bit words.
            let len = usize::from(u16::from_be_bytes([
                *data.get(start + 2)?,
                *data.get(start + 3)?,
            ]));
            start += 4 + 4 * len;
        }
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*data.last()?))?;
        }
        Some(RtpPacket {
            at,
            from,
            pt,
            marker: data[1] & 0x80 != 0,
            seq: u16::from_be_bytes([data[2], data[3]]),
            ts: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: data.get(start..end)?.to_vec(),
        })
    }

    /// RFC 4733 event fields: (event, end, volume, duration).
    pub fn dtmf_event(&self) -> Option<(u8, bool, u8, u16)> {
        let p = &self.payload;
        (p.len() >= 4).then(|| {
            (
                p[0],
                p[1] & 0x80 != 0,
                p[1] & 0x3F,
                u16::from_be_bytes([p[2], p[3]]),
            )
        })
    }
}

/// Audio a caller heard: decoded samples and where each packet's samples start.
#[derive(Clone, Debug, Default)]
pub struct Heard {
    pub samples: Vec<i16>,
    /// (index of the packet's first sample in `samples`, arrival time), in order.
    pub packets: Vec<(usize, Instant)>,
}

impl Heard {
    /// Decodes the G.711 packets (PT 0 and 8) in arrival order.
    pub fn from_packets(packets: &[RtpPacket]) -> Heard {
        let mut h = Heard::default();
        for p in packets.iter().filter(|p| matches!(p.pt, 0 | 8)) {
            h.packets.push((h.samples.len(), p.at));
            h.samples
                .extend(super::audio::g711_decode(p.pt, &p.payload));
        }
        h
    }

    /// Only the packets that arrived at or after `from`.
    pub fn since(&self, from: Instant) -> Heard {
        let first = self
            .packets
            .iter()
            .position(|(_, at)| *at >= from)
            .unwrap_or(self.packets.len());
        let base = self
            .packets
            .get(first)
            .map(|(i, _)| *i)
            .unwrap_or(self.samples.len());
        Heard {
            samples: self.samples[base..].to_vec(),
            packets: self.packets[first..]
                .iter()
                .map(|(i, at)| (i - base, *at))
                .collect(),
        }
    }

    /// When the packet holding sample `offset` arrived.
    pub fn time_of(&self, offset: usize) -> Option<Instant> {
        let i = self.packets.partition_point(|(start, _)| *start <= offset);
        self.packets.get(i.checked_sub(1)?).map(|(_, at)| *at)
    }

    /// Best match of `reference` (8 kHz) in what was heard.
    pub fn find(&self, reference: &[i16]) -> super::audio::Match {
        super::audio::find_best_match(reference, &self.samples)
    }

    /// Seconds of audio heard.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / 8000.0
    }
}

/// RFC 4733 event code of a DTMF key.
pub fn dtmf_event_code(key: char) -> u8 {
    match key {
        '0'..='9' => key as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => key as u8 - b'A' + 12,
        _ => panic!("not a DTMF key: {key:?}"),
    }
}

fn codec_name(pt: u8) -> Option<&'static str> {
    match pt {
        0 => Some("PCMU/8000"),
        3 => Some("GSM/8000"),
        8 => Some("PCMA/8000"),
        9 => Some("G722/8000"),
        18 => Some("G729/8000"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------

/// A client transaction we started.
struct ClientTx {
    /// What the test thread holds: `"<branch> <METHOD>"` (a CANCEL shares its INVITE's
    /// branch, so the branch alone does not identify a transaction).
    id: String,
    branch: String,
    method: String,
    cseq: u32,
    request: String,
    dest: SocketAddr,
    started: Instant,
    next_retransmit: Option<Instant>,
    interval: Duration,
    responses: Vec<SipMessage>,
    final_response: Option<SipMessage>,
    /// ACK sent for a non-2xx final (re-sent if the final is retransmitted).
    ack: Option<String>,
    timed_out: bool,
}

/// Dialog state (RFC 3261 12), created when the INVITE goes out.
struct Dialog {
    call_id: String,
    local_tag: String,
    local_uri: String,
    remote_uri: String,
    remote_tag: Option<String>,
    /// Remote target (Contact of the 2xx); Request-URI of in-dialog requests.
    remote_target: String,
    route_set: Vec<String>,
    /// Where in-dialog requests are sent.
    dest: SocketAddr,
    local_cseq: u32,
    confirmed: bool,
    terminated: bool,
    refers_seen: u32,
}

/// The initial INVITE, kept for CANCEL and for matching.
struct InviteInfo {
    branch: String,
    request_uri: String,
    from: String,
    to: String,
    cseq: u32,
}

struct State {
    log: Vec<SipEvent>,
    txs: Vec<ClientTx>,
    dialog: Option<Dialog>,
    invite: Option<InviteInfo>,
    /// ACKs sent for 2xx, by CSeq number, to answer 2xx retransmissions.
    acks_2xx: HashMap<u32, (String, SocketAddr)>,
    /// Responses we sent, by request key, for request retransmissions.
    responses_sent: HashMap<String, (String, SocketAddr)>,
    /// Actions scheduled by the SIP thread (NOTIFYs after a REFER).
    scheduled: Vec<(Instant, Scheduled)>,
    /// Latest SDP from the daemon.
    remote_sdp: Option<Sdp>,
    /// Our SDP's o= version and direction.
    sdp_version: u64,
    direction: String,
    /// Payload types in use once negotiated: (audio, telephone-event).
    negotiated: Option<(u8, Option<u8>)>,
}

enum Scheduled {
    Notify {
        sipfrag_status: u16,
        terminated: bool,
        refer_cseq: u32,
        with_id: bool,
    },
}

/// What the RTP sender thread is told.
enum RtpCmd {
    Start {
        dest: SocketAddr,
        audio_pt: u8,
        te_pt: Option<u8>,
    },
    Source(AudioSource),
    Dtmf(char, u32),
    Stop,
}

struct Inner {
    opts: CallerOpts,
    target: SocketAddr,
    sip: UdpSocket,
    local_sip: SocketAddr,
    rtp_port: u16,
    sdp_port: u16,
    state: Mutex<State>,
    changed: Condvar,
    rtp_cmd: Mutex<mpsc::Sender<RtpCmd>>,
    stop: AtomicBool,
    epoch: Instant,
}

/// A call placed by the test (see the module docs).
pub struct Caller {
    inner: Arc<Inner>,
    rtp_in: Arc<Mutex<Vec<RtpPacket>>>,
    decoy_in: Arc<Mutex<Vec<RtpPacket>>>,
    /// Local RTP address (where we send from and, without decoy, what the SDP says).
    pub rtp_addr: SocketAddr,
    /// The decoy socket's address when `decoy_sdp_port` is set.
    pub decoy_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not poison the harness for the Drop that reports it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds an RTP socket on an even port (RTP convention; RTCP would be +1).
fn bind_rtp() -> UdpSocket {
    for _ in 0..100 {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind RTP socket");
        if s.local_addr().unwrap().port() & 1 == 0 {
            return s;
        }
    }
    UdpSocket::bind("127.0.0.1:0").expect("bind RTP socket")
}

impl Caller {
    /// Binds the SIP and RTP sockets and starts the caller's threads. Nothing is sent
    /// until [`Caller::send_invite`] / [`Caller::invite`].
    pub fn new(target: SocketAddr, opts: CallerOpts) -> Caller {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("bind SIP socket");
        sip.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let local_sip = sip.local_addr().unwrap();
        let rtp = bind_rtp();
        rtp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let rtp_addr = rtp.local_addr().unwrap();
        let decoy = opts.decoy_sdp_port.then(|| {
            let d = bind_rtp();
            d.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            d
        });
        let decoy_addr = decoy.as_ref().map(|d| d.local_addr().unwrap());
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            target,
            local_sip,
            rtp_port: rtp_addr.port(),
            sdp_port: decoy_addr.map(|a| a.port()).unwrap_or(rtp_addr.port()),
            sip,
            state: Mutex::new(State {
                log: Vec::new(),
                txs: Vec::new(),
                dialog: None,
                invite: None,
                acks_2xx: HashMap::new(),
                responses_sent: HashMap::new(),
                scheduled: Vec::new(),
                remote_sdp: None,
                sdp_version: 1,
                direction: "sendrecv".into(),
                negotiated: None,
            }),
            changed: Condvar::new(),
            rtp_cmd: Mutex::new(cmd_tx),
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
            opts,
        });
        let rtp_in = Arc::new(Mutex::new(Vec::new()));
        let decoy_in = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        {
            let inner = inner.clone();
            threads.push(thread::spawn(move || sip_thread(inner)));
        }
        {
            let inner = inner.clone();
            let sock = rtp.try_clone().unwrap();
            let sink = rtp_in.clone();
            threads.push(thread::spawn(move || rtp_receiver(inner, sock, sink)));
        }
        if let Some(d) = decoy {
            let inner = inner.clone();
            let sink = decoy_in.clone();
            threads.push(thread::spawn(move || rtp_receiver(inner, d, sink)));
        }
        {
            let inner = inner.clone();
            threads.push(thread::spawn(move || rtp_sender(inner, rtp, cmd_rx)));
        }
        Caller {
            inner,
            rtp_in,
            decoy_in,
            rtp_addr,
            decoy_addr,
            threads,
        }
    }

    pub fn opts(&self) -> &CallerOpts {
        &self.inner.opts
    }

    pub fn local_sip_addr(&self) -> SocketAddr {
        self.inner.local_sip
    }

    // -----------------------------------------------------------------------------------
    // Placing and ending the call
    // -----------------------------------------------------------------------------------

    /// Sends the initial INVITE; returns its transaction id.
    pub fn send_invite(&self) -> String {
        let inner = &self.inner;
        let mut st = lock(&inner.state);
        assert!(st.dialog.is_none(), "one Caller places one call");
        let call_id = format!("{}@127.0.0.1", token());
        let local_tag = token();
        let local_uri = format!("sip:{}@{}", inner.opts.from_user, inner.local_sip);
        let remote_uri = format!("sip:{}@{}", inner.opts.user, inner.target);
        let branch = format!("z9hG4bK{}", token());
        let from = format!("\"Test Caller\" <{local_uri}>;tag={local_tag}");
        let to = format!("<{remote_uri}>");
        let body = (!inner.opts.late_offer).then(|| {
            let sdp = inner.offer_sdp(&st);
            ("application/sdp", sdp)
        });
        let req = inner.build_request(
            "INVITE",
            &remote_uri,
            &branch,
            &from,
            &to,
            &call_id,
            1,
            &[],
            &[],
            body.as_ref().map(|(t, b)| (*t, b.as_str())),
        );
        st.dialog = Some(Dialog {
            call_id,
            local_tag,
            local_uri,
            remote_uri: remote_uri.clone(),
            remote_tag: None,
            remote_target: remote_uri.clone(),
            route_set: Vec::new(),
            dest: inner.target,
            local_cseq: 1,
            confirmed: false,
            terminated: false,
            refers_seen: 0,
        });
        st.invite = Some(InviteInfo {
            branch: branch.clone(),
            request_uri: remote_uri,
            from,
            to,
            cseq: 1,
        });
        inner.start_tx(&mut st, "INVITE", 1, branch, req, inner.target)
    }

    /// Sends the INVITE and waits for its final response (ACKed automatically per
    /// `auto_ack`). Panics if none arrives within `timeout`.
    #[track_caller]
    pub fn invite(&self, timeout: Duration) -> SipMessage {
        let tx = self.send_invite();
        self.wait_final(&tx, timeout).unwrap_or_else(|| {
            panic!(
                "no final response to INVITE within {timeout:?}\n{}",
                self.sip_trace()
            )
        })
    }

    /// Sends CANCEL for the initial INVITE; returns the CANCEL's transaction id.
    pub fn cancel(&self) -> String {
        let inner = &self.inner;
        let mut st = lock(&inner.state);
        let inv = st.invite.as_ref().expect("CANCEL needs an INVITE");
        let d = st.dialog.as_ref().unwrap();
        // Same Request-URI, Call-ID, From, To, branch and CSeq number as the INVITE.
        let req = inner.build_request(
            "CANCEL",
            &inv.request_uri,
            &inv.branch,
            &inv.from,
            &inv.to,
            &d.call_id,
            inv.cseq,
            &[],
            &[],
            None,
        );
        let (branch, cseq) = (inv.branch.clone(), inv.cseq);
        inner.start_tx(&mut st, "CANCEL", cseq, branch, req, inner.target)
    }

    /// Sends BYE and waits for its final response.
    #[track_caller]
    pub fn bye(&self, timeout: Duration) -> SipMessage {
        let _ = lock(&self.inner.rtp_cmd).send(RtpCmd::Stop);
        let tx = self.send_in_dialog("BYE", &[], None);
        let resp = self.wait_final(&tx, timeout).unwrap_or_else(|| {
            panic!(
                "no final response to BYE within {timeout:?}\n{}",
                self.sip_trace()
            )
        });
        if let Some(d) = lock(&self.inner.state).dialog.as_mut() {
            d.terminated = true;
        }
        resp
    }

    /// In-dialog re-INVITE offering our codecs with `direction` (`sendonly` = hold,
    /// `sendrecv` = resume); waits for the final response (2xx is ACKed automatically).
    #[track_caller]
    pub fn reinvite(&self, direction: &str, timeout: Duration) -> SipMessage {
        let body = {
            let mut st = lock(&self.inner.state);
            st.sdp_version += 1;
            st.direction = direction.to_string();
            self.inner.offer_sdp(&st)
        };
        let tx = self.send_in_dialog("INVITE", &[], Some(("application/sdp", &body)));
        self.wait_final(&tx, timeout).unwrap_or_else(|| {
            panic!(
                "no final response to re-INVITE within {timeout:?}\n{}",
                self.sip_trace()
            )
        })
    }

    /// SIP INFO DTMF (`application/dtmf-relay`); waits for the final response.
    #[track_caller]
    pub fn info_dtmf(&self, key: char, timeout: Duration) -> SipMessage {
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        let tx = self.send_in_dialog("INFO", &[], Some(("application/dtmf-relay", &body)));
        self.wait_final(&tx, timeout).unwrap_or_else(|| {
            panic!(
                "no final response to INFO within {timeout:?}\n{}",
                self.sip_trace()
            )
        })
    }

    /// Out-of-dialog OPTIONS to the target; waits for the final response.
    #[track_caller]
    pub fn options(&self, timeout: Duration) -> SipMessage {
        let inner = &self.inner;
        let branch = format!("z9hG4bK{}", token());
        let uri = format!("sip:{}@{}", inner.opts.user, inner.target);
        let from = format!("<sip:caller@{}>;tag={}", inner.local_sip, token());
        let req = inner.build_request(
            "OPTIONS",
            &uri,
            &branch,
            &from,
            &format!("<{uri}>"),
            &format!("{}@127.0.0.1", token()),
            1,
            &[],
            &[("Accept", "application/sdp".into())],
            None,
        );
        let tx = {
            let mut st = lock(&inner.state);
            inner.start_tx(&mut st, "OPTIONS", 1, branch, req, inner.target)
        };
        self.wait_final(&tx, timeout).unwrap_or_else(|| {
            panic!(
                "no final response to OPTIONS within {timeout:?}\n{}",
                self.sip_trace()
            )
        })
    }

    /// Sends an in-dialog request (Request-URI = remote target, next CSeq); returns its
    /// transaction id.
    pub fn send_in_dialog(
        &self,
        method: &str,
        extra: &[(&str, String)],
        body: Option<(&str, &str)>,
    ) -> String {
        let mut st = lock(&self.inner.state);
        self.inner
            .send_in_dialog_locked(&mut st, method, extra, body)
    }

    // -----------------------------------------------------------------------------------
    // Media
    // -----------------------------------------------------------------------------------

    /// RFC 4733 DTMF: event packets every 20 ms with growing duration for `duration_ms`,
    /// then three end packets, all with the event's start timestamp. Queued behind any
    /// earlier digits (60 ms apart).
    pub fn send_dtmf(&self, keys: &str, duration_ms: u32) {
        let tx = lock(&self.inner.rtp_cmd);
        for k in keys.chars() {
            dtmf_event_code(k); // validate early, in the test thread
            let _ = tx.send(RtpCmd::Dtmf(k, duration_ms));
        }
    }

    /// Plays 8 kHz samples once (then silence).
    pub fn play(&self, samples: Vec<i16>) {
        let _ =
            lock(&self.inner.rtp_cmd).send(RtpCmd::Source(AudioSource::Samples(Arc::new(samples))));
    }

    /// Changes what is sent between DTMF events.
    pub fn set_audio(&self, source: AudioSource) {
        let _ = lock(&self.inner.rtp_cmd).send(RtpCmd::Source(source));
    }

    /// Stops sending RTP.
    pub fn stop_rtp(&self) {
        let _ = lock(&self.inner.rtp_cmd).send(RtpCmd::Stop);
    }

    /// The G.711 audio received so far on the main socket, decoded by the harness, with
    /// each packet's arrival time (other payload types, e.g. telephone-event, skipped).
    pub fn heard(&self) -> Heard {
        Heard::from_packets(&self.rtp())
    }

    /// Every RTP packet received so far on the main socket.
    pub fn rtp(&self) -> Vec<RtpPacket> {
        lock(&self.rtp_in).clone()
    }

    /// Every RTP packet received so far on the decoy socket.
    pub fn decoy_rtp(&self) -> Vec<RtpPacket> {
        lock(&self.decoy_in).clone()
    }

    /// Waits until `audio` worth of the daemon's RTP (20 ms a packet) has arrived since
    /// `since` (since the call began for `None`): its prompt is that far in, or, once the
    /// prompt is over, that much of the silence ivrd keeps sending has passed. Tests wait on
    /// this, not on a sleep, before a key "during" a prompt. Panics with the SIP trace when
    /// the audio stops coming.
    #[track_caller]
    pub fn wait_audio(&self, since: Option<Instant>, audio: Duration) {
        let want = (audio.as_millis() / 20) as usize;
        let arrived = || {
            let packets = lock(&self.rtp_in);
            match since {
                None => packets.len(),
                Some(t) => packets.len() - packets.partition_point(|p| p.at < t),
            }
        };
        if wait_for(audio + Duration::from_secs(10), || {
            (arrived() >= want).then_some(())
        })
        .is_none()
        {
            panic!(
                "{} ms of audio expected, {} packets came\n{}",
                audio.as_millis(),
                arrived(),
                self.sip_trace()
            );
        }
    }

    /// When the 200 OK that answered our INVITE arrived.
    #[track_caller]
    pub fn answered_at(&self) -> Instant {
        self.sip_log()
            .iter()
            .find(|e| {
                e.dir == Dir::Received
                    && e.msg.status() == Some(200)
                    && e.msg.cseq().is_some_and(|(_, m)| m == "INVITE")
            })
            .map(|e| e.at)
            .unwrap_or_else(|| panic!("no 200 OK to the INVITE\n{}", self.sip_trace()))
    }

    /// Waits until at least `n` packets arrived on the main socket.
    pub fn wait_rtp(&self, n: usize, timeout: Duration) -> bool {
        wait_for(timeout, || (lock(&self.rtp_in).len() >= n).then_some(())).is_some()
    }

    /// (audio PT, telephone-event PT) in use after negotiation.
    pub fn negotiated(&self) -> Option<(u8, Option<u8>)> {
        lock(&self.inner.state).negotiated
    }

    /// The daemon's latest SDP.
    pub fn remote_sdp(&self) -> Option<Sdp> {
        lock(&self.inner.state).remote_sdp.clone()
    }

    // -----------------------------------------------------------------------------------
    // Observing
    // -----------------------------------------------------------------------------------

    /// Every SIP message so far.
    pub fn sip_log(&self) -> Vec<SipEvent> {
        lock(&self.inner.state).log.clone()
    }

    /// All responses received for a transaction so far.
    pub fn responses(&self, tx: &str) -> Vec<SipMessage> {
        let st = lock(&self.inner.state);
        st.txs
            .iter()
            .find(|t| t.id == tx)
            .map(|t| t.responses.clone())
            .unwrap_or_default()
    }

    /// Waits for a response on transaction `tx` satisfying `pred` (status code).
    pub fn wait_response(
        &self,
        tx: &str,
        pred: impl Fn(u16) -> bool,
        timeout: Duration,
    ) -> Option<SipMessage> {
        self.wait_state(timeout, |st| {
            let t = st.txs.iter().find(|t| t.id == tx)?;
            t.responses
                .iter()
                .find(|r| r.status().map(&pred).unwrap_or(false))
                .cloned()
        })
    }

    /// Waits for the final response of transaction `tx`.
    pub fn wait_final(&self, tx: &str, timeout: Duration) -> Option<SipMessage> {
        self.wait_state(timeout, |st| {
            st.txs
                .iter()
                .find(|t| t.id == tx)
                .and_then(|t| t.final_response.clone())
        })
    }

    /// Waits for the `nth` (0-based) request of `method` from the daemon, not counting
    /// retransmissions.
    pub fn wait_request(&self, method: &str, nth: usize, timeout: Duration) -> Option<SipEvent> {
        self.wait_state(timeout, |st| {
            st.log
                .iter()
                .filter(|e| {
                    e.dir == Dir::Received && !e.retransmission && e.msg.method() == Some(method)
                })
                .nth(nth)
                .cloned()
        })
    }

    /// Whether the daemon has sent BYE.
    pub fn bye_received(&self) -> Option<SipEvent> {
        self.wait_request("BYE", 0, Duration::ZERO)
    }

    /// Time from sending the first INVITE to receiving the first response with `status`.
    pub fn time_to_status(&self, status: u16) -> Option<Duration> {
        let st = lock(&self.inner.state);
        let sent = st
            .log
            .iter()
            .find(|e| e.dir == Dir::Sent && e.msg.method() == Some("INVITE"))?
            .at;
        let got = st
            .log
            .iter()
            .find(|e| {
                e.dir == Dir::Received
                    && e.msg.status() == Some(status)
                    && e.msg.cseq().map(|(_, m)| m == "INVITE").unwrap_or(false)
            })?
            .at;
        Some(got.duration_since(sent))
    }

    /// A readable trace of the SIP log (relative times), for failure messages.
    pub fn sip_trace(&self) -> String {
        let st = lock(&self.inner.state);
        let mut s = String::new();
        for e in &st.log {
            let arrow = match e.dir {
                Dir::Sent => "-->",
                Dir::Received => "<--",
            };
            s.push_str(&format!(
                "{:>8.3}s {arrow} {}{}\n",
                e.at.duration_since(self.inner.epoch).as_secs_f64(),
                e.msg.summary(),
                if e.retransmission {
                    " (retransmission)"
                } else {
                    ""
                }
            ));
        }
        s
    }

    fn wait_state<T>(&self, timeout: Duration, f: impl Fn(&State) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.inner.state);
        loop {
            if let Some(v) = f(&st) {
                return Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = lock(&self.inner.rtp_cmd).send(RtpCmd::Stop);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!(
                "----- caller SIP trace (local {}) -----\n{}----- {} RTP packets received -----",
                self.inner.local_sip,
                self.sip_trace(),
                lock(&self.rtp_in).len()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Message building and sending (shared by the test thread and the SIP thread)
// ---------------------------------------------------------------------------------------

impl Inner {
    #[allow(clippy::too_many_arguments)]
    fn build_request(
        &self,
        method: &str,
        uri: &str,
        branch: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        route: &[String],
        extra: &[(&str, String)],
        body: Option<(&str, &str)>,
    ) -> String {
        let mut m = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n",
            local = self.local_sip
        );
        for r in route {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        if matches!(method, "INVITE" | "NOTIFY" | "OPTIONS") {
            m.push_str(&format!("Contact: <sip:caller@{}>\r\n", self.local_sip));
        }
        m.push_str("User-Agent: ivrd-test-caller\r\n");
        if method == "INVITE" {
            m.push_str("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY\r\n");
            m.push_str("Supported: replaces\r\n");
        }
        for (n, v) in extra {
            m.push_str(&format!("{n}: {v}\r\n"));
        }
        finish(m, body)
    }

    /// Our SDP (offer, or answer when `answer_pts` limits the codecs).
    fn sdp(&self, st: &State, audio_pts: &[u8], te: Option<u8>) -> String {
        let mut pts: Vec<String> = audio_pts.iter().map(|p| p.to_string()).collect();
        if let Some(te) = te {
            pts.push(te.to_string());
        }
        let mut s = format!(
            "v=0\r\no=caller 4242 {ver} IN IP4 127.0.0.1\r\ns=ivrd-test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pts}\r\n",
            ver = st.sdp_version,
            port = self.sdp_port,
            pts = pts.join(" ")
        );
        for pt in audio_pts {
            if let Some(name) = codec_name(*pt) {
                s.push_str(&format!("a=rtpmap:{pt} {name}\r\n"));
            }
        }
        if let Some(te) = te {
            s.push_str(&format!(
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
            ));
        }
        s.push_str(&format!("a=ptime:20\r\na={}\r\n", st.direction));
        s
    }

    fn offer_sdp(&self, st: &State) -> String {
        self.sdp(st, &self.opts.codecs, self.opts.telephone_event)
    }

    /// Logs and sends one datagram.
    fn send(&self, st: &mut State, text: &str, dest: SocketAddr, retransmission: bool) {
        if let Ok(msg) = SipMessage::parse(text.as_bytes()) {
            st.log.push(SipEvent {
                at: Instant::now(),
                dir: Dir::Sent,
                peer: dest,
                msg,
                retransmission,
            });
        }
        let _ = self.sip.send_to(text.as_bytes(), dest);
        self.changed.notify_all();
    }

    /// Sends a request and tracks it as a client transaction; returns the transaction id.
    fn start_tx(
        &self,
        st: &mut State,
        method: &str,
        cseq: u32,
        branch: String,
        request: String,
        dest: SocketAddr,
    ) -> String {
        self.send(st, &request, dest, false);
        let now = Instant::now();
        let branch_copy = branch.clone();
        st.txs.push(ClientTx {
            id: tx_id(&branch, method),
            branch,
            method: method.to_string(),
            cseq,
            request,
            dest,
            started: now,
            next_retransmit: Some(now + T1),
            interval: T1,
            responses: Vec::new(),
            final_response: None,
            ack: None,
            timed_out: false,
        });
        tx_id(&branch_copy, method)
    }

    fn send_in_dialog_locked(
        &self,
        st: &mut State,
        method: &str,
        extra: &[(&str, String)],
        body: Option<(&str, &str)>,
    ) -> String {
        let d = st.dialog.as_mut().expect("no dialog: place the call first");
        assert!(
            d.confirmed,
            "dialog not confirmed (no 2xx to the INVITE yet)"
        );
        d.local_cseq += 1;
        let cseq = d.local_cseq;
        let branch = format!("z9hG4bK{}", token());
        let from = format!("<{}>;tag={}", d.local_uri, d.local_tag);
        let to = format!(
            "<{}>;tag={}",
            d.remote_uri,
            d.remote_tag.clone().unwrap_or_default()
        );
        let (uri, dest, route, call_id) = (
            d.remote_target.clone(),
            d.dest,
            d.route_set.clone(),
            d.call_id.clone(),
        );
        let req = self.build_request(
            method, &uri, &branch, &from, &to, &call_id, cseq, &route, extra, body,
        );
        self.start_tx(st, method, cseq, branch, req, dest)
    }

    /// A response to `req`, copying Via/From/To/Call-ID/CSeq and adding our To tag.
    fn build_response(
        &self,
        st: &State,
        req: &SipMessage,
        code: u16,
        extra: &[(&str, String)],
        body: Option<(&str, &str)>,
    ) -> String {
        let mut m = format!("SIP/2.0 {code} {}\r\n", reason_phrase(code));
        for v in req.headers_named("Via") {
            m.push_str(&format!("Via: {v}\r\n"));
        }
        m.push_str(&format!("From: {}\r\n", req.header("From").unwrap_or("")));
        let to = req.header("To").unwrap_or("");
        if header_tag(to).is_some() || code == 100 {
            m.push_str(&format!("To: {to}\r\n"));
        } else {
            let tag = st
                .dialog
                .as_ref()
                .map(|d| d.local_tag.clone())
                .unwrap_or_else(token);
            m.push_str(&format!("To: {to};tag={tag}\r\n"));
        }
        m.push_str(&format!("Call-ID: {}\r\n", req.call_id().unwrap_or("")));
        m.push_str(&format!("CSeq: {}\r\n", req.header("CSeq").unwrap_or("")));
        if code / 100 == 2 && req.method() == Some("INVITE") {
            m.push_str(&format!("Contact: <sip:caller@{}>\r\n", self.local_sip));
        }
        for (n, v) in extra {
            m.push_str(&format!("{n}: {v}\r\n"));
        }
        finish(m, body)
    }

    fn rtp_cmd(&self, cmd: RtpCmd) {
        let _ = lock(&self.rtp_cmd).send(cmd);
    }
}

/// Appends Content-Type/Content-Length and the body.
fn finish(mut m: String, body: Option<(&str, &str)>) -> String {
    match body {
        Some((ctype, b)) => {
            m.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        }
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
    m
}

// ---------------------------------------------------------------------------------------
// The SIP thread
// ---------------------------------------------------------------------------------------

fn sip_thread(inner: Arc<Inner>) {
    let mut buf = vec![0u8; 65536];
    while !inner.stop.load(Ordering::SeqCst) {
        match inner.sip.recv_from(&mut buf) {
            Ok((n, from)) => {
                let now = Instant::now();
                match SipMessage::parse(&buf[..n]) {
                    Ok(msg) => {
                        let mut st = lock(&inner.state);
                        if msg.is_request() {
                            on_request(&inner, &mut st, msg, from, now);
                        } else {
                            on_response(&inner, &mut st, msg, from, now);
                        }
                        inner.changed.notify_all();
                    }
                    Err(e) => eprintln!("test caller: unparseable datagram from {from}: {e}"),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                eprintln!("test caller: SIP socket error: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
        service_timers(&inner);
    }
}

/// Retransmissions, transaction timeouts and scheduled sends.
fn service_timers(inner: &Inner) {
    let now = Instant::now();
    let mut st = lock(&inner.state);
    let mut resend = Vec::new();
    for tx in st.txs.iter_mut() {
        if tx.final_response.is_some() || tx.timed_out {
            continue;
        }
        if now.duration_since(tx.started) >= TX_TIMEOUT {
            tx.timed_out = true;
            tx.next_retransmit = None;
            continue;
        }
        if let Some(at) = tx.next_retransmit {
            if now >= at {
                resend.push((tx.request.clone(), tx.dest));
                // INVITE: Timer A doubles without bound; others: capped at T2.
                tx.interval = if tx.method == "INVITE" {
                    tx.interval * 2
                } else {
                    (tx.interval * 2).min(T2)
                };
                tx.next_retransmit = Some(now + tx.interval);
            }
        }
    }
    for (req, dest) in resend {
        inner.send(&mut st, &req, dest, true);
    }
    let due: Vec<Scheduled> = {
        let (due, later): (Vec<_>, Vec<_>) = st.scheduled.drain(..).partition(|(at, _)| *at <= now);
        st.scheduled = later;
        due.into_iter().map(|(_, s)| s).collect()
    };
    for s in due {
        match s {
            Scheduled::Notify {
                sipfrag_status,
                terminated,
                refer_cseq,
                with_id,
            } => {
                if st.dialog.as_ref().map(|d| d.terminated).unwrap_or(true) {
                    continue;
                }
                let event = if with_id {
                    format!("refer;id={refer_cseq}")
                } else {
                    "refer".to_string()
                };
                let state = if terminated {
                    "terminated;reason=noresource".to_string()
                } else {
                    "active;expires=60".to_string()
                };
                let body = format!(
                    "SIP/2.0 {sipfrag_status} {}\r\n",
                    reason_phrase(sipfrag_status)
                );
                inner.send_in_dialog_locked(
                    &mut st,
                    "NOTIFY",
                    &[("Event", event), ("Subscription-State", state)],
                    Some(("message/sipfrag;version=2.0", &body)),
                );
            }
        }
    }
    inner.changed.notify_all();
}

fn on_response(inner: &Inner, st: &mut State, msg: SipMessage, from: SocketAddr, now: Instant) {
    let branch = msg.top_via_branch().unwrap_or_default();
    let (cseq, method) = msg.cseq().unwrap_or((0, String::new()));
    let status = msg.status().unwrap_or(0);
    let Some(idx) = st
        .txs
        .iter()
        .position(|t| t.branch == branch && t.method == method)
    else {
        // A 2xx to our INVITE is matched by dialog, not branch (it may come from a new
        // transaction on retransmission); anything else is stray.
        let retrans = status / 100 == 2 && st.acks_2xx.contains_key(&cseq);
        log_received(st, &msg, from, now, retrans);
        return;
    };
    let final_already = st.txs[idx].final_response.is_some();
    let retransmission = st.txs[idx]
        .responses
        .iter()
        .any(|r| r.status() == Some(status) && r.tag("To") == msg.tag("To"));
    log_received(st, &msg, from, now, retransmission);
    st.txs[idx].responses.push(msg.clone());

    if status < 200 {
        let tx = &mut st.txs[idx];
        if tx.method == "INVITE" {
            tx.next_retransmit = None; // Timer A stops on a provisional response
        } else if tx.final_response.is_none() {
            tx.interval = T2;
            tx.next_retransmit = Some(now + T2);
        }
        if let Some(tag) = msg.tag("To") {
            if let Some(d) = st.dialog.as_mut() {
                if tx_is_initial_invite(d, cseq, &method) && d.remote_tag.is_none() {
                    d.remote_tag = Some(tag); // early dialog
                }
            }
        }
        return;
    }

    if !final_already {
        let tx = &mut st.txs[idx];
        tx.final_response = Some(msg.clone());
        tx.next_retransmit = None;
    }
    if method != "INVITE" {
        return;
    }
    if status >= 300 {
        // Non-2xx: the transaction layer ACKs, same branch, To with the response's tag.
        if let Some(ack) = st.txs[idx].ack.clone() {
            let dest = st.txs[idx].dest;
            inner.send(st, &ack, dest, true);
            return;
        }
        let tx = &st.txs[idx];
        let req = SipMessage::parse(tx.request.as_bytes()).expect("own request parses");
        let uri = req.request_uri().unwrap_or("").to_string();
        let ack = inner.build_request(
            "ACK",
            &uri,
            &tx.branch,
            req.header("From").unwrap_or(""),
            msg.header("To").unwrap_or(""),
            req.call_id().unwrap_or(""),
            tx.cseq,
            &[],
            &[],
            None,
        );
        let dest = tx.dest;
        st.txs[idx].ack = Some(ack.clone());
        inner.send(st, &ack, dest, false);
        if let Some(d) = st.dialog.as_mut() {
            if tx_is_initial_invite(d, cseq, &method) {
                d.terminated = true;
            }
        }
        return;
    }
    on_invite_2xx(inner, st, &msg, cseq, final_already);
}

fn tx_id(branch: &str, method: &str) -> String {
    format!("{branch} {method}")
}

fn tx_is_initial_invite(d: &Dialog, cseq: u32, method: &str) -> bool {
    method == "INVITE" && cseq == 1 && !d.confirmed
}

fn on_invite_2xx(inner: &Inner, st: &mut State, msg: &SipMessage, cseq: u32, retransmission: bool) {
    if retransmission {
        // 2xx retransmission: the UAC core re-sends the same ACK (if it sent one).
        if let Some((ack, dest)) = st.acks_2xx.get(&cseq).cloned() {
            inner.send(st, &ack, dest, true);
        }
        return;
    }
    // Establish / refresh the dialog from the 2xx.
    {
        let target = inner.target;
        let d = st.dialog.as_mut().expect("dialog exists for our INVITE");
        d.remote_tag = msg.tag("To");
        if let Some(contact) = msg.header("Contact") {
            d.remote_target = header_uri(contact);
        }
        if !d.confirmed {
            // UAC route set: Record-Route in reverse order.
            d.route_set = msg
                .headers_named("Record-Route")
                .iter()
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .rev()
                .collect();
        }
        let next_hop = d
            .route_set
            .first()
            .map(|r| header_uri(r))
            .unwrap_or_else(|| d.remote_target.clone());
        d.dest = uri_socket_addr(&next_hop).unwrap_or(target);
        d.confirmed = true;
    }
    let mut ack_body = None;
    if msg.content_type().as_deref() == Some("application/sdp") {
        match Sdp::parse(&msg.body) {
            Ok(sdp) => {
                if inner.opts.late_offer && cseq == 1 {
                    // The 2xx carries the offer; answer with the first codec we support.
                    let audio = sdp
                        .payload_types
                        .iter()
                        .copied()
                        .find(|pt| inner.opts.codecs.contains(pt));
                    let te = sdp
                        .telephone_event_pt()
                        .filter(|_| inner.opts.telephone_event.is_some());
                    if let Some(a) = audio {
                        ack_body = Some(inner.sdp(st, &[a], te));
                        st.negotiated = Some((a, te));
                    }
                } else if cseq == 1 {
                    let audio = sdp.first_audio_pt();
                    if let Some(a) = audio {
                        st.negotiated = Some((a, sdp.telephone_event_pt()));
                    }
                }
                st.remote_sdp = Some(sdp);
            }
            Err(e) => eprintln!("test caller: bad SDP in 2xx: {e}"),
        }
    }
    if !inner.opts.auto_ack {
        return;
    }
    let (ack, dest) = {
        let d = st.dialog.as_ref().unwrap();
        let branch = format!("z9hG4bK{}", token());
        let from = format!("<{}>;tag={}", d.local_uri, d.local_tag);
        let to = format!(
            "<{}>;tag={}",
            d.remote_uri,
            d.remote_tag.clone().unwrap_or_default()
        );
        let ack = inner.build_request(
            "ACK",
            &d.remote_target,
            &branch,
            &from,
            &to,
            &d.call_id,
            cseq,
            &d.route_set,
            &[],
            ack_body.as_deref().map(|b| ("application/sdp", b)),
        );
        (ack, d.dest)
    };
    st.acks_2xx.insert(cseq, (ack.clone(), dest));
    inner.send(st, &ack, dest, false);

    if cseq == 1 {
        if let (Some(sdp), Some((audio_pt, te_pt))) = (st.remote_sdp.clone(), st.negotiated) {
            if let Some(dest) = sdp.rtp_addr() {
                inner.rtp_cmd(RtpCmd::Start {
                    dest,
                    audio_pt,
                    te_pt: te_pt.or(inner.opts.force_dtmf_pt),
                });
            }
        }
    }
}

fn log_received(
    st: &mut State,
    msg: &SipMessage,
    from: SocketAddr,
    at: Instant,
    retransmission: bool,
) {
    st.log.push(SipEvent {
        at,
        dir: Dir::Received,
        peer: from,
        msg: msg.clone(),
        retransmission,
    });
}

fn on_request(inner: &Inner, st: &mut State, msg: SipMessage, from: SocketAddr, now: Instant) {
    let method = msg.method().unwrap_or("").to_string();
    let key = format!(
        "{}|{}|{}",
        msg.call_id().unwrap_or(""),
        msg.top_via_branch().unwrap_or_default(),
        msg.header("CSeq").unwrap_or("")
    );
    // Responses go where the top Via says (with rport: the source we saw).
    let reply_to = from;
    if let Some((resp, dest)) = st.responses_sent.get(&key).cloned() {
        log_received(st, &msg, from, now, true);
        inner.send(st, &resp, dest, true);
        return;
    }
    log_received(st, &msg, from, now, false);
    if method == "ACK" {
        return;
    }

    // In-dialog check: Call-ID and our tag in To (OPTIONS may also come out of dialog).
    let in_dialog = st.dialog.as_ref().is_some_and(|d| {
        msg.call_id() == Some(d.call_id.as_str())
            && msg.tag("To").as_deref() == Some(d.local_tag.as_str())
    });
    let out_of_dialog_ok = method == "OPTIONS" && msg.tag("To").is_none();
    let respond =
        |st: &mut State, code: u16, extra: &[(&str, String)], body: Option<(&str, &str)>| {
            let resp = inner.build_response(st, &msg, code, extra, body);
            st.responses_sent
                .insert(key.clone(), (resp.clone(), reply_to));
            inner.send(st, &resp, reply_to, false);
        };
    if !in_dialog && !out_of_dialog_ok {
        respond(st, 481, &[], None);
        return;
    }
    match method.as_str() {
        "BYE" => {
            respond(st, 200, &[], None);
            if let Some(d) = st.dialog.as_mut() {
                d.terminated = true;
            }
            inner.rtp_cmd(RtpCmd::Stop);
        }
        "OPTIONS" => respond(
            st,
            200,
            &[(
                "Allow",
                "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY".into(),
            )],
            None,
        ),
        "INFO" | "NOTIFY" | "UPDATE" | "MESSAGE" => respond(st, 200, &[], None),
        "INVITE" => {
            // re-INVITE from the daemon: answer with our codecs, mirroring hold.
            let offered_dir = Sdp::parse(&msg.body)
                .map(|s| s.direction)
                .unwrap_or_default();
            st.sdp_version += 1;
            st.direction = match offered_dir.as_str() {
                "sendonly" => "recvonly",
                "recvonly" => "sendonly",
                "inactive" => "inactive",
                _ => "sendrecv",
            }
            .to_string();
            let body = inner.offer_sdp(st);
            respond(st, 200, &[], Some(("application/sdp", &body)));
        }
        "REFER" => {
            let (refer_cseq, _) = msg.cseq().unwrap_or((0, String::new()));
            let earlier = st.dialog.as_ref().map(|d| d.refers_seen).unwrap_or(0);
            if let Some(d) = st.dialog.as_mut() {
                d.refers_seen += 1;
            }
            match inner.opts.refer.clone() {
                ReferPolicy::Reject(code) => respond(st, code, &[], None),
                ReferPolicy::Accept {
                    final_status,
                    notify_trying,
                    notify_delay,
                } => {
                    respond(st, 202, &[], None);
                    // RFC 3515 2.4.6: NOTIFYs for a second REFER in a dialog carry id=CSeq.
                    let with_id = earlier > 0;
                    if notify_trying {
                        st.scheduled.push((
                            now,
                            Scheduled::Notify {
                                sipfrag_status: 100,
                                terminated: false,
                                refer_cseq,
                                with_id,
                            },
                        ));
                    }
                    st.scheduled.push((
                        now + notify_delay,
                        Scheduled::Notify {
                            sipfrag_status: final_status,
                            terminated: true,
                            refer_cseq,
                            with_id,
                        },
                    ));
                }
            }
        }
        "CANCEL" => respond(st, 481, &[], None),
        _ => respond(st, 501, &[], None),
    }
}

// ---------------------------------------------------------------------------------------
// RTP threads
// ---------------------------------------------------------------------------------------

fn rtp_receiver(inner: Arc<Inner>, sock: UdpSocket, sink: Arc<Mutex<Vec<RtpPacket>>>) {
    let mut buf = vec![0u8; 2048];
    while !inner.stop.load(Ordering::SeqCst) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let at = Instant::now();
            if let Some(p) = RtpPacket::parse(&buf[..n], at, from) {
                lock(&sink).push(p);
            }
        }
    }
}

/// An RFC 4733 event being sent.
struct ActiveEvent {
    code: u8,
    start_ts: u32,
    /// Packets (20 ms each) before the end packets.
    total: u32,
    sent: u32,
}

/// Sends one packet every 20 ms on absolute deadlines: audio (or silence) from the current
/// source, or DTMF event packets while a digit is being sent.
fn rtp_sender(inner: Arc<Inner>, sock: UdpSocket, rx: mpsc::Receiver<RtpCmd>) {
    let ssrc = u32::from_str_radix(&token()[..8], 16).unwrap_or(0x1234_5678);
    let mut seq: u16 = u16::from_str_radix(&token()[..4], 16).unwrap_or(1);
    let mut ts: u32 = u32::from_str_radix(&token()[..8], 16).unwrap_or(0);
    let mut dest: Option<(SocketAddr, u8, Option<u8>)> = None;
    let mut source = inner.opts.audio.clone();
    let mut sample_pos = 0usize;
    let mut first_audio = true;
    let mut next_tick: Option<Instant> = None;
    let mut pending_dtmf: VecDeque<(char, u32)> = VecDeque::new();
    let mut event: Option<ActiveEvent> = None;
    let mut gap_ticks = 0u32;

    let packet = |seq: u16, ts: u32, pt: u8, marker: bool, payload: &[u8]| -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(if marker { 0x80 } else { 0 } | pt);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    };

    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let wait = match next_tick {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(100),
        };
        match rx.recv_timeout(wait) {
            Ok(RtpCmd::Start {
                dest: d,
                audio_pt,
                te_pt,
            }) => {
                // From now on the clock ticks every 20 ms, whether or not there is
                // something to send (the RTP timestamp keeps running).
                dest = Some((d, audio_pt, te_pt));
                next_tick.get_or_insert_with(Instant::now);
                continue;
            }
            Ok(RtpCmd::Source(s)) => {
                source = s;
                sample_pos = 0;
                continue;
            }
            Ok(RtpCmd::Dtmf(k, ms)) => {
                pending_dtmf.push_back((k, ms));
                continue;
            }
            Ok(RtpCmd::Stop) => {
                dest = None;
                next_tick = None;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let (Some(tick), Some((to, audio_pt, te_pt))) = (next_tick, dest) else {
            continue;
        };
        if Instant::now() < tick {
            continue;
        }
        // One 20 ms tick.
        if event.is_none() && gap_ticks == 0 {
            if let Some((k, ms)) = pending_dtmf.pop_front() {
                event = Some(ActiveEvent {
                    code: dtmf_event_code(k),
                    start_ts: ts,
                    total: (ms / 20).max(1),
                    sent: 0,
                });
            }
        }
        if let (Some(ev), Some(te)) = (event.as_mut(), te_pt) {
            let volume = 10u8;
            if ev.sent < ev.total {
                ev.sent += 1;
                let duration = (ev.sent * 160).min(0xFFFF) as u16;
                let d = duration.to_be_bytes();
                let payload = [ev.code, volume, d[0], d[1]];
                let _ = sock.send_to(&packet(seq, ev.start_ts, te, ev.sent == 1, &payload), to);
                seq = seq.wrapping_add(1);
            } else {
                // Three end packets, same timestamp and final duration.
                let d = ((ev.total * 160).min(0xFFFF) as u16).to_be_bytes();
                let payload = [ev.code, 0x80 | volume, d[0], d[1]];
                for _ in 0..3 {
                    let _ = sock.send_to(&packet(seq, ev.start_ts, te, false, &payload), to);
                    seq = seq.wrapping_add(1);
                }
                event = None;
                gap_ticks = 3; // 60 ms of audio before the next digit
            }
        } else {
            if event.is_some() {
                // telephone-event was not negotiated: drop the digit, loudly.
                eprintln!("test caller: cannot send RFC 4733 DTMF, telephone-event not negotiated");
                event = None;
            }
            gap_ticks = gap_ticks.saturating_sub(1);
            let payload: Option<Vec<u8>> = match &source {
                AudioSource::Nothing => None,
                AudioSource::Silence => Some(vec![g711_silence_or(audio_pt); 160]),
                AudioSource::Samples(s) => {
                    let mut frame: Vec<i16> =
                        s.iter().skip(sample_pos).take(160).copied().collect();
                    sample_pos += 160;
                    frame.resize(160, 0);
                    Some(if matches!(audio_pt, 0 | 8) {
                        g711_encode(audio_pt, &frame)
                    } else {
                        vec![0; 160]
                    })
                }
            };
            if let Some(p) = payload {
                let _ = sock.send_to(&packet(seq, ts, audio_pt, first_audio, &p), to);
                first_audio = false;
                seq = seq.wrapping_add(1);
            }
        }
        ts = ts.wrapping_add(160);
        next_tick = Some(tick + PTIME);
    }
}

fn g711_silence_or(pt: u8) -> u8 {
    if matches!(pt, 0 | 8) {
        g711_silence(pt)
    } else {
        0
    }
}
