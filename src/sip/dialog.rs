//! The rules of one call's INVITE dialog, without I/O: which initial INVITEs we refuse and
//! how, the offer/answer in re-INVITEs and UPDATEs (hold, a late offer answered in the
//! ACK), 491 for overlapping re-INVITEs, a transfer held until the ACK, and when a BYE may
//! leave. The SIP driver (`io::sip::call`) feeds it what arrived and carries out what it
//! says; time comes in as `now` and goes out as a deadline (`poll_timeout`).

use super::context::TransferContext;
use super::sdp::{self, Negotiated, RemoteAudio, SdpError};
use std::time::{Duration, Instant};

/// How long a re-INVITE that overlaps an unacknowledged one waits for that ACK before it
/// gets 491. The ACK sent just before it may already be in, queued behind the earlier
/// re-INVITE's transaction; its `Confirmed` event usually follows within a millisecond.
pub const REINVITE_ACK_GRACE: Duration = Duration::from_millis(20);

/// How long a BYE waits once the call decided to hang up, so that responses queued just
/// before it (the 200 OK to the INVITE, the 200 for the NOTIFY that ended a transfer) leave
/// first: they go out through their request's own transaction task, the BYE through a new
/// one.
pub const BYE_DELAY: Duration = Duration::from_millis(20);

/// Why an initial INVITE is refused, and the header that tells the caller what we need.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub header: Option<RefusalHeader>,
    /// The `ivrd_calls_total` outcome and log reason.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RefusalHeader {
    /// `Unsupported:` the option tags we were required to support.
    Unsupported(String),
    /// `Accept:` the body types we read.
    Accept(&'static str),
    /// `Warning: 399 ivrd "..."`, text cleaned for a header line.
    Warning(String),
}

/// What an initial INVITE carries that the checks read.
pub struct InviteView<'a> {
    pub require: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// Checks an initial INVITE before anything is allocated: extensions we do not support,
/// the body's type, and an SDP offer we can answer. `Ok(None)` is a late offer (no SDP:
/// we offer in the 200 and the answer comes in the ACK).
pub fn check_invite(invite: &InviteView<'_>) -> Result<Option<RemoteAudio>, Refusal> {
    if let Some(required) = invite.require {
        // We implement no option tags (RFC 3261 §8.2.2.3).
        return Err(Refusal {
            status: 420,
            header: Some(RefusalHeader::Unsupported(required.to_string())),
            reason: "rejected_bad_extension",
        });
    }
    if invite.body.is_empty() {
        return Ok(None);
    }
    let content_type = invite.content_type.unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/sdp") {
        return Err(Refusal {
            status: 415,
            header: Some(RefusalHeader::Accept("application/sdp")),
            reason: "rejected_media_type",
        });
    }
    match sdp::parse(invite.body).and_then(|o| sdp::negotiate(&o).map(|_| o)) {
        Ok(o) => Ok(Some(o)),
        Err(SdpError::Malformed(why)) => Err(Refusal {
            status: 400,
            header: Some(RefusalHeader::Warning(warning_text(&format!(
                "bad SDP: {why}"
            )))),
            reason: "rejected_bad_sdp",
        }),
        Err(e) => Err(Refusal {
            status: 488,
            header: Some(RefusalHeader::Warning(warning_text(&e.to_string()))),
            reason: "rejected_codec",
        }),
    }
}

/// A `Warning` header value (RFC 3261 §20.43) carrying `text`.
pub fn warning_text(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    format!("399 ivrd \"{clean}\"")
}

/// What to answer to a re-INVITE or UPDATE's body.
#[derive(Debug)]
pub enum Reoffer {
    /// No SDP: the peer asks for our offer; the session stays as it is.
    OfferWanted,
    /// A usable offer: answer it and apply the new media (`hold` when we must not send).
    Answer {
        offer: RemoteAudio,
        media: Negotiated,
        hold: bool,
    },
    /// 488 with this Warning; the session stays as it is.
    Refuse(String),
}

