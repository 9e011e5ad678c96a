//! Keeps the board in step with the clock (expiry, scheduled starts) and the watched file.

use super::OutageBoard;
use crate::outage::Source;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Keeps the board in step with time (expiry, scheduled starts) and the watched file.
pub fn spawn_watchers(board: Arc<OutageBoard>, file: Option<PathBuf>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut seen: Option<(Option<SystemTime>, u64)> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            board.tick().await;
            let Some(path) = &file else { continue };
            let stamp = match tokio::fs::metadata(path).await {
                Ok(md) => (md.modified().ok(), md.len()),
                Err(_) => (None, 0),
            };
            if seen == Some(stamp) {
                continue;
            }
            seen = Some(stamp);
            sync_file(&board, path).await;
        }
    });
}

/// Reads the outages file and makes the file-sourced outages match it. A broken file is
/// reported and changes nothing.
pub async fn sync_file(board: &OutageBoard, path: &Path) {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            error!(file = %path.display(), error = %e, "cannot read outages file");
            return;
        }
    };
    match crate::outage::file::parse(path, &text) {
        Ok(specs) => {
            let actor = format!("file:{}", path.display());
            board.sync_source(Source::File, specs, &actor).await;
        }
        Err(errors) => {
            for e in &errors.0 {
                error!("{e}");
            }
            error!(file = %path.display(), "outages file has errors; the outages in force are unchanged");
        }
    }
}
