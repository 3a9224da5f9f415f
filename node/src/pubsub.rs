//! Pub/Sub delivery on one node: who subscribes to what, and each subscriber's mailbox.
//!
//! A publisher never waits for a subscriber: it appends to each receiver's mailbox and wakes
//! its connection, which writes the messages out. A mailbox is bounded in bytes; a subscriber
//! whose mailbox would pass the bound is disconnected (Redis's client-output-buffer-limit for
//! pubsub clients), so a slow reader costs at most the bound in memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Bytes of messages a subscriber may have waiting before it is disconnected (Redis's
/// default hard limit for pubsub clients is 32 MB).
pub const MAILBOX_LIMIT: usize = 32 * 1024 * 1024;

/// A message for one subscriber: from `pattern` (PSUBSCRIBE) or a plain subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub pattern: Option<Arc<[u8]>>,
    pub channel: Arc<[u8]>,
    pub payload: Arc<[u8]>,
}

impl Message {
    fn size(&self) -> usize {
        // What it holds on to, roughly: the bytes plus the entry itself.
        self.channel.len() + self.payload.len() + self.pattern.as_ref().map_or(0, |p| p.len()) + 64
    }

    /// The message as the subscriber's protocol frames it (RESP3: a push).
    pub fn encode(&self, proto: u8, out: &mut Vec<u8>) {
        let head = if proto >= 3 { b'>' } else { b'*' };
        let (n, kind): (usize, &[u8]) = match self.pattern {
            Some(_) => (4, b"pmessage"),
            None => (3, b"message"),
        };
        out.push(head);
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        crate::resp::reply::bulk(out, kind);
        if let Some(p) = &self.pattern {
            crate::resp::reply::bulk(out, p);
        }
        crate::resp::reply::bulk(out, &self.channel);
        crate::resp::reply::bulk(out, &self.payload);
    }
}

/// One subscriber's queue of messages not written yet.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<(VecDeque<Message>, usize)>,
    /// Set when the queue would have passed its limit: the connection closes.
    overflowed: AtomicBool,
    pub wake: Notify,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, (VecDeque<Message>, usize)> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message unless that passes `limit`; false: the subscriber fell behind.
    pub fn push(&self, m: Message, limit: usize) -> bool {
        if self.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let mut q = self.lock();
        let size = m.size();
        if q.1 + size > limit {
            q.0.clear();
            q.1 = 0;
            self.overflowed.store(true, Ordering::Relaxed);
            drop(q);
            self.wake.notify_one();
            return false;
        }
        q.0.push_back(m);
        q.1 += size;
        drop(q);
        self.wake.notify_one();
        true
    }

    /// Everything queued, oldest first.
    pub fn take(&self) -> Vec<Message> {
        let mut q = self.lock();
        q.1 = 0;
        q.0.drain(..).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().0.is_empty()
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

type Subscribers = HashMap<Vec<u8>, HashMap<u64, Arc<Mailbox>>>;

/// The node's subscriptions: channel (or pattern) -> connection id -> mailbox.
#[derive(Default)]
pub struct Hub {
    channels: Mutex<Subscribers>,
    patterns: Mutex<Subscribers>,
    limit: Option<usize>,
}

fn lock(m: &Mutex<Subscribers>) -> MutexGuard<'_, Subscribers> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// A hub whose mailboxes hold at most `limit` bytes (tests use a small one).
    pub fn with_limit(limit: usize) -> Hub {
        Hub {
            limit: Some(limit),
            ..Default::default()
        }
    }

    fn set(&self, pattern: bool) -> &Mutex<Subscribers> {
        if pattern {
            &self.patterns
        } else {
            &self.channels
        }
    }

    pub fn subscribe(&self, pattern: bool, name: &[u8], conn: u64, mailbox: &Arc<Mailbox>) {
        lock(self.set(pattern))
            .entry(name.to_vec())
            .or_default()
            .insert(conn, mailbox.clone());
    }

    pub fn unsubscribe(&self, pattern: bool, name: &[u8], conn: u64) {
        let mut m = lock(self.set(pattern));
        if let Some(subs) = m.get_mut(name) {
            subs.remove(&conn);
            if subs.is_empty() {
                m.remove(name);
            }
        }
    }

    /// Delivers to this node's subscribers; returns how many received it (a subscriber
    /// matching by channel and by a pattern counts once per subscription, as in Redis).
    /// Subscribers that fell behind are skipped (their connections close).
    pub fn publish(&self, channel: &[u8], payload: &[u8]) -> usize {
        let limit = self.limit.unwrap_or(MAILBOX_LIMIT);
        let channel: Arc<[u8]> = channel.into();
        let payload: Arc<[u8]> = payload.into();
        let mut n = 0;
        let direct: Vec<Arc<Mailbox>> = lock(&self.channels)
            .get(&*channel)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for mb in direct {
            let m = Message {
                pattern: None,
                channel: channel.clone(),
                payload: payload.clone(),
            };
            if mb.push(m, limit) {
                n += 1;
            }
        }
        let matched: Vec<(Arc<[u8]>, Arc<Mailbox>)> = lock(&self.patterns)
            .iter()
            .filter(|(p, _)| crate::glob::matches(p, &channel))
            .flat_map(|(p, subs)| {
                let p: Arc<[u8]> = p.as_slice().into();
                subs.values().map(move |mb| (p.clone(), mb.clone()))
            })
            .collect();
        for (p, mb) in matched {
            let m = Message {
                pattern: Some(p),
                channel: channel.clone(),
                payload: payload.clone(),
            };
            if mb.push(m, limit) {
                n += 1;
            }
        }
        n
    }

    /// Channels with at least one subscriber, matching `pattern` if given.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        lock(&self.channels)
            .keys()
            .filter(|c| pattern.is_none_or(|p| crate::glob::matches(p, c)))
            .cloned()
            .collect()
    }

    pub fn numsub(&self, channel: &[u8]) -> usize {
        lock(&self.channels).get(channel).map_or(0, HashMap::len)
    }

    /// Distinct patterns subscribed to.
    pub fn numpat(&self) -> usize {
        lock(&self.patterns).len()
    }
}

