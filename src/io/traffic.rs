//! Calls per node over the last hour, from the daemon's own counting (each node a call
//! enters): what the admin page's flow pictures show. Sixty one-minute buckets per node.

use std::collections::HashMap;
use std::sync::Mutex;

const MINUTES: usize = 60;

#[derive(Default)]
pub struct Traffic {
    nodes: Mutex<HashMap<(String, String), Minutes>>,
}

struct Minutes {
    counts: [u64; MINUTES],
    /// The minute (Unix minutes) the newest bucket stands for.
    newest: u64,
}

impl Minutes {
    /// Moves the window to `minute`, emptying the buckets it passes.
    fn advance(&mut self, minute: u64) {
        if minute <= self.newest {
            return;
        }
        let steps = (minute - self.newest).min(MINUTES as u64);
        for m in 1..=steps {
            self.counts[((self.newest + m) % MINUTES as u64) as usize] = 0;
        }
        self.newest = minute;
    }
}

impl Traffic {
    /// A call entered `node` of `flow` at `unix` (seconds).
    pub fn hit(&self, flow: &str, node: &str, unix: u64) {
        let minute = unix / 60;
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let entry = nodes
            .entry((flow.to_string(), node.to_string()))
            .or_insert(Minutes {
                counts: [0; MINUTES],
                newest: minute,
            });
        entry.advance(minute);
        entry.counts[(minute % MINUTES as u64) as usize] += 1;
    }

    /// Node name -> calls that entered it in the hour up to `unix`.
    pub fn last_hour(&self, flow: &str, unix: u64) -> HashMap<String, u64> {
        let minute = unix / 60;
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter_mut()
            .filter(|((f, _), _)| f == flow)
            .map(|((_, n), m)| {
                m.advance(minute);
                (n.clone(), m.counts.iter().sum())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_window() {
        let t = Traffic::default();
        let start = 1_000_000 * 60;
        t.hit("f", "greet", start);
        t.hit("f", "greet", start + 30);
        t.hit("f", "menu", start + 59 * 60);
        t.hit("g", "greet", start);
        let now = t.last_hour("f", start + 59 * 60);
        assert_eq!(now.get("greet"), Some(&2));
        assert_eq!(now.get("menu"), Some(&1));
        // An hour later the first calls have left the window.
        let later = t.last_hour("f", start + 60 * 60);
        assert_eq!(later.get("greet"), Some(&0));
        assert_eq!(later.get("menu"), Some(&1));
        assert_eq!(t.last_hour("f", start + 3 * 3600).get("menu"), Some(&0));
    }
}
