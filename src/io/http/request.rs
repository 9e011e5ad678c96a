//! What the admin routes read from a request besides its path: who is acting, a JSON body.

use super::error::ApiError;
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::Deserialize;
use std::net::SocketAddr;

/// Who made a change: the `X-Ivrd-Actor` header (the CLI sends user@host), else the peer.
pub fn actor(headers: &HeaderMap, peer: SocketAddr) -> String {
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
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
