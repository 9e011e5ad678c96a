//! The agents and queues API: `GET /api/agents`, `GET /api/agents/{id}`,
//! `POST /api/agents/{id}/state` (`{"state": "available" | "away" | "offline"}`) and
//! `GET /api/queues`. Without queues in the config the lists are empty and changes 404.

use super::error::ApiError;
use super::request::{actor, parse_json};
use crate::io::queues::{Queues, QueuesError};
use crate::queue::{AgentState, AgentView, BoardError, QueueView};
use crate::store::{Feedback, Store};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

/// The queue service (when the config has queues) and the store (feedback).
#[derive(Clone)]
pub struct QueuesState {
    pub queues: Option<Queues>,
    pub store: Arc<Store>,
}

pub fn api_routes() -> Router<QueuesState> {
    Router::new()
        .route("/api/agents", get(list))
        .route("/api/agents/{id}", get(one))
        .route("/api/agents/{id}/state", post(set_state))
        .route("/api/agents/{id}/feedback", get(feedback))
        .route("/api/queues", get(queues))
}

#[derive(Serialize)]
struct AgentJson {
    id: String,
    name: String,
    uri: String,
    state: &'static str,
    /// Seconds in this state.
    for_s: u64,
    /// A state set during a call, applied when it ends.
    after_call: Option<&'static str>,
    queues: Vec<String>,
}

impl AgentJson {
    fn new(a: AgentView, now: Instant) -> Self {
        AgentJson {
            id: a.id,
            name: a.name,
            uri: a.uri,
            state: a.state.as_str(),
            for_s: now.saturating_duration_since(a.since).as_secs(),
            after_call: a.after_call.map(AgentState::as_str),
            queues: a.queues,
        }
    }
}

#[derive(Serialize)]
struct QueueJson {
    name: String,
    waiting: usize,
    longest_wait_s: Option<u64>,
    serving_agents: usize,
    available_agents: usize,
    /// The wait a caller joining now is told (None: no handle times yet).
    estimate_s: Option<u64>,
    average_handle_time_s: Option<u64>,
}

impl From<QueueView> for QueueJson {
    fn from(q: QueueView) -> Self {
        QueueJson {
            name: q.name,
            waiting: q.waiting,
            longest_wait_s: q.longest_wait.map(|d| d.as_secs()),
            serving_agents: q.serving_agents,
            available_agents: q.available_agents,
            estimate_s: q.estimate.map(|d| d.as_secs()),
            average_handle_time_s: q.average_handle_time.map(|d| d.as_secs()),
        }
    }
}

impl From<QueuesError> for ApiError {
    fn from(e: QueuesError) -> Self {
        match e {
            QueuesError::Board(BoardError::UnknownAgent(id)) => {
                ApiError::NotFound(format!("no agent with id '{id}'"))
            }
            QueuesError::Board(e) => ApiError::Unprocessable(e.to_string()),
            QueuesError::Stopped => ApiError::Unavailable(e.to_string()),
        }
    }
}

async fn list(State(st): State<QueuesState>) -> Result<Json<Vec<AgentJson>>, ApiError> {
    let Some(q) = st.queues else {
        return Ok(Json(Vec::new()));
    };
    let (now, agents) = q.agents().await?;
    Ok(Json(
        agents.into_iter().map(|a| AgentJson::new(a, now)).collect(),
    ))
}

async fn one(
    State(st): State<QueuesState>,
    Path(id): Path<String>,
) -> Result<Json<AgentJson>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no agent with id '{id}'"));
    let q = st.queues.ok_or_else(not_found)?;
    let (now, agents) = q.agents().await?;
    let a = agents
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(not_found)?;
    Ok(Json(AgentJson::new(a, now)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
}

async fn set_state(
    State(st): State<QueuesState>,
    Path(id): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AgentJson>, ApiError> {
    let body: StateBody = parse_json(&body)?;
    let state = AgentState::parse(&body.state).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown state '{}': use available, away or offline",
            body.state
        ))
    })?;
    let q = st
        .queues
        .ok_or_else(|| ApiError::NotFound(format!("no agent with id '{id}'")))?;
    let agent = q.set_agent(&id, state).await?;
    info!(agent = %id, state = body.state, by = %actor(&headers, peer), "agent state changed");
    Ok(Json(AgentJson::new(agent, Instant::now())))
}

async fn queues(State(st): State<QueuesState>) -> Result<Json<Vec<QueueJson>>, ApiError> {
    let Some(q) = st.queues else {
        return Ok(Json(Vec::new()));
    };
    Ok(Json(
        q.queues().await?.into_iter().map(QueueJson::from).collect(),
    ))
}

#[derive(Serialize)]
struct FeedbackJson {
    agent: String,
    /// How many answers, and the average score of those with one.
    count: usize,
    average_score: Option<f64>,
    /// Newest first (the last 100).
    entries: Vec<Feedback>,
}

/// What callers said of the calls this agent took (survey nodes after the agent).
async fn feedback(
    State(st): State<QueuesState>,
    Path(id): Path<String>,
) -> Result<Json<FeedbackJson>, ApiError> {
    let known = match &st.queues {
        Some(q) => q.agents().await?.1.iter().any(|a| a.id == id),
        None => false,
    };
    if !known {
        return Err(ApiError::NotFound(format!("no agent with id '{id}'")));
    }
    let store = st.store.clone();
    let agent = id.clone();
    let entries = tokio::task::spawn_blocking(move || store.feedback_for(&agent, 100)).await??;
    let scores: Vec<f64> = entries
        .iter()
        .filter_map(|f| f.score)
        .map(f64::from)
        .collect();
    Ok(Json(FeedbackJson {
        agent: id,
        count: entries.len(),
        average_score: (!scores.is_empty())
            .then(|| scores.iter().sum::<f64>() / scores.len() as f64),
        entries,
    }))
}
