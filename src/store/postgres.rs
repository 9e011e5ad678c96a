//! The PostgreSQL back end: the state several ivrd nodes share (behind Kamailio).
//!
//! - Outages: every change is followed by `NOTIFY ivrd_outages` in its transaction; each
//!   node LISTENs ([`PgStore::listen_outages`]) and reloads, so an outage started on any
//!   node is announced on all within a fraction of a second.
//! - Kept places: a node takes one with a conditional UPDATE before calling back
//!   ([`PgStore::claim_callback`]), so exactly one node calls; one per number per queue is a
//!   unique index, whichever node the caller reached.
//! - Caller memory, survey feedback, agents' states and registrations, the audit log.
//! - Agents: a node claims an agent before ringing them ([`PgStore::claim_agent`], a lease
//!   it renews) and lets go after the call and its wrap-up, so no agent is rung by two
//!   nodes at once; the claim follows `crate::queue::shared` (the oldest caller on any live
//!   node first: nodes share their waiting callers and a heartbeat). Releases and agent
//!   state or registration changes are followed by `NOTIFY ivrd_agents`, so every node's
//!   board follows within a moment.
//! - Migrations are versioned (`ivrd_migrations`), applied under an advisory lock so nodes
//!   starting together do not race.
//! - Connection loss: the connection is made again on the next use; writes that a call makes
//!   (its caller's memory, a survey answer, a callback request or state) are kept in order
//!   and retried until the database is back, so calls go on and nothing is lost. Admin
//!   changes (outages) fail with an error instead, so the admin knows.

use super::callers::{CallerEdit, CallerRow};
use super::{AuditEntry, Callback, Feedback, Kept, QueueCallback, StoreError};
use crate::outage::{Outage, OutageMap};
use crate::queue::shared::{decide_claim, Claim, ClaimRow, NODE_STALE_MS};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: i64 = 0x1f2d_0001;
/// How long connecting may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Writes kept while the database is away; beyond this the oldest is dropped (and logged).
const MAX_PENDING: usize = 100_000;
/// After a connection failure, agent sharing fails at once for this long instead of waiting
/// on the database again (the queue service must keep serving callers meanwhile).
const AWAY_FOR: Duration = Duration::from_secs(5);
/// A node that claimed a call back and has not finished it this long ago has failed.
const STALE_CLAIM_S: i64 = 600;

const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE outages (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE callbacks (
         id BIGSERIAL PRIMARY KEY,
         caller TEXT NOT NULL,
         flow TEXT NOT NULL,
         reason TEXT NOT NULL,
         requested_at BIGINT NOT NULL,
         status TEXT NOT NULL DEFAULT 'pending',
         queue TEXT,
         attempts INTEGER NOT NULL DEFAULT 0,
         joined_at_ms BIGINT NOT NULL DEFAULT 0,
         node TEXT,
         claimed_at BIGINT);
     CREATE UNIQUE INDEX callbacks_one_kept ON callbacks (caller, queue)
         WHERE status IN ('waiting', 'calling');
     CREATE TABLE agent_states (agent TEXT PRIMARY KEY, state TEXT NOT NULL);
     CREATE TABLE registrations (agent TEXT PRIMARY KEY, uri TEXT NOT NULL, expires_at BIGINT NOT NULL);
     CREATE TABLE feedback (
         id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, agent TEXT, queue TEXT,
         flow TEXT NOT NULL, score SMALLINT, comment TEXT);
     CREATE INDEX feedback_by_agent ON feedback (agent, at);
     CREATE TABLE callers (
         number TEXT PRIMARY KEY, name TEXT, last_intent TEXT, last_call_at BIGINT,
         notes TEXT, updated_at BIGINT NOT NULL);
     CREATE INDEX callers_by_age ON callers (updated_at);
     CREATE TABLE audit (
         id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL,
         action TEXT NOT NULL, target TEXT NOT NULL);",
), (
    2,
    // Agents shared by nodes (see `crate::queue::shared`): which node rings, talks to or
    // wraps up with an agent, until when (a lease the node renews), and since when claims
    // have yielded to an older caller elsewhere; each node's waiting callers; each node's
    // heartbeat (the waiting callers of a node that stopped beating do not count).
    "CREATE TABLE agent_claims (agent TEXT PRIMARY KEY, node TEXT, until_ms BIGINT NOT NULL,
         yielded_ms BIGINT);
     CREATE TABLE queue_waiting (node TEXT NOT NULL, call BIGINT NOT NULL, queue TEXT NOT NULL,
         joined_ms BIGINT NOT NULL, PRIMARY KEY (node, call));
     CREATE INDEX queue_waiting_by_queue ON queue_waiting (queue, joined_ms);
     CREATE TABLE nodes (node TEXT PRIMARY KEY, seen_ms BIGINT NOT NULL);",
)];

