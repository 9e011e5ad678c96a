//! Calls in progress, for the admin API's summary (no caller numbers here) and for the
//! drain, which waits until the last one has gone.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    pub call_id: String,
    pub flow: String,
    pub node: String,
    pub transport: String,
    /// Unix seconds.
    pub started_at: u64,
    pub overflow: bool,
}

#[derive(Default)]
pub struct CallRegistry {
    calls: Mutex<HashMap<u64, CallInfo>>,
    next: AtomicU64,
    /// Woken whenever a call leaves.
    left: tokio::sync::Notify,
}

/// Removes its call from the registry when dropped.
pub struct Registered {
    registry: Arc<CallRegistry>,
    key: u64,
}

impl CallRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CallInfo>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(self: &Arc<Self>, info: CallInfo) -> Registered {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, info);
        Registered {
            registry: self.clone(),
            key,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Completes once no call is in progress.
    pub async fn emptied(&self) {
        loop {
            let left = self.left.notified();
            if self.len() == 0 {
                return;
            }
            left.await;
        }
    }

    pub fn snapshot(&self) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then(a.call_id.cmp(&b.call_id))
        });
        v
    }
}

impl Registered {
    pub fn set_node(&self, node: &str) {
        if let Some(c) = self.registry.lock().get_mut(&self.key) {
            c.node = node.to_string();
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
        self.registry.left.notify_waiters();
    }
}
