//! The admin HTTP API (JSON, bearer token): outages, calls in progress, callbacks, audit
//! log, flow reload, and the unauthenticated health endpoints.
//! Bad input gets a 4xx with a message that says what is wrong; nothing changes then.

use super::error::ApiError;
use super::request::{actor, parse_json};
use crate::config::AlertmanagerConfig;
use crate::io::clock::unix_now;
use crate::io::daemon::ReloadFn;
use crate::io::outages::OutageBoard;
use crate::io::registry::CallRegistry;
use crate::outage::{Outage, OutageSpec, Source};
use crate::store::Store;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{info, warn};

#[derive(Clone)]
pub struct AdminState {
    pub board: Arc<OutageBoard>,
    pub store: Arc<Store>,
    pub calls: Arc<CallRegistry>,
    pub ready: Arc<AtomicBool>,
    pub reload: ReloadFn,
    pub alertmanager: Arc<AlertmanagerConfig>,
}

/// The API routes; the server puts them behind the bearer token.
pub fn api_routes() -> Router<AdminState> {
    Router::new()
        .route("/api/outages", get(list_outages).post(create_outage))
        .route(
            "/api/outages/{id}",
            get(get_outage).put(put_outage).delete(delete_outage),
        )
        .route("/api/calls", get(calls))
        .route("/api/callbacks", get(callbacks))
        .route("/api/audit", get(audit))
        .route("/api/reload", post(reload))
}

/// Health endpoints for load balancers and systemd-style probes: no token.
pub fn health_routes() -> Router<AdminState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
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
        .ok_or_else(|| ApiError::NotFound(format!("no outage with id '{id}'")))?;
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
        return Err(ApiError::BadRequest(format!(
            "body id '{}' does not match the URL's '{id}'",
            spec.id
        )));
    }
    upsert(st, spec, &actor(&headers, peer)).await
}

async fn upsert(st: AdminState, spec: OutageSpec, actor: &str) -> Result<Response, ApiError> {
    let (outage, created) = st.board.upsert(spec, Source::Api, actor).await?;
    let active = outage.is_active(unix_now());
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
    Ok(Json(
        tokio::task::spawn_blocking(move || store.callbacks()).await??,
    ))
}

async fn audit(
    State(st): State<AdminState>,
) -> Result<Json<Vec<crate::store::AuditEntry>>, ApiError> {
    let store = st.store.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || store.audit(200)).await??,
    ))
}

async fn reload(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = actor(&headers, peer);
    let f = st.reload.clone();
    let result = tokio::task::spawn_blocking(move || f()).await?;
    match result {
        Ok(summary) => {
            info!(by = %who, "flows reloaded: {summary}");
            Ok(Json(
                serde_json::json!({ "reloaded": true, "summary": summary }),
            ))
        }
        Err(errors) => {
            warn!(by = %who, "reload refused, the running flows stay: {errors}");
            Err(ApiError::Unprocessable(errors.to_string()))
        }
    }
}