/// A write a call made, kept until the database takes it.
#[derive(Debug, Clone)]
enum Write {
    RememberCall {
        number: String,
        intent: Option<String>,
        at: i64,
    },
    Feedback(Feedback),
    Callback {
        caller: String,
        flow: String,
        reason: String,
        at: u64,
    },
    CallbackState {
        id: i64,
        status: String,
        attempts: u32,
    },
    AgentState {
        agent: String,
        state: String,
    },
    Registration {
        agent: String,
        binding: Option<(String, u64)>,
    },
}

pub struct PgStore {
    config: postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
    node: String,
    client: Mutex<Option<Client>>,
    pending: Arc<Mutex<VecDeque<Write>>>,
    /// Agent sharing fails at once until then (the database was just unreachable).
    away_until: Mutex<Option<std::time::Instant>>,
}

impl PgStore {
    /// Connects, applies migrations, and starts the thread that retries kept writes.
    pub fn connect(url: &str, node: &str) -> Result<PgStore, StoreError> {
        let shown = without_password(url);
        let mut config = postgres::Config::from_str(url).map_err(|source| StoreError::Pg {
            url: shown.clone(),
            source,
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let store = PgStore {
            config,
            shown,
            node: node.to_string(),
            client: Mutex::new(None),
            pending: Arc::new(Mutex::new(VecDeque::new())),
            away_until: Mutex::new(None),
        };
        store.with(migrate)?;
        Ok(store)
    }

    pub fn describe(&self) -> String {
        format!("{} (node {})", self.shown, self.node)
    }

    fn err(&self, source: postgres::Error) -> StoreError {
        StoreError::Pg {
            url: self.shown.clone(),
            source,
        }
    }

    /// Runs `f` on the connection, connecting first when there is none; a connection that
    /// broke is dropped and made again once.
    fn with<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let mut tries = 0;
        loop {
            tries += 1;
            if slot.is_none() {
                *slot = Some(self.config.connect(NoTls).map_err(|e| self.err(e))?);
            }
            let client = slot.as_mut().expect("connected above");
            match f(client) {
                Ok(v) => return Ok(v),
                Err(e) if tries < 2 && (client.is_closed() || is_connection_error(&e)) => {
                    *slot = None;
                }
                Err(e) => {
                    if client.is_closed() {
                        *slot = None;
                    }
                    return Err(self.err(e));
                }
            }
        }
    }

    /// [`Self::with`] for agent sharing (claims, releases, waiting callers, heartbeats):
    /// it runs on the queue service's path, so after a connection failure it fails at once
    /// for [`AWAY_FOR`] rather than wait on the database with every offer.
    fn share<T>(
        &self,
        f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let now = std::time::Instant::now();
        let mut away = self.away_until.lock().unwrap_or_else(|p| p.into_inner());
        if away.is_some_and(|until| now < until) {
            return Err(StoreError::Away {
                url: self.shown.clone(),
            });
        }
        drop(away);
        let result = self.with(f);
        if let Err(StoreError::Pg { source, .. }) = &result {
            if is_connection_error(source) {
                away = self.away_until.lock().unwrap_or_else(|p| p.into_inner());
                *away = Some(std::time::Instant::now() + AWAY_FOR);
            }
        }
        result
    }

    /// A write a call made: now, or (the database away) kept in order and retried.
    fn write(&self, w: Write) -> Result<(), StoreError> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            match self.with(|c| apply(c, &self.node, &w)) {
                Ok(()) => return Ok(()),
                Err(StoreError::Pg { source, .. })
                    if !is_connection_error(&source) && !source.is_closed() =>
                {
                    return Err(self.err(source));
                }
                Err(_) => {}
            }
            tracing::warn!(store = %self.shown, "database unreachable: writes are kept and retried");
        }
        if pending.len() >= MAX_PENDING {
            let lost = pending.pop_front();
            tracing::error!(write = ?lost, "too many writes waiting for the database: the oldest is dropped");
        }
        pending.push_back(w);
        Ok(())
    }

    /// Writes waiting for the database.
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Applies kept writes while the database takes them; returns how many are left.
    pub fn flush_pending(&self) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let before = pending.len();
        while let Some(w) = pending.front() {
            match self.with(|c| apply(c, &self.node, w)) {
                Ok(()) => {
                    pending.pop_front();
                }
                Err(StoreError::Pg { source, .. })
                    if !is_connection_error(&source) && !source.is_closed() =>
                {
                    tracing::error!(write = ?w, error = %source, "a kept write was refused: dropped");
                    pending.pop_front();
                }
                Err(_) => break,
            }
        }
        if before > 0 && pending.is_empty() {
            tracing::info!(writes = before, store = %self.shown, "database back: kept writes applied");
        }
        pending.len()
    }

    /// Calls `on_change` whenever any node changes outages (and once after each
    /// (re)connection, for what may have been missed), on a thread of its own.
    pub fn listen_outages(self: &Arc<Self>, on_change: impl Fn() + Send + 'static) {
        self.listen("ivrd_outages", on_change)
    }

    /// Calls `on_change` whenever any node lets an agent go or changes an agent's state or
    /// registration (and once after each (re)connection), on a thread of its own.
    pub fn listen_agents(self: &Arc<Self>, on_change: impl Fn() + Send + 'static) {
        self.listen("ivrd_agents", on_change)
    }

    fn listen(self: &Arc<Self>, channel: &'static str, on_change: impl Fn() + Send + 'static) {
        let me = self.clone();
        std::thread::Builder::new()
            .name(format!("ivrd-pg-{channel}"))
            .spawn(move || {
                let mut backoff = Duration::from_millis(200);
                loop {
                    match me.config.connect(NoTls) {
                        Ok(mut c) => {
                            if c.batch_execute(&format!("LISTEN {channel}")).is_ok() {
                                backoff = Duration::from_millis(200);
                                on_change();
                                loop {
                                    let got = {
                                        let mut n = c.notifications();
                                        let mut it = n.timeout_iter(Duration::from_secs(5));
                                        match it.next() {
                                            Ok(Some(_)) => Ok(true),
                                            Ok(None) => Ok(false),
                                            Err(e) => Err(e),
                                        }
                                    };
                                    // Several changes at once need one reload: drop the
                                    // ones already here (without waiting for more).
                                    while let Ok(Some(_)) = c.notifications().iter().next() {}
                                    match got {
                                        Ok(true) => on_change(),
                                        Ok(false) if c.is_closed() => break,
                                        Ok(false) => {}
                                        Err(_) => break,
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, channel, "notifications: reconnecting")
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            })
            .expect("spawn a thread");
    }

    /// Retries kept writes every second, on a thread of its own.
    pub fn retry_writes(self: &Arc<Self>) {
        let me = self.clone();
        std::thread::Builder::new()
            .name("ivrd-pg-retry".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                if me.pending() > 0 {
                    me.flush_pending();
                }
            })
            .expect("spawn a thread");
    }

    pub fn outages(&self) -> Result<OutageMap, StoreError> {
        let rows = self.with(|c| c.query("SELECT id, body FROM outages ORDER BY id", &[]))?;
        let mut out = OutageMap::new();
        for r in rows {
            let (id, body): (String, String) = (r.get(0), r.get(1));
            let o: Outage = serde_json::from_str(&body).map_err(|source| StoreError::Corrupt {
                id: id.clone(),
                source,
            })?;
            out.insert(id, o);
        }
        Ok(out)
    }

    pub fn outage(&self, id: &str) -> Result<Option<Outage>, StoreError> {
        let row = self.with(|c| c.query_opt("SELECT body FROM outages WHERE id = $1", &[&id]))?;
        row.map(|r| {
            serde_json::from_str(r.get::<_, &str>(0)).map_err(|source| StoreError::Corrupt {
                id: id.to_string(),
                source,
            })
        })
        .transpose()
    }

    pub fn put_outage(&self, o: &Outage, action: &str) -> Result<(), StoreError> {
        self.apply_outages(&[(o.clone(), action)], &[], &o.updated_by, o.updated_at)?;
        Ok(())
    }

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
        let node = self.node.clone();
        self.with(|c| {
            let mut tx = c.transaction()?;
            for ((o, action), body) in puts.iter().zip(&bodies) {
                tx.execute(
                    "INSERT INTO outages (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = $2",
                    &[&o.spec.id, body],
                )?;
                tx.execute(
                    "INSERT INTO audit (at, actor, action, target) VALUES ($1, $2, $3, $4)",
                    &[&(o.updated_at as i64), &o.updated_by, action, &o.spec.id],
                )?;
            }
            let mut existed = 0;
            for id in stops {
                if tx.execute("DELETE FROM outages WHERE id = $1", &[id])? > 0 {
                    existed += 1;
                    tx.execute(
                        "INSERT INTO audit (at, actor, action, target) VALUES ($1, $2, 'stop', $3)",
                        &[&(at as i64), &actor, id],
                    )?;
                }
            }
            tx.execute("SELECT pg_notify('ivrd_outages', $1)", &[&node])?;
            tx.commit()?;
            Ok(existed)
        })
    }

    pub fn delete_outage(&self, id: &str, actor: &str, at: u64) -> Result<bool, StoreError> {
        Ok(self.apply_outages(&[], &[id.to_string()], actor, at)? > 0)
    }

    /// A callback request; while the database is away it is kept (and the id is 0).
    pub fn add_callback(
        &self,
        caller: &str,
        flow: &str,
        reason: &str,
        at: u64,
    ) -> Result<i64, StoreError> {
        self.write(Write::Callback {
            caller: caller.into(),
            flow: flow.into(),
            reason: reason.into(),
            at,
        })?;
        Ok(0)
    }

    pub fn callbacks(&self) -> Result<Vec<Callback>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT id, caller, flow, reason, requested_at, status, queue, attempts FROM callbacks ORDER BY id",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Callback {
                id: r.get(0),
                caller: r.get(1),
                flow: r.get(2),
                reason: r.get(3),
                requested_at: r.get::<_, i64>(4) as u64,
                status: r.get(5),
                queue: r.get(6),
                attempts: r.get::<_, i32>(7) as u32,
            })
            .collect())
    }

    pub fn keep_place(
        &self,
        number: &str,
        queue: &str,
        flow: &str,
        joined_at_ms: i64,
        at: u64,
    ) -> Result<Kept, StoreError> {
        let reason = format!("queue:{queue}");
        self.with(|c| {
            let mut tx = c.transaction()?;
            let new = tx.query_opt(
                "INSERT INTO callbacks (caller, flow, reason, requested_at, status, queue, attempts, joined_at_ms)
                 VALUES ($1, $2, $3, $4, 'waiting', $5, 0, $6)
                 ON CONFLICT (caller, queue) WHERE status IN ('waiting', 'calling') DO NOTHING
                 RETURNING id",
                &[&number, &flow, &reason, &(at as i64), &queue, &joined_at_ms],
            )?;
            let kept = match new {
                Some(r) => Kept::New(r.get(0)),
                None => {
                    let r = tx.query_one(
                        "SELECT id FROM callbacks WHERE caller = $1 AND queue = $2 AND status IN ('waiting', 'calling')",
                        &[&number, &queue],
                    )?;
                    Kept::Duplicate(r.get(0))
                }
            };
            tx.commit()?;
            Ok(kept)
        })
    }

    pub fn kept_places(&self) -> Result<Vec<QueueCallback>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT id, caller, queue, flow, joined_at_ms, attempts FROM callbacks
                 WHERE queue IS NOT NULL AND status IN ('waiting', 'calling') ORDER BY joined_at_ms",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| QueueCallback {
                id: r.get(0),
                number: r.get(1),
                queue: r.get(2),
                flow: r.get(3),
                joined_at_ms: r.get(4),
                attempts: r.get::<_, i32>(5) as u32,
            })
            .collect())
    }

    pub fn set_callback_state(
        &self,
        id: i64,
        status: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        self.write(Write::CallbackState {
            id,
            status: status.into(),
            attempts,
        })
    }

    /// Takes a kept place for this node: waiting, or claimed by this node before (it
    /// restarted), or by a node that has not finished in `STALE_CLAIM_S`.
    pub fn claim_callback(&self, id: i64, attempts: u32) -> Result<bool, StoreError> {
        let now = unix_now();
        let node = self.node.clone();
        let n = self.with(|c| {
            c.execute(
                "UPDATE callbacks SET status = 'calling', attempts = $2, node = $3, claimed_at = $4
                 WHERE id = $1 AND (status = 'waiting'
                     OR (status = 'calling' AND (node = $3 OR claimed_at < $5)))",
                &[&id, &(attempts as i32), &node, &now, &(now - STALE_CLAIM_S)],
            )
        })?;
        Ok(n == 1)
    }

    pub fn set_agent_state(&self, agent: &str, state: &str) -> Result<(), StoreError> {
        self.write(Write::AgentState {
            agent: agent.into(),
            state: state.into(),
        })
    }

    pub fn agent_states(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.with(|c| c.query("SELECT agent, state FROM agent_states", &[]))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub fn set_registration(
        &self,
        agent: &str,
        binding: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        self.write(Write::Registration {
            agent: agent.into(),
            binding: binding.map(|(u, e)| (u.to_string(), e)),
        })
    }

    pub fn registrations(&self, now: u64) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT agent, uri, expires_at FROM registrations WHERE expires_at > $1",
                &[&(now as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
            .collect())
    }

    /// Asks for `agent` for a caller of this node who joined at `joined_ms` (Unix ms) and
    /// waits in one of `queues` (those the agent serves); taken, held until `lease_ms` from
    /// now. The row is locked while [`decide_claim`] decides, so one node wins.
    pub fn claim_agent(
        &self,
        agent: &str,
        lease_ms: i64,
        queues: &[String],
        joined_ms: i64,
    ) -> Result<Claim, StoreError> {
        let me = self.node.as_str();
        self.share(|c| {
            let now = unix_ms();
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO agent_claims (agent, node, until_ms) VALUES ($1, NULL, 0)
                 ON CONFLICT (agent) DO NOTHING",
                &[&agent],
            )?;
            let r = tx.query_one(
                "SELECT node, until_ms, yielded_ms FROM agent_claims WHERE agent = $1 FOR UPDATE",
                &[&agent],
            )?;
            let row = ClaimRow {
                holder: r.get(0),
                until_ms: r.get(1),
                yielded_ms: r.get(2),
            };
            let older_elsewhere: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM queue_waiting w JOIN nodes n ON n.node = w.node
                     WHERE w.node <> $1 AND w.queue = ANY($2) AND w.joined_ms < $3
                       AND n.seen_ms >= $4)",
                    &[&me, &queues, &joined_ms, &(now - NODE_STALE_MS)],
                )?
                .get(0);
            let claim = decide_claim(&row, me, now, older_elsewhere);
            match claim {
                Claim::Taken => tx.execute(
                    "UPDATE agent_claims SET node = $2, until_ms = $3, yielded_ms = NULL
                     WHERE agent = $1",
                    &[&agent, &me, &(now + lease_ms)],
                )?,
                Claim::Yielded => tx.execute(
                    "UPDATE agent_claims SET yielded_ms = COALESCE(yielded_ms, $2) WHERE agent = $1",
                    &[&agent, &now],
                )?,
                Claim::Held => 0,
            };
            tx.commit()?;
            Ok(claim)
        })
    }

    /// Lets go of agents this node holds (`None`: all of them, as at start-up) and tells
    /// the other nodes.
    pub fn release_agents(&self, agents: Option<&[String]>) -> Result<(), StoreError> {
        let node = self.node.clone();
        self.share(|c| {
            let mut tx = c.transaction()?;
            let n = match agents {
                Some(list) => tx.execute(
                    "UPDATE agent_claims SET node = NULL WHERE node = $1 AND agent = ANY($2)",
                    &[&node, &list],
                )?,
                None => tx.execute(
                    "UPDATE agent_claims SET node = NULL WHERE node = $1",
                    &[&node],
                )?,
            };
            if n > 0 {
                tx.execute("SELECT pg_notify('ivrd_agents', $1)", &[&node])?;
            }
            tx.commit()
        })
    }

    /// Extends the leases of the agents this node holds to `lease_ms` from now.
    pub fn renew_agents(&self, agents: &[String], lease_ms: i64) -> Result<(), StoreError> {
        let until = unix_ms() + lease_ms;
        self.share(|c| {
            c.execute(
                "UPDATE agent_claims SET until_ms = $3 WHERE node = $1 AND agent = ANY($2)",
                &[&self.node, &agents, &until],
            )
        })
        .map(|_| ())
    }

    /// Agents other nodes hold now (their lease has not run out).
    pub fn agents_held_elsewhere(&self) -> Result<Vec<String>, StoreError> {
        let rows = self.share(|c| {
            c.query(
                "SELECT agent FROM agent_claims WHERE node IS NOT NULL AND node <> $1 AND until_ms >= $2",
                &[&self.node, &unix_ms()],
            )
        })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// This node's waiting callers changed: `joined` (call, queue, joined at Unix ms) are
    /// new, `left` are gone. With `reset`, every row this node had goes first (start-up).
    pub fn publish_waiting(
        &self,
        joined: &[(i64, String, i64)],
        left: &[i64],
        reset: bool,
    ) -> Result<(), StoreError> {
        let me = self.node.as_str();
        self.share(|c| {
            let mut tx = c.transaction()?;
            if reset {
                tx.execute("DELETE FROM queue_waiting WHERE node = $1", &[&me])?;
            }
            if !left.is_empty() {
                tx.execute(
                    "DELETE FROM queue_waiting WHERE node = $1 AND call = ANY($2)",
                    &[&me, &left],
                )?;
            }
            for (call, queue, at) in joined {
                tx.execute(
                    "INSERT INTO queue_waiting (node, call, queue, joined_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (node, call) DO UPDATE SET queue = $3, joined_ms = $4",
                    &[&me, call, queue, at],
                )?;
            }
            tx.commit()
        })
    }

    /// This node is alive (its waiting callers count for fair order).
    pub fn heartbeat(&self) -> Result<(), StoreError> {
        self.share(|c| {
            c.execute(
                "INSERT INTO nodes (node, seen_ms) VALUES ($1, $2)
                 ON CONFLICT (node) DO UPDATE SET seen_ms = $2",
                &[&self.node, &unix_ms()],
            )
        })
        .map(|_| ())
    }

    pub fn add_feedback(&self, f: &Feedback) -> Result<(), StoreError> {
        self.write(Write::Feedback(f.clone()))
    }

    pub fn feedback_for(&self, agent: &str, limit: usize) -> Result<Vec<Feedback>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT at, agent, queue, flow, score, comment FROM feedback WHERE agent = $1
                 ORDER BY at DESC, id DESC LIMIT $2",
                &[&agent, &(limit as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| Feedback {
                at: r.get::<_, i64>(0) as u64,
                agent: r.get(1),
                queue: r.get(2),
                flow: r.get(3),
                score: r.get::<_, Option<i16>>(4).map(|s| s as u8),
                comment: r.get(5),
            })
            .collect())
    }

    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT at, actor, action, target FROM audit ORDER BY id DESC LIMIT $1",
                &[&(limit as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at: r.get::<_, i64>(0) as u64,
                actor: r.get(1),
                action: r.get(2),
                target: r.get(3),
            })
            .collect())
    }

    pub fn caller_row(&self, number: &str) -> Result<Option<CallerRow>, StoreError> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT number, name, last_intent, last_call_at, notes, updated_at FROM callers WHERE number = $1",
                &[&number],
            )
        })?;
        Ok(row.map(|r| caller_row(&r)))
    }

    pub fn callers(&self, limit: usize, offset: usize) -> Result<Vec<CallerRow>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT number, name, last_intent, last_call_at, notes, updated_at FROM callers
                 ORDER BY updated_at DESC, number LIMIT $1 OFFSET $2",
                &[&(limit as i64), &(offset as i64)],
            )
        })?;
        Ok(rows.iter().map(caller_row).collect())
    }

    pub fn remember_call(
        &self,
        number: &str,
        intent: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        self.write(Write::RememberCall {
            number: number.into(),
            intent: intent.map(str::to_string),
            at,
        })
    }

    pub fn put_callers(
        &self,
        edits: &[CallerEdit],
        actor: &str,
        action_target: &str,
        at: i64,
    ) -> Result<usize, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            for e in edits {
                tx.execute(
                    "INSERT INTO callers (number, name, notes, updated_at) VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), $4)
                     ON CONFLICT (number) DO UPDATE SET
                       name = CASE WHEN $2::TEXT IS NULL THEN callers.name ELSE NULLIF($2, '') END,
                       notes = CASE WHEN $3::TEXT IS NULL THEN callers.notes ELSE NULLIF($3, '') END,
                       updated_at = $4",
                    &[&e.number, &super::callers::clip(&e.name, super::callers::MAX_NAME), &super::callers::clip(&e.notes, super::callers::MAX_NOTES), &at],
                )?;
            }
            tx.execute(
                "INSERT INTO audit (at, actor, action, target) VALUES ($1, $2, 'callers.put', $3)",
                &[&at, &actor, &action_target],
            )?;
            tx.commit()?;
            Ok(edits.len())
        })
    }

    pub fn erase_caller(
        &self,
        number: &str,
        tag: &str,
        actor: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute("DELETE FROM callers WHERE number = $1", &[&number])?;
            if n > 0 {
                tx.execute(
                    "INSERT INTO audit (at, actor, action, target) VALUES ($1, $2, 'callers.erase', $3)",
                    &[&at, &actor, &tag],
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    pub fn purge_callers(&self, before: i64) -> Result<usize, StoreError> {
        self.with(|c| c.execute("DELETE FROM callers WHERE updated_at < $1", &[&before]))
            .map(|n| n as usize)
    }
}

fn caller_row(r: &postgres::Row) -> CallerRow {
    CallerRow {
        number: r.get(0),
        name: r.get(1),
        last_intent: r.get(2),
        last_call_at: r.get(3),
        notes: r.get(4),
        updated_at: r.get(5),
    }
}

/// Applies the migrations this database has not had yet, in order, each in its own
/// transaction, under an advisory lock.
fn migrate(c: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ivrd_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    let have: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM ivrd_migrations", &[])?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO ivrd_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &unix_now()],
        )?;
        tracing::info!(version, "database migrated");
    }
    tx.commit()
}

