//! Queues and agents as one pure board: who waits where, which agent is free, who is rung
//! next, and what a caller is told about the wait. The io side feeds it what happens (a
//! caller joins or leaves, an agent's phone answers or not, a talk ends, an admin changes
//! an agent's state) with the current time and carries out the [`Event`]s it gives back.
//!
//! Customer-service rules it encodes:
//! - The caller who has waited longest gets the next free agent, across queues that share
//!   agents (fair order), and an agent who has just finished gets their wrap-up time.
//! - A caller is never left with nobody: a queue whose agents are all away or offline says
//!   so at once (`NoAgents`), and so does a queue whose last agent leaves while callers wait.
//! - An agent who does not answer or is busy is skipped for that caller for a while; the
//!   caller keeps their place and the next agent is rung.
//! - The wait is estimated from the queue's recent handle times and the agents serving it;
//!   with no handle times yet there is no estimate (and the caller hears a no-data wording).
//! - A caller who cannot wait keeps their place: a callback waiter stays in the line where
//!   the caller was. When their turn comes an agent is reserved first, then the caller is
//!   called (`CallbackDue`); the returning call takes the reserved agent. A callback that
//!   does not reach the caller is retried with backoff, up to a limit, keeping its place.

mod announce;
pub mod shared;
#[cfg(test)]
mod tests;

pub use announce::{announcement, Phrases};

use indexmap::IndexMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A waiting call, as the io side names it.
pub type CallKey = u64;

/// An agent skipped after no answer or busy is rung again for the same caller after this.
pub const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Handle times kept per queue for the estimate (the most recent ones).
const HANDLE_TIMES_KEPT: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    Available,
    Ringing,
    Talking,
    WrapUp,
    Away,
    Offline,
    /// Ringing, talking or wrapping up through another node (state shared in PostgreSQL):
    /// serving, but not to be offered here until that node lets the agent go.
    Elsewhere,
}

impl AgentState {
    pub const ALL: [AgentState; 7] = [
        AgentState::Available,
        AgentState::Ringing,
        AgentState::Talking,
        AgentState::WrapUp,
        AgentState::Away,
        AgentState::Offline,
        AgentState::Elsewhere,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Available => "available",
            AgentState::Ringing => "ringing",
            AgentState::Talking => "talking",
            AgentState::WrapUp => "wrap_up",
            AgentState::Away => "away",
            AgentState::Offline => "offline",
            AgentState::Elsewhere => "elsewhere",
        }
    }

    pub fn parse(s: &str) -> Option<AgentState> {
        AgentState::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the agent counts as serving their queues (logged in, possibly busy).
    fn serving(self) -> bool {
        !matches!(self, AgentState::Away | AgentState::Offline)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The agent idle the longest rings first.
    LongestIdle,
    /// Every free agent rings; the first to answer takes the call.
    RingAll,
    /// Agents take turns in the order the queue lists them.
    RoundRobin,
}

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub id: String,
    pub name: String,
    /// Where the agent is rung; empty for an agent who logs in with REGISTER (their phone's
    /// Contact is used while registered).
    pub uri: String,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub name: String,
    /// Agent ids, in the order round robin follows.
    pub agents: Vec<String>,
    pub strategy: Strategy,
    /// How long an agent's phone rings before the next agent is tried.
    pub ring_timeout: Duration,
    /// After a talk, how long the agent has before the next call.
    pub wrap_up: Duration,
    /// The longest a caller waits before `TimedOut` (None: no limit).
    pub max_wait: Option<Duration>,
    /// How often a waiting caller hears their position again (None: only on joining).
    pub announce_every: Option<Duration>,
    /// Offer to keep the caller's place and call back when the estimate is longer (None:
    /// never).
    pub callback_after: Option<Duration>,
    /// The handle time estimates assume before the queue has any (None: no estimate).
    pub handle_time: Option<Duration>,
}

/// How callbacks are placed, for every queue.
#[derive(Debug, Clone)]
pub struct CallbackPolicy {
    /// Callbacks waiting in one queue at most (more are not offered).
    pub max_per_queue: usize,
    /// Calls placed to the caller before the callback is given up.
    pub attempts: u32,
    /// Wait before the second attempt; it doubles for each one after.
    pub retry: Duration,
}

impl Default for CallbackPolicy {
    fn default() -> Self {
        CallbackPolicy {
            max_per_queue: 0,
            attempts: 3,
            retry: Duration::from_secs(60),
        }
    }
}

