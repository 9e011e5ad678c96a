//! Durable state: outages, callback requests and kept places, caller memory, survey
//! feedback, agents' states and registrations, and the audit log of admin changes. One
//! interface, two back ends: SQLite (`sqlite`, the embedded default: a file under the state
//! directory) and PostgreSQL (`postgres`, shared by several ivrd nodes: an outage started on
//! one is announced on all, a call back is placed by exactly one).
//! Blocking: the I/O layer calls it from `spawn_blocking`, never on the async threads.

use crate::outage::{Outage, OutageMap};
pub use crate::queue::shared::Claim;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const DB_FILE: &str = "ivrd.sqlite";

pub mod callers;
pub mod postgres;
pub mod sqlite;

use crate::flow::cond::CallerInfo;
use callers::{CallerEdit, CallerRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("stored outage '{id}' is unreadable: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
    #[error("PostgreSQL {url}: {source}")]
    Pg {
        /// The URL without its password.
        url: String,
        source: ::postgres::Error,
    },
    /// Agent sharing does not wait on a database that was just unreachable (see
    /// `PgStore::share`).
    #[error("PostgreSQL {url} was unreachable a moment ago; tried again shortly")]
    Away { url: String },
}

/// A caller's request to be called back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Callback {
    pub id: i64,
    /// The caller's number as sent in From (kept out of logs and metrics).
    pub caller: String,
    pub flow: String,
    /// `outage:ID`, the callback node's name, or `queue:NAME` for a kept place.
    pub reason: String,
    pub requested_at: u64,
    /// `pending` (a request for someone to act on); for kept places `waiting`, `calling`,
    /// `connected` or `failed`.
    pub status: String,
    /// The queue whose place is kept (then ivrd calls back itself).
    pub queue: Option<String>,
    /// Calls placed to the caller so far.
    pub attempts: u32,
}

/// A kept place to call back, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCallback {
    pub id: i64,
    pub number: String,
    pub queue: String,
    pub flow: String,
    /// When the caller joined the queue (Unix milliseconds): their place.
    pub joined_at_ms: i64,
    pub attempts: u32,
}

/// What keeping a place did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    New(i64),
    /// This number already has a place kept in this queue: that one stays.
    Duplicate(i64),
}

/// What a caller said of a call in a survey, kept for the agent's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feedback {
    pub at: u64,
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub flow: String,
    /// 1 (bad) to 5 (very good).
    pub score: Option<u8>,
    /// What they said about the person who helped them, transcribed.
    pub comment: Option<String>,
}

/// One admin change: who did what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
}

/// The store, whichever back end the config chose.
pub struct Store {
    backend: Backend,
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(std::sync::Arc<postgres::PgStore>),
}

/// Calls the same method on whichever back end is in use.
macro_rules! each {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*),
            Backend::Postgres(p) => p.$method($($arg),*),
        }
    };
}

