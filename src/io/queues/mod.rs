//! The queue service: one task (`service`) owns the pure [`Board`], fires its timers, hands
//! its news to the calls (as `CallInput::Queue`), turns positions into audio, keeps kept
//! places durable and asks the SIP side to call callers back. Calls, the admin API and the
//! CLI talk to it through [`Queues`].

mod service;

use crate::call::{CallInput, QueueReport};
use crate::config::queues::{agent_settings, queue_settings};
use crate::config::LoadedConfig;
use crate::diag::{Diagnostic, Diagnostics};
use crate::flow::Flow;
use crate::flow::PromptSource;
use crate::io::files::SoundLibrary;
use crate::media::prompt::Prompt;
use crate::queue::{AgentState, AgentView, Board, BoardError, CallKey, Phrases, QueueView};
use crate::store::Store;
use service::{unix_ms, KeptPlace, Service};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// How long the service waits for a call that is slow to take its news (its inbox full)
/// rather than losing an offer, which would leave an agent ringing for nobody.
const SEND_PATIENCE: Duration = Duration::from_millis(500);

/// Keys of calls back to kept places restored after a restart (live calls count from 1).
pub(crate) const RESTORED_KEYS: CallKey = 1 << 48;

/// The prompts a queue speaks with: its hold audio, the announcement phrases, the
/// callback offer and confirmation; and the flow a call back runs.
pub struct QueueAudio {
    hold: HashMap<String, Vec<Arc<Prompt>>>,
    phrases: Phrases<Arc<Prompt>>,
    callback_offer: Vec<Arc<Prompt>>,
    callback_kept: Vec<Arc<Prompt>>,
    /// Per queue: what a called-back caller hears and does (why we call, then the queue).
    callback_flows: HashMap<String, Arc<Flow>>,
}

/// A call back to place: the caller's number, for this queue.
pub struct CallbackJob {
    pub key: CallKey,
    pub number: String,
    pub queue: String,
}

/// The flow a call back runs: why ivrd is calling, then the queue (where the reserved agent
/// is waiting), and goodbye after the agent.
fn callback_flow(queue: &str) -> String {
    format!(
        "version: 1\nflow: callback-{queue}\nstart: intro\nnodes:\n  intro:\n    play: queue_callback_intro\n    next: wait\n  wait:\n    queue: {queue}\n    on_timeout: sorry\n    on_no_agents: sorry\n    after_agent: bye\n  sorry:\n    play: queue_no_agents\n    hangup: true\n  bye:\n    play: after_agent\n    hangup: true\n"
    )
}

/// The phrase prompts every queue uses, by sound name (see sounds/prompts.tsv).
const PHRASES: [&str; 11] = [
    "queue_next_in_line",
    "queue_you_are_number",
    "queue_in_line",
    "queue_many_ahead",
    "queue_wait_about",
    "queue_minute",
    "queue_minutes",
    "queue_under_a_minute",
    "queue_over_an_hour",
    "queue_no_estimate",
    "queue_hold",
];

impl QueueAudio {
    /// Loads what the configured queues need; every missing prompt is reported.
    pub fn load(cfg: &LoadedConfig) -> Result<Option<QueueAudio>, Diagnostics> {
        if cfg.config.queues.is_empty() {
            return Ok(None);
        }
        let mut sounds = SoundLibrary::new(&cfg.sounds_dir);
        let mut errors = Vec::new();
        let mut get = |name: &str, errors: &mut Vec<Diagnostic>| match sounds.prompt(name) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(Diagnostic::new(&cfg.path, format!("queues: {e}")));
                None
            }
        };
        let fixed: Vec<Option<Arc<Prompt>>> = PHRASES.iter().map(|n| get(n, &mut errors)).collect();
        let numbers: Vec<Option<Arc<Prompt>>> = (0..20)
            .map(|n| {
                if n == 0 {
                    None
                } else {
                    get(&format!("num_{n}"), &mut errors)
                }
            })
            .collect();
        let tens: Vec<Option<Arc<Prompt>>> = (0..10)
            .map(|t| {
                if t < 2 {
                    None
                } else {
                    get(&format!("num_{}", t * 10), &mut errors)
                }
            })
            .collect();
        let mut hold = HashMap::new();
        for (name, q) in &cfg.config.queues {
            let prompt = q.hold.as_deref().unwrap_or("queue_hold");
            hold.insert(name.clone(), get(prompt, &mut errors).into_iter().collect());
        }
        let callback_offer: Vec<Arc<Prompt>> = get("queue_callback_offer", &mut errors)
            .into_iter()
            .collect();
        let callback_kept: Vec<Arc<Prompt>> = get("queue_callback_kept", &mut errors)
            .into_iter()
            .collect();
        let mut callback_flows = HashMap::new();
        for name in cfg.config.queues.keys() {
            let text = callback_flow(name);
            let file = std::path::PathBuf::from(format!("<callback flow for queue {name}>"));
            match crate::flow::compile(&file, &text, &mut sounds) {
                Ok(f) => {
                    callback_flows.insert(name.clone(), Arc::new(f));
                }
                Err(e) => errors.extend(e.0),
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let f = |i: usize| fixed[i].clone().expect("checked above");
        let any = f(0);
        let fill = |v: Vec<Option<Arc<Prompt>>>| {
            v.into_iter()
                .map(|p| p.unwrap_or_else(|| any.clone()))
                .collect()
        };
        Ok(Some(QueueAudio {
            hold,
            callback_offer,
            callback_kept,
            callback_flows,
            phrases: Phrases {
                next_in_line: f(0),
                you_are_number: f(1),
                in_line: f(2),
                many_ahead: f(3),
                wait_about: f(4),
                minute: f(5),
                minutes: f(6),
                under_a_minute: f(7),
                over_an_hour: f(8),
                no_estimate: f(9),
                numbers: fill(numbers),
                tens: fill(tens),
            },
        }))
    }
}