/// What the board asks the io side to do, or tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Tell the caller their place and the estimated wait.
    Position {
        call: CallKey,
        position: usize,
        estimate: Option<Duration>,
        /// Offer to keep the place and call back (the estimate is past `callback_after`).
        callback: bool,
    },
    /// A callback's turn: `agent` is reserved; call the caller back now. Answer with
    /// `join` (the returning call, same key) or `callback_failed`.
    CallbackDue { call: CallKey, agent: String },
    /// A callback reached no one after every attempt; it has left the queue.
    CallbackGaveUp { call: CallKey },
    /// Ring this agent for this caller; answer with `answered` or `offer_failed`.
    Offer {
        call: CallKey,
        agent: String,
        uri: String,
        ring_timeout: Duration,
    },
    /// Stop ringing this agent for this caller (another agent answered, or the caller left).
    Withdraw { call: CallKey, agent: String },
    /// The caller waited `max_wait`; they have left the queue.
    TimedOut { call: CallKey },
    /// Nobody serves the queue; the caller has left it (or was never added).
    NoAgents { call: CallKey },
    /// An agent took the call: for the wait metrics.
    Connected {
        call: CallKey,
        queue: String,
        waited: Duration,
        predicted: Option<Duration>,
        /// The call was a callback.
        callback: bool,
    },
    /// A caller left without reaching an agent: for the abandon metric.
    Abandoned { queue: String, waited: Duration },
}

/// Why ringing an agent did not get the call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferEnd {
    NoAnswer,
    Busy,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("no queue named '{0}'")]
    UnknownQueue(String),
    #[error("no agent with id '{0}'")]
    UnknownAgent(String),
    #[error("agent state '{0}' follows calls and cannot be set by hand (use available, away or offline)")]
    NotSettable(&'static str),
    #[error("the caller is not waiting in a queue")]
    NotWaiting,
    #[error("queue '{0}' keeps no more callbacks")]
    CallbacksFull(String),
}

#[derive(Debug, Clone)]
struct Agent {
    settings: AgentSettings,
    state: AgentState,
    since: Instant,
    /// When the agent last became available (longest idle goes first).
    idle_since: Instant,
    /// Set by hand while on a call: applied when the call and its wrap-up end.
    after_call: Option<AgentState>,
    /// Wrap-up ends then.
    wrap_up_until: Option<Instant>,
    /// The talk in progress: its queue and when it started (for handle times).
    talk: Option<(usize, Instant)>,
    /// A REGISTERed agent's binding ends then (they are offline after it).
    registered_until: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Waiter {
    call: CallKey,
    joined: Instant,
    predicted: Option<Duration>,
    next_announce: Option<Instant>,
    /// Agents being rung for this caller now.
    offers: Vec<String>,
    /// Agents that did not take this caller, and when: skipped until `RETRY_PAUSE` passed.
    tried: Vec<(String, Instant)>,
    /// Set when the caller is to be called back instead of waiting on the line.
    callback: Option<Callback>,
}

#[derive(Debug, Clone, Copy)]
struct Callback {
    /// Calls placed so far.
    attempts: u32,
    /// Not before then (after a failed attempt).
    retry_at: Option<Instant>,
    /// The returning call has joined: from now on this is a live waiter.
    live: bool,
}

impl Waiter {
    /// Waiting on the line (not a callback that has not called back yet).
    fn live(&self) -> bool {
        self.callback.is_none_or(|c| c.live)
    }
}

#[derive(Debug, Clone)]
struct Queue {
    settings: QueueSettings,
    waiting: VecDeque<Waiter>,
    handle_times: VecDeque<Duration>,
    /// Round robin: index into `settings.agents` of the next to try.
    cursor: usize,
}

/// A snapshot of one agent, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub uri: String,
    pub state: AgentState,
    pub since: Instant,
    pub after_call: Option<AgentState>,
    pub queues: Vec<String>,
}

/// A snapshot of one queue, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    pub name: String,
    pub waiting: usize,
    pub longest_wait: Option<Duration>,
    pub serving_agents: usize,
    pub available_agents: usize,
    /// The estimated wait of a caller joining now.
    pub estimate: Option<Duration>,
    pub average_handle_time: Option<Duration>,
}

pub struct Board {
    agents: IndexMap<String, Agent>,
    queues: Vec<Queue>,
    events: VecDeque<Event>,
    callbacks: CallbackPolicy,
}