impl Store {
    /// The embedded store: `DIR/ivrd.sqlite` (created if needed).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(dir)?),
        })
    }

    /// The shared store at a PostgreSQL URL; `node` names this ivrd in claims.
    pub fn connect(url: &str, node: &str) -> Result<Store, StoreError> {
        let pg = std::sync::Arc::new(postgres::PgStore::connect(url, node)?);
        pg.retry_writes();
        Ok(Store {
            backend: Backend::Postgres(pg),
        })
    }

    /// Where the state lives, for logs (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.path().display().to_string(),
            Backend::Postgres(p) => p.describe(),
        }
    }

    /// The PostgreSQL back end, when that is the one in use (for its outage notifications).
    pub fn postgres(&self) -> Option<&std::sync::Arc<postgres::PgStore>> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    pub fn outages(&self) -> Result<OutageMap, StoreError> {
        each!(self.outages())
    }

    pub fn outage(&self, id: &str) -> Result<Option<Outage>, StoreError> {
        each!(self.outage(id))
    }

    /// Inserts or replaces an outage and records who did it, in one transaction.
    pub fn put_outage(&self, o: &Outage, action: &str) -> Result<(), StoreError> {
        each!(self.put_outage(o, action))
    }

    /// Stores a batch of outage changes in one transaction: `puts` (outage, audit action)
    /// are inserted or replaced, `stops` removed (those that exist); all or nothing.
    /// Returns how many of `stops` existed.
    pub fn apply_outages(
        &self,
        puts: &[(Outage, &str)],
        stops: &[String],
        actor: &str,
        at: u64,
    ) -> Result<usize, StoreError> {
        each!(self.apply_outages(puts, stops, actor, at))
    }

    /// Removes an outage (it has ended); returns whether it existed.
    pub fn delete_outage(&self, id: &str, actor: &str, at: u64) -> Result<bool, StoreError> {
        each!(self.delete_outage(id, actor, at))
    }

    pub fn add_callback(
        &self,
        caller: &str,
        flow: &str,
        reason: &str,
        at: u64,
    ) -> Result<i64, StoreError> {
        each!(self.add_callback(caller, flow, reason, at))
    }

    pub fn callbacks(&self) -> Result<Vec<Callback>, StoreError> {
        each!(self.callbacks())
    }

    /// Keeps a caller's place in a queue to call them back: one per number per queue
    /// (a second request from the same number collapses into the first).
    pub fn keep_place(
        &self,
        number: &str,
        queue: &str,
        flow: &str,
        joined_at_ms: i64,
        at: u64,
    ) -> Result<Kept, StoreError> {
        each!(self.keep_place(number, queue, flow, joined_at_ms, at))
    }

    /// Kept places still to call back (after a restart: all of them, in their order).
    pub fn kept_places(&self) -> Result<Vec<QueueCallback>, StoreError> {
        each!(self.kept_places())
    }

    /// A kept place's new state (`calling`, `waiting`, `connected`, `failed`).
    pub fn set_callback_state(
        &self,
        id: i64,
        status: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        each!(self.set_callback_state(id, status, attempts))
    }

    /// Takes a kept place for this node to call back (`waiting` -> `calling`): true for
    /// exactly one node however many try at once.
    pub fn claim_callback(&self, id: i64, attempts: u32) -> Result<bool, StoreError> {
        each!(self.claim_callback(id, attempts))
    }

    /// The state an admin (or the CLI) last set for an agent: `available`, `away` or
    /// `offline`, kept across restarts.
    pub fn set_agent_state(&self, agent: &str, state: &str) -> Result<(), StoreError> {
        each!(self.set_agent_state(agent, state))
    }

    pub fn agent_states(&self) -> Result<Vec<(String, String)>, StoreError> {
        each!(self.agent_states())
    }

    /// An agent's phone registered from `uri` until `expires_at` (Unix seconds); `None`
    /// removes the binding.
    pub fn set_registration(
        &self,
        agent: &str,
        binding: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        each!(self.set_registration(agent, binding))
    }

    /// Bindings that have not run out at `now` (Unix seconds): (agent, uri, expires_at).
    pub fn registrations(&self, now: u64) -> Result<Vec<(String, String, u64)>, StoreError> {
        each!(self.registrations(now))
    }

    /// Asks for an agent for a caller of this node who joined at `joined_ms` (Unix ms) in
    /// one of `queues` (those the agent serves), to hold for `lease` (renewed while the call
    /// lasts). See `crate::queue::shared`. With the embedded store there is no other node:
    /// always taken.
    pub fn claim_agent(
        &self,
        agent: &str,
        lease: std::time::Duration,
        queues: &[String],
        joined_ms: i64,
    ) -> Result<Claim, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Claim::Taken),
            Backend::Postgres(p) => {
                p.claim_agent(agent, lease.as_millis() as i64, queues, joined_ms)
            }
        }
    }

    /// Shares this node's waiting callers for fair order (see `PgStore::publish_waiting`);
    /// nothing to share with the embedded store.
    pub fn publish_waiting(
        &self,
        joined: &[(i64, String, i64)],
        left: &[i64],
        reset: bool,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.publish_waiting(joined, left, reset),
        }
    }

    /// This node is alive, for the others (shared store only).
    pub fn heartbeat(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.heartbeat(),
        }
    }

    /// Lets go of agents this node claimed (`None`: every one, as at start-up).
    pub fn release_agents(&self, agents: Option<&[String]>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.release_agents(agents),
        }
    }

    /// Extends this node's claims on these agents.
    pub fn renew_agents(
        &self,
        agents: &[String],
        lease: std::time::Duration,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.renew_agents(agents, lease.as_millis() as i64),
        }
    }

    /// Agents other nodes hold now (none with the embedded store).
    pub fn agents_held_elsewhere(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(p) => p.agents_held_elsewhere(),
        }
    }

    pub fn add_feedback(&self, f: &Feedback) -> Result<(), StoreError> {
        each!(self.add_feedback(f))
    }

    /// An agent's feedback, newest first.
    pub fn feedback_for(&self, agent: &str, limit: usize) -> Result<Vec<Feedback>, StoreError> {
        each!(self.feedback_for(agent, limit))
    }

    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        each!(self.audit(limit))
    }

    /// What ivrd remembers of a number (None: nothing).
    pub fn caller(&self, number: &str) -> Result<Option<CallerInfo>, StoreError> {
        Ok(self.caller_row(number)?.map(|r| CallerInfo {
            name: r.name,
            last_intent: r.last_intent,
            last_call_at: r.last_call_at,
            notes: r.notes,
        }))
    }

    pub fn caller_row(&self, number: &str) -> Result<Option<CallerRow>, StoreError> {
        each!(self.caller_row(number))
    }

    /// Records, most recently updated first.
    pub fn callers(&self, limit: usize, offset: usize) -> Result<Vec<CallerRow>, StoreError> {
        each!(self.callers(limit, offset))
    }

    /// A call from `number` ended: its time, and its intent when it had one.
    pub fn remember_call(
        &self,
        number: &str,
        intent: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        each!(self.remember_call(number, intent, at))
    }

    /// Sets names and notes for many numbers in one transaction (all or nothing), with one
    /// audit row. Returns how many rows were written.
    pub fn put_callers(
        &self,
        edits: &[CallerEdit],
        actor: &str,
        action_target: &str,
        at: i64,
    ) -> Result<usize, StoreError> {
        each!(self.put_callers(edits, actor, action_target, at))
    }

    /// Forgets a number entirely; the audit names its tag only. False when there was nothing.
    pub fn erase_caller(
        &self,
        number: &str,
        tag: &str,
        actor: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        each!(self.erase_caller(number, tag, actor, at))
    }

    /// Erases records untouched since `before` (Unix seconds); how many went.
    pub fn purge_callers(&self, before: i64) -> Result<usize, StoreError> {
        each!(self.purge_callers(before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outage::tests::spec;
    use crate::outage::Source;

    fn outage(id: &str) -> Outage {
        Outage {
            spec: spec(id, &["all"]),
            source: Source::Api,
            updated_at: 100,
            updated_by: "alice".into(),
        }
    }

    #[test]
    fn outages_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("ivrd-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = Store::open(&dir).unwrap();
            s.put_outage(&outage("a"), "start").unwrap();
            s.put_outage(&outage("b"), "start").unwrap();
            assert!(s.delete_outage("b", "bob", 200).unwrap());
            assert!(!s.delete_outage("b", "bob", 200).unwrap());
            s.add_callback("sip:100@x", "support-line", "outage:a", 150)
                .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let all = s.outages().unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.outage("a").unwrap().unwrap().updated_by, "alice");
        assert_eq!(s.callbacks().unwrap()[0].reason, "outage:a");
        let audit = s.audit(10).unwrap();
        assert_eq!(audit[0].action, "stop");
        assert_eq!(audit[0].actor, "bob");
        assert_eq!(audit.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kept_places_are_one_per_number_and_queue_and_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("ivrd-store-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = Store::open(&dir).unwrap();
            assert_eq!(
                s.keep_place("555", "support", "f", 2_000, 1).unwrap(),
                Kept::New(1)
            );
            assert_eq!(
                s.keep_place("555", "support", "f", 3_000, 2).unwrap(),
                Kept::Duplicate(1)
            );
            assert_eq!(
                s.keep_place("555", "sales", "f", 1_000, 2).unwrap(),
                Kept::New(2)
            );
            s.set_callback_state(1, "calling", 1).unwrap();
        }
        let s = Store::open(&dir).unwrap();
        let kept = s.kept_places().unwrap();
        let order: Vec<(&str, u32)> = kept
            .iter()
            .map(|k| (k.queue.as_str(), k.attempts))
            .collect();
        assert_eq!(
            order,
            [("sales", 0), ("support", 1)],
            "in the order callers joined"
        );
        s.set_callback_state(1, "connected", 1).unwrap();
        assert_eq!(s.kept_places().unwrap().len(), 1);
        // Done: the number may ask again.
        assert_eq!(
            s.keep_place("555", "support", "f", 4_000, 3).unwrap(),
            Kept::New(3)
        );
        let all = s.callbacks().unwrap();
        assert_eq!(all[0].status, "connected");
        assert_eq!(all[0].queue.as_deref(), Some("support"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn registrations_are_kept_until_they_run_out() {
        let dir = std::env::temp_dir().join(format!("ivrd-store-reg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir).unwrap();
        s.set_registration("bea", Some(("sip:bea@10.0.0.1", 200)))
            .unwrap();
        s.set_registration("bea", Some(("sip:bea@10.0.0.2", 300)))
            .unwrap();
        s.set_registration("cy", Some(("sip:cy@10.0.0.3", 100)))
            .unwrap();
        assert_eq!(
            s.registrations(150).unwrap(),
            [("bea".to_string(), "sip:bea@10.0.0.2".to_string(), 300)]
        );
        s.set_registration("bea", None).unwrap();
        assert!(s.registrations(150).unwrap().is_empty());
        s.set_agent_state("bea", "away").unwrap();
        s.set_agent_state("bea", "available").unwrap();
        assert_eq!(
            s.agent_states().unwrap(),
            [("bea".to_string(), "available".to_string())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_of_outage_changes_lands_whole() {
        let dir = std::env::temp_dir().join(format!("ivrd-store-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir).unwrap();
        s.put_outage(&outage("old"), "start").unwrap();
        s.apply_outages(
            &[(outage("x"), "start"), (outage("y"), "start")],
            &["old".into(), "never-existed".into()],
            "alertmanager",
            300,
        )
        .unwrap();
        let mut ids: Vec<String> = s.outages().unwrap().into_keys().collect();
        ids.sort();
        assert_eq!(ids, ["x", "y"]);
        let audit = s.audit(10).unwrap();
        assert_eq!(audit.len(), 4, "one entry per change that happened");
        assert_eq!(audit[0].action, "stop");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
