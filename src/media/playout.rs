//! Outgoing audio for one call: a queue of prompts cut into 20 ms frames, and the pacing
//! that decides when frames are due. Pure: the caller passes the current time in, so
//! both can be tested with virtual time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::g711::{Codec, FRAME, FRAME_SAMPLES};
use super::prompt::Prompt;

/// Identifies one queued playback, so the call layer can tell which prompt finished or
/// was cut off by barge-in.
pub type PlayId = u64;

/// The prompt being played and how far it got.
#[derive(Debug)]
struct Current {
    id: PlayId,
    prompt: Arc<Prompt>,
    /// Samples already sent.
    position: usize,
}

/// The prompts queued for one call, played back to back. Each prompt starts on a frame
/// boundary; the end of a prompt and the time when nothing is queued are filled with the
/// codec's encoded silence, so the RTP stream never stops (a stopped stream makes some
/// gateways and NATs drop the call).
#[derive(Debug)]
pub struct Playout {
    codec: Codec,
    current: Option<Current>,
    queue: VecDeque<(PlayId, Arc<Prompt>)>,
}

impl Playout {
    pub fn new(codec: Codec) -> Self {
        Playout {
            codec,
            current: None,
            queue: VecDeque::new(),
        }
    }

    /// Switches the encoding of the following frames; a prompt in progress continues
    /// from the same sample.
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Queues `prompt` to play after everything already queued.
    pub fn enqueue(&mut self, id: PlayId, prompt: Arc<Prompt>) {
        self.queue.push_back((id, prompt));
    }

    /// Stops the current prompt and drops the queue (barge-in). Returns the ids that were
    /// cut, the playing one first. The next frame is silence.
    pub fn stop(&mut self) -> Vec<PlayId> {
        let current = self.current.take().map(|c| c.id);
        current
            .into_iter()
            .chain(self.queue.drain(..).map(|(id, _)| id))
            .collect()
    }

    /// Whether a prompt is playing or queued.
    pub fn is_playing(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// Fills `out` with the next 20 ms of audio: the current prompt's encoded samples,
    /// padded with silence after its last sample or when idle. Returns the ids of the
    /// prompts whose last sample is in this frame; the returned `Vec` is empty (and does
    /// not allocate) in the usual case that nothing finished.
    pub fn next_frame(&mut self, out: &mut [u8; FRAME_SAMPLES]) -> Vec<PlayId> {
        let mut finished = Vec::new();
        let mut filled = 0;
        loop {
            if self.current.is_none() {
                self.current = self.queue.pop_front().map(|(id, prompt)| Current {
                    id,
                    prompt,
                    position: 0,
                });
            }
            let Some(current) = self.current.as_mut() else {
                break;
            };
            let audio = current.prompt.encoded(self.codec);
            let rest = audio.get(current.position..).unwrap_or_default();
            let n = rest.len().min(FRAME_SAMPLES);
            out[..n].copy_from_slice(&rest[..n]);
            current.position += n;
            filled = n;
            if current.position >= audio.len() {
                finished.push(current.id);
                self.current = None;
                // An empty prompt (not constructible through `Prompt`'s loaders, but
                // cheap to guard against) must not cost a frame of silence: move on.
                if n == 0 {
                    continue;
                }
            }
            break;
        }
        out[filled..].fill(self.codec.silence());
        finished
    }
}

/// How many frames are sent in one burst when the sending task woke up late. A jitter
/// buffer absorbs a few frames arriving together; more than that it would drop anyway,
/// or grow its delay for the rest of the call.
pub const MAX_BURST: u32 = 3;

/// What to do at a wake-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Frames to send now, back to back.
    pub send: u32,
    /// Older frames to give up on, *before* sending: pass to `RtpStreamOut::skip` so the
    /// timestamps of the sent frames stay true to real time. Take no playout frames for
    /// them: that way no words are lost and the listener only hears a short gap.
    pub skip: u32,
}

/// Absolute-deadline pacing for the 20 ms send loop. Frame `n` is due at
/// `origin + n * 20 ms`; deadlines are computed from the frame count, never by adding to
/// the previous wake-up time, so late wake-ups and timer rounding never accumulate into
/// drift, however long the call.
#[derive(Clone, Debug)]
pub struct Pacer {
    origin: Instant,
    /// Index of the next frame to send.
    next_frame: u64,
}

