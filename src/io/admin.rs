//! The admin HTTP API (JSON, bearer token): outages, calls in progress, callbacks, audit
//! log, flow reload, the Alertmanager webhook, and the unauthenticated health endpoints.
//! Bad input gets a 4xx with a message that says what is wrong; nothing changes then.

use super::calls::CallRegistry;
use super::outages::{BoardError, OutageBoard};
use crate::config::AlertmanagerConfig;
use crate::outage::{Outage, OutageSpec, Source};
use crate::store::Store;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Reloads flows (and prompts) from disk; Err carries every problem found.
pub type ReloadFn = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

#[derive(Clone)]
pub struct AdminState {
    pub board: Arc<OutageBoard>,
    pub store: Arc<Store>,
    pub calls: Arc<CallRegistry>,
    pub token: Arc<str>,
    pub ready: Arc<AtomicBool>,
    pub reload: ReloadFn,
    pub alertmanager: Arc<AlertmanagerConfig>,
    /// The WebRTC test phone (`/phone`, `/api/webrtc/...`); `None` when `webrtc.enabled` is off.
    pub phone: Option<Arc<super::webrtc::Phone>>,
}

/// Largest request body accepted.
const MAX_BODY: usize = 256 * 1024;

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/outages", get(list_outages).post(create_outage))
        .route(
            "/api/outages/{id}",
            get(get_outage).put(put_outage).delete(delete_outage),
        )
        .route("/api/calls", get(calls))
        .route("/api/callbacks", get(callbacks))
        .route("/api/audit", get(audit))
        .route("/api/reload", post(reload))
        .route("/api/alertmanager", post(alertmanager))
        .merge(super::webrtc::api_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(super::webrtc::page_routes())
        .merge(api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        warn!(error = %e, "admin API stopped");
    }
}

#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Bearer realm=\"ivrd\""),
            );
        }
        r
    }
}

impl From<BoardError> for ApiError {
    fn from(e: BoardError) -> Self {
        let code = match &e {
            BoardError::Invalid(_) => StatusCode::BAD_REQUEST,
            BoardError::Render(_) => StatusCode::UNPROCESSABLE_ENTITY,
            BoardError::NotFound(_) => StatusCode::NOT_FOUND,
            BoardError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

async fn require_token(
    State(st): State<AdminState>,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The auth scheme is case-insensitive (RFC 7235 §2.1).
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), st.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError(StatusCode::UNAUTHORIZED, "wrong bearer token".into()).into_response(),
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "missing 'Authorization: Bearer TOKEN' header".into(),
        )
        .into_response(),
    }
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who made a change: the `X-Ivrd-Actor` header (the CLI sends user@host), else the peer.
fn actor(headers: &HeaderMap, peer: SocketAddr) -> String {
    let named = headers
        .get("x-ivrd-actor")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|v| !v.trim().is_empty());
    match named {
        Some(n) => format!("{n} ({peer})"),
        None => format!("api ({peer})"),
    }
}

/// Parses a JSON body ourselves so that malformed input gets a 400 that says where.
fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

#[derive(Serialize)]
struct OutageView {
    #[serde(flatten)]
    outage: Outage,
    active: bool,
}

async fn readyz(State(st): State<AdminState>) -> impl IntoResponse {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn list_outages(State(st): State<AdminState>) -> Json<Vec<OutageView>> {
    Json(
        st.board
            .list()
            .await
            .into_iter()
            .map(|(outage, active)| OutageView { outage, active })
            .collect(),
    )
}

async fn get_outage(
    State(st): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<OutageView>, ApiError> {
    let (outage, active) = st
        .board
        .get(&id)
        .await
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no outage with id '{id}'")))?;
    Ok(Json(OutageView { outage, active }))
}

async fn create_outage(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec: OutageSpec = parse_json(&body)?;
    upsert(st, spec, &actor(&headers, peer)).await
}

async fn put_outage(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec: OutageSpec = parse_json(&body)?;
    if spec.id != id {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("body id '{}' does not match the URL's '{id}'", spec.id),
        ));
    }
    upsert(st, spec, &actor(&headers, peer)).await
}

async fn upsert(st: AdminState, spec: OutageSpec, actor: &str) -> Result<Response, ApiError> {
    let (outage, created) = st.board.upsert(spec, Source::Api, actor).await?;
    let active = outage.is_active(super::outages::unix_now());
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(OutageView { outage, active })).into_response())
}

