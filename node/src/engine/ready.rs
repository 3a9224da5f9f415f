//! "Key ready" notifications for blocked clients: a client waiting on keys registers a watch;
//! once a batch that wrote a collection record at one of those keys is durable (and readable),
//! the writer's finishing step wakes the watch. A wake-up is a hint to retry, never a promise
//! that something is there (another client may have taken it). When no client waits, the
//! writer's check is one atomic load.
//!
//! Watches on a key are served first come, first served, as Redis serves its blocked clients:
//! a signal wakes the oldest watch of the key, a watch attempts only on the keys where it is
//! the oldest (`Watch::first_keys`: a newer command never takes what an older one was woken
//! for), and a watch that ends (served, timed out, or its client gone) passes the wake-up to
//! the next one, which retries and finds whatever is left.
//!
//! Turns: waking an idle watch opens a turn, numbered from a generation counter, that closes
//! when the watch's retry has finished. A connection that wrote something waits
//! (`KeyReady::settle`) until the turns opened since its command began are closed before it
//! answers, so the clients its write fed have been served by then, as in Redis, where blocked
//! clients are served before the writer's reply (and before any later command). A retry settles
//! the turns its own write opened (a BLMOVE feeding another blocked client) before closing its
//! own. A busy watch (in its retry) gets no turn, only a wake-up: since a holder only ever waits
//! for turns numbered above the generation its retry began at, which is at or above its own
//! turn's number, waits cannot form a cycle.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::keys;

/// Longest a reply waits for the turns it opened (a safety bound: a retry is one local
/// writer operation, unless the key's range moved meanwhile and it is forwarded).
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

struct Slot {
    notify: Arc<Notify>,
    /// When its command reached the host (`crate::arrival`; u64::MAX: unknown, queued last).
    arrival: u64,
    /// In a retry (woken again afterwards, without a turn).
    busy: bool,
    /// Its open turn.
    turn: Option<u64>,
}

#[derive(Default)]
struct State {
    /// Storage key -> the watches waiting on it, oldest first.
    waiters: HashMap<Vec<u8>, Vec<u64>>,
    slots: HashMap<u64, Slot>,
    /// Open turns.
    turns: BTreeSet<u64>,
    /// The last turn number handed out.
    generation: u64,
}

impl State {
    /// Wakes the oldest watch waiting on `skey`, opening a turn for it when it is idle.
    fn wake_oldest(&mut self, skey: &[u8]) {
        let Some(id) = self.waiters.get(skey).and_then(|l| l.first()) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if !slot.busy && slot.turn.is_none() {
            self.generation += 1;
            slot.turn = Some(self.generation);
            self.turns.insert(self.generation);
        }
        slot.notify.notify_one();
    }
}

pub struct KeyReady {
    state: Mutex<State>,
    /// Number of registered watches (read without the lock).
    watches: AtomicUsize,
    /// Mirrors of `state.turns.len()` and `state.generation` (read without the lock).
    open_turns: AtomicUsize,
    generation: AtomicU64,
    /// Bumped whenever a turn closes.
    closed: tokio::sync::watch::Sender<u64>,
    next_id: AtomicU64,
}

impl Default for KeyReady {
    fn default() -> Self {
        KeyReady {
            state: Mutex::default(),
            watches: AtomicUsize::new(0),
            open_turns: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            closed: tokio::sync::watch::Sender::new(0),
            next_id: AtomicU64::new(0),
        }
    }
}

