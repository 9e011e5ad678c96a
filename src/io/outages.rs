//! The outage board: the one place outages change. Every source (admin API, CLI, the
//! watched file, Alertmanager) goes through it; it validates, renders the message to audio,
//! stores durably, and publishes the set of active outages that calls read lock-free.

use super::tts::Tts;
use crate::media::library::SoundLibrary;
use crate::media::prompt::Prompt;
use crate::metrics as m;
use crate::outage::{Announcement, Outage, OutageMap, OutageSet, OutageSpec, Source};
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot render the outage message: {0}")]
    Render(String),
    #[error("no outage with id '{0}'")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

struct Inner {
    outages: OutageMap,
    rendered: HashMap<String, Arc<Prompt>>,
}

pub struct OutageBoard {
    store: Arc<Store>,
    tts: Option<Arc<Tts>>,
    sounds_dir: PathBuf,
    current: ArcSwap<OutageSet>,
    inner: tokio::sync::Mutex<Inner>,
}

impl OutageBoard {
    /// Loads the stored outages (they survive restarts) and renders their audio.
    pub async fn open(
        store: Arc<Store>,
        tts: Option<Arc<Tts>>,
        sounds_dir: &Path,
    ) -> Result<Arc<Self>, BoardError> {
        let s = store.clone();
        let outages = tokio::task::spawn_blocking(move || s.outages())
            .await
            .map_err(|e| BoardError::Invalid(e.to_string()))??;
        let board = Arc::new(OutageBoard {
            store,
            tts,
            sounds_dir: sounds_dir.to_path_buf(),
            current: ArcSwap::from_pointee(OutageSet::default()),
            inner: tokio::sync::Mutex::new(Inner {
                outages: OutageMap::new(),
                rendered: HashMap::new(),
            }),
        });
        {
            let mut inner = board.inner.lock().await;
            for (id, o) in outages {
                match board.render(&o.spec).await {
                    Ok(p) => {
                        inner.rendered.insert(id.clone(), p);
                    }
                    Err(e) => error!(outage = %id, error = %e, "stored outage cannot be announced"),
                }
                inner.outages.insert(id, o);
            }
            board.publish(&inner);
        }
        Ok(board)
    }

    /// The active outages, for calls.
    pub fn current(&self) -> Arc<OutageSet> {
        self.current.load_full()
    }

    /// Every stored outage with whether it is active now.
    pub async fn list(&self) -> Vec<(Outage, bool)> {
        let now = unix_now();
        let inner = self.inner.lock().await;
        let mut v: Vec<(Outage, bool)> = inner
            .outages
            .values()
            .map(|o| (o.clone(), o.is_active(now)))
            .collect();
        v.sort_by(|a, b| a.0.spec.id.cmp(&b.0.spec.id));
        v
    }

    pub async fn get(&self, id: &str) -> Option<(Outage, bool)> {
        let inner = self.inner.lock().await;
        inner
            .outages
            .get(id)
            .map(|o| (o.clone(), o.is_active(unix_now())))
    }

    /// Starts or replaces an outage. Returns it and whether it is new.
    pub async fn upsert(
        &self,
        spec: OutageSpec,
        source: Source,
        actor: &str,
    ) -> Result<(Outage, bool), BoardError> {
        spec.validate().map_err(BoardError::Invalid)?;
        if spec.expires_at.is_some_and(|e| e <= unix_now()) {
            return Err(BoardError::Invalid("expires_at is in the past".into()));
        }
        let prompt = self.render(&spec).await?;
        let outage = Outage {
            spec,
            source,
            updated_at: unix_now(),
            updated_by: actor.to_string(),
        };
        let mut inner = self.inner.lock().await;
        let created = !inner.outages.contains_key(&outage.spec.id);
        let action = if created { "start" } else { "update" };
        let store = self.store.clone();
        let o = outage.clone();
        let action_s = action.to_string();
        tokio::task::spawn_blocking(move || store.put_outage(&o, &action_s))
            .await
            .map_err(|e| BoardError::Invalid(e.to_string()))??;
        info!(outage = %outage.spec.id, by = %actor, via = source.as_str(), scope = ?outage.spec.scope, "outage {action}");
        inner.rendered.insert(outage.spec.id.clone(), prompt);
        inner.outages.insert(outage.spec.id.clone(), outage.clone());
        self.publish(&inner);
        Ok((outage, created))
    }

