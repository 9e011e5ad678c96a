//! A call's RTP between its socket and the call: the pure [`RtpSession`] decides (pacing,
//! the per-call rate, keys versus audio); this adds the random seeds, the counters and the
//! hand-over to the call.

use crate::call::{Call, CallInput};
use crate::media::g711::Codec;
use crate::media::rtp::RtpIn;
use crate::media::session::{Incoming, RtpSession, StreamSeeds};
use crate::metrics as m;
use std::time::{Duration, Instant};
use tracing::warn;

pub struct RtpMedia {
    session: RtpSession,
    received: metrics::Counter,
    sent: metrics::Counter,
}

impl RtpMedia {
    /// `transport` is the metrics label (`sip` or `webrtc`).
    pub fn new(
        codec: Codec,
        payload_type: u8,
        telephone_event: Option<u8>,
        transport: &'static str,
    ) -> Self {
        let seeds = StreamSeeds {
            ssrc: rand::random(),
            first_seq: rand::random(),
            first_timestamp: rand::random(),
        };
        RtpMedia {
            session: RtpSession::new(codec, payload_type, telephone_event, seeds),
            received: metrics::counter!(m::RTP_PACKETS_TOTAL, "direction" => "in", "transport" => transport),
            sent: metrics::counter!(m::RTP_PACKETS_TOTAL, "direction" => "out", "transport" => transport),
        }
    }

    /// Caps incoming packets per second (`media.max_rtp_packets_per_s`).
    pub fn limit_rate(mut self, max_pps: u32) -> Self {
        self.session = self.session.limit_rate(max_pps);
        self
    }

    pub fn set_negotiated(&mut self, codec: Codec, payload_type: u8, telephone_event: Option<u8>) {
        self.session
            .set_negotiated(codec, payload_type, telephone_event);
    }

    /// Starts the outgoing stream at a random point of the first frame.
    pub fn start(&mut self, now: Instant) {
        let phase = Duration::from_micros(rand::random_range(0..20_000));
        self.session.start(now, phase);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.session.next_deadline()
    }

    /// The packets due at `now`, built from the call's audio.
    pub fn due_packets(
        &mut self,
        now: Instant,
        call: &mut Call,
        can_send: bool,
        out: &mut Vec<Vec<u8>>,
    ) {
        let fill = |frame: &mut [u8; 160]| {
            if !call.is_sending() {
                return false;
            }
            call.next_frame(now, frame);
            true
        };
        self.session.due(now, can_send, fill, out);
    }

    /// Where the outgoing stream stands (a bridge's relay carries it on).
    pub fn position(&self) -> crate::media::session::StreamSeeds {
        self.session.position()
    }

    /// Takes the stream back from a relay that sent up to `next_seq`.
    pub fn continue_at(&mut self, now: Instant, next_seq: u16) {
        self.session.continue_at(now, next_seq);
    }

    /// Counts a packet that went out.
    pub fn sent(&self) {
        self.sent.increment(1);
    }

    /// A packet received at `now`: keys to the call, caller audio to its endpointer.
    pub fn on_packet(&mut self, now: Instant, p: &RtpIn<'_>, call: &mut Call, speech: bool) {
        let max = self.session.max_pps();
        let incoming = self.session.on_packet(now, p, speech);
        if let Incoming::OverRate { first } = incoming {
            if first {
                warn!(max, "RTP over the per-call rate: dropping the excess");
            }
            metrics::counter!(m::LIMITS_HIT_TOTAL, "limit" => "rtp_rate").increment(1);
            return;
        }
        self.received.increment(1);
        call.handle(now, CallInput::MediaSeen);
        match incoming {
            Incoming::Key(key) => call.handle(now, CallInput::Dtmf(key)),
            Incoming::Audio(pcm) => call.handle(now, CallInput::Audio(pcm)),
            Incoming::Media | Incoming::OverRate { .. } => {}
        }
    }
}