/// One connection's subscriptions; dropping it unsubscribes everything.
pub struct Subscriber {
    hub: Arc<Hub>,
    conn: u64,
    pub mailbox: Arc<Mailbox>,
    channels: HashSet<Vec<u8>>,
    patterns: HashSet<Vec<u8>>,
}

impl Subscriber {
    pub fn new(hub: Arc<Hub>, conn: u64) -> Subscriber {
        Subscriber {
            hub,
            conn,
            mailbox: Arc::default(),
            channels: HashSet::new(),
            patterns: HashSet::new(),
        }
    }

    /// Channels plus patterns: the count SUBSCRIBE and friends reply with.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    fn names(&mut self, pattern: bool) -> &mut HashSet<Vec<u8>> {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }

    pub fn subscribe(&mut self, pattern: bool, name: &[u8]) {
        if self.names(pattern).insert(name.to_vec()) {
            self.hub.subscribe(pattern, name, self.conn, &self.mailbox);
        }
    }

    pub fn unsubscribe(&mut self, pattern: bool, name: &[u8]) {
        if self.names(pattern).remove(name) {
            self.hub.unsubscribe(pattern, name, self.conn);
        }
    }

    /// Everything subscribed to of one kind (UNSUBSCRIBE without arguments).
    pub fn all(&self, pattern: bool) -> Vec<Vec<u8>> {
        let set = if pattern {
            &self.patterns
        } else {
            &self.channels
        };
        let mut v: Vec<Vec<u8>> = set.iter().cloned().collect();
        v.sort();
        v
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        for c in std::mem::take(&mut self.channels) {
            self.hub.unsubscribe(false, &c, self.conn);
        }
        for p in std::mem::take(&mut self.patterns) {
            self.hub.unsubscribe(true, &p, self.conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reaches_channel_and_pattern_subscribers_once_per_subscription() {
        let hub = Arc::new(Hub::default());
        let mut a = Subscriber::new(hub.clone(), 1);
        let mut b = Subscriber::new(hub.clone(), 2);
        a.subscribe(false, b"news");
        a.subscribe(true, b"n*");
        b.subscribe(true, b"x*");
        assert_eq!(hub.publish(b"news", b"hi"), 2);
        assert_eq!(a.mailbox.take().len(), 2);
        assert!(b.mailbox.take().is_empty());
        assert_eq!(hub.numsub(b"news"), 1);
        assert_eq!(hub.numpat(), 2);
        drop(a);
        assert_eq!(hub.publish(b"news", b"hi"), 0);
        assert_eq!(hub.numsub(b"news"), 0);
        assert_eq!(hub.channels(None), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_cut_off_and_its_queue_freed() {
        let hub = Arc::new(Hub::with_limit(1000));
        let mut s = Subscriber::new(hub.clone(), 1);
        s.subscribe(false, b"c");
        let mut delivered = 0;
        for _ in 0..100 {
            delivered += hub.publish(b"c", &[0u8; 100]);
        }
        assert!(delivered < 100);
        assert!(s.mailbox.overflowed());
        assert!(s.mailbox.take().is_empty());
    }

    #[test]
    fn messages_encode_as_resp2_arrays_and_resp3_pushes() {
        let m = Message {
            pattern: Some(b"n*".as_slice().into()),
            channel: b"news".as_slice().into(),
            payload: b"hi".as_slice().into(),
        };
        let mut out = Vec::new();
        m.encode(2, &mut out);
        assert_eq!(
            out,
            b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n".to_vec()
        );
        out.clear();
        Message { pattern: None, ..m }.encode(3, &mut out);
        assert_eq!(
            out,
            b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n".to_vec()
        );
    }
}