/// Applies one write; `node` names this node in the notifications it sends.
fn apply(c: &mut Client, node: &str, w: &Write) -> Result<(), postgres::Error> {
    match w {
        Write::RememberCall { number, intent, at } => c.execute(
            "INSERT INTO callers (number, last_intent, last_call_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (number) DO UPDATE SET
               last_intent = COALESCE(excluded.last_intent, callers.last_intent),
               last_call_at = excluded.last_call_at,
               updated_at = excluded.updated_at",
            &[number, intent, at],
        ),
        Write::Feedback(f) => c.execute(
            "INSERT INTO feedback (at, agent, queue, flow, score, comment) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&(f.at as i64), &f.agent, &f.queue, &f.flow, &f.score.map(i16::from), &f.comment],
        ),
        Write::Callback { caller, flow, reason, at } => c.execute(
            "INSERT INTO callbacks (caller, flow, reason, requested_at) VALUES ($1, $2, $3, $4)",
            &[caller, flow, reason, &(*at as i64)],
        ),
        Write::CallbackState { id, status, attempts } => c.execute(
            "UPDATE callbacks SET status = $2, attempts = $3 WHERE id = $1",
            &[id, status, &(*attempts as i32)],
        ),
        Write::AgentState { agent, state } => {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO agent_states (agent, state) VALUES ($1, $2) ON CONFLICT (agent) DO UPDATE SET state = $2",
                &[agent, state],
            )?;
            tx.execute("SELECT pg_notify('ivrd_agents', $1)", &[&node])?;
            tx.commit().map(|()| 0)
        }
        Write::Registration { agent, binding } => {
            let mut tx = c.transaction()?;
            match binding {
                Some((uri, expires)) => tx.execute(
                    "INSERT INTO registrations (agent, uri, expires_at) VALUES ($1, $2, $3)
                     ON CONFLICT (agent) DO UPDATE SET uri = $2, expires_at = $3",
                    &[agent, uri, &(*expires as i64)],
                )?,
                None => tx.execute("DELETE FROM registrations WHERE agent = $1", &[agent])?,
            };
            tx.execute("SELECT pg_notify('ivrd_agents', $1)", &[&node])?;
            tx.commit().map(|()| 0)
        }
    }
    .map(|_| ())
}

/// A lost or refused connection (as opposed to a statement the database rejected).
fn is_connection_error(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_none() && e.as_db_error().is_none()
        || e.code().is_some_and(|c| unavailable(c.code()))
}

/// SQLSTATEs that say the server cannot serve now rather than that it refuses the
/// statement: connection exceptions (class 08), shutting down or starting up (57P01-57P03:
/// a restarted PostgreSQL answers "the database system is starting up" for a moment), too
/// many connections (53300). A write refused this way is kept and retried, not dropped.
fn unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03" | "53300")
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `postgres://user:secret@host/db` -> `postgres://user@host/db`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starting_up_or_shutting_down_is_unavailable_not_a_refusal() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "53300"] {
            assert!(unavailable(code), "{code}");
        }
        // Refusals: the statement is wrong and retrying cannot help.
        for code in ["23505", "42P01", "22001", "42601"] {
            assert!(!unavailable(code), "{code}");
        }
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            without_password("postgres://ivrd:s3cret@127.0.0.1:5432/ivrd"),
            "postgres://ivrd@127.0.0.1:5432/ivrd"
        );
        assert_eq!(
            without_password("host=/run/postgresql dbname=ivrd"),
            "host=/run/postgresql dbname=ivrd"
        );
    }
}
