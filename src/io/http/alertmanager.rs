//! `POST /api/alertmanager`: Alertmanager's webhook. The batch is mapped and checked whole
//! (`outage::alertmanager`), then applied whole by the board; a bad alert changes nothing.

use super::admin::AdminState;
use super::error::ApiError;
use super::request::parse_json;
use crate::io::clock::unix_now;
use crate::outage::alertmanager::{changes, Webhook};
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;

pub async fn webhook(
    State(st): State<AdminState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hook: Webhook = parse_json(&body)?;
    let changes = changes(&hook, &st.alertmanager, unix_now())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let (started, stopped) = st.board.apply_alerts(changes, "alertmanager").await?;
    Ok(Json(
        serde_json::json!({ "started": started, "stopped": stopped }),
    ))
}
