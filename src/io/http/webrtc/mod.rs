//! The browser test phone: a page on the admin server that calls any flow over WebRTC, so
//! admins hear a flow before callers do. The browser is just another transport for the same
//! call state machine, metrics and logs (`transport="webrtc"`).
//!
//! HTTP, all under the admin bearer token except the page itself (static, no secrets):
//! - `GET /phone`, `GET /phone.js`: the page (shipped in the binary; no build step, no CDN).
//!   It takes the token from its URL fragment, `/phone#token=...`, which browsers never send
//!   to a server or put in a Referer.
//! - `GET /api/webrtc/flows`: the flows to choose from.
//! - `POST /api/webrtc/calls` `{"flow": NAME?, "sdp": OFFER}`: non-trickle offer/answer; the
//!   answer (with every candidate) comes back when the call answers, as a 200 OK would.
//! - `GET /api/webrtc/calls/{id}/events`: server-sent events (node path, keys, transcript,
//!   transfer, end), replayed from the call's start. The page reads them with `fetch`, not
//!   `EventSource`, so that the token travels in the Authorization header as everywhere else
//!   and never in a URL.
//! - `DELETE /api/webrtc/calls/{id}`: hang up. The page sends it from its button and, with
//!   `fetch(..., {keepalive: true})`, when it is closed (`sendBeacon` cannot carry the header).

mod call;
mod events;
mod peer;

use super::error::ApiError;
use crate::config::WebrtcConfig;
use crate::io::call::host::NewCall;
use crate::io::daemon::Daemon;
use crate::media::g711::Codec;
use crate::metrics as m;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use call::Answered;
use events::{EventLog, Next};
use peer::{Peer, PeerError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

/// How long an ended call's events stay readable (a page reading them late still gets the end).
const LINGER: Duration = Duration::from_secs(60);

const PAGE_HTML: &str = include_str!("../../../../web/phone.html");
const PAGE_JS: &str = include_str!("../../../../web/phone.js");

/// The test phone's state: its settings and the browser calls it knows about.
pub struct Phone {
    config: WebrtcConfig,
    daemon: Arc<Daemon>,
    calls: Mutex<HashMap<String, Arc<PhoneCall>>>,
}

/// What the HTTP side shares with one call's task.
pub struct PhoneCall {
    events: EventLog,
    /// Cancelled when the page asks to hang up.
    hangup: CancellationToken,
    ended_at: OnceLock<Instant>,
}

impl Phone {
    pub fn new(config: WebrtcConfig, daemon: Arc<Daemon>) -> Arc<Phone> {
        Arc::new(Phone {
            config,
            daemon,
            calls: Mutex::new(HashMap::new()),
        })
    }

    /// The calls still of interest: in progress, or ended less than [`LINGER`] ago.
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PhoneCall>>> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.retain(|_, c| c.ended_at.get().is_none_or(|t| t.elapsed() < LINGER));
        calls
    }

    fn get(&self, id: &str) -> Option<Arc<PhoneCall>> {
        self.calls().get(id).cloned()
    }
}

impl From<PeerError> for ApiError {
    fn from(e: PeerError) -> Self {
        let message = e.to_string();
        match e {
            PeerError::BadOffer(_) | PeerError::NoPcmu => ApiError::BadRequest(message),
            PeerError::Bind { .. } | PeerError::Gathering(_) => ApiError::Unavailable(message),
            PeerError::Webrtc(_) => ApiError::Internal(message),
        }
    }
}

/// The routes' state: the phone, or `None` when `webrtc.enabled` is off (its routes then
/// answer 404 saying so).
pub type PhoneState = Option<Arc<Phone>>;

fn phone(st: &PhoneState) -> Result<&Arc<Phone>, ApiError> {
    st.as_ref().ok_or_else(|| {
        ApiError::NotFound("the WebRTC test phone is off (webrtc.enabled: false)".into())
    })
}

/// The page; it needs no token to load, only to call.
pub fn page_routes() -> Router<PhoneState> {
    Router::new()
        .route("/phone", get(page_html))
        .route("/phone.js", get(page_js))
}

/// The phone's API; the admin router puts it behind the bearer token.
pub fn api_routes() -> Router<PhoneState> {
    Router::new()
        .route("/api/webrtc/flows", get(list_flows))
        .route("/api/webrtc/calls", post(start_call))
        .route("/api/webrtc/calls/{id}/events", get(call_events))
        .route("/api/webrtc/calls/{id}", delete(hang_up))
}