pub fn reoffer(body: &[u8]) -> Reoffer {
    if body.is_empty() {
        return Reoffer::OfferWanted;
    }
    match sdp::parse(body).and_then(|o| sdp::negotiate(&o).map(|n| (o, n))) {
        Ok((offer, media)) => Reoffer::Answer {
            hold: !media.local_direction.sends(),
            offer,
            media,
        },
        Err(e) => Reoffer::Refuse(warning_text(&e.to_string())),
    }
}

/// A late offer's answer, from the ACK's body; `None` ends the call (there is no media).
pub fn late_answer(ack_body: &[u8]) -> Result<(RemoteAudio, Negotiated), SdpError> {
    sdp::parse(ack_body).and_then(|a| sdp::accept_answer(&a).map(|n| (a, n)))
}

/// The status code a REFER's NOTIFY reports: its `Event` is `refer` (RFC 3515) and its
/// sipfrag body starts with a status line (`SIP/2.0 200 OK`).
pub fn refer_progress(event: &str, body: &[u8]) -> Option<u16> {
    if !event.trim().to_ascii_lowercase().starts_with("refer") {
        return None;
    }
    let body = std::str::from_utf8(body).ok()?;
    let line = body.lines().find(|l| l.starts_with("SIP/2.0"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What to do with a re-INVITE now.
#[derive(Debug, PartialEq)]
pub enum ReinviteVerdict {
    /// Handle it (answer its offer).
    Accept,
    /// Keep it until the earlier one's ACK arrives or [`DialogRules::poll_timeout`].
    Hold,
    /// 491 Request Pending: another re-INVITE's offer/answer is still open (RFC 3261 §14.2).
    Pending,
}

/// A re-INVITE that was held, now decided.
#[derive(Debug, PartialEq)]
pub enum Held {
    Accept,
    Pending,
}

/// The dialog's state that outlives one request.
#[derive(Debug, Default)]
pub struct DialogRules {
    /// The initial INVITE's ACK has arrived.
    acked: bool,
    /// CSeq of a re-INVITE we answered whose ACK has not come yet: its offer/answer is still
    /// open, and a second one meanwhile waits or gets 491.
    reinvite_open: Option<u32>,
    /// A re-INVITE held for that ACK, until this deadline.
    held_until: Option<Instant>,
    /// A transfer asked for before the ACK; sent once the dialog is confirmed.
    pending_refer: Option<(String, TransferContext)>,
}

impl DialogRules {
    pub fn is_acked(&self) -> bool {
        self.acked
    }

    /// The first `Confirmed` is the initial ACK: a transfer held for it goes now.
    pub fn on_initial_ack(&mut self) -> Option<(String, TransferContext)> {
        self.acked = true;
        self.pending_refer.take()
    }

    /// A later `Confirmed`: some re-INVITE's ACK arrived. `acked_cseq` is the CSeq of the
    /// latest ACK. Returns the decision for a held re-INVITE, if one was waiting for it.
    pub fn on_reinvite_ack(&mut self, acked_cseq: Option<u32>) -> Option<Held> {
        if let (Some(open), Some(seq)) = (self.reinvite_open, acked_cseq) {
            if seq >= open {
                self.reinvite_open = None;
            }
        }
        if self.held_until.is_some() && self.reinvite_open.is_none() {
            self.held_until = None;
            return Some(Held::Accept);
        }
        None
    }

    /// A re-INVITE arrived at `now`; `acked_cseq` is the CSeq of the latest ACK seen.
    pub fn on_reinvite(&mut self, now: Instant, acked_cseq: Option<u32>) -> ReinviteVerdict {
        // One is already held: it goes first (settled by its ACK or its deadline), so this
        // one overlaps it.
        if self.held_until.is_some() {
            return ReinviteVerdict::Pending;
        }
        self.on_reinvite_ack(acked_cseq);
        match self.reinvite_open {
            None => ReinviteVerdict::Accept,
            Some(_) => {
                self.held_until = Some(now + REINVITE_ACK_GRACE);
                ReinviteVerdict::Hold
            }
        }
    }

    /// We answered a re-INVITE with CSeq `cseq` (200 with SDP): its ACK is now awaited.
    pub fn reinvite_answered(&mut self, cseq: Option<u32>) {
        self.reinvite_open = cseq;
    }

    /// A transfer: sent now once the call is acknowledged, else kept for the ACK.
    pub fn transfer(
        &mut self,
        target: String,
        context: TransferContext,
    ) -> Option<(String, TransferContext)> {
        if self.acked {
            Some((target, context))
        } else {
            self.pending_refer = Some((target, context));
            None
        }
    }

    /// When the BYE asked for at `now` may leave.
    pub fn bye_at(&self, now: Instant) -> Instant {
        now + BYE_DELAY
    }

    /// The held re-INVITE's deadline, if one is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held_until
    }

    /// At its deadline a held re-INVITE gets 491, unless the ACK it waited for is in by now
    /// (`acked_cseq`: the latest ACK's CSeq, looked at once more).
    pub fn handle_timeout(&mut self, now: Instant, acked_cseq: Option<u32>) -> Option<Held> {
        if self.held_until.is_some_and(|t| now >= t) {
            if let Some(held) = self.on_reinvite_ack(acked_cseq) {
                return Some(held);
            }
        }
        match self.held_until {
            Some(t) if now >= t => {
                self.held_until = None;
                Some(Held::Pending)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    fn invite<'a>(require: Option<&'a str>, ct: Option<&'a str>, body: &'a [u8]) -> InviteView<'a> {
        InviteView {
            require,
            content_type: ct,
            body,
        }
    }

    #[test]
    fn initial_invites_are_refused_with_the_header_that_says_why() {
        let r = check_invite(&invite(Some("100rel"), None, b"")).unwrap_err();
        assert_eq!(
            (r.status, r.header),
            (420, Some(RefusalHeader::Unsupported("100rel".into())))
        );
        let r = check_invite(&invite(None, Some("text/plain"), b"hi")).unwrap_err();
        assert_eq!((r.status, r.reason), (415, "rejected_media_type"));
        let r = check_invite(&invite(None, Some("application/sdp"), b"v=x")).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "rejected_bad_sdp"));
        let g729 = String::from_utf8_lossy(SDP).replace("RTP/AVP 0 101", "RTP/AVP 18");
        let r = check_invite(&invite(None, Some("application/sdp"), g729.as_bytes())).unwrap_err();
        assert_eq!((r.status, r.reason), (488, "rejected_codec"));
        assert!(
            matches!(r.header, Some(RefusalHeader::Warning(w)) if w.starts_with("399 ivrd \""))
        );
    }

    #[test]
    fn an_invite_without_sdp_is_a_late_offer_and_one_with_sdp_is_answered() {
        assert!(check_invite(&invite(None, None, b"")).unwrap().is_none());
        let ct = Some("Application/SDP; charset=x");
        assert!(check_invite(&invite(None, ct, SDP)).unwrap().is_some());
    }

    #[test]
    fn warnings_are_safe_header_text() {
        assert_eq!(warning_text("a \"b\"\r\nc"), "399 ivrd \"a bc\"");
    }

    #[test]
    fn reoffers_hold_unhold_or_ask_for_our_offer() {
        assert!(matches!(reoffer(b""), Reoffer::OfferWanted));
        let hold = String::from_utf8_lossy(SDP).to_string() + "a=sendonly\r\n";
        assert!(matches!(
            reoffer(hold.as_bytes()),
            Reoffer::Answer { hold: true, .. }
        ));
        assert!(matches!(reoffer(SDP), Reoffer::Answer { hold: false, .. }));
        assert!(matches!(reoffer(b"garbage"), Reoffer::Refuse(_)));
    }

    #[test]
    fn an_overlapping_reinvite_waits_for_the_ack_then_goes_on() {
        let t0 = Instant::now();
        let mut d = DialogRules::default();
        assert_eq!(d.on_reinvite(t0, None), ReinviteVerdict::Accept);
        d.reinvite_answered(Some(2));
        assert_eq!(d.on_reinvite(t0, Some(1)), ReinviteVerdict::Hold);
        assert_eq!(d.poll_timeout(), Some(t0 + REINVITE_ACK_GRACE));
        assert_eq!(
            d.on_reinvite(t0, Some(1)),
            ReinviteVerdict::Pending,
            "a third one while one is held"
        );
        assert_eq!(d.on_reinvite_ack(Some(2)), Some(Held::Accept));
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.on_reinvite(t0, Some(2)), ReinviteVerdict::Accept);
    }

    #[test]
    fn an_overlapping_reinvite_whose_ack_never_comes_gets_491_at_the_deadline() {
        let t0 = Instant::now();
        let mut d = DialogRules::default();
        d.reinvite_answered(Some(2));
        assert_eq!(d.on_reinvite(t0, None), ReinviteVerdict::Hold);
        assert_eq!(d.handle_timeout(t0 + Duration::from_millis(19), None), None);
        assert_eq!(
            d.handle_timeout(t0 + REINVITE_ACK_GRACE, Some(1)),
            Some(Held::Pending)
        );
        assert_eq!(
            d.on_reinvite_ack(Some(1)),
            None,
            "an older ACK settles nothing"
        );
    }

    #[test]
    fn an_ack_seen_only_at_the_deadline_still_lets_the_held_reinvite_through() {
        let t0 = Instant::now();
        let mut d = DialogRules::default();
        d.reinvite_answered(Some(2));
        assert_eq!(d.on_reinvite(t0, Some(1)), ReinviteVerdict::Hold);
        assert_eq!(
            d.handle_timeout(t0 + REINVITE_ACK_GRACE, Some(2)),
            Some(Held::Accept)
        );
    }

    #[test]
    fn a_later_reinvite_never_overtakes_a_held_one() {
        let t0 = Instant::now();
        let mut d = DialogRules::default();
        d.reinvite_answered(Some(2));
        assert_eq!(d.on_reinvite(t0, Some(1)), ReinviteVerdict::Hold);
        // The ACK is in (its event not yet handled) when the next re-INVITE comes: that one
        // gets 491 and the held one is still settled by the event.
        assert_eq!(d.on_reinvite(t0, Some(2)), ReinviteVerdict::Pending);
        assert_eq!(d.on_reinvite_ack(Some(2)), Some(Held::Accept));
    }

    #[test]
    fn an_ack_that_already_landed_lets_the_next_reinvite_through_at_once() {
        let t0 = Instant::now();
        let mut d = DialogRules::default();
        d.reinvite_answered(Some(2));
        assert_eq!(d.on_reinvite(t0, Some(2)), ReinviteVerdict::Accept);
    }

    #[test]
    fn a_transfer_before_the_ack_waits_for_it() {
        let mut d = DialogRules::default();
        assert!(d
            .transfer("sip:a@b".into(), TransferContext::default())
            .is_none());
        let (target, _) = d.on_initial_ack().expect("sent with the ACK");
        assert_eq!(target, "sip:a@b");
        assert!(d
            .transfer("sip:c@d".into(), TransferContext::default())
            .is_some());
    }

    #[test]
    fn refer_notifies_report_the_transfer_status() {
        assert_eq!(
            refer_progress("refer", b"SIP/2.0 180 Ringing\r\n"),
            Some(180)
        );
        assert_eq!(refer_progress("Refer;id=3", b"SIP/2.0 200 OK"), Some(200));
        assert_eq!(refer_progress("presence", b"SIP/2.0 200 OK"), None);
        assert_eq!(refer_progress("refer", b"hello"), None);
    }

    #[test]
    fn a_bye_leaves_after_the_responses_queued_before_it() {
        let t0 = Instant::now();
        assert_eq!(DialogRules::default().bye_at(t0), t0 + BYE_DELAY);
    }
}
