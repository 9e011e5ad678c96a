//! Timers for a call's `select!` loop.

use std::time::Instant;

/// Sleeps until `t`, or forever when there is no deadline (for `select!` arms).
pub async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// A timer for a call's `select!` loop that survives the loop's iterations.
///
/// A fresh `sleep_until` per iteration re-registers a timer in tokio's wheel for every
/// packet a call receives (50 a second per call); at 1,000 calls that was a tenth of the
/// daemon's CPU and made the frames that were due wait behind it. An `Alarm` touches the
/// wheel only when its deadline really moves.
pub struct Alarm {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            armed: None,
        }
    }
}

impl Alarm {
    /// Rings exactly at `t` (never, for `None`).
    pub fn set(&mut self, t: Option<Instant>) {
        if t != self.armed {
            if let Some(t) = t {
                self.sleep.as_mut().reset(t.into());
            }
            self.armed = t;
        }
    }

    /// Rings at `t` or earlier: an alarm already set to ring sooner is left alone. For
    /// deadlines that keep moving later (the RTP timeout, pushed on by every packet) when
    /// ringing early is harmless because the woken state machine checks its deadlines.
    pub fn set_by(&mut self, t: Option<Instant>) {
        match (self.armed, t) {
            (Some(armed), Some(t)) if armed <= t => {}
            _ => self.set(t),
        }
    }

    /// Completes when the alarm rings; pending forever while it is not set.
    pub async fn ring(&mut self) {
        if self.armed.is_none() {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
        self.armed = None;
    }
}
