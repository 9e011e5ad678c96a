//! What the test phone's page shows of a call as it happens: a per-call log of events that
//! the page reads as server-sent events. The log is replayed from the start to every reader,
//! so a page that subscribes after the answer (it learns the call id from it) misses nothing.

use crate::call::CallOutput;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Events kept per call. A call that loops without input escalates long before this; the
/// bound only keeps a misbehaving flow from growing memory. The final `ended` event is
/// always kept.
const MAX_EVENTS: usize = 2000;

/// One event, as the page receives it (JSON with a `type` field).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PageEvent {
    Ringing,
    /// Our SDP answer went out: the call is answered (`answer_ms` after the offer arrived).
    Answered {
        answer_ms: f64,
    },
    /// The browser's audio arrived (ICE, DTLS and SRTP are up both ways): the call's audio
    /// flows from now on.
    Connected {
        connect_ms: f64,
    },
    Node {
        node: String,
    },
    Key {
        key: String,
    },
    Intent {
        node: String,
        intent: String,
    },
    /// What the caller said, as transcribed.
    Transcript {
        text: String,
    },
    /// How the transcript was used (match, no_match, ...).
    Speech {
        outcome: String,
    },
    Outage {
        id: String,
    },
    Escalated {
        reason: String,
    },
    EscalationFailed,
    Callback {
        reason: String,
    },
    /// The flow transferred the caller: where to, and the context a SIP transfer would carry
    /// as headers. `result` says how the test phone settled it (see `webrtc.transfers`).
    Transfer {
        target: String,
        headers: Vec<(String, String)>,
        result: &'static str,
    },
    Ended {
        outcome: String,
        reason: String,
    },
}

impl PageEvent {
    /// The page's view of a call output; `None` for those it does not show (signalling is
    /// shown by the driver, audio to transcribe is not shown at all).
    pub fn from_output(out: &CallOutput) -> Option<PageEvent> {
        Some(match out {
            CallOutput::Node(node) => PageEvent::Node { node: node.clone() },
            CallOutput::Dtmf(key) => PageEvent::Key {
                key: key.to_string(),
            },
            CallOutput::Intent { node, intent } => PageEvent::Intent {
                node: node.clone(),
                intent: intent.clone(),
            },
            CallOutput::OutageAnnounced(id) => PageEvent::Outage { id: id.clone() },
            CallOutput::Escalated(reason) => PageEvent::Escalated {
                reason: reason.as_str().to_string(),
            },
            CallOutput::EscalationFailed => PageEvent::EscalationFailed,
            CallOutput::Callback { reason, .. } => PageEvent::Callback {
                reason: reason.clone(),
            },
            CallOutput::Speech(outcome) => PageEvent::Speech {
                outcome: outcome.as_str().to_string(),
            },
            CallOutput::Ringing
            | CallOutput::SpeechConfidence(_)
            | CallOutput::Answer
            | CallOutput::Refer { .. }
            | CallOutput::Hangup
            | CallOutput::Ended(_)
            | CallOutput::Transcribe { .. }
            | CallOutput::JoinQueue { .. }
            | CallOutput::ToQueue(_)
            | CallOutput::DialAgent { .. }
            | CallOutput::CancelAgent { .. }
            | CallOutput::Bridge { .. }
            | CallOutput::Feedback { .. }
            | CallOutput::Render { .. }
            | CallOutput::Upset(_) => return None,
        })
    }
}

#[derive(Serialize)]
struct Stamped<'a> {
    /// Milliseconds since the browser's offer arrived.
    t_ms: u64,
    #[serde(flatten)]
    event: &'a PageEvent,
}

/// A call's events, serialised once, with a watch that wakes readers when one is added.
pub struct EventLog {
    start: Instant,
    inner: Mutex<Inner>,
    added: watch::Sender<usize>,
}

#[derive(Default)]
struct Inner {
    events: Vec<Arc<str>>,
    /// Set after the final event: readers stop once they have read everything.
    closed: bool,
    dropped: usize,
}

/// What a reader gets for its cursor.
#[derive(Debug, PartialEq)]
pub enum Next {
    Event(Arc<str>),
    /// Nothing new yet; wait for [`EventLog::subscribe`]'s receiver to change.
    Wait,
    /// The call has ended and every event was read.
    End,
}

impl EventLog {
    pub fn new(start: Instant) -> Self {
        EventLog {
            start,
            inner: Mutex::new(Inner::default()),
            added: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, event: PageEvent) {
        self.push_at(Instant::now(), event);
    }

    pub fn push_at(&self, now: Instant, event: PageEvent) {
        let last = matches!(event, PageEvent::Ended { .. });
        let stamped = Stamped {
            t_ms: now.saturating_duration_since(self.start).as_millis() as u64,
            event: &event,
        };
        // Serialising plain strings and numbers cannot fail.
        let Ok(json) = serde_json::to_string(&stamped) else {
            return;
        };
        let count = {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            if inner.events.len() >= MAX_EVENTS && !last {
                inner.dropped += 1;
                return;
            }
            inner.events.push(json.into());
            inner.closed = last;
            inner.events.len()
        };
        self.added.send_replace(count);
    }

    /// The event at `cursor`, or whether to wait or stop.
    pub fn next(&self, cursor: usize) -> Next {
        let inner = self.lock();
        match inner.events.get(cursor) {
            Some(e) => Next::Event(e.clone()),
            None if inner.closed => Next::End,
            None => Next::Wait,
        }
    }

    /// A receiver that changes whenever an event is added.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.added.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn events_replay_in_order_then_end() {
        let t0 = Instant::now();
        let log = EventLog::new(t0);
        let mut rx = log.subscribe();
        log.push_at(t0 + Duration::from_millis(12), PageEvent::Ringing);
        log.push_at(
            t0 + Duration::from_millis(15),
            PageEvent::Node {
                node: "greet".into(),
            },
        );
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
        assert_eq!(
            log.next(0),
            Next::Event(r#"{"t_ms":12,"type":"ringing"}"#.into())
        );
        assert_eq!(
            log.next(1),
            Next::Event(r#"{"t_ms":15,"type":"node","node":"greet"}"#.into())
        );
        assert_eq!(log.next(2), Next::Wait);
        log.push_at(
            t0,
            PageEvent::Ended {
                outcome: "caller_hangup".into(),
                reason: "page".into(),
            },
        );
        // Nothing after the final event.
        log.push_at(t0, PageEvent::Ringing);
        assert!(matches!(log.next(2), Next::Event(_)));
        assert_eq!(log.next(3), Next::End);
    }

    #[test]
    fn the_log_is_bounded_but_keeps_the_end() {
        let log = EventLog::new(Instant::now());
        for _ in 0..MAX_EVENTS + 10 {
            log.push(PageEvent::Key { key: "5".into() });
        }
        log.push(PageEvent::Ended {
            outcome: "completed".into(),
            reason: "flow".into(),
        });
        assert!(matches!(log.next(MAX_EVENTS), Next::Event(e) if e.contains("ended")));
        assert_eq!(log.next(MAX_EVENTS + 1), Next::End);
    }

    #[test]
    fn transfer_shows_its_context() {
        let e = PageEvent::Transfer {
            target: "sip:billing@pbx.example.com".into(),
            headers: vec![("X-IVR-Intent".into(), "billing".into())],
            result: "accepted",
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "transfer");
        assert_eq!(json["headers"][0][0], "X-IVR-Intent");
        assert_eq!(json["result"], "accepted");
    }
}