enum Command {
    Join {
        call: CallKey,
        queue: String,
        /// The caller's number (what a callback would call).
        number: String,
        flow: String,
        events: mpsc::Sender<CallInput<'static>>,
    },
    /// A call back ended (or never got through) without an agent taking it.
    CallbackEnded {
        call: CallKey,
        reached: bool,
    },
    /// Where calls back are placed (the SIP side, once it runs).
    Dialer(mpsc::Sender<CallbackJob>),
    /// A place at the back of a queue for a caller who is not in it (a callback node).
    KeepPlaceIn {
        queue: String,
        number: String,
        flow: String,
    },
    /// An agent's phone registered from `uri` (None: unregistered).
    Register {
        agent: String,
        uri: Option<String>,
        expires: Duration,
    },
    Report {
        call: CallKey,
        report: QueueReport,
    },
    SetAgent {
        id: String,
        state: AgentState,
        reply: oneshot::Sender<Result<AgentView, BoardError>>,
    },
    Agents(oneshot::Sender<(Instant, Vec<AgentView>)>),
    Queues(oneshot::Sender<Vec<QueueView>>),
    /// Another node let an agent go or changed an agent's state or registration (shared
    /// store): bring the board up to date.
    AgentsChanged,
}

/// The handle calls and the admin API use.
#[derive(Clone)]
pub struct Queues {
    tx: mpsc::Sender<Command>,
    next_key: Arc<AtomicU64>,
    callback_flows: Arc<HashMap<String, Arc<Flow>>>,
}