impl KeyReady {
    /// Whether any client waits (cheap: the writer asks after every batch).
    pub fn watched(&self) -> bool {
        self.watches.load(Ordering::Acquire) > 0
    }

    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.lock().ok()
    }

    /// Publishes the lock-free mirrors (called with the lock held, after a change).
    fn mirror(&self, st: &State) {
        self.open_turns.store(st.turns.len(), Ordering::Release);
        self.generation.store(st.generation, Ordering::Release);
    }

    /// Registers a watch on `user_keys` until the returned guard drops, queued on each key
    /// behind the watches whose command arrived no later than `arrival` (the receive time of
    /// its request, when known; otherwise behind every watch registered so far).
    pub fn watch(self: &Arc<Self>, user_keys: &[&[u8]], arrival: Option<u64>) -> Watch {
        let arrival = arrival.unwrap_or(u64::MAX);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut keys: Vec<(Vec<u8>, Vec<u8>)> = user_keys
            .iter()
            .map(|k| (keys::storage_key(k), k.to_vec()))
            .collect();
        keys.sort();
        keys.dedup_by(|a, b| a.0 == b.0);
        if let Some(mut st) = self.lock() {
            let State { waiters, slots, .. } = &mut *st;
            for (k, _) in &keys {
                let list = waiters.entry(k.clone()).or_default();
                let at = list
                    .iter()
                    .position(|i| slots.get(i).is_some_and(|s| s.arrival > arrival))
                    .unwrap_or(list.len());
                list.insert(at, id);
            }
            st.slots.insert(
                id,
                Slot {
                    notify: notify.clone(),
                    arrival,
                    busy: false,
                    turn: None,
                },
            );
        }
        self.watches.fetch_add(1, Ordering::AcqRel);
        Watch {
            ready: self.clone(),
            id,
            keys,
            notify,
        }
    }

    /// Whether a client waits on one of `user_keys` here.
    pub fn waited_on(&self, user_keys: &[&[u8]]) -> bool {
        self.watched()
            && self.lock().is_some_and(|st| {
                user_keys
                    .iter()
                    .any(|k| st.waiters.contains_key(&keys::storage_key(k)))
            })
    }

    /// Wakes the oldest watch waiting on storage key `skey`.
    pub fn signal(&self, skey: &[u8]) {
        if let Some(mut st) = self.lock() {
            st.wake_oldest(skey);
            self.mirror(&st);
        }
    }

    /// The last turn number handed out: a command that starts now passes it to `settle`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Waits until every turn numbered above `after` is closed (at most `SETTLE_LIMIT`).
    /// With no open turn (no blocked client was woken) it is one atomic load.
    pub async fn settle(&self, after: u64) {
        if self.open_turns.load(Ordering::Acquire) == 0 {
            return;
        }
        let limit = Instant::now() + SETTLE_LIMIT;
        let mut closed = self.closed.subscribe();
        loop {
            let open = self
                .lock()
                .is_some_and(|st| st.turns.range(after + 1..).next().is_some());
            if !open {
                return;
            }
            let now = Instant::now();
            if now >= limit
                || tokio::time::timeout(limit - now, closed.changed())
                    .await
                    .is_err()
            {
                return;
            }
        }
    }

    fn close_turn(&self, st: &mut State, turn: Option<u64>) {
        if let Some(t) = turn {
            st.turns.remove(&t);
            self.closed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// A registered watch; unregisters itself when dropped (also when its client goes away).
pub struct Watch {
    ready: Arc<KeyReady>,
    id: u64,
    /// (storage key, user key), sorted and deduplicated by storage key.
    keys: Vec<(Vec<u8>, Vec<u8>)>,
    notify: Arc<Notify>,
}

impl Watch {
    /// Resolves after a signal on one of the keys (at once if one came since the last call).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The user keys on which this watch is the oldest (its turn to be served there).
    pub fn first_keys(&self) -> Vec<Vec<u8>> {
        let Some(st) = self.ready.lock() else {
            return Vec::new();
        };
        self.keys
            .iter()
            .filter(|(k, _)| st.waiters.get(k).and_then(|l| l.first()) == Some(&self.id))
            .map(|(_, u)| u.clone())
            .collect()
    }

    /// Starts a retry; returns the generation to `settle` the turns its own write opens.
    pub fn begin(&self) -> u64 {
        let Some(mut st) = self.ready.lock() else {
            return self.ready.generation();
        };
        if let Some(slot) = st.slots.get_mut(&self.id) {
            slot.busy = true;
        }
        st.generation
    }

    /// Ends a retry that served nothing: the watch is idle again and its turn, if any, closes.
    pub fn end(&self) {
        if let Some(mut st) = self.ready.lock() {
            let turn = st.slots.get_mut(&self.id).and_then(|slot| {
                slot.busy = false;
                slot.turn.take()
            });
            self.ready.close_turn(&mut st, turn);
            self.ready.mirror(&st);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let r = &self.ready;
        if let Some(mut st) = r.lock() {
            let mut was_first = Vec::new();
            for (k, _) in &self.keys {
                if let Some(list) = st.waiters.get_mut(k) {
                    if list.first() == Some(&self.id) {
                        was_first.push(k);
                    }
                    list.retain(|i| *i != self.id);
                    if list.is_empty() {
                        st.waiters.remove(k);
                    }
                }
            }
            // The next watch of each key retries: whatever this one left is its turn. Its
            // turn opens before this one's closes, so a writer settling this turn waits for
            // that one too.
            for k in was_first {
                st.wake_oldest(k);
            }
            let turn = st.slots.remove(&self.id).and_then(|s| s.turn);
            r.close_turn(&mut st, turn);
            r.mirror(&st);
        }
        r.watches.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(50);

    fn sk(k: &[u8]) -> Vec<u8> {
        keys::storage_key(k)
    }

    #[tokio::test]
    async fn a_signal_before_the_wait_is_not_lost() {
        let r = Arc::new(KeyReady::default());
        let w = r.watch(&[b"a", b"b"], None);
        assert!(r.watched());
        r.signal(&sk(b"b"));
        tokio::time::timeout(Duration::from_secs(1), w.notified())
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn other_keys_do_not_wake_and_dropping_unregisters() {
        let r = Arc::new(KeyReady::default());
        let w = r.watch(&[b"a"], None);
        r.signal(&sk(b"z"));
        assert!(tokio::time::timeout(QUICK, w.notified()).await.is_err());
        drop(w);
        assert!(!r.watched());
        let st = r.state.lock().unwrap();
        assert!(st.waiters.is_empty() && st.slots.is_empty() && st.turns.is_empty());
    }

    #[tokio::test]
    async fn the_oldest_watch_is_woken_first_and_passes_the_turn_on() {
        let r = Arc::new(KeyReady::default());
        let first = r.watch(&[b"k"], None);
        let second = r.watch(&[b"k", b"other"], None);
        assert_eq!(first.first_keys(), [b"k".to_vec()]);
        assert_eq!(
            second.first_keys(),
            [b"other".to_vec()],
            "oldest on its other key"
        );
        let third = r.watch(&[b"k"], None);
        assert!(third.first_keys().is_empty());
        r.signal(&sk(b"k"));
        assert!(
            tokio::time::timeout(QUICK, second.notified())
                .await
                .is_err()
        );
        tokio::time::timeout(QUICK, first.notified())
            .await
            .expect("oldest woken");
        drop(first);
        tokio::time::timeout(QUICK, second.notified())
            .await
            .expect("turn passed on");
        let mut now_first = second.first_keys();
        now_first.sort();
        assert_eq!(now_first, [b"k".to_vec(), b"other".to_vec()]);
        assert!(tokio::time::timeout(QUICK, third.notified()).await.is_err());
    }

    #[test]
    fn a_key_is_waited_on_while_a_watch_on_it_lives() {
        let r = Arc::new(KeyReady::default());
        assert!(!r.waited_on(&[b"k"]));
        let w = r.watch(&[b"k", b"j"], None);
        assert!(r.waited_on(&[b"x", b"j"]));
        assert!(!r.waited_on(&[b"x"]));
        drop(w);
        assert!(!r.waited_on(&[b"k"]));
    }

    #[test]
    fn watches_queue_by_the_arrival_of_their_command_not_by_registration() {
        let r = Arc::new(KeyReady::default());
        let later = r.watch(&[b"k"], Some(200));
        let unknown = r.watch(&[b"k"], None);
        let earlier = r.watch(&[b"k"], Some(100));
        assert_eq!(earlier.first_keys(), [b"k".to_vec()]);
        drop(earlier);
        assert_eq!(later.first_keys(), [b"k".to_vec()]);
        drop(later);
        assert_eq!(unknown.first_keys(), [b"k".to_vec()]);
    }

    #[tokio::test]
    async fn a_writer_settles_until_the_client_it_woke_has_retried() {
        let r = Arc::new(KeyReady::default());
        let w = r.watch(&[b"k"], None);
        let before_write = r.generation();
        r.signal(&sk(b"k"));
        // The woken client has not retried yet: the writer's reply waits.
        let waiting = tokio::time::timeout(QUICK, r.settle(before_write)).await;
        assert!(waiting.is_err(), "settled before the woken client retried");
        let r2 = r.clone();
        let writer = tokio::spawn(async move { r2.settle(before_write).await });
        w.notified().await;
        let g = w.begin();
        w.end();
        tokio::time::timeout(Duration::from_secs(1), writer)
            .await
            .expect("settled once the retry ended")
            .unwrap();
        // A turn older than the command does not hold it up.
        r.signal(&sk(b"k"));
        tokio::time::timeout(QUICK, r.settle(g + 1))
            .await
            .expect("only newer turns count");
    }

    #[tokio::test]
    async fn a_busy_watch_gets_a_wake_up_but_no_turn() {
        let r = Arc::new(KeyReady::default());
        let w = r.watch(&[b"k"], None);
        let g = w.begin();
        r.signal(&sk(b"k"));
        tokio::time::timeout(QUICK, r.settle(g))
            .await
            .expect("a turn for a busy watch would make its own retry wait for itself");
        w.end();
        tokio::time::timeout(QUICK, w.notified())
            .await
            .expect("it retries after its current attempt");
    }

    #[tokio::test]
    async fn a_served_watch_hands_its_turn_to_the_next_before_closing_its_own() {
        let r = Arc::new(KeyReady::default());
        let served = r.watch(&[b"k"], None);
        let next = r.watch(&[b"k"], None);
        let before_write = r.generation();
        r.signal(&sk(b"k"));
        served.notified().await;
        served.begin();
        drop(served);
        // The writer still waits: the next client's retry is part of what the write fed.
        assert!(
            tokio::time::timeout(QUICK, r.settle(before_write))
                .await
                .is_err()
        );
        next.notified().await;
        next.begin();
        next.end();
        tokio::time::timeout(QUICK, r.settle(before_write))
            .await
            .expect("settled");
    }
}
