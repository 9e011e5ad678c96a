//! Durable state in an embedded SQLite file under the state directory: outages, callback
//! requests and the audit log of admin changes. Every write is committed with
//! `synchronous=FULL` in WAL mode, so it survives a restart, `kill -9` and power loss.
//! Blocking: the I/O layer calls it from `spawn_blocking`, never on the async threads.

use crate::outage::{Outage, OutageMap};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const DB_FILE: &str = "ivrd.sqlite";

pub mod callers;

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

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outages (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    caller TEXT NOT NULL,
    flow TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
);
CREATE TABLE IF NOT EXISTS agent_states (
    agent TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registrations (
    agent TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    at INTEGER NOT NULL,
    agent TEXT,
    queue TEXT,
    flow TEXT NOT NULL,
    score INTEGER,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS feedback_by_agent ON feedback (agent, at);
CREATE TABLE IF NOT EXISTS callers (
    number TEXT PRIMARY KEY,
    name TEXT,
    last_intent TEXT,
    last_call_at INTEGER,
    notes TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS callers_by_age ON callers (updated_at);
CREATE TABLE IF NOT EXISTS audit (
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
);
";

/// Columns added since the first schema, for files an older ivrd created.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("callbacks", "queue", "TEXT"),
    ("callbacks", "attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("callbacks", "joined_at_ms", "INTEGER NOT NULL DEFAULT 0"),
];

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let exists: bool = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
            ))?
            .exists([column])?;
        if !exists {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) `DIR/ivrd.sqlite`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        if !dir.exists() {
            // It holds callers' numbers and the admin token: owner only.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Dir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let path = dir.join(DB_FILE);
        let db = |source| StoreError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        migrate(&conn).map_err(db)?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent: keep going.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn outages(&self) -> Result<OutageMap, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, body FROM outages ORDER BY id")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.db_err(e))?;
        let mut out = OutageMap::new();
        for row in rows {
            let (id, body) = row.map_err(|e| self.db_err(e))?;
            let outage: Outage =
                serde_json::from_str(&body).map_err(|source| StoreError::Corrupt {
                    id: id.clone(),
                    source,
                })?;
            out.insert(id, outage);
        }
        Ok(out)
    }

    pub fn outage(&self, id: &str) -> Result<Option<Outage>, StoreError> {
        let conn = self.conn();
        let body: Option<String> = conn
            .query_row("SELECT body FROM outages WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(|e| self.db_err(e))?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|source| StoreError::Corrupt {
                id: id.to_string(),
                source,
            })
        })
        .transpose()
    }

    /// Inserts or replaces an outage and records who did it, in one transaction.
    pub fn put_outage(&self, o: &Outage, action: &str) -> Result<(), StoreError> {
        self.apply_outages(&[(o.clone(), action)], &[], &o.updated_by, o.updated_at)?;
        Ok(())
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
        let bodies = puts
            .iter()
            .map(|(o, _)| {
                serde_json::to_string(o).map_err(|source| StoreError::Corrupt {
                    id: o.spec.id.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db_err(e))?;
        let audit = |at: u64, actor: &str, action: &str, id: &str| {
            tx.execute(
                "INSERT INTO audit (at, actor, action, target) VALUES (?1, ?2, ?3, ?4)",
                params![at as i64, actor, action, id],
            )
            .map_err(|e| self.db_err(e))
        };
        for ((o, action), body) in puts.iter().zip(&bodies) {
            tx.execute(
                "INSERT INTO outages (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = ?2",
                params![o.spec.id, body],
            )
            .map_err(|e| self.db_err(e))?;
            audit(o.updated_at, &o.updated_by, action, &o.spec.id)?;
        }
        let mut existed = 0;
        for id in stops {
            let n = tx
                .execute("DELETE FROM outages WHERE id = ?1", [id])
                .map_err(|e| self.db_err(e))?;
            if n > 0 {
                existed += 1;
                audit(at, actor, "stop", id)?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(existed)
    }

    /// Removes an outage (it has ended); returns whether it existed.
    pub fn delete_outage(&self, id: &str, actor: &str, at: u64) -> Result<bool, StoreError> {
        Ok(self.apply_outages(&[], &[id.to_string()], actor, at)? > 0)
    }

    pub fn add_callback(
        &self,
        caller: &str,
        flow: &str,
        reason: &str,
        at: u64,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO callbacks (caller, flow, reason, requested_at) VALUES (?1, ?2, ?3, ?4)",
            params![caller, flow, reason, at as i64],
        )
        .map_err(|e| self.db_err(e))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn callbacks(&self) -> Result<Vec<Callback>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, caller, flow, reason, requested_at, status, queue, attempts \
                 FROM callbacks ORDER BY id",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Callback {
                    id: r.get(0)?,
                    caller: r.get(1)?,
                    flow: r.get(2)?,
                    reason: r.get(3)?,
                    requested_at: r.get::<_, i64>(4)? as u64,
                    status: r.get(5)?,
                    queue: r.get(6)?,
                    attempts: r.get::<_, i64>(7)? as u32,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
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
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db_err(e))?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM callbacks WHERE caller = ?1 AND queue = ?2 \
                 AND status IN ('waiting', 'calling')",
                params![number, queue],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        if let Some(id) = existing {
            return Ok(Kept::Duplicate(id));
        }
        tx.execute(
            "INSERT INTO callbacks (caller, flow, reason, requested_at, status, queue, \
             attempts, joined_at_ms) VALUES (?1, ?2, ?3, ?4, 'waiting', ?5, 0, ?6)",
            params![
                number,
                flow,
                format!("queue:{queue}"),
                at as i64,
                queue,
                joined_at_ms
            ],
        )
        .map_err(|e| self.db_err(e))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(Kept::New(id))
    }

    /// Kept places still to call back (after a restart: all of them, in their order).
    pub fn kept_places(&self) -> Result<Vec<QueueCallback>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, caller, queue, flow, joined_at_ms, attempts FROM callbacks \
                 WHERE queue IS NOT NULL AND status IN ('waiting', 'calling') \
                 ORDER BY joined_at_ms",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(QueueCallback {
                    id: r.get(0)?,
                    number: r.get(1)?,
                    queue: r.get(2)?,
                    flow: r.get(3)?,
                    joined_at_ms: r.get(4)?,
                    attempts: r.get::<_, i64>(5)? as u32,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
    }

    /// A kept place's new state (`calling`, `waiting`, `connected`, `failed`).
    pub fn set_callback_state(
        &self,
        id: i64,
        status: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE callbacks SET status = ?2, attempts = ?3 WHERE id = ?1",
                params![id, status, attempts as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The state an admin (or the CLI) last set for an agent: `available`, `away` or
    /// `offline`, kept across restarts.
    pub fn set_agent_state(&self, agent: &str, state: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO agent_states (agent, state) VALUES (?1, ?2) \
                 ON CONFLICT(agent) DO UPDATE SET state = ?2",
                params![agent, state],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    pub fn agent_states(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT agent, state FROM agent_states")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
    }

    /// An agent's phone registered from `uri` until `expires_at` (Unix seconds); `None`
    /// removes the binding.
    pub fn set_registration(
        &self,
        agent: &str,
        binding: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let done = match binding {
            Some((uri, expires_at)) => conn.execute(
                "INSERT INTO registrations (agent, uri, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(agent) DO UPDATE SET uri = ?2, expires_at = ?3",
                params![agent, uri, expires_at as i64],
            ),
            None => conn.execute("DELETE FROM registrations WHERE agent = ?1", params![agent]),
        };
        done.map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Bindings that have not run out at `now` (Unix seconds): (agent, uri, expires_at).
    pub fn registrations(&self, now: u64) -> Result<Vec<(String, String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT agent, uri, expires_at FROM registrations WHERE expires_at > ?1")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([now as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
    }

    pub fn add_feedback(&self, f: &Feedback) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO feedback (at, agent, queue, flow, score, comment) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![f.at as i64, f.agent, f.queue, f.flow, f.score, f.comment],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// An agent's feedback, newest first.
    pub fn feedback_for(&self, agent: &str, limit: usize) -> Result<Vec<Feedback>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT at, agent, queue, flow, score, comment FROM feedback WHERE agent = ?1 \
                 ORDER BY at DESC, rowid DESC LIMIT ?2",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![agent, limit as i64], |r| {
                Ok(Feedback {
                    at: r.get::<_, i64>(0)? as u64,
                    agent: r.get(1)?,
                    queue: r.get(2)?,
                    flow: r.get(3)?,
                    score: r.get(4)?,
                    comment: r.get(5)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
    }

    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT at, actor, action, target FROM audit ORDER BY rowid DESC LIMIT ?1")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(AuditEntry {
                    at: r.get::<_, i64>(0)? as u64,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
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
