//! The SQLite back end (the embedded default): one file under the state directory, WAL and
//! `synchronous=FULL`, so every write survives a restart, `kill -9` and power loss.

use super::{AuditEntry, Callback, Feedback, Kept, QueueCallback, StoreError, DB_FILE};
use crate::outage::{Outage, OutageMap};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct SqliteStore {
    path: PathBuf,
    pub(super) conn: Mutex<Connection>,
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

impl SqliteStore {
    /// Opens (creating if needed) `DIR/ivrd.sqlite`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
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
        Ok(SqliteStore {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn db_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
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

impl SqliteStore {
    /// `waiting` (or `calling` before a restart: one node here) -> `calling`; false when
    /// the place is gone (connected, failed).
    pub fn claim_callback(&self, id: i64, attempts: u32) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE callbacks SET status = 'calling', attempts = ?2 \
                 WHERE id = ?1 AND status IN ('waiting', 'calling')",
                params![id, attempts as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }
}