fn static_page(st: &PhoneState, content_type: &'static str, body: &'static str) -> Response {
    if st.is_none() {
        return (
            StatusCode::NOT_FOUND,
            "the WebRTC test phone is off (webrtc.enabled: false)\n",
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
            // Our own script only, talking to this server only.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                 connect-src 'self'; media-src 'self' blob:; img-src 'self' data:",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn page_html(State(st): State<PhoneState>) -> Response {
    static_page(&st, "text/html; charset=utf-8", PAGE_HTML)
}

async fn page_js(State(st): State<PhoneState>) -> Response {
    static_page(&st, "text/javascript; charset=utf-8", PAGE_JS)
}

#[derive(Serialize)]
struct FlowChoice {
    name: String,
    default: bool,
}

async fn list_flows(State(st): State<PhoneState>) -> Result<Json<Vec<FlowChoice>>, ApiError> {
    let phone = phone(&st)?;
    let flows = phone.daemon.flows.load();
    Ok(Json(
        flows
            .flows
            .keys()
            .map(|name| FlowChoice {
                name: name.clone(),
                default: *name == flows.default.name,
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    /// A flow by name; the default flow when absent.
    flow: Option<String>,
    /// The browser's SDP offer, with its candidates (non-trickle).
    sdp: String,
}

#[derive(Serialize)]
struct CallAnswer {
    call_id: String,
    flow: String,
    /// Our SDP answer.
    sdp: String,
    /// Offer received -> answer sent, as `ivrd_call_answer_seconds` measures it.
    answer_ms: f64,
}

/// Offer in, answer out: the call rings while the connection is set up and answers as a SIP
/// call would (within the ring budget, after `min_ring_ms`).
async fn start_call(State(st): State<PhoneState>, body: Bytes) -> Result<Response, ApiError> {
    let received = Instant::now();
    let phone = phone(&st)?.clone();
    let req: CallRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid JSON body (want {{\"flow\": NAME, \"sdp\": OFFER}}): {e}"
        ))
    })?;
    let daemon = phone.daemon.clone();
    if daemon.draining.load(Ordering::Acquire) {
        metrics::counter!(m::CALLS_TOTAL, "outcome" => "rejected_draining", "transport" => "webrtc").increment(1);
        return Err(ApiError::Unavailable("shutting down: no new calls".into()));
    }
    let flow = {
        let flows = daemon.flows.load();
        match &req.flow {
            None => flows.default.clone(),
            Some(name) => flows.flows.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = flows.flows.keys().map(String::as_str).collect();
                ApiError::NotFound(format!(
                    "no flow named '{name}' (flows: {})",
                    known.join(", ")
                ))
            })?,
        }
    };
    let Some(admission) = daemon.admit(flow.overflow.is_some()) else {
        metrics::counter!(m::CALLS_TOTAL, "outcome" => "rejected_capacity", "transport" => "webrtc").increment(1);
        return Err(ApiError::Unavailable(
            "at capacity (limits.max_calls)".into(),
        ));
    };
    let peer = Peer::answer(&phone.config, req.sdp)
        .await
        .inspect_err(|e| {
            warn!(error = %e, "browser call refused");
        })?;
    let call_id = format!("webrtc-{:032x}", rand::random::<u128>());
    let page = Arc::new(PhoneCall {
        events: EventLog::new(received),
        hangup: CancellationToken::new(),
        ended_at: OnceLock::new(),
    });
    phone.calls().insert(call_id.clone(), page.clone());
    let (answer_to, answered) = oneshot::channel();
    let flow_name = flow.name.clone();
    let span = info_span!("call", call_id = %call_id, flow = %flow_name, transport = "webrtc");
    let new = NewCall {
        outbound: None,
        call_id: call_id.clone(),
        transport: "webrtc".into(),
        caller: format!("webrtc:{call_id}"),
        dialled: String::new(),
        flow,
        overflow: admission.overflow,
        codec: Codec::Pcmu,
        received,
    };
    let start = call::Start {
        daemon,
        new,
        peer,
        page,
        answer_to,
        admission,
        config: phone.config.clone(),
    };
    tokio::spawn(call::run(start).instrument(span));
    // If this request goes away first, the call sees the channel close and ends (abandoned).
    let Answered { sdp, answer_ms } = answered
        .await
        .map_err(|_| ApiError::Unavailable("the call ended before it was answered".into()))?;
    let body = CallAnswer {
        call_id,
        flow: flow_name,
        sdp,
        answer_ms,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn unknown_call(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no browser call '{id}' (ended calls are kept for {LINGER:?})"
    ))
}

/// The call's events from its start, then as they happen, until it has ended.
async fn call_events(
    State(st): State<PhoneState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let call = phone(&st)?.get(&id).ok_or_else(|| unknown_call(&id))?;
    let rx = call.events.subscribe();
    let stream =
        futures_util::stream::unfold((call, rx, 0usize), |(call, mut rx, cursor)| async move {
            loop {
                // Mark the current count seen before looking, so no addition is missed.
                rx.borrow_and_update();
                match call.events.next(cursor) {
                    Next::Event(json) => {
                        let event = Event::default().data(&*json);
                        return Some((
                            Ok::<_, std::convert::Infallible>(event),
                            (call, rx, cursor + 1),
                        ));
                    }
                    Next::End => return None,
                    Next::Wait => {
                        if rx.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            }
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Hang-up from the page; idempotent (a call that already ended answers the same).
async fn hang_up(
    State(st): State<PhoneState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let call = phone(&st)?.get(&id).ok_or_else(|| unknown_call(&id))?;
    call.hangup.cancel();
    Ok(StatusCode::NO_CONTENT)
}
