//! The queue service's task: it owns the pure [`Board`], fires its timers, carries out its
//! events (news to calls, callbacks to place, metrics) and keeps kept places durable.

use super::{CallbackJob, Command, QueueAudio, SEND_PATIENCE};
use crate::call::{CallInput, QueueEvent, QueueReport};
use crate::io::clock::unix_now;
use crate::metrics as m;
use crate::queue::shared::FAIR_GRACE_MS;
use crate::queue::{announcement, AgentState, Board, CallKey, Event, OfferEnd};
use crate::store::Claim;
use crate::store::{Kept, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// A call waiting or talking, as the service knows it.
struct Entry {
    queue: String,
    number: String,
    flow: String,
    events: mpsc::Sender<CallInput<'static>>,
}

/// A kept place: its row and what calling back needs.
#[derive(Clone)]
pub(super) struct KeptPlace {
    pub id: i64,
    pub number: String,
    pub queue: String,
    pub attempts: u32,
}

/// How long a claim on an agent lasts unless renewed (a node that died lets its agents go
/// after this), and how often the claims of calls in progress are renewed.
const CLAIM_LEASE: Duration = Duration::from_secs(60);
const CLAIM_RENEW: Duration = Duration::from_secs(15);
/// The longest the queue service waits on the shared store for agent sharing.
const SHARE_PATIENCE: Duration = Duration::from_millis(500);

/// What the store said of agents when this node last looked: states admins set and phone
/// registrations (agent -> (uri, expires at, Unix seconds)). Changes another node made are
/// the differences.
#[derive(Default)]
pub(super) struct KnownAgents {
    pub states: HashMap<String, String>,
    pub bindings: HashMap<String, (String, u64)>,
}

pub(super) struct Service {
    pub board: Board,
    pub audio: QueueAudio,
    pub queue_names: Vec<String>,
    pub store: Arc<Store>,
    pub kept: HashMap<CallKey, KeptPlace>,
    calls: HashMap<CallKey, Entry>,
    dialer: Option<mpsc::Sender<CallbackJob>>,
    /// Callbacks whose turn came before the dialer was there (at start-up).
    due_early: Vec<(CallKey, String)>,
    /// The store is shared with other nodes: agents are claimed before they are rung.
    shared: bool,
    /// Agents this node claimed (ringing, talking, wrapping up here).
    claimed: HashSet<String>,
    known: KnownAgents,
    /// Waiting callers this node has shared, and whether its old rows must go first.
    published: HashSet<CallKey>,
    reset_waiting: bool,
    /// A claim yielded to an older caller elsewhere: look again when its grace is over.
    sync_at: Option<Instant>,
}

impl Service {
    pub fn new(
        board: Board,
        audio: QueueAudio,
        queue_names: Vec<String>,
        store: Arc<Store>,
        kept: HashMap<CallKey, KeptPlace>,
        known: KnownAgents,
    ) -> Service {
        Service {
            shared: store.postgres().is_some(),
            claimed: HashSet::new(),
            known,
            published: HashSet::new(),
            reset_waiting: true,
            sync_at: None,
            board,
            audio,
            queue_names,
            store,
            kept,
            calls: HashMap::new(),
            dialer: None,
            due_early: Vec::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut renew = tokio::time::interval(CLAIM_RENEW);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.board.poll_timeout();
            let sync_at = self.sync_at;
            let sync_due = async {
                match sync_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => return,
                },
                _ = sleep => self.board.handle_timeout(Instant::now()),
                _ = renew.tick(), if self.shared => {
                    self.renew_claims().await;
                    self.sync_agents().await;
                }
                _ = sync_due => {
                    self.sync_at = None;
                    self.sync_agents().await;
                }
            }
            self.carry_out().await;
            if self.shared {
                self.release_done().await;
                self.publish_waiting(Instant::now()).await;
            }
            self.record_gauges();
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join {
                call,
                queue,
                number,
                flow,
                events,
            } => {
                let hold = self.audio.hold.get(&queue).cloned().unwrap_or_default();
                let _ = events.try_send(CallInput::Queue(QueueEvent::Joined { hold }));
                let entry = Entry {
                    queue: queue.clone(),
                    number,
                    flow,
                    events,
                };
                self.calls.insert(call, entry);
                if let Err(e) = self.board.join(now, &queue, call) {
                    // The flow was checked against the config: only after a reload
                    // that removed the queue from under a running flow.
                    debug!(error = %e, "join");
                    self.tell(call, QueueEvent::NoAgents).await;
                    self.calls.remove(&call);
                }
            }
            Command::Report { call, report } => self.on_report(now, call, report).await,
            Command::CallbackEnded { call, reached } => {
                if self.kept.contains_key(&call) && !self.board.is_waiting(call) {
                    // The returned call left the queue another way (timed out, nobody
                    // serving): the place is gone, and so is its row.
                    if let Some(k) = self.kept.remove(&call) {
                        metrics::counter!(m::CALLBACKS_TOTAL, "state" => "given_up").increment(1);
                        self.save(k.id, "failed", k.attempts + 1).await;
                    }
                } else if let Some(k) = self.kept.get_mut(&call) {
                    // The call back ended before an agent took it: another attempt.
                    k.attempts += 1;
                    let (id, attempts) = (k.id, k.attempts);
                    info!(callback = id, attempts, reached, "callback attempt failed");
                    metrics::counter!(m::CALLBACKS_TOTAL, "state" => "retry").increment(1);
                    self.save(id, "waiting", attempts).await;
                    self.board.callback_failed(now, call);
                }
            }
            Command::KeepPlaceIn {
                queue,
                number,
                flow,
            } => self.keep_place_in(now, queue, number, flow).await,
            Command::Register {
                agent,
                uri,
                expires,
            } => {
                let result = match uri {
                    Some(uri) => {
                        let until = unix_now() + expires.as_secs();
                        self.known
                            .bindings
                            .insert(agent.clone(), (uri.clone(), until));
                        self.board.register(now, &agent, &uri, expires)
                    }
                    None => {
                        self.known.bindings.remove(&agent);
                        self.board.unregister(now, &agent)
                    }
                };
                if let Err(e) = result {
                    warn!(agent = %agent, error = %e, "registration");
                }
            }
            Command::Dialer(tx) => {
                self.dialer = Some(tx);
                for (call, agent) in std::mem::take(&mut self.due_early) {
                    self.call_back(now, call, agent).await;
                }
            }
            Command::SetAgent { id, state, reply } => {
                let result = self.board.set_state(now, &id, state).map(|()| {
                    self.board
                        .agent(&id)
                        .expect("the board just changed this agent")
                });
                if let Ok(a) = &result {
                    info!(agent = %a.id, state = a.state.as_str(), "agent state set");
                    self.known
                        .states
                        .insert(id.clone(), state.as_str().to_string());
                    let store = self.store.clone();
                    let saved = tokio::task::spawn_blocking(move || {
                        store.set_agent_state(&id, state.as_str())
                    })
                    .await;
                    if !matches!(saved, Ok(Ok(()))) {
                        error!("agent state NOT stored (lost at a restart)");
                    }
                }
                let _ = reply.send(result);
            }
            Command::Agents(reply) => {
                let _ = reply.send((now, self.board.agents()));
            }
            Command::Queues(reply) => {
                let _ = reply.send(self.board.queues(now));
            }
            Command::AgentsChanged => self.sync_agents().await,
        }
    }

    /// Asks the store for `agent` before ringing them for `call`. False when another node
    /// holds them, or has a caller who waited longer: the board skips the agent until that
    /// node lets go (or, having yielded, until the grace runs out: a sync is due then).
    /// With the database away the agent is rung all the same (callers are served; at worst
    /// two nodes ring one phone).
    async fn claim(&mut self, now: Instant, call: CallKey, agent: &str) -> bool {
        if !self.shared {
            return true;
        }
        let id = agent.to_string();
        let queues = self
            .board
            .agent(agent)
            .map(|a| a.queues)
            .unwrap_or_default();
        let joined = self.board.joined(call).unwrap_or(now);
        let joined_ms = unix_ms_at(now, joined);
        let asked = self
            .shared(move |store| store.claim_agent(&id, CLAIM_LEASE, &queues, joined_ms))
            .await;
        match asked {
            Ok(Claim::Taken) => {}
            Ok(held @ (Claim::Held | Claim::Yielded)) => {
                debug!(agent, call, ?held, "agent left to another node");
                self.board.taken_elsewhere(now, call, agent);
                if held == Claim::Yielded {
                    let at = now + Duration::from_millis(FAIR_GRACE_MS as u64 + 100);
                    self.sync_at = Some(self.sync_at.map_or(at, |t| t.min(at)));
                }
                return false;
            }
            Err(e) => warn!(agent, error = %e, "agent claim not stored: ringing anyway"),
        }
        self.claimed.insert(agent.to_string());
        true
    }

    /// Agent sharing `f` on a blocking thread, waited on for at most [`SHARE_PATIENCE`]:
    /// a slow database does not hold up the callers this service serves (a late answer is
    /// dropped; each use says what happens then).
    async fn shared<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        let job = tokio::task::spawn_blocking(move || f(&store));
        match tokio::time::timeout(SHARE_PATIENCE, job).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer from the store within {SHARE_PATIENCE:?}"
            )),
        }
    }

    /// Shares the callers waiting here that changed since last time (for fair order).
    async fn publish_waiting(&mut self, now: Instant) {
        let current: HashMap<CallKey, (String, Instant)> = self
            .board
            .waiting_calls()
            .into_iter()
            .map(|(call, queue, joined)| (call, (queue.to_string(), joined)))
            .collect();
        let joined: Vec<(i64, String, i64)> = current
            .iter()
            .filter(|(call, _)| !self.published.contains(call))
            .map(|(call, (queue, at))| (*call as i64, queue.clone(), unix_ms_at(now, *at)))
            .collect();
        let left: Vec<i64> = self
            .published
            .iter()
            .filter(|call| !current.contains_key(call))
            .map(|call| *call as i64)
            .collect();
        if joined.is_empty() && left.is_empty() && !self.reset_waiting {
            return;
        }
        let reset = self.reset_waiting;
        let done = self
            .shared(move |store| store.publish_waiting(&joined, &left, reset))
            .await;
        if done.is_ok() {
            self.published = current.into_keys().collect();
            self.reset_waiting = false;
        } else {
            // Tried again with the next change or tick; fair order is off meanwhile.
            debug!("waiting callers not shared");
        }
    }

    /// Lets go of claimed agents the board no longer rings, talks to or wraps up with here.
    async fn release_done(&mut self) {
        if self.claimed.is_empty() {
            return;
        }
        let done: Vec<String> = self
            .claimed
            .iter()
            .filter(|id| {
                !self.board.agent(id).is_some_and(|a| {
                    matches!(
                        a.state,
                        AgentState::Ringing | AgentState::Talking | AgentState::WrapUp
                    )
                })
            })
            .cloned()
            .collect();
        if done.is_empty() {
            return;
        }
        for id in &done {
            self.claimed.remove(id);
        }
        let released = self
            .shared(move |store| store.release_agents(Some(&done)))
            .await;
        if released.is_err() {
            // The lease runs out on its own.
            warn!("agents not released in the store: other nodes wait for the lease");
        }
    }

    /// Renews the leases of agents held here, and this node's heartbeat.
    async fn renew_claims(&mut self) {
        let held = self.claimed.iter().cloned().collect::<Vec<_>>();
        let renewed = self
            .shared(move |store| {
                store.heartbeat()?;
                if held.is_empty() {
                    return Ok(());
                }
                store.renew_agents(&held, CLAIM_LEASE)
            })
            .await;
        if renewed.is_err() {
            warn!("agent claims or heartbeat not renewed");
        }
    }

    /// Brings the board up to date with what other nodes did: agents they let go are free
    /// here, states admins set and phones that registered or left through them apply here.
    async fn sync_agents(&mut self) {
        let read = self
            .shared(|store| {
                Ok((
                    store.agents_held_elsewhere()?,
                    store.agent_states()?,
                    store.registrations(unix_now())?,
                ))
            })
            .await;
        let (held, states, bindings) = match read {
            Ok(r) => r,
            Err(e) => return debug!(error = %e, "agents not synced"),
        };
        let now = Instant::now();
        let held: HashSet<String> = held.into_iter().collect();
        let free: Vec<String> = self
            .board
            .agents()
            .into_iter()
            .filter(|a| a.state == AgentState::Elsewhere && !held.contains(&a.id))
            .map(|a| a.id)
            .collect();
        for id in free {
            self.board.free_elsewhere(now, &id);
        }
        for (agent, state) in states {
            if self.known.states.get(&agent) == Some(&state) {
                continue;
            }
            if let Some(s) = AgentState::parse(&state) {
                if self.board.set_state(now, &agent, s).is_ok() {
                    info!(agent = %agent, state = %state, "agent state set on another node");
                }
            }
            self.known.states.insert(agent, state);
        }
        let now_s = unix_now();
        let mut gone: HashSet<String> = self.known.bindings.keys().cloned().collect();
        for (agent, uri, until) in bindings {
            gone.remove(&agent);
            let binding = (uri, until);
            if self.known.bindings.get(&agent) == Some(&binding) {
                continue;
            }
            let left = Duration::from_secs(until.saturating_sub(now_s));
            if self.board.register(now, &agent, &binding.0, left).is_ok() {
                debug!(agent = %agent, "registration made on another node");
            }
            self.known.bindings.insert(agent, binding);
        }
        for agent in gone {
            self.known.bindings.remove(&agent);
            let _ = self.board.unregister(now, &agent);
        }
    }

    async fn on_report(&mut self, now: Instant, call: CallKey, report: QueueReport) {
        match report {
            QueueReport::Leave => {
                self.board.leave(now, call);
                self.calls.remove(&call);
                if let Some(k) = self.kept.remove(&call) {
                    // Called back, then hung up before an agent answered.
                    metrics::counter!(m::CALLBACKS_TOTAL, "state" => "abandoned").increment(1);
                    self.save(k.id, "abandoned", k.attempts + 1).await;
                }
            }
            QueueReport::KeepPlace => self.keep_place(now, call).await,
            QueueReport::Answered { agent } => self.board.answered(now, call, &agent),
            QueueReport::OfferFailed { agent, why } => {
                self.board.offer_failed(now, call, &agent, why)
            }
            QueueReport::TalkEnded { agent } => {
                self.board.talk_ended(now, &agent);
                self.calls.remove(&call);
            }
        }
    }

    /// The caller took the callback offer: their place is kept durably (one per number per
    /// queue: a second one collapses into the first) and the call may end.
    async fn keep_place(&mut self, now: Instant, call: CallKey) {
        let Some(entry) = self.calls.get(&call) else {
            return;
        };
        let (number, queue, flow) = (
            entry.number.clone(),
            entry.queue.clone(),
            entry.flow.clone(),
        );
        if !dialable(&number) || self.dialer.is_none() {
            info!("callback refused: no number to call back");
            return self.tell(call, QueueEvent::CallbackRefused).await;
        }
        let joined = self.board.joined(call).unwrap_or(now);
        let joined_ms = unix_ms() - now.saturating_duration_since(joined).as_millis() as i64;
        if let Err(e) = self.board.keep_place(now, call) {
            info!(error = %e, "callback refused");
            return self.tell(call, QueueEvent::CallbackRefused).await;
        }
        let store = self.store.clone();
        let (n, q) = (number.clone(), queue.clone());
        let kept = tokio::task::spawn_blocking(move || {
            store.keep_place(&n, &q, &flow, joined_ms, unix_now())
        })
        .await;
        match kept {
            Ok(Ok(Kept::New(id))) => {
                info!(callback = id, queue = %queue, "place kept for a callback");
                metrics::counter!(m::CALLBACKS_TOTAL, "state" => "kept").increment(1);
                self.kept.insert(
                    call,
                    KeptPlace {
                        id,
                        number,
                        queue,
                        attempts: 0,
                    },
                );
            }
            Ok(Ok(Kept::Duplicate(id))) => {
                // This number already has a place here: that one stays, this one goes.
                info!(callback = id, "callback already kept for this number");
                metrics::counter!(m::CALLBACKS_TOTAL, "state" => "duplicate").increment(1);
                self.board.leave(now, call);
            }
            Ok(Err(e)) => {
                error!(error = %e, "kept place NOT stored (kept in memory only)");
                self.kept_in_memory(call, number, queue);
            }
            Err(e) => {
                error!(error = %e, "kept place NOT stored (kept in memory only)");
                self.kept_in_memory(call, number, queue);
            }
        }
        let confirm = self.audio.callback_kept.clone();
        self.tell(call, QueueEvent::PlaceKept { confirm }).await;
        self.calls.remove(&call);
    }

    /// A place the store could not take: it is called back all the same (until a restart).
    fn kept_in_memory(&mut self, call: CallKey, number: String, queue: String) {
        let place = KeptPlace {
            id: -1,
            number,
            queue,
            attempts: 0,
        };
        self.kept.insert(call, place);
    }

    /// A callback node's request: a place at the back of the queue, kept like the others.
    /// A number that cannot be called back becomes a request for people to act on.
    async fn keep_place_in(&mut self, now: Instant, queue: String, number: String, flow: String) {
        let store = self.store.clone();
        if !dialable(&number) || self.dialer.is_none() {
            let reason = format!("queue:{queue}");
            let _ = tokio::task::spawn_blocking(move || {
                store.add_callback(&number, &flow, &reason, unix_now())
            })
            .await;
            metrics::counter!(m::CALLBACKS_TOTAL, "state" => "requested").increment(1);
            return;
        }
        let (n, q) = (number.clone(), queue.clone());
        let kept = tokio::task::spawn_blocking(move || {
            store.keep_place(&n, &q, &flow, unix_ms(), unix_now())
        })
        .await;
        match kept {
            Ok(Ok(Kept::New(id))) => {
                let key = super::RESTORED_KEYS + id as CallKey;
                if let Err(e) = self.board.add_callback(now, &queue, key) {
                    warn!(error = %e, "callback place not kept");
                    self.save(id, "failed", 0).await;
                    return;
                }
                info!(callback = id, queue = %queue, "place kept for a callback");
                metrics::counter!(m::CALLBACKS_TOTAL, "state" => "kept").increment(1);
                let place = KeptPlace {
                    id,
                    number,
                    queue,
                    attempts: 0,
                };
                self.kept.insert(key, place);
            }
            Ok(Ok(Kept::Duplicate(id))) => {
                info!(callback = id, "callback already kept for this number");
                metrics::counter!(m::CALLBACKS_TOTAL, "state" => "duplicate").increment(1);
            }
            _ => error!("kept place NOT stored"),
        }
    }

    async fn carry_out(&mut self) {
        loop {
            let events: Vec<Event> = std::iter::from_fn(|| self.board.poll_event()).collect();
            if events.is_empty() {
                return;
            }
            for event in events {
                self.on_event(event).await;
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        let (call, news, agent) = match event {
            Event::Position {
                call,
                position,
                estimate,
                callback,
            } => {
                debug!(call, position, estimate_s = ?estimate.map(|e| e.as_secs()), callback, "queue position");
                let mut prompts = announcement(position, estimate, &self.audio.phrases);
                if callback {
                    prompts.extend(self.audio.callback_offer.iter().cloned());
                }
                (call, QueueEvent::Announce { prompts, callback }, None)
            }
            Event::Offer {
                call,
                agent,
                uri,
                ring_timeout,
            } => {
                if !self.claim(now, call, &agent).await {
                    return;
                }
                let news = QueueEvent::Offer {
                    agent: agent.clone(),
                    uri,
                    ring_timeout,
                };
                (call, news, Some(agent))
            }
            Event::Withdraw { call, agent } => (call, QueueEvent::Withdraw { agent }, None),
            Event::TimedOut { call } | Event::NoAgents { call } => {
                let (reason, news) = match event {
                    Event::TimedOut { .. } => ("timeout", QueueEvent::TimedOut),
                    _ => ("no_agents", QueueEvent::NoAgents),
                };
                if let Some(k) = self.kept.remove(&call) {
                    // A called-back caller sent on: their place is gone.
                    metrics::counter!(m::CALLBACKS_TOTAL, "state" => "given_up").increment(1);
                    self.save(k.id, "failed", k.attempts + 1).await;
                }
                if let Some(entry) = self.calls.remove(&call) {
                    metrics::counter!(m::QUEUE_EXITS_TOTAL, "queue" => entry.queue, "reason" => reason)
                        .increment(1);
                    let _ = entry
                        .events
                        .send_timeout(CallInput::Queue(news), SEND_PATIENCE)
                        .await;
                }
                return;
            }
            Event::CallbackDue { call, agent } => {
                if self.claim(now, call, &agent).await {
                    self.call_back(now, call, agent).await;
                }
                return;
            }
            Event::CallbackGaveUp { call } => {
                if let Some(k) = self.kept.remove(&call) {
                    warn!(callback = k.id, attempts = k.attempts, "callback given up");
                    metrics::counter!(m::CALLBACKS_TOTAL, "state" => "given_up").increment(1);
                    self.save(k.id, "failed", k.attempts).await;
                }
                return;
            }
            Event::Connected {
                call,
                queue,
                waited,
                predicted,
                callback,
            } => {
                metrics::histogram!(m::QUEUE_WAIT_SECONDS, "queue" => queue)
                    .record(waited.as_secs_f64());
                if let Some(p) = predicted {
                    let error = waited.abs_diff(p);
                    metrics::histogram!(m::WAIT_ESTIMATE_ERROR_SECONDS).record(error.as_secs_f64());
                }
                if let Some(k) = self.kept.remove(&call).filter(|_| callback) {
                    info!(callback = k.id, "called back and connected");
                    metrics::counter!(m::CALLBACKS_TOTAL, "state" => "connected").increment(1);
                    self.save(k.id, "connected", k.attempts + 1).await;
                }
                return;
            }
            Event::Abandoned { queue, .. } => {
                metrics::counter!(m::QUEUE_ABANDONED_TOTAL, "queue" => queue).increment(1);
                return;
            }
        };
        let delivered = match self.calls.get(&call) {
            Some(entry) => entry
                .events
                .send_timeout(CallInput::Queue(news), SEND_PATIENCE)
                .await
                .is_ok(),
            None => false,
        };
        if !delivered {
            // The call is gone without saying so (its task ended): it leaves the queue,
            // and an agent rung for it is free again.
            if let Some(agent) = agent {
                self.board.offer_failed(now, call, &agent, OfferEnd::Failed);
            }
            if !self.kept.contains_key(&call) {
                self.board.leave(now, call);
            }
            self.calls.remove(&call);
        }
    }

    /// A kept place's turn: an agent is reserved; call the caller.
    async fn call_back(&mut self, now: Instant, call: CallKey, agent: String) {
        let Some(k) = self.kept.get(&call).cloned() else {
            // Not ours to call (lost its row): the reserved agent goes back.
            self.board.callback_failed(now, call);
            return;
        };
        let Some(dialer) = self.dialer.clone() else {
            // Starting up: the agent stays reserved until the SIP side can call.
            self.due_early.push((call, agent));
            return;
        };
        // Exactly one node calls a kept place back (with a shared store, every node knows it).
        let store = self.store.clone();
        let (id, attempts) = (k.id, k.attempts);
        match tokio::task::spawn_blocking(move || store.claim_callback(id, attempts)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                info!(callback = k.id, "another node is calling this caller back");
                self.kept.remove(&call);
                self.board.callback_taken_elsewhere(now, call);
                return;
            }
            _ => {
                warn!(callback = k.id, "cannot claim the call back now: it waits");
                self.board.callback_failed(now, call);
                return;
            }
        }
        info!(callback = k.id, agent = %agent, attempt = k.attempts + 1, "calling back");
        metrics::counter!(m::CALLBACKS_TOTAL, "state" => "calling").increment(1);
        let job = CallbackJob {
            key: call,
            number: k.number,
            queue: k.queue,
        };
        if dialer.send(job).await.is_err() {
            self.board.callback_failed(now, call);
        }
    }

    async fn tell(&self, call: CallKey, news: QueueEvent) {
        if let Some(entry) = self.calls.get(&call) {
            let _ = entry
                .events
                .send_timeout(CallInput::Queue(news), SEND_PATIENCE)
                .await;
        }
    }

    async fn save(&self, id: i64, status: &'static str, attempts: u32) {
        let store = self.store.clone();
        let done =
            tokio::task::spawn_blocking(move || store.set_callback_state(id, status, attempts))
                .await;
        if !matches!(done, Ok(Ok(()))) {
            error!(callback = id, status, "callback state NOT stored");
        }
    }

    fn record_gauges(&self) {
        for (state, n) in self.board.agent_counts() {
            metrics::gauge!(m::AGENTS, "state" => state.as_str()).set(n as f64);
        }
        let now = Instant::now();
        for (q, name) in self.board.queues(now).iter().zip(&self.queue_names) {
            metrics::gauge!(m::QUEUE_WAITING, "queue" => name.clone()).set(q.waiting as f64);
        }
    }
}

/// A number ivrd can call back: a SIP user part of digits and dial characters, or a name.
fn dialable(number: &str) -> bool {
    !number.is_empty()
        && number.len() <= 64
        && number != "anonymous"
        && number
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.*#_".contains(c))
}

/// `at` (an instant not after `now`) in Unix milliseconds.
fn unix_ms_at(now: Instant, at: Instant) -> i64 {
    unix_ms() - now.saturating_duration_since(at).as_millis() as i64
}

pub(super) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}