async fn delete_outage(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    st.board.stop(&id, &actor(&headers, peer)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn calls(State(st): State<AdminState>) -> Json<serde_json::Value> {
    let calls = st.calls.snapshot();
    let mut by_flow: HashMap<String, usize> = HashMap::new();
    for c in &calls {
        *by_flow.entry(c.flow.clone()).or_default() += 1;
    }
    Json(serde_json::json!({ "active": calls.len(), "by_flow": by_flow, "calls": calls }))
}

async fn callbacks(
    State(st): State<AdminState>,
) -> Result<Json<Vec<crate::store::Callback>>, ApiError> {
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || store.callbacks())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn audit(
    State(st): State<AdminState>,
) -> Result<Json<Vec<crate::store::AuditEntry>>, ApiError> {
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || store.audit(200))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map(Json)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn reload(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = actor(&headers, peer);
    let f = st.reload.clone();
    let result = tokio::task::spawn_blocking(move || f())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match result {
        Ok(summary) => {
            info!(by = %who, "flows reloaded: {summary}");
            Ok(Json(
                serde_json::json!({ "reloaded": true, "summary": summary }),
            ))
        }
        Err(errors) => {
            warn!(by = %who, "reload refused, the running flows stay: {errors}");
            Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, errors))
        }
    }
}

/// Alertmanager's webhook payload (version 4); unknown fields are ignored, as it adds some.
#[derive(Debug, Deserialize)]
struct Webhook {
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    status: String,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    fingerprint: String,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
}

async fn alertmanager(
    State(st): State<AdminState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hook: Webhook = parse_json(&body)?;
    let mut started = Vec::new();
    let mut stopped = Vec::new();
    for alert in hook.alerts {
        let (id, spec) = alert_outage(&alert, &st.alertmanager)?;
        match alert.status.as_str() {
            "firing" => {
                st.board
                    .upsert(spec, Source::Alertmanager, "alertmanager")
                    .await?;
                started.push(id);
            }
            "resolved" => {
                match st.board.stop(&id, "alertmanager").await {
                    Ok(()) | Err(BoardError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                stopped.push(id);
            }
            other => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("alert status '{other}' is neither firing nor resolved"),
                ))
            }
        }
    }
    Ok(Json(
        serde_json::json!({ "started": started, "stopped": stopped }),
    ))
}

/// Maps an alert to an outage: id from the fingerprint (or alert name), scope from the
/// configured label, message from the first configured annotation present.
fn alert_outage(a: &Alert, cfg: &AlertmanagerConfig) -> Result<(String, OutageSpec), ApiError> {
    let basis = if !a.fingerprint.is_empty() {
        a.fingerprint.clone()
    } else {
        a.labels.get("alertname").cloned().unwrap_or_default()
    };
    let slug: String = basis
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if slug.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "alert has neither fingerprint nor alertname".into(),
        ));
    }
    let id = format!("am-{slug}");
    let scope = match a.labels.get(&cfg.scope_label) {
        Some(v) => cfg.scopes.get(v).cloned().unwrap_or_else(|| v.clone()),
        None => "all".into(),
    };
    let message = cfg
        .message_annotations
        .iter()
        .find_map(|k| {
            a.annotations
                .get(k)
                .filter(|v| !v.trim().is_empty())
                .cloned()
        })
        .unwrap_or_else(|| {
            let name = a
                .labels
                .get("alertname")
                .map(String::as_str)
                .unwrap_or("a system");
            format!("We are aware of a problem with {name} and are working on it.")
        });
    let expires_at = a
        .ends_at
        .as_deref()
        .and_then(|t| crate::outage::file::timestamp::parse(t).ok())
        .filter(|&t| {
            t > super::outages::unix_now() && t < super::outages::unix_now() + 30 * 86_400
        });
    Ok((
        id.clone(),
        OutageSpec {
            id,
            message: Some(message),
            prompt: None,
            scope: vec![scope],
            starts_at: None,
            // Firing alerts usually carry a zero endsAt (filtered out above): the outage then
            // lasts until the resolved notification. A real future endsAt is kept.
            expires_at,
            callback: cfg.callback,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_maps_to_outage() {
        let mut cfg = AlertmanagerConfig::default();
        cfg.scopes.insert("payments".into(), "billing".into());
        let a = Alert {
            status: "firing".into(),
            labels: [
                ("alertname".into(), "PaymentsDown".into()),
                ("service".into(), "payments".into()),
            ]
            .into(),
            annotations: [("summary".into(), "Card payments are failing.".into())].into(),
            fingerprint: "abc123".into(),
            ends_at: Some("0001-01-01T00:00:00Z".into()),
        };
        let (id, spec) = alert_outage(&a, &cfg).unwrap();
        assert_eq!(id, "am-abc123");
        assert_eq!(spec.scope, ["billing"]);
        assert_eq!(spec.message.as_deref(), Some("Card payments are failing."));
        assert_eq!(spec.expires_at, None);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
