//! Caller memory and flow pictures on the admin API:
//! - `GET /api/callers?limit=&offset=`, `GET|PUT|DELETE /api/callers/{number}`
//!   (`PUT {"name": "Ann", "notes": "..."}`; DELETE erases everything kept of the number),
//!   `POST /api/callers/import` (CSV: `number,name,notes`, all rows or none).
//! - `GET /api/flows`, `GET /api/flows/{name}/graph.svg|graph.dot` (each node with its calls
//!   over the last hour), and the page `GET /flows` that shows them (no token for the page
//!   itself; it sends the token like the phone page).
//!
//! Numbers are written to the audit trail and logs as tags only.

use super::error::ApiError;
use super::request::{actor, parse_json};
use crate::flow::graph;
use crate::flow::FlowSet;
use crate::io::clock::unix_now;
use crate::io::traffic::Traffic;
use crate::store::callers::{is_number, number_tag, parse_csv, CallerEdit, CallerRow};
use crate::store::Store;
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::info;

const PAGE_HTML: &str = include_str!("../../../web/flows.html");

#[derive(Clone)]
pub struct CallersState {
    pub store: Arc<Store>,
    pub number_key: Arc<Vec<u8>>,
    pub flows: Arc<ArcSwap<FlowSet>>,
    pub traffic: Arc<Traffic>,
}

pub fn api_routes() -> Router<CallersState> {
    Router::new()
        .route("/api/callers", get(list))
        .route("/api/callers/import", post(import))
        .route("/api/callers/{number}", get(one).put(put).delete(erase))
        .route("/api/flows", get(flows))
        .route("/api/flows/{file}", get(flow_graph))
}

pub fn page_routes() -> Router<CallersState> {
    Router::new().route("/flows", get(|| async { Html(PAGE_HTML) }))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    100
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn checked(number: &str) -> Result<String, ApiError> {
    if is_number(number) {
        Ok(number.to_string())
    } else {
        Err(ApiError::BadRequest(format!(
            "'{number}' is not a phone number (digits, an optional leading +)"
        )))
    }
}

async fn list(
    State(st): State<CallersState>,
    Query(p): Query<Page>,
) -> Result<Json<Vec<CallerRow>>, ApiError> {
    let limit = p.limit.clamp(1, 1000);
    Ok(Json(
        blocking(move || st.store.callers(limit, p.offset)).await?,
    ))
}

async fn one(
    State(st): State<CallersState>,
    Path(number): Path<String>,
) -> Result<Json<CallerRow>, ApiError> {
    let number = checked(&number)?;
    let n = number.clone();
    blocking(move || st.store.caller_row(&n))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("nothing is kept of this number".into()))
}

async fn put(
    State(st): State<CallersState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(number): Path<String>,
    body: Bytes,
) -> Result<Json<CallerRow>, ApiError> {
    let number = checked(&number)?;
    let mut edit: CallerEdit = parse_json(&body)?;
    edit.number = number.clone();
    let who = actor(&headers, peer);
    let tag = number_tag(&st.number_key, &number);
    info!(caller = %tag, actor = %who, "caller record set");
    let n = number.clone();
    let row = blocking(move || {
        st.store
            .put_callers(&[edit], &who, &tag, unix_now() as i64)?;
        st.store.caller_row(&n)
    })
    .await?;
    row.map(Json)
        .ok_or_else(|| ApiError::Internal("the record was written but cannot be read".into()))
}

async fn erase(
    State(st): State<CallersState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    let number = checked(&number)?;
    let who = actor(&headers, peer);
    let tag = number_tag(&st.number_key, &number);
    info!(caller = %tag, actor = %who, "caller record erased");
    let gone = blocking(move || {
        st.store
            .erase_caller(&number, &tag, &who, unix_now() as i64)
    })
    .await?;
    if gone {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("nothing is kept of this number".into()))
    }
}

#[derive(Serialize)]
struct Imported {
    imported: usize,
}

async fn import(
    State(st): State<CallersState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Imported>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the CSV is not UTF-8".into()))?;
    let rows = parse_csv(text).map_err(|errors| {
        ApiError::BadRequest(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let who = actor(&headers, peer);
    let what = format!("{} rows (csv)", rows.len());
    info!(rows = rows.len(), actor = %who, "callers imported");
    let n = blocking(move || st.store.put_callers(&rows, &who, &what, unix_now() as i64)).await?;
    Ok(Json(Imported { imported: n }))
}

#[derive(Serialize)]
struct FlowJson {
    name: String,
    file: String,
    nodes: usize,
    default: bool,
}

async fn flows(State(st): State<CallersState>) -> Json<Vec<FlowJson>> {
    let set = st.flows.load();
    Json(
        set.flows
            .values()
            .map(|f| FlowJson {
                name: f.name.clone(),
                file: f.file.display().to_string(),
                nodes: f.nodes.len(),
                default: f.name == set.default.name,
            })
            .collect(),
    )
}

/// `NAME.svg` or `NAME.dot`: the flow drawn with each node's calls in the last hour.
async fn flow_graph(
    State(st): State<CallersState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let (name, svg) = match (file.strip_suffix(".svg"), file.strip_suffix(".dot")) {
        (Some(n), _) => (n.to_string(), true),
        (_, Some(n)) => (n.to_string(), false),
        _ => return Err(ApiError::NotFound("ask for NAME.svg or NAME.dot".into())),
    };
    let flow = st
        .flows
        .load()
        .flows
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no flow named '{name}'")))?;
    let traffic = st.traffic.last_hour(&flow.name, unix_now());
    let dot = graph::dot(&flow, Some(&traffic));
    if !svg {
        return Ok((
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            dot,
        )
            .into_response());
    }
    // Laying out is CPU work (milliseconds for a flow): off the async threads.
    let svg = tokio::task::spawn_blocking(move || graph::svg(&dot))
        .await?
        .map_err(ApiError::Internal)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}
