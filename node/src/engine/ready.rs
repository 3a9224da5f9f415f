//! "Key ready" notifications for blocked clients: a client waiting on keys registers a watch;
//! once a batch that wrote a collection record at one of those keys is durable (and readable),
//! the writer's finishing step wakes the watch. A wake-up is a hint to retry, never a promise
//! that something is there (another client may have taken it). When no client waits, the
//! writer's check is one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::keys;

type Waiters = HashMap<Vec<u8>, Vec<(u64, Arc<Notify>)>>;

#[derive(Default)]
pub struct KeyReady {
    /// Storage key -> the watches waiting on it.
    waiters: Mutex<Waiters>,
    /// Number of registered watches (read without the lock).
    watches: AtomicUsize,
    next_id: AtomicU64,
}

impl KeyReady {
    /// Whether any client waits (cheap: the writer asks after every batch).
    pub fn watched(&self) -> bool {
        self.watches.load(Ordering::Acquire) > 0
    }

    /// Registers a watch on `keys` (user keys) until the returned guard drops.
    pub fn watch(self: &Arc<Self>, user_keys: &[&[u8]]) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut skeys: Vec<Vec<u8>> = user_keys.iter().map(|k| keys::storage_key(k)).collect();
        skeys.sort();
        skeys.dedup();
        if let Ok(mut w) = self.waiters.lock() {
            for k in &skeys {
                w.entry(k.clone()).or_default().push((id, notify.clone()));
            }
        }
        self.watches.fetch_add(1, Ordering::AcqRel);
        Watch {
            ready: self.clone(),
            id,
            skeys,
            notify,
        }
    }

    /// Wakes the watches waiting on storage key `skey`.
    pub fn signal(&self, skey: &[u8]) {
        if let Ok(w) = self.waiters.lock()
            && let Some(list) = w.get(skey)
        {
            for (_, n) in list {
                n.notify_one();
            }
        }
    }

    fn unwatch(&self, id: u64, skeys: &[Vec<u8>]) {
        if let Ok(mut w) = self.waiters.lock() {
            for k in skeys {
                if let Some(list) = w.get_mut(k) {
                    list.retain(|(i, _)| *i != id);
                    if list.is_empty() {
                        w.remove(k);
                    }
                }
            }
        }
        self.watches.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A registered watch; unregisters itself when dropped (also when its client goes away).
pub struct Watch {
    ready: Arc<KeyReady>,
    id: u64,
    skeys: Vec<Vec<u8>>,
    notify: Arc<Notify>,
}

impl Watch {
    /// Resolves after a signal on one of the keys (at once if one came since the last call).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.ready.unwatch(self.id, &self.skeys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_signal_before_the_wait_is_not_lost() {
        let r = Arc::new(KeyReady::default());
        let w = r.watch(&[b"a", b"b"]);
        assert!(r.watched());
        r.signal(&keys::storage_key(b"b"));
        tokio::time::timeout(Duration::from_secs(1), w.notified())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn other_keys_do_not_wake_and_dropping_unregisters() {
        let r = Arc::new(KeyReady::default());
        let w = r.watch(&[b"a"]);
        r.signal(&keys::storage_key(b"z"));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), w.notified())
                .await
                .is_err()
        );
        drop(w);
        assert!(!r.watched());
        assert!(r.waiters.lock().unwrap().is_empty());
    }
}
