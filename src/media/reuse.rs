//! Which idle RTP socket serves the next call. Binding a fresh socket per call and closing
//! it afterwards is five system calls (socket, bind, the non-blocking switch, reading the
//! port back, close): as many as the SIP messages of a short call. A finished call's
//! socket is kept instead and handed to a later call, once it has been quiet long enough
//! for its old call's late packets to have stopped (they are also drained before reuse).
//! Generic over what is kept, so the rules are tested here with virtual time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Idle things in the order they became idle (oldest first).
pub struct Reuse<T> {
    idle: VecDeque<(Instant, T)>,
    /// How long a returned one rests before it may serve again.
    quiet: Duration,
    /// How long an idle one is kept at all (a quiet daemon holds no ports it does not use).
    keep: Duration,
    /// The most kept at once (each holds a file descriptor and a port).
    max_idle: usize,
}

impl<T> Reuse<T> {
    pub fn new(quiet: Duration, keep: Duration, max_idle: usize) -> Reuse<T> {
        Reuse {
            idle: VecDeque::new(),
            quiet,
            keep: keep.max(quiet),
            max_idle,
        }
    }

    /// The longest idle one, if it has rested for `quiet`; `None`: make a new one.
    pub fn take(&mut self, now: Instant) -> Option<T> {
        self.expire(now);
        match self.idle.front() {
            Some((since, _)) if now.saturating_duration_since(*since) >= self.quiet => {
                self.idle.pop_front().map(|(_, t)| t)
            }
            _ => None,
        }
    }

    /// The longest idle one even if it has not rested: better than no port at all when a
    /// fresh one cannot be had (every port of a small range kept here).
    pub fn take_any(&mut self, now: Instant) -> Option<T> {
        self.expire(now);
        self.idle.pop_front().map(|(_, t)| t)
    }

    /// Keeps `t` for a later call; dropped instead when `max_idle` are already kept.
    pub fn put(&mut self, now: Instant, t: T) {
        self.expire(now);
        if self.idle.len() < self.max_idle {
            self.idle.push_back((now, t));
        }
    }

    /// How many are kept now.
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }

    /// Drops those idle for longer than `keep` (the oldest are in front).
    fn expire(&mut self, now: Instant) {
        while self
            .idle
            .front()
            .is_some_and(|(since, _)| now.saturating_duration_since(*since) > self.keep)
        {
            self.idle.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn reuse() -> Reuse<u32> {
        Reuse::new(ms(1_000), ms(30_000), 3)
    }

    #[test]
    fn a_returned_one_serves_again_only_after_resting() {
        let (mut r, t0) = (reuse(), Instant::now());
        assert_eq!(r.take(t0), None, "nothing kept yet");
        r.put(t0, 7);
        assert_eq!(r.take(t0 + ms(999)), None, "still resting");
        assert_eq!(r.take(t0 + ms(1_000)), Some(7));
        assert_eq!(r.take(t0 + ms(1_000)), None, "each serves one call");
    }

    #[test]
    fn when_nothing_else_will_do_one_that_has_not_rested_serves() {
        let (mut r, t0) = (reuse(), Instant::now());
        assert_eq!(r.take_any(t0), None);
        r.put(t0, 1);
        r.put(t0, 2);
        assert_eq!(r.take(t0), None);
        assert_eq!(r.take_any(t0), Some(1), "the longest idle");
        assert_eq!(r.take_any(t0 + ms(30_001)), None, "2 expired");
    }

    #[test]
    fn the_longest_idle_serves_first() {
        let (mut r, t0) = (reuse(), Instant::now());
        r.put(t0, 1);
        r.put(t0 + ms(10), 2);
        r.put(t0 + ms(20), 3);
        let later = t0 + ms(5_000);
        assert_eq!(
            [r.take(later), r.take(later), r.take(later)],
            [Some(1), Some(2), Some(3)]
        );
    }

    #[test]
    fn no_more_than_max_idle_are_kept() {
        let (mut r, t0) = (reuse(), Instant::now());
        for i in 0..5 {
            r.put(t0, i);
        }
        assert_eq!(r.len(), 3);
        let later = t0 + ms(2_000);
        assert_eq!(r.take(later), Some(0), "the first three stayed");
    }

    #[test]
    fn those_idle_past_keep_are_dropped_not_reused() {
        let (mut r, t0) = (reuse(), Instant::now());
        r.put(t0, 1);
        r.put(t0 + ms(20_000), 2);
        assert_eq!(r.take(t0 + ms(30_001)), Some(2), "1 was dropped");
        r.put(t0 + ms(40_000), 3);
        r.put(t0 + ms(40_000), 4);
        assert_eq!(r.len(), 2);
        r.put(t0 + ms(80_000), 5);
        assert_eq!(r.len(), 1, "3 and 4 expired when 5 came");
        assert!(!r.is_empty());
    }

    #[test]
    fn keep_is_never_shorter_than_quiet() {
        let (mut r, t0) = (Reuse::new(ms(1_000), ms(10), 3), Instant::now());
        r.put(t0, 1);
        assert_eq!(r.take(t0 + ms(1_000)), Some(1));
    }
}