impl Board {
    /// Agents with a fixed URI start available: they are reachable as soon as ivrd runs.
    /// Agents who log in start offline until their phone registers.
    pub fn new(now: Instant, agents: Vec<AgentSettings>, queues: Vec<QueueSettings>) -> Self {
        let agents = agents
            .into_iter()
            .map(|settings| {
                let state = if settings.uri.is_empty() {
                    AgentState::Offline
                } else {
                    AgentState::Available
                };
                let agent = Agent {
                    settings,
                    state,
                    registered_until: None,
                    since: now,
                    idle_since: now,
                    after_call: None,
                    wrap_up_until: None,
                    talk: None,
                };
                (agent.settings.id.clone(), agent)
            })
            .collect();
        let queues = queues
            .into_iter()
            .map(|settings| Queue {
                settings,
                waiting: VecDeque::new(),
                handle_times: VecDeque::new(),
                cursor: 0,
            })
            .collect();
        Board {
            agents,
            queues,
            events: VecDeque::new(),
            callbacks: CallbackPolicy::default(),
        }
    }

    /// Turns callbacks on (they are off until a trunk to place them is known).
    pub fn with_callbacks(mut self, policy: CallbackPolicy) -> Self {
        self.callbacks = policy;
        self
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A caller joins a queue at the back. They hear their position at once (or learn that
    /// nobody serves the queue) and are offered to an agent as soon as one is free.
    pub fn join(&mut self, now: Instant, queue: &str, call: CallKey) -> Result<(), BoardError> {
        let q = self
            .queue_index(queue)
            .ok_or_else(|| BoardError::UnknownQueue(queue.to_string()))?;
        if let Some(i) = self.queues[q].waiting.iter().position(|w| w.call == call) {
            // A callback's returning call: it takes the agent reserved for it.
            self.callback_returned(now, q, i);
            return Ok(());
        }
        if self.serving(q) == 0 {
            self.events.push_back(Event::NoAgents { call });
            return Ok(());
        }
        let position = self.queues[q].waiting.len() + 1;
        let predicted = self.estimate(q, position);
        let next_announce = self.queues[q].settings.announce_every.map(|e| now + e);
        self.queues[q].waiting.push_back(Waiter {
            call,
            joined: now,
            predicted,
            next_announce,
            offers: Vec::new(),
            tried: Vec::new(),
            callback: None,
        });
        let callback = self.offers_callback(q, predicted);
        self.events.push_back(Event::Position {
            call,
            position,
            estimate: predicted,
            callback,
        });
        self.dispatch(now);
        Ok(())
    }

    /// The caller takes the callback offer: they leave the line but keep their place.
    pub fn keep_place(&mut self, now: Instant, call: CallKey) -> Result<(), BoardError> {
        let (q, i) = self.find_waiter(call).ok_or(BoardError::NotWaiting)?;
        if self.queues[q].waiting[i].callback.is_some() {
            return Ok(());
        }
        if self.callback_count(q) >= self.callbacks.max_per_queue {
            return Err(BoardError::CallbacksFull(
                self.queues[q].settings.name.clone(),
            ));
        }
        let w = &mut self.queues[q].waiting[i];
        let offers = std::mem::take(&mut w.offers);
        w.callback = Some(Callback {
            attempts: 0,
            retry_at: None,
            live: false,
        });
        w.next_announce = None;
        for agent in offers {
            self.free_agent(now, &agent);
            self.events.push_back(Event::Withdraw { call, agent });
        }
        self.dispatch(now);
        Ok(())
    }

    /// A callback kept across a restart: back in its queue at the place it had.
    pub fn restore_callback(
        &mut self,
        now: Instant,
        queue: &str,
        call: CallKey,
        joined: Instant,
        attempts: u32,
    ) -> Result<(), BoardError> {
        let q = self
            .queue_index(queue)
            .ok_or_else(|| BoardError::UnknownQueue(queue.to_string()))?;
        let waiting = &mut self.queues[q].waiting;
        let at = waiting.partition_point(|w| w.joined <= joined);
        waiting.insert(
            at,
            Waiter {
                call,
                joined,
                predicted: None,
                next_announce: None,
                offers: Vec::new(),
                tried: Vec::new(),
                callback: Some(Callback {
                    attempts,
                    retry_at: None,
                    live: false,
                }),
            },
        );
        self.dispatch(now);
        Ok(())
    }

    /// Calling the caller back did not reach them: the reserved agent is free again and
    /// the callback waits for its next attempt, in its place, or is given up.
    pub fn callback_failed(&mut self, now: Instant, call: CallKey) {
        let Some((q, i)) = self.find_waiter(call) else {
            return;
        };
        let w = &mut self.queues[q].waiting[i];
        let Some(cb) = w.callback.as_mut() else {
            return;
        };
        cb.attempts += 1;
        cb.live = false;
        let attempts = cb.attempts;
        cb.retry_at =
            Some(now + self.callbacks.retry * 2u32.saturating_pow(attempts.saturating_sub(1)));
        let offers = std::mem::take(&mut w.offers);
        if attempts >= self.callbacks.attempts {
            self.queues[q].waiting.retain(|w| w.call != call);
            self.events.push_back(Event::CallbackGaveUp { call });
        }
        // Freeing may send callers of a queue nobody serves on: after the removal above.
        for agent in offers {
            self.free_agent(now, &agent);
        }
        self.dispatch(now);
    }

    /// A kept place that another node is calling back (state shared in PostgreSQL): it
    /// leaves this board, and the agent reserved for it here is free again.
    pub fn callback_taken_elsewhere(&mut self, now: Instant, call: CallKey) {
        let Some((q, i)) = self.find_waiter(call) else {
            return;
        };
        let Some(w) = self.queues[q].waiting.remove(i) else {
            return;
        };
        for agent in w.offers {
            self.free_agent(now, &agent);
        }
        self.dispatch(now);
    }

    /// Another node holds this agent (it claimed them first): the offer just made for `call`
    /// (or the reservation for a kept place) is taken back without counting against the
    /// agent, who is `Elsewhere` until [`Board::free_elsewhere`]; the caller keeps their
    /// place and the next agent is tried.
    pub fn taken_elsewhere(&mut self, now: Instant, call: CallKey, agent: &str) {
        if let Some((q, i)) = self.find_waiter(call) {
            self.queues[q].waiting[i].offers.retain(|a| a != agent);
        }
        if let Some(a) = self.agents.get_mut(agent) {
            if matches!(a.state, AgentState::Ringing | AgentState::Available) {
                a.state = AgentState::Elsewhere;
                a.since = now;
            }
        }
        self.dispatch(now);
    }

    /// The node that held this agent let them go: available here again (or what was set
    /// for after their call).
    pub fn free_elsewhere(&mut self, now: Instant, agent: &str) {
        if self
            .agents
            .get(agent)
            .is_some_and(|a| a.state == AgentState::Elsewhere)
        {
            self.free_agent(now, agent);
            self.dispatch(now);
        }
    }

    /// Whether this call (or kept place) is in a queue.
    pub fn is_waiting(&self, call: CallKey) -> bool {
        self.find_waiter(call).is_some()
    }

    /// A callback node's request: a place at the back of the queue, within the cap.
    pub fn add_callback(
        &mut self,
        now: Instant,
        queue: &str,
        call: CallKey,
    ) -> Result<(), BoardError> {
        let q = self
            .queue_index(queue)
            .ok_or_else(|| BoardError::UnknownQueue(queue.to_string()))?;
        if self.callback_count(q) >= self.callbacks.max_per_queue {
            return Err(BoardError::CallbacksFull(queue.to_string()));
        }
        self.restore_callback(now, queue, call, now, 0)
    }

    fn callback_returned(&mut self, now: Instant, q: usize, i: usize) {
        let ring_timeout = self.queues[q].settings.ring_timeout;
        let w = &mut self.queues[q].waiting[i];
        if let Some(cb) = w.callback.as_mut() {
            cb.live = true;
        }
        let call = w.call;
        for agent in w.offers.clone() {
            if let Some(a) = self.agents.get(&agent) {
                self.events.push_back(Event::Offer {
                    call,
                    agent,
                    uri: a.settings.uri.clone(),
                    ring_timeout,
                });
            }
        }
        self.dispatch(now);
    }

    fn callback_count(&self, q: usize) -> usize {
        self.queues[q]
            .waiting
            .iter()
            .filter(|w| w.callback.is_some())
            .count()
    }

    /// Whether a caller told this estimate is offered a callback.
    fn offers_callback(&self, q: usize, estimate: Option<Duration>) -> bool {
        match (self.queues[q].settings.callback_after, estimate) {
            (Some(after), Some(e)) => {
                e > after && self.callback_count(q) < self.callbacks.max_per_queue
            }
            _ => false,
        }
    }

    /// When a waiting caller joined (their place).
    pub fn joined(&self, call: CallKey) -> Option<Instant> {
        let (q, i) = self.find_waiter(call)?;
        Some(self.queues[q].waiting[i].joined)
    }

    /// Callers waiting on the line now (kept places that have not called back left out):
    /// their call, queue and when they joined. What a node shares for fair order.
    pub fn waiting_calls(&self) -> Vec<(CallKey, &str, Instant)> {
        self.queues
            .iter()
            .flat_map(|q| {
                q.waiting
                    .iter()
                    .filter(|w| w.live())
                    .map(move |w| (w.call, q.settings.name.as_str(), w.joined))
            })
            .collect()
    }

    /// The caller left the queue before an agent took them (hung up, escalated).
    ///
    /// A kept place that has not called back yet stays: only its returning call speaks for
    /// it (a caller who hangs up right after keeping their place keeps it).
    pub fn leave(&mut self, now: Instant, call: CallKey) {
        let Some((q, i)) = self.find_waiter(call) else {
            return;
        };
        if !self.queues[q].waiting[i].live() {
            return;
        }
        let w = self.queues[q].waiting.remove(i).expect("found above");
        for agent in w.offers {
            self.free_agent(now, &agent);
            self.events.push_back(Event::Withdraw { call, agent });
        }
        self.events.push_back(Event::Abandoned {
            queue: self.queues[q].settings.name.clone(),
            waited: now.saturating_duration_since(w.joined),
        });
        self.dispatch(now);
    }

    /// The agent answered this caller: they talk now, other agents rung for the caller stop.
    pub fn answered(&mut self, now: Instant, call: CallKey, agent: &str) {
        let Some((q, i)) = self.find_waiter(call) else {
            // The call was bridged as it left the queue (the news crossed): the agent is
            // talking all the same, until the talk ends.
            let queue = self
                .queues
                .iter()
                .position(|q| q.settings.agents.iter().any(|a| a == agent));
            if let (Some(a), Some(q)) = (self.agents.get_mut(agent), queue) {
                a.state = AgentState::Talking;
                a.since = now;
                a.talk = Some((q, now));
            }
            return;
        };
        let w = self.queues[q].waiting.remove(i).expect("found above");
        for other in w.offers.iter().filter(|a| *a != agent) {
            self.free_agent(now, other);
            self.events.push_back(Event::Withdraw {
                call,
                agent: other.clone(),
            });
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.state = AgentState::Talking;
            a.since = now;
            a.talk = Some((q, now));
        }
        self.events.push_back(Event::Connected {
            call,
            queue: self.queues[q].settings.name.clone(),
            waited: now.saturating_duration_since(w.joined),
            predicted: w.predicted,
            callback: w.callback.is_some(),
        });
        self.dispatch(now);
    }

    /// Ringing the agent did not get the call through; the caller keeps their place.
    ///
    /// Only the waiter's own offer is freed: news about a leg to an agent who is ringing for
    /// someone else by now changes nothing, and a kept place's reservation ends only with
    /// `callback_failed` or the returning call's own offer.
    pub fn offer_failed(&mut self, now: Instant, call: CallKey, agent: &str, _why: OfferEnd) {
        let Some((q, i)) = self.find_waiter(call) else {
            return;
        };
        let w = &mut self.queues[q].waiting[i];
        if !w.live() {
            return;
        }
        let Some(pos) = w.offers.iter().position(|a| a == agent) else {
            return;
        };
        w.offers.remove(pos);
        w.tried.push((agent.to_string(), now));
        if self
            .agents
            .get(agent)
            .is_some_and(|a| a.state == AgentState::Ringing)
        {
            self.free_agent(now, agent);
        }
        self.dispatch(now);
    }

    /// The agent's talk ended (either side hung up): wrap-up, then the next caller.
    pub fn talk_ended(&mut self, now: Instant, agent: &str) {
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        if a.state != AgentState::Talking {
            return;
        }
        if let Some((q, started)) = a.talk.take() {
            let times = &mut self.queues[q].handle_times;
            if times.len() == HANDLE_TIMES_KEPT {
                times.pop_front();
            }
            times.push_back(now.saturating_duration_since(started));
            let wrap_up = self.queues[q].settings.wrap_up;
            a.state = AgentState::WrapUp;
            a.since = now;
            a.wrap_up_until = Some(now + wrap_up);
        }
        self.handle_timeout(now);
    }

    /// An agent's phone registered (or refreshed its registration) from `uri` for
    /// `expires`: they are reachable there, and available if they were offline.
    pub fn register(
        &mut self,
        now: Instant,
        agent: &str,
        uri: &str,
        expires: Duration,
    ) -> Result<(), BoardError> {
        let a = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| BoardError::UnknownAgent(agent.to_string()))?;
        a.settings.uri = uri.to_string();
        a.registered_until = Some(now + expires);
        if a.after_call == Some(AgentState::Offline) {
            a.after_call = None;
        }
        if a.state == AgentState::Offline {
            a.state = AgentState::Available;
            a.since = now;
            a.idle_since = now;
        }
        self.dispatch(now);
        Ok(())
    }

    /// The phone unregistered (or its registration ran out): the agent is offline (after
    /// the call, if on one).
    pub fn unregister(&mut self, now: Instant, agent: &str) -> Result<(), BoardError> {
        if let Some(a) = self.agents.get_mut(agent) {
            a.registered_until = None;
        }
        self.set_state(now, agent, AgentState::Offline)
    }

    /// An admin (or the agent) sets available, away or offline. An agent on a call gets the
    /// new state once the call and its wrap-up are over.
    pub fn set_state(
        &mut self,
        now: Instant,
        agent: &str,
        state: AgentState,
    ) -> Result<(), BoardError> {
        if !matches!(
            state,
            AgentState::Available | AgentState::Away | AgentState::Offline
        ) {
            return Err(BoardError::NotSettable(state.as_str()));
        }
        let a = self
            .agents
            .get_mut(agent)
            .ok_or_else(|| BoardError::UnknownAgent(agent.to_string()))?;
        match a.state {
            AgentState::Ringing
            | AgentState::Talking
            | AgentState::WrapUp
            | AgentState::Elsewhere => {
                a.after_call = Some(state);
                if a.state == AgentState::WrapUp && state == AgentState::Available {
                    // Ready again: wrap-up ends now.
                    a.wrap_up_until = Some(now);
                }
            }
            _ => {
                if a.state != state {
                    a.state = state;
                    a.since = now;
                    if state == AgentState::Available {
                        a.idle_since = now;
                    }
                }
                a.after_call = None;
            }
        }
        self.handle_timeout(now);
        self.no_agents_left(now);
        Ok(())
    }

    /// The next moment something is due: a wrap-up ending, a caller's announcement or
    /// maximum wait, a skipped agent eligible again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let wrap = self
            .agents
            .values()
            .flat_map(|a| [a.wrap_up_until, a.registered_until].into_iter().flatten());
        let waiters = self.queues.iter().flat_map(|q| {
            let max_wait = q.settings.max_wait;
            q.waiting.iter().flat_map(move |w| {
                let retry = w
                    .tried
                    .iter()
                    .map(|(_, at)| *at + RETRY_PAUSE)
                    .min()
                    .filter(|_| w.offers.is_empty());
                let max_wait = max_wait
                    .filter(|_| w.callback.is_none())
                    .map(|m| w.joined + m);
                let callback = w.callback.and_then(|c| c.retry_at).filter(|_| !w.live());
                [w.next_announce, max_wait, retry, callback]
                    .into_iter()
                    .flatten()
            })
        });
        wrap.chain(waiters).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.registered_until.is_some_and(|t| now >= t))
            .map(|a| a.settings.id.clone())
            .collect();
        for id in expired {
            let _ = self.unregister(now, &id);
        }
        let ready: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.wrap_up_until.is_some_and(|t| now >= t))
            .map(|a| a.settings.id.clone())
            .collect();
        for id in ready {
            let a = self.agents.get_mut(&id).expect("listed above");
            a.wrap_up_until = None;
            if a.state == AgentState::WrapUp {
                self.free_agent(now, &id);
            }
        }
        for q in 0..self.queues.len() {
            let max_wait = self.queues[q].settings.max_wait;
            let mut timed_out = Vec::new();
            for w in &self.queues[q].waiting {
                if w.callback.is_none() && max_wait.is_some_and(|m| now >= w.joined + m) {
                    timed_out.push(w.call);
                }
            }
            for call in timed_out {
                self.remove_waiter(now, q, call);
                self.events.push_back(Event::TimedOut { call });
            }
            let every = self.queues[q].settings.announce_every;
            let mut due = Vec::new();
            for (i, w) in self.queues[q].waiting.iter_mut().enumerate() {
                if w.next_announce.is_some_and(|t| now >= t) {
                    w.next_announce = every.map(|e| now + e);
                    due.push((w.call, i + 1, w.callback.is_none()));
                }
                w.tried.retain(|(_, at)| now < *at + RETRY_PAUSE);
                if let Some(cb) = w.callback.as_mut() {
                    if cb.retry_at.is_some_and(|t| now >= t) {
                        cb.retry_at = None;
                    }
                }
            }
            for (call, position, may_offer) in due {
                let estimate = self.estimate(q, position);
                let callback = may_offer && self.offers_callback(q, estimate);
                self.events.push_back(Event::Position {
                    call,
                    position,
                    estimate,
                    callback,
                });
            }
        }
        self.dispatch(now);
    }

    pub fn agents(&self) -> Vec<AgentView> {
        self.agents
            .values()
            .map(|a| AgentView {
                id: a.settings.id.clone(),
                name: a.settings.name.clone(),
                uri: a.settings.uri.clone(),
                state: a.state,
                since: a.since,
                after_call: a.after_call,
                queues: self
                    .queues
                    .iter()
                    .filter(|q| q.settings.agents.contains(&a.settings.id))
                    .map(|q| q.settings.name.clone())
                    .collect(),
            })
            .collect()
    }

    pub fn agent(&self, id: &str) -> Option<AgentView> {
        self.agents().into_iter().find(|a| a.id == id)
    }

    pub fn queues(&self, now: Instant) -> Vec<QueueView> {
        (0..self.queues.len())
            .map(|q| {
                let queue = &self.queues[q];
                QueueView {
                    name: queue.settings.name.clone(),
                    waiting: queue.waiting.len(),
                    longest_wait: queue
                        .waiting
                        .front()
                        .map(|w| now.saturating_duration_since(w.joined)),
                    serving_agents: self.serving(q),
                    available_agents: self
                        .queue_agents(q)
                        .filter(|a| a.state == AgentState::Available)
                        .count(),
                    estimate: self.estimate(q, queue.waiting.len() + 1),
                    average_handle_time: average(&queue.handle_times),
                }
            })
            .collect()
    }

    /// How many agents are in each state (for `ivrd_agents{state}`).
    pub fn agent_counts(&self) -> Vec<(AgentState, usize)> {
        AgentState::ALL
            .into_iter()
            .map(|s| (s, self.agents.values().filter(|a| a.state == s).count()))
            .collect()
    }

    /// The estimated wait of the caller at `position` (1 = next): the callers up to them
    /// shared among the agents serving the queue, each taking the recent average handle
    /// time. None without handle times (nothing to base it on).
    fn estimate(&self, q: usize, position: usize) -> Option<Duration> {
        let aht = average(&self.queues[q].handle_times).or(self.queues[q].settings.handle_time)?;
        let serving = self.serving(q).max(1) as u32;
        let free = self
            .queue_agents(q)
            .filter(|a| a.state == AgentState::Available)
            .count();
        if position <= free {
            return Some(Duration::ZERO);
        }
        Some(aht * (position - free) as u32 / serving)
    }

    fn queue_agents(&self, q: usize) -> impl Iterator<Item = &Agent> {
        self.queues[q]
            .settings
            .agents
            .iter()
            .filter_map(|id| self.agents.get(id))
    }

    fn serving(&self, q: usize) -> usize {
        self.queue_agents(q).filter(|a| a.state.serving()).count()
    }

    fn queue_index(&self, name: &str) -> Option<usize> {
        self.queues.iter().position(|q| q.settings.name == name)
    }

    fn find_waiter(&self, call: CallKey) -> Option<(usize, usize)> {
        self.queues.iter().enumerate().find_map(|(q, queue)| {
            queue
                .waiting
                .iter()
                .position(|w| w.call == call)
                .map(|i| (q, i))
        })
    }

    fn remove_waiter(&mut self, now: Instant, q: usize, call: CallKey) {
        let Some(i) = self.queues[q].waiting.iter().position(|w| w.call == call) else {
            return;
        };
        let w = self.queues[q].waiting.remove(i).expect("found above");
        for agent in w.offers {
            self.free_agent(now, &agent);
            self.events.push_back(Event::Withdraw { call, agent });
        }
    }

    /// The agent is free again: available, or what was set for after the call.
    fn free_agent(&mut self, now: Instant, id: &str) {
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        a.state = a.after_call.take().unwrap_or(AgentState::Available);
        a.since = now;
        a.wrap_up_until = None;
        if a.state == AgentState::Available {
            a.idle_since = now;
        }
        self.no_agents_left(now);
    }

    /// Callers of a queue nobody serves any more are told so, and leave it.
    fn no_agents_left(&mut self, now: Instant) {
        for q in 0..self.queues.len() {
            if self.queues[q].waiting.is_empty() || self.serving(q) > 0 {
                continue;
            }
            // Callbacks keep their place until agents are back; callers on the line are told.
            let calls: Vec<CallKey> = self.queues[q]
                .waiting
                .iter()
                .filter(|w| w.live())
                .map(|w| w.call)
                .collect();
            for call in calls {
                self.remove_waiter(now, q, call);
                self.events.push_back(Event::NoAgents { call });
            }
        }
    }

    /// Offers free agents to the callers who have waited longest, across all queues.
    fn dispatch(&mut self, now: Instant) {
        loop {
            let mut best: Option<(usize, usize, Instant)> = None;
            for (q, queue) in self.queues.iter().enumerate() {
                // Within a queue the order is the order of arrival: the first caller
                // without an offer who has an eligible agent.
                for (i, w) in queue.waiting.iter().enumerate() {
                    let ring_all = queue.settings.strategy == Strategy::RingAll && w.live();
                    let callback_later =
                        !w.live() && w.callback.and_then(|c| c.retry_at).is_some_and(|t| now < t);
                    if (!w.offers.is_empty() && !ring_all)
                        || callback_later
                        || self.eligible(q, w).is_empty()
                    {
                        continue;
                    }
                    if best.is_none_or(|(_, _, t)| w.joined < t) {
                        best = Some((q, i, w.joined));
                    }
                    break;
                }
            }
            let Some((q, i, _)) = best else {
                return;
            };
            let eligible = self.eligible(q, &self.queues[q].waiting[i]);
            let live = self.queues[q].waiting[i].live();
            let chosen: Vec<String> = match self.queues[q].settings.strategy {
                Strategy::RingAll if live => eligible,
                // A callback reserves one agent: the longest idle under ring all.
                Strategy::RingAll => eligible
                    .into_iter()
                    .min_by_key(|id| self.agents[id].idle_since)
                    .into_iter()
                    .collect(),
                Strategy::LongestIdle => eligible
                    .into_iter()
                    .min_by_key(|id| self.agents[id].idle_since)
                    .into_iter()
                    .collect(),
                Strategy::RoundRobin => {
                    let queue = &self.queues[q];
                    let n = queue.settings.agents.len();
                    let pick = (0..n)
                        .map(|k| (queue.cursor + k) % n)
                        .find(|&k| eligible.contains(&queue.settings.agents[k]));
                    match pick {
                        Some(k) => {
                            self.queues[q].cursor = (k + 1) % n;
                            vec![self.queues[q].settings.agents[k].clone()]
                        }
                        None => Vec::new(),
                    }
                }
            };
            if chosen.is_empty() {
                return;
            }
            let ring_timeout = self.queues[q].settings.ring_timeout;
            let call = self.queues[q].waiting[i].call;
            for id in chosen {
                let a = self.agents.get_mut(&id).expect("eligible agents exist");
                a.state = AgentState::Ringing;
                a.since = now;
                self.queues[q].waiting[i].offers.push(id.clone());
                if live {
                    self.events.push_back(Event::Offer {
                        call,
                        agent: id,
                        uri: a.settings.uri.clone(),
                        ring_timeout,
                    });
                } else {
                    self.events
                        .push_back(Event::CallbackDue { call, agent: id });
                }
            }
        }
    }

    /// The queue's available agents this caller may be offered to now.
    fn eligible(&self, q: usize, w: &Waiter) -> Vec<String> {
        self.queue_agents(q)
            .filter(|a| a.state == AgentState::Available)
            .map(|a| a.settings.id.clone())
            .filter(|id| !w.tried.iter().any(|(t, _)| t == id) && !w.offers.contains(id))
            .collect()
    }
}

fn average(times: &VecDeque<Duration>) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    Some(times.iter().sum::<Duration>() / times.len() as u32)
}
