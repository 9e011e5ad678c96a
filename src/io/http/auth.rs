//! The admin bearer token: created on first start (mode 0600), checked on every API route.

use super::error::ApiError;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::info;

#[derive(Debug, thiserror::Error)]
#[error("admin token file {path}: {reason}")]
pub struct TokenError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads the admin bearer token, creating a random one (mode 0600) on first start.
pub fn load_or_create_token(path: &Path) -> Result<String, TokenError> {
    let err = |reason: String| TokenError {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(err("is empty".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let token: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            writeln!(f, "{token}").map_err(|e| err(e.to_string()))?;
            info!(file = %path.display(), "created a new admin API token");
            Ok(token)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Middleware: the request goes on only with `Authorization: Bearer <token>`.
pub async fn require_token(
    State(token): State<Arc<str>>,
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
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::Unauthorized("wrong bearer token").into_response(),
        None => {
            ApiError::Unauthorized("missing 'Authorization: Bearer TOKEN' header").into_response()
        }
    }
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
