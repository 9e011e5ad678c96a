//! The rule several nodes follow to share agents (state in PostgreSQL, see
//! `crate::store::postgres`): before ringing an agent, a node claims them. The store reads the
//! agent's claim row under a row lock and asks [`decide_claim`]; only one node at a time can
//! hold an agent, and an agent who comes free goes to the caller who has waited longest on
//! any node, not to whichever node asks first.
//!
//! Fair order across nodes: each node publishes its waiting callers (queue, when they
//! joined). A claim for a caller yields while a caller on another live node has waited
//! longer in a queue the agent serves; that node claims the agent when it hears they are
//! free. So that an agent never idles because the other node cannot take them (its caller
//! has just tried this agent, the agent is away there, the node hangs), yielding lasts at
//! most [`FAIR_GRACE_MS`] from the first refusal: after it, the asking node takes them.

/// How long a claim yields to an older caller on another node before taking the agent.
pub const FAIR_GRACE_MS: i64 = 2_000;
/// A node whose heartbeat is older than this is gone: its waiting callers no longer count.
pub const NODE_STALE_MS: i64 = 45_000;

/// What asking for an agent gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This node holds the agent now: ring them.
    Taken,
    /// Another node holds the agent (ringing, talking or wrapping up there).
    Held,
    /// The agent is free, but a caller on another node has waited longer: leave the agent
    /// to that node for now.
    Yielded,
}

/// An agent's claim row as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRow {
    /// The node that holds the agent, if any.
    pub holder: Option<String>,
    /// The holder's lease ends then (Unix ms).
    pub until_ms: i64,
    /// When a claim first yielded to an older caller elsewhere (Unix ms), since the agent
    /// was last taken.
    pub yielded_ms: Option<i64>,
}

/// The decision for node `me` at `now_ms`; `older_elsewhere`: a live node has a caller
/// waiting longer than ours in a queue the agent serves.
pub fn decide_claim(row: &ClaimRow, me: &str, now_ms: i64, older_elsewhere: bool) -> Claim {
    let held_by_other = row
        .holder
        .as_deref()
        .is_some_and(|h| h != me && now_ms <= row.until_ms);
    if held_by_other {
        return Claim::Held;
    }
    let grace_over = row
        .yielded_ms
        .is_some_and(|y| now_ms >= y.saturating_add(FAIR_GRACE_MS));
    if older_elsewhere && !grace_over {
        Claim::Yielded
    } else {
        Claim::Taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(holder: Option<&str>, until_ms: i64, yielded_ms: Option<i64>) -> ClaimRow {
        ClaimRow {
            holder: holder.map(str::to_string),
            until_ms,
            yielded_ms,
        }
    }

    #[test]
    fn one_holder_at_a_time_until_its_lease_runs_out() {
        let held = row(Some("b"), 60_000, None);
        assert_eq!(decide_claim(&held, "a", 1_000, false), Claim::Held);
        // Held trumps fairness: no yielding bookkeeping while someone holds the agent.
        assert_eq!(decide_claim(&held, "a", 1_000, true), Claim::Held);
        // The holder asking again (the next caller on the same node) is not held out.
        assert_eq!(decide_claim(&held, "b", 1_000, false), Claim::Taken);
        // A dead holder's lease runs out.
        assert_eq!(decide_claim(&held, "a", 60_001, false), Claim::Taken);
        assert_eq!(
            decide_claim(&row(None, 0, None), "a", 5, false),
            Claim::Taken
        );
    }

    #[test]
    fn an_older_caller_elsewhere_comes_first_for_a_grace_time() {
        let free = row(None, 0, None);
        assert_eq!(decide_claim(&free, "a", 10_000, true), Claim::Yielded);
        // Even the node that just had the agent yields to an older caller elsewhere.
        let ours = row(Some("a"), 60_000, None);
        assert_eq!(decide_claim(&ours, "a", 10_000, true), Claim::Yielded);
        // Yielding since 10 s: still within the grace at 11.999 s, taken at 12 s.
        let yielded = row(None, 0, Some(10_000));
        assert_eq!(decide_claim(&yielded, "a", 11_999, true), Claim::Yielded);
        assert_eq!(decide_claim(&yielded, "a", 12_000, true), Claim::Taken);
        // Nobody older elsewhere: taken at once.
        assert_eq!(decide_claim(&yielded, "a", 10_500, false), Claim::Taken);
    }
}