/// Who joins a queue: their number (for a callback) and the flow they came from.
pub struct Caller {
    pub number: String,
    pub flow: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueuesError {
    #[error("{0}")]
    Board(#[from] BoardError),
    #[error("the queue service has stopped")]
    Stopped,
}

impl Queues {
    /// Starts the service; kept places from the store go back into their queues, where
    /// they were.
    pub fn start(cfg: &LoadedConfig, audio: QueueAudio, store: Arc<Store>) -> Queues {
        let now = Instant::now();
        let mut board = Board::new(
            now,
            agent_settings(&cfg.config.agents),
            queue_settings(&cfg.config.queues),
        )
        .with_callbacks(cfg.config.callbacks.policy());
        // Claims this node held before it restarted are void: its calls are gone.
        if let Err(e) = store.release_agents(None) {
            warn!(error = %e, "agents claimed before the restart not released");
        }
        let mut known = service::KnownAgents::default();
        // What admins set (away, offline) holds across a restart.
        match store.agent_states() {
            Ok(states) => {
                for (agent, state) in states {
                    known.states.insert(agent.clone(), state.clone());
                    let restored = AgentState::parse(&state)
                        .map(|s| board.set_state(now, &agent, s).is_ok())
                        .unwrap_or(false);
                    if !restored {
                        warn!(agent = %agent, state = %state, "stored agent state not restored");
                    }
                }
            }
            Err(e) => warn!(error = %e, "agent states could not be read"),
        }
        // Agents logged in before a restart are still logged in until their binding ends.
        match store.registrations(crate::io::clock::unix_now()) {
            Ok(bindings) => {
                let now_s = crate::io::clock::unix_now();
                for (agent, uri, until) in bindings {
                    known.bindings.insert(agent.clone(), (uri.clone(), until));
                    let left = Duration::from_secs(until.saturating_sub(now_s));
                    if let Err(e) = board.register(now, &agent, &uri, left) {
                        warn!(agent = %agent, error = %e, "registration not restored");
                    }
                }
            }
            Err(e) => warn!(error = %e, "registrations could not be read"),
        }
        let mut kept = HashMap::new();
        let places = if cfg.config.callbacks.trunk.is_some() {
            store.kept_places()
        } else {
            // Nothing can call them back: they wait in the store for a trunk.
            Ok(Vec::new())
        };
        match places {
            Ok(places) => {
                let now_ms = unix_ms();
                for p in places {
                    let key = RESTORED_KEYS + p.id as CallKey;
                    let ago =
                        Duration::from_millis(now_ms.saturating_sub(p.joined_at_ms).max(0) as u64);
                    let joined = now.checked_sub(ago).unwrap_or(now);
                    match board.restore_callback(now, &p.queue, key, joined, p.attempts) {
                        Ok(()) => {
                            kept.insert(
                                key,
                                KeptPlace {
                                    id: p.id,
                                    number: p.number,
                                    queue: p.queue,
                                    attempts: p.attempts,
                                },
                            );
                        }
                        Err(e) => warn!(callback = p.id, error = %e, "kept place not restored"),
                    }
                }
                if !kept.is_empty() {
                    info!(callbacks = kept.len(), "kept places restored");
                }
            }
            Err(e) => warn!(error = %e, "kept places could not be read"),
        }
        let queue_names: Vec<String> = cfg.config.queues.keys().cloned().collect();
        let callback_flows = Arc::new(audio.callback_flows.clone());
        let (tx, rx) = mpsc::channel(1024);
        if let Some(pg) = store.postgres() {
            // Agents other nodes let go, set or log in reach this board within a moment.
            let tx = tx.clone();
            pg.listen_agents(move || {
                let _ = tx.try_send(Command::AgentsChanged);
            });
        }
        let service = Service::new(board, audio, queue_names, store, kept, known);
        tokio::spawn(service.run(rx));
        Queues {
            tx,
            next_key: Arc::new(AtomicU64::new(1)),
            callback_flows,
        }
    }

    /// The flow a call back to this queue runs.
    pub fn callback_flow(&self, queue: &str) -> Option<Arc<Flow>> {
        self.callback_flows.get(queue).cloned()
    }

    /// Calls back are placed through `tx` from now on.
    pub async fn set_dialer(&self, tx: mpsc::Sender<CallbackJob>) {
        let _ = self.tx.send(Command::Dialer(tx)).await;
    }

    /// Keeps a place at the back of `queue` for this caller, to call them back.
    pub async fn keep_place_in(&self, queue: String, caller: Caller) {
        let cmd = Command::KeepPlaceIn {
            queue,
            number: caller.number,
            flow: caller.flow,
        };
        let _ = self.tx.send(cmd).await;
    }

    /// An agent's phone registered: they are rung at `uri` until `expires` has passed.
    pub async fn register(&self, agent: &str, uri: &str, expires: Duration) {
        let cmd = Command::Register {
            agent: agent.to_string(),
            uri: Some(uri.to_string()),
            expires,
        };
        let _ = self.tx.send(cmd).await;
    }

    pub async fn unregister(&self, agent: &str) {
        let cmd = Command::Register {
            agent: agent.to_string(),
            uri: None,
            expires: Duration::ZERO,
        };
        let _ = self.tx.send(cmd).await;
    }

    /// A call back ended without an agent taking it (`reached`: the caller answered).
    pub async fn callback_ended(&self, call: CallKey, reached: bool) {
        let _ = self.tx.send(Command::CallbackEnded { call, reached }).await;
    }

    /// A key for a new call's dealings with the queues.
    pub fn call_key(&self) -> CallKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Puts a call in a queue. Sent on the same ordered path as the call's reports, so a
    /// leave right after the join comes after it.
    pub fn join(
        &self,
        call: CallKey,
        queue: String,
        caller: Caller,
        events: mpsc::Sender<CallInput<'static>>,
    ) {
        self.send_ordered(Command::Join {
            call,
            queue,
            number: caller.number,
            flow: caller.flow,
            events,
        });
    }

    /// Sends now when there is room (keeping the order of a call's commands); a full
    /// channel waits in a task.
    fn send_ordered(&self, cmd: Command) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.tx.try_send(cmd) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }

    /// Reports without waiting (from the call's synchronous output handling).
    pub fn report(&self, call: CallKey, report: QueueReport) {
        self.send_ordered(Command::Report { call, report });
    }

    pub async fn set_agent(&self, id: &str, state: AgentState) -> Result<AgentView, QueuesError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::SetAgent {
            id: id.to_string(),
            state,
            reply,
        };
        self.tx.send(cmd).await.map_err(|_| QueuesError::Stopped)?;
        Ok(rx.await.map_err(|_| QueuesError::Stopped)??)
    }

    /// The agents, and the board's clock reading they were taken at.
    pub async fn agents(&self) -> Result<(Instant, Vec<AgentView>), QueuesError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Agents(reply))
            .await
            .map_err(|_| QueuesError::Stopped)?;
        rx.await.map_err(|_| QueuesError::Stopped)
    }

    pub async fn queues(&self) -> Result<Vec<QueueView>, QueuesError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Queues(reply))
            .await
            .map_err(|_| QueuesError::Stopped)?;
        rx.await.map_err(|_| QueuesError::Stopped)
    }
}
