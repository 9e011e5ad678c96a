//! The outage board: the one place outages change. Every source (admin API, CLI, the
//! watched file, Alertmanager) goes through it; it validates, renders the message to audio,
//! stores durably, and publishes the set of active outages that calls read lock-free.

use super::tts::Tts;
use crate::io::clock::unix_now;
use crate::io::files::SoundLibrary;
use crate::media::prompt::Prompt;
use crate::metrics as m;
use crate::outage::alertmanager::{net_effect, Change};
use crate::outage::{
    reconcile, Announcement, Outage, OutageMap, OutageSet, OutageSpec, Source, SpecError,
};
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{error, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("{0}")]
    Invalid(#[from] SpecError),
    #[error("cannot render the outage message: {0}")]
    Render(String),
    #[error("no outage with id '{0}'")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A blocking task (storage, prompt loading) died: a fault of the server, not the input.
    #[error("internal error: {0}")]
    Task(#[from] tokio::task::JoinError),
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
        let outages = tokio::task::spawn_blocking(move || s.outages()).await??;
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

    /// Takes the stored outages as they are now (another node changed them): new and
    /// changed ones are rendered, gone ones dropped, and the set published.
    pub async fn resync(&self) {
        let s = self.store.clone();
        let stored = match tokio::task::spawn_blocking(move || s.outages()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot reload outages from the store");
                return;
            }
            Err(_) => return,
        };
        let mut inner = self.inner.lock().await;
        let mut changed = false;
        for (id, o) in &stored {
            let same = inner
                .outages
                .get(id)
                .is_some_and(|have| have.updated_at == o.updated_at && have.spec == o.spec);
            if same {
                continue;
            }
            match self.render(&o.spec).await {
                Ok(p) => {
                    inner.rendered.insert(id.clone(), p);
                }
                Err(e) => {
                    error!(outage = %id, error = %e, "outage from another node cannot be announced")
                }
            }
            info!(outage = %id, by = %o.updated_by, "outage changed on another node");
            inner.outages.insert(id.clone(), o.clone());
            changed = true;
        }
        let gone: Vec<String> = inner
            .outages
            .keys()
            .filter(|id| !stored.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            info!(outage = %id, "outage ended on another node");
            inner.outages.remove(&id);
            inner.rendered.remove(&id);
            changed = true;
        }
        if changed {
            self.publish(&inner);
        }
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
        spec.validate()?;
        if spec.expires_at.is_some_and(|e| e <= unix_now()) {
            return Err(SpecError::Expired.into());
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
        tokio::task::spawn_blocking(move || store.put_outage(&o, &action_s)).await??;
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
            .await??;
        inner.outages.remove(id);
        inner.rendered.remove(id);
        info!(outage = %id, by = %actor, "outage stopped");
        self.publish(&inner);
        Ok(())
    }

    /// Makes the outages of one source exactly `specs` (the watched file owns its outages).
    pub async fn sync_source(&self, source: Source, specs: Vec<OutageSpec>, actor: &str) {
        let plan = {
            let inner = self.inner.lock().await;
            reconcile::sync_source(&inner.outages, source, &specs)
        };
        for (id, owner) in &plan.foreign {
            warn!(outage = %id, "outage in the {} source is ignored: the same id was started through {}", source.as_str(), owner.as_str());
        }
        for spec in plan.start {
            let id = spec.id.clone();
            if let Err(e) = self.upsert(spec, source, actor).await {
                error!(outage = %id, error = %e, "outage from {} not started", source.as_str());
            }
        }
        for id in plan.stop {
            if let Err(e) = self.stop(&id, actor).await {
                error!(outage = %id, error = %e, "outage not stopped");
            }
        }
    }

    /// Applies an Alertmanager batch whole or not at all, as if its alerts were applied in
    /// order (`alertmanager::net_effect`): every outage it starts is validated and rendered
    /// first, then all changes are stored in one transaction. Returns the ids of the firing
    /// and the resolved alerts, in the batch's order.
    pub async fn apply_alerts(
        &self,
        changes: Vec<Change>,
        actor: &str,
    ) -> Result<(Vec<String>, Vec<String>), BoardError> {
        let now = unix_now();
        let mut started = Vec::new();
        let mut stopped = Vec::new();
        for change in &changes {
            match change {
                Change::Start(spec) => started.push(spec.id.clone()),
                Change::Stop(id) => stopped.push(id.clone()),
            }
        }
        let net = net_effect(&changes);
        let mut rendered = Vec::new();
        for change in &net {
            if let Change::Start(spec) = change {
                spec.validate()?;
                if spec.expires_at.is_some_and(|e| e <= now) {
                    return Err(SpecError::Expired.into());
                }
                rendered.push((spec.clone(), self.render(spec).await?));
            }
        }
        let mut inner = self.inner.lock().await;
        let mut puts = Vec::new();
        for (spec, _) in &rendered {
            let action = if inner.outages.contains_key(&spec.id) {
                "update"
            } else {
                "start"
            };
            let outage = Outage {
                spec: spec.clone(),
                source: Source::Alertmanager,
                updated_at: now,
                updated_by: actor.to_string(),
            };
            puts.push((outage, action));
        }
        let stops: Vec<String> = net
            .iter()
            .filter_map(|c| match c {
                Change::Stop(id) => Some(id.clone()),
                Change::Start(_) => None,
            })
            .collect();
        let store = self.store.clone();
        let (p, st, who) = (puts.clone(), stops.clone(), actor.to_string());
        tokio::task::spawn_blocking(move || store.apply_outages(&p, &st, &who, now)).await??;
        for ((outage, action), (_, prompt)) in puts.into_iter().zip(rendered) {
            info!(outage = %outage.spec.id, by = %actor, via = "alertmanager", scope = ?outage.spec.scope, "outage {action}");
            inner.rendered.insert(outage.spec.id.clone(), prompt);
            inner.outages.insert(outage.spec.id.clone(), outage);
        }
        for id in stops {
            if inner.outages.remove(&id).is_some() {
                info!(outage = %id, by = %actor, "outage stopped");
            }
            inner.rendered.remove(&id);
        }
        self.publish(&inner);
        Ok((started, stopped))
    }

    /// Publishes a new set when outages start or expire with time; drops expired ones.
    pub async fn tick(&self) {
        let now = unix_now();
        let expired = {
            let inner = self.inner.lock().await;
            reconcile::expired(&inner.outages, now)
        };
        for id in expired {
            info!(outage = %id, "outage expired");
            let _ = self.stop(&id, "expiry").await;
        }
        let inner = self.inner.lock().await;
        if reconcile::needs_publish(&inner.outages, &self.current.load(), now) {
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
        .await?
        .map_err(|e| BoardError::Render(e.to_string()))
    }
}
