//! "Key ready" notifications for blocked clients: a client waiting on keys registers a watch;
//! once a batch that wrote a collection record at one of those keys is durable (and readable),
//! the writer's finishing step wakes the watch. A wake-up is a hint to retry, never a promise
//! that something is there (another client may have taken it). When no client waits, the
//! writer's check is one atomic load.
//!
//! Watches on a key are served first come, first served: a signal wakes the oldest watch of
//! the key, and a watch that ends (served, timed out, or its client gone) passes the wake-up to
//! the next one, which retries and finds whatever is left.

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

    /// Wakes the oldest watch waiting on storage key `skey`.
    pub fn signal(&self, skey: &[u8]) {
        if let Ok(w) = self.waiters.lock()
            && let Some((_, n)) = w.get(skey).and_then(|list| list.first())
        {
            n.notify_one();
        }
    }

    /// Whether watch `id` is the oldest on any of `skeys`.
    fn first_on_any(&self, id: u64, skeys: &[Vec<u8>]) -> bool {
        self.waiters.lock().is_ok_and(|w| {
            skeys.iter().any(|k| {
                w.get(k)
                    .and_then(|l| l.first())
                    .is_some_and(|(i, _)| *i == id)
            })
        })
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
        // The next watch of each key retries: whatever this one left is its turn.
        for k in skeys {
            self.signal(k);
        }
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

    /// Whether this watch is the oldest on one of its keys (its turn to be served there).
    pub fn is_first(&self) -> bool {
        self.ready.first_on_any(self.id, &self.skeys)
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

    #[tokio::test]
    async fn the_oldest_watch_is_woken_first_and_passes_the_turn_on() {
        let r = Arc::new(KeyReady::default());
        let first = r.watch(&[b"k"]);
        let second = r.watch(&[b"k", b"other"]);
        assert!(first.is_first());
        assert!(second.is_first(), "oldest on its other key");
        let third = r.watch(&[b"k"]);
        assert!(!third.is_first());
        r.signal(&keys::storage_key(b"k"));
        let quick = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(quick, second.notified())
                .await
                .is_err()
        );
        tokio::time::timeout(quick, first.notified())
            .await
            .expect("oldest woken");
        drop(first);
        tokio::time::timeout(quick, second.notified())
            .await
            .expect("turn passed on");
        assert!(tokio::time::timeout(quick, third.notified()).await.is_err());
    }
}