    /// Ends an outage.
    pub async fn stop(&self, id: &str, actor: &str) -> Result<(), BoardError> {
        let mut inner = self.inner.lock().await;
        if !inner.outages.contains_key(id) {
            return Err(BoardError::NotFound(id.to_string()));
        }
        let store = self.store.clone();
        let (id_s, actor_s) = (id.to_string(), actor.to_string());
        tokio::task::spawn_blocking(move || store.delete_outage(&id_s, &actor_s, unix_now()))
            .await
            .map_err(|e| BoardError::Invalid(e.to_string()))??;
        inner.outages.remove(id);
        inner.rendered.remove(id);
        info!(outage = %id, by = %actor, "outage stopped");
        self.publish(&inner);
        Ok(())
    }

    /// Makes the outages of one source exactly `specs` (the watched file owns its outages).
    pub async fn sync_source(&self, source: Source, specs: Vec<OutageSpec>, actor: &str) {
        let existing: Vec<(String, Source, OutageSpec)> = {
            let inner = self.inner.lock().await;
            inner
                .outages
                .values()
                .map(|o| (o.spec.id.clone(), o.source, o.spec.clone()))
                .collect()
        };
        for spec in &specs {
            match existing.iter().find(|(id, _, _)| *id == spec.id) {
                Some((_, s, _)) if *s != source => {
                    warn!(outage = %spec.id, "outage in the {} source is ignored: the same id was started through {}", source.as_str(), s.as_str());
                    continue;
                }
                Some((_, _, old)) if old == spec => continue,
                _ => {}
            }
            if let Err(e) = self.upsert(spec.clone(), source, actor).await {
                error!(outage = %spec.id, error = %e, "outage from {} not started", source.as_str());
            }
        }
        for (id, s, _) in existing {
            if s == source && !specs.iter().any(|sp| sp.id == id) {
                if let Err(e) = self.stop(&id, actor).await {
                    error!(outage = %id, error = %e, "outage not stopped");
                }
            }
        }
    }

    /// Publishes a new set when outages start or expire with time; drops expired ones.
    pub async fn tick(&self) {
        let now = unix_now();
        let expired: Vec<String> = {
            let inner = self.inner.lock().await;
            inner
                .outages
                .values()
                .filter(|o| o.spec.expires_at.is_some_and(|e| e <= now))
                .map(|o| o.spec.id.clone())
                .collect()
        };
        for id in expired {
            info!(outage = %id, "outage expired");
            let _ = self.stop(&id, "expiry").await;
        }
        let inner = self.inner.lock().await;
        let active: Vec<&str> = inner
            .outages
            .values()
            .filter(|o| o.is_active(now))
            .map(|o| o.spec.id.as_str())
            .collect();
        let current = self.current.load();
        if active.len() != current.len()
            || !current
                .items
                .iter()
                .all(|a| active.contains(&a.outage.spec.id.as_str()))
        {
            self.publish(&inner);
        }
    }

    fn publish(&self, inner: &Inner) {
        let items: Vec<Arc<Announcement>> = inner
            .outages
            .values()
            .filter_map(|o| {
                inner.rendered.get(&o.spec.id).map(|p| {
                    Arc::new(Announcement {
                        outage: o.clone(),
                        prompt: p.clone(),
                    })
                })
            })
            .collect();
        let set = OutageSet::active(items, unix_now());
        metrics::gauge!(m::OUTAGES_ACTIVE).set(set.len() as f64);
        self.current.store(Arc::new(set));
    }

    async fn render(&self, spec: &OutageSpec) -> Result<Arc<Prompt>, BoardError> {
        if let Some(text) = &spec.message {
            let tts = self.tts.as_ref().ok_or_else(|| {
                BoardError::Render(
                    "text to speech is disabled (tts: ~); give a 'prompt' file".into(),
                )
            })?;
            return tts
                .render(text)
                .await
                .map_err(|e| BoardError::Render(e.to_string()));
        }
        let name = spec.prompt.clone().unwrap_or_default();
        let dir = self.sounds_dir.clone();
        tokio::task::spawn_blocking(move || {
            use crate::flow::PromptSource;
            SoundLibrary::new(&dir).prompt(&name)
        })
        .await
        .map_err(|e| BoardError::Render(e.to_string()))?
        .map_err(BoardError::Render)
    }
}

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