impl Pacer {
    /// The first frame is due at `origin`.
    pub fn new(origin: Instant) -> Self {
        Pacer {
            origin,
            next_frame: 0,
        }
    }

    /// When the next frame is due: sleep until then.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next_frame)
    }

    /// Called when the task wakes at `now`: how many frames to send now and how many to
    /// skip. Normally `{ send: 1, skip: 0 }`; `{ 0, 0 }` if woken early. If the task woke
    /// late, frames up to `MAX_BURST` late are sent at once and older ones are skipped.
    pub fn due(&mut self, now: Instant) -> Due {
        // Frames 0..=k have deadlines at or before `now`, where k = elapsed / 20 ms.
        let Some(elapsed) = now.checked_duration_since(self.origin) else {
            return Due::default();
        };
        let due_until = u64::try_from(elapsed.as_nanos() / FRAME.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let frames = due_until.saturating_sub(self.next_frame);
        self.next_frame += frames;
        let frames = u32::try_from(frames).unwrap_or(u32::MAX);
        let send = frames.min(MAX_BURST);
        Due {
            send,
            skip: frames - send,
        }
    }

    fn deadline(&self, frame: u64) -> Instant {
        // The frame count is bounded by the real time elapsed since `origin`; the
        // multiplication would only overflow after some 584 years.
        self.origin + Duration::from_nanos(frame * FRAME_NANOS)
    }
}

