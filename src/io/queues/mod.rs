//! The queue service: one task owns the pure [`Board`], fires its timers, hands its news
//! to the calls (as `CallInput::Queue`), turns positions into audio and keeps the queue
//! and agent metrics. Calls, the admin API and the CLI talk to it through [`Queues`].

use crate::call::{CallInput, QueueEvent, QueueReport};
use crate::config::queues::{agent_settings, queue_settings};
use crate::config::LoadedConfig;
use crate::diag::{Diagnostic, Diagnostics};
use crate::flow::PromptSource;
use crate::io::files::SoundLibrary;
use crate::media::prompt::Prompt;
use crate::metrics as m;
use crate::queue::{
    announcement, AgentState, AgentView, Board, BoardError, CallKey, Event, OfferEnd, Phrases,
    QueueView,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

/// How long the service waits for a call that is slow to take its news (its inbox full)
/// rather than losing an offer, which would leave an agent ringing for nobody.
const SEND_PATIENCE: Duration = Duration::from_millis(500);

/// The prompts a queue speaks with: its hold audio and the announcement phrases.
pub struct QueueAudio {
    hold: HashMap<String, Vec<Arc<Prompt>>>,
    phrases: Phrases<Arc<Prompt>>,
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
        events: mpsc::Sender<CallInput<'static>>,
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
}

/// The handle calls and the admin API use.
#[derive(Clone)]
pub struct Queues {
    tx: mpsc::Sender<Command>,
    next_key: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueuesError {
    #[error("{0}")]
    Board(#[from] BoardError),
    #[error("the queue service has stopped")]
    Stopped,
}

impl Queues {
    pub fn start(cfg: &LoadedConfig, audio: QueueAudio) -> Queues {
        let now = Instant::now();
        let board = Board::new(
            now,
            agent_settings(&cfg.config.agents),
            queue_settings(&cfg.config.queues),
        );
        let queue_names: Vec<String> = cfg.config.queues.keys().cloned().collect();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(board, audio, queue_names, rx));
        Queues {
            tx,
            next_key: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A key for a new call's dealings with the queues.
    pub fn call_key(&self) -> CallKey {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub async fn join(
        &self,
        call: CallKey,
        queue: String,
        events: mpsc::Sender<CallInput<'static>>,
    ) {
        let _ = self
            .tx
            .send(Command::Join {
                call,
                queue,
                events,
            })
            .await;
    }

    /// Reports without waiting (from the call's synchronous output handling).
    pub fn report(&self, call: CallKey, report: QueueReport) {
        let tx = self.tx.clone();
        if let Err(mpsc::error::TrySendError::Full(cmd)) =
            tx.try_send(Command::Report { call, report })
        {
            tokio::spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
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

async fn run(
    mut board: Board,
    audio: QueueAudio,
    queue_names: Vec<String>,
    mut rx: mpsc::Receiver<Command>,
) {
    // Each waiting or talking call's way back, and the queue it is in.
    let mut calls: Calls = HashMap::new();
    loop {
        let wake = board.poll_timeout();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                let now = Instant::now();
                match cmd {
                    Command::Join { call, queue, events } => {
                        let hold = audio.hold.get(&queue).cloned().unwrap_or_default();
                        let _ = events.try_send(CallInput::Queue(QueueEvent::Joined { hold }));
                        calls.insert(call, (queue.clone(), events));
                        if let Err(e) = board.join(now, &queue, call) {
                            // The flow was checked against the config: only after a
                            // reload that removed the queue from under a running flow.
                            debug!(error = %e, "join");
                            if let Some((_, events)) = calls.remove(&call) {
                                let _ = events.send_timeout(CallInput::Queue(QueueEvent::NoAgents), SEND_PATIENCE).await;
                            }
                        }
                    }
                    Command::Report { call, report } => match report {
                        QueueReport::Leave => {
                            board.leave(now, call);
                            calls.remove(&call);
                        }
                        QueueReport::Answered { agent } => board.answered(now, call, &agent),
                        QueueReport::OfferFailed { agent, why } => {
                            board.offer_failed(now, call, &agent, why)
                        }
                        QueueReport::TalkEnded { agent } => {
                            board.talk_ended(now, &agent);
                            calls.remove(&call);
                        }
                    },
                    Command::SetAgent { id, state, reply } => {
                        let result = board.set_state(now, &id, state).map(|()| {
                            board.agent(&id).expect("the board just changed this agent")
                        });
                        if let Ok(a) = &result {
                            info!(agent = %a.id, state = a.state.as_str(), "agent state set");
                        }
                        let _ = reply.send(result);
                    }
                    Command::Agents(reply) => {
                        let _ = reply.send((now, board.agents()));
                    }
                    Command::Queues(reply) => {
                        let _ = reply.send(board.queues(now));
                    }
                }
            }
            _ = sleep => board.handle_timeout(Instant::now()),
        }
        loop {
            let events: Vec<Event> = std::iter::from_fn(|| board.poll_event()).collect();
            if events.is_empty() {
                break;
            }
            for event in events {
                if let Some(gone) = carry_out(event, &audio, &mut calls).await {
                    // The call is gone without saying so (its task ended): it leaves the
                    // queue, and an agent rung for it is free again.
                    let now = Instant::now();
                    if let Some(agent) = gone.agent {
                        board.offer_failed(now, gone.call, &agent, OfferEnd::Failed);
                    }
                    board.leave(now, gone.call);
                    calls.remove(&gone.call);
                }
            }
        }
        record_gauges(&board, &queue_names);
    }
}

/// A call that could not be told: it is gone.
struct Gone {
    call: CallKey,
    /// The agent an undelivered offer was for.
    agent: Option<String>,
}

type Calls = HashMap<CallKey, (String, mpsc::Sender<CallInput<'static>>)>;

async fn carry_out(event: Event, audio: &QueueAudio, calls: &mut Calls) -> Option<Gone> {
    let (call, news, agent) = match event {
        Event::Position {
            call,
            position,
            estimate,
        } => {
            debug!(call, position, estimate_s = ?estimate.map(|e| e.as_secs()), "queue position");
            let prompts = announcement(position, estimate, &audio.phrases);
            (call, QueueEvent::Announce(prompts), None)
        }
        Event::Offer {
            call,
            agent,
            uri,
            ring_timeout,
        } => {
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
            let queue = calls.remove(&call);
            if let Some((queue, events)) = queue {
                metrics::counter!(m::QUEUE_EXITS_TOTAL, "queue" => queue, "reason" => reason)
                    .increment(1);
                let _ = events
                    .send_timeout(CallInput::Queue(news), SEND_PATIENCE)
                    .await;
            }
            return None;
        }
        Event::Connected {
            queue,
            waited,
            predicted,
            ..
        } => {
            metrics::histogram!(m::QUEUE_WAIT_SECONDS, "queue" => queue)
                .record(waited.as_secs_f64());
            if let Some(p) = predicted {
                let error = waited.abs_diff(p);
                metrics::histogram!(m::WAIT_ESTIMATE_ERROR_SECONDS).record(error.as_secs_f64());
            }
            return None;
        }
        Event::Abandoned { queue, .. } => {
            metrics::counter!(m::QUEUE_ABANDONED_TOTAL, "queue" => queue).increment(1);
            return None;
        }
    };
    let delivered = match calls.get(&call) {
        Some((_, events)) => events
            .send_timeout(CallInput::Queue(news), SEND_PATIENCE)
            .await
            .is_ok(),
        None => false,
    };
    (!delivered).then_some(Gone { call, agent })
}

fn record_gauges(board: &Board, queue_names: &[String]) {
    for (state, n) in board.agent_counts() {
        metrics::gauge!(m::AGENTS, "state" => state.as_str()).set(n as f64);
    }
    let now = Instant::now();
    for (q, name) in board.queues(now).iter().zip(queue_names) {
        metrics::gauge!(m::QUEUE_WAITING, "queue" => name.clone()).set(q.waiting as f64);
    }
}