const FRAME_NANOS: u64 = FRAME.as_nanos() as u64;

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(name: &str, samples: usize) -> Arc<Prompt> {
        // A ramp, so every frame's bytes differ and misplaced copies show.
        let pcm = (0..samples).map(|i| (i as i16).wrapping_mul(37)).collect();
        Arc::new(Prompt::from_pcm_8k(name, pcm).expect("valid prompt"))
    }

    #[test]
    fn plays_a_prompt_then_silence_and_reports_finish_once() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let p = prompt("p", 1000);
            let mut playout = Playout::new(codec);
            assert!(!playout.is_playing());
            playout.enqueue(42, p.clone());
            assert!(playout.is_playing());

            let bytes = p.encoded(codec);
            let mut frame = [0u8; FRAME_SAMPLES];
            for n in 0..6 {
                assert!(playout.next_frame(&mut frame).is_empty(), "frame {n}");
                assert_eq!(&frame[..], &bytes[n * 160..(n + 1) * 160]);
            }
            // Seventh frame: the last 40 samples then 120 samples of silence.
            assert_eq!(playout.next_frame(&mut frame), vec![42]);
            assert_eq!(&frame[..40], &bytes[960..]);
            assert!(frame[40..].iter().all(|&b| b == codec.silence()));
            assert!(!playout.is_playing());

            for _ in 0..3 {
                assert!(playout.next_frame(&mut frame).is_empty());
                assert_eq!(frame, [codec.silence(); FRAME_SAMPLES]);
            }
        }
    }

    #[test]
    fn queued_prompts_play_back_to_back_on_frame_boundaries() {
        let mut playout = Playout::new(Codec::Pcmu);
        let a = prompt("a", 320);
        let b = prompt("b", 100);
        playout.enqueue(1, a.clone());
        playout.enqueue(2, b.clone());
        let mut frame = [0u8; FRAME_SAMPLES];
        assert!(playout.next_frame(&mut frame).is_empty());
        // A prompt ending exactly on a frame boundary finishes in its last full frame.
        assert_eq!(playout.next_frame(&mut frame), vec![1]);
        assert_eq!(&frame[..], &a.encoded(Codec::Pcmu)[160..]);
        assert_eq!(playout.next_frame(&mut frame), vec![2]);
        assert_eq!(&frame[..100], b.encoded(Codec::Pcmu));
        assert!(playout.next_frame(&mut frame).is_empty());
    }

    #[test]
    fn stop_mid_prompt_cuts_current_and_queue() {
        let mut playout = Playout::new(Codec::Pcma);
        playout.enqueue(7, prompt("a", 8000));
        playout.enqueue(8, prompt("b", 8000));
        playout.enqueue(9, prompt("c", 8000));
        let mut frame = [0u8; FRAME_SAMPLES];
        for _ in 0..5 {
            assert!(playout.next_frame(&mut frame).is_empty());
        }
        assert_eq!(playout.stop(), vec![7, 8, 9]);
        assert!(!playout.is_playing());
        // Nothing reports finished afterwards, and the line carries silence.
        assert!(playout.next_frame(&mut frame).is_empty());
        assert_eq!(frame, [Codec::Pcma.silence(); FRAME_SAMPLES]);
        assert!(playout.stop().is_empty());

        // Stopping before the first frame cuts queued prompts too.
        playout.enqueue(10, prompt("d", 10));
        assert_eq!(playout.stop(), vec![10]);
        // And playback works again after a stop.
        playout.enqueue(11, prompt("e", 10));
        assert_eq!(playout.next_frame(&mut frame), vec![11]);
    }

    #[test]
    fn codec_switch_mid_prompt_continues_at_same_sample() {
        let p = prompt("p", 480);
        let mut playout = Playout::new(Codec::Pcmu);
        playout.enqueue(1, p.clone());
        let mut frame = [0u8; FRAME_SAMPLES];
        playout.next_frame(&mut frame);
        playout.set_codec(Codec::Pcma);
        assert_eq!(playout.codec(), Codec::Pcma);
        playout.next_frame(&mut frame);
        assert_eq!(&frame[..], &p.encoded(Codec::Pcma)[160..320]);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ten_minutes_without_drift() {
        let origin = Instant::now();
        let mut pacer = Pacer::new(origin);
        let frames = 30_000u64; // 10 minutes of 20 ms frames
        let mut sent = 0u64;
        for n in 0..frames {
            let deadline = pacer.next_deadline();
            assert_eq!(deadline, origin + ms(20 * n));
            // Wake 0-3 ms late, never early; the lateness must not carry over.
            let now = deadline + ms(n % 4);
            let due = pacer.due(now);
            assert_eq!(due, Due { send: 1, skip: 0 }, "frame {n}");
            sent += u64::from(due.send);
        }
        assert_eq!(sent, frames);
        assert_eq!(pacer.next_deadline(), origin + ms(20 * frames));
        assert_eq!(pacer.next_deadline() - origin, Duration::from_secs(600));
    }

    #[test]
    fn early_wake_sends_nothing() {
        let origin = Instant::now();
        let mut pacer = Pacer::new(origin);
        assert_eq!(pacer.due(origin), Due { send: 1, skip: 0 });
        assert_eq!(pacer.due(origin + ms(19)), Due::default());
        assert_eq!(pacer.next_deadline(), origin + ms(20));
    }

    #[test]
    fn stall_bursts_three_and_skips_the_rest() {
        let origin = Instant::now();
        let mut pacer = Pacer::new(origin);
        assert_eq!(pacer.due(origin), Due { send: 1, skip: 0 });
        // Next frame due at 20 ms; the task stalls and wakes at 220 ms: frames due at
        // 20, 40, ..., 220 ms (11 of them) are all due.
        let due = pacer.due(origin + ms(220));
        assert_eq!(due, Due { send: 3, skip: 8 });
        assert_eq!(pacer.next_deadline(), origin + ms(240));
        assert_eq!(pacer.due(origin + ms(241)), Due { send: 1, skip: 0 });

        // A shorter stall (two frames late) is caught up in full.
        assert_eq!(pacer.due(origin + ms(300)), Due { send: 3, skip: 0 });
        assert_eq!(pacer.next_deadline(), origin + ms(320));
    }

    #[test]
    fn huge_stall_does_not_overflow() {
        let origin = Instant::now();
        let mut pacer = Pacer::new(origin);
        let due = pacer.due(origin + Duration::from_secs(86_400 * 365));
        assert_eq!(due.send, MAX_BURST);
        assert_eq!(u64::from(due.send + due.skip), 86_400 * 365 * 50 + 1);
    }
}
