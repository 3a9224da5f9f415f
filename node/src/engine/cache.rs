//! Read cache in front of the data keyspace: a sharded hash map of recent values (and of
//! misses), written through by the writer after each commit. A reader fills it after a miss
//! only if no write touched the shard meanwhile (shard version check), so a fill can never
//! overwrite a newer value with an older one.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::keys::Stored;

const SHARDS: usize = 64;
/// Rough per-entry overhead (map slot, allocations) counted against the budget.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Default)]
struct Shard {
    map: HashMap<Vec<u8>, Option<Stored>, crate::keys::KeyHashBuilder>,
    version: u64,
    bytes: usize,
}

pub struct ReadCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

/// What a miss remembers so its fill can be checked.
pub struct Ticket {
    shard: usize,
    version: u64,
}

fn size(k: &[u8], v: &Option<Stored>) -> usize {
    k.len() + v.as_ref().map_or(0, |s| s.value.len()) + ENTRY_OVERHEAD
}

impl ReadCache {
    pub fn new(budget_bytes: usize) -> ReadCache {
        ReadCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: budget_bytes / SHARDS,
        }
    }

    fn shard_of(skey: &[u8]) -> usize {
        // Storage keys start with the key's hash: its low byte spreads keys evenly.
        skey.get(7).map_or(0, |b| *b as usize % SHARDS)
    }

    /// `Ok(value)` on a hit (None = known absent), `Err(ticket)` on a miss.
    pub fn get(&self, skey: &[u8]) -> Result<Option<Stored>, Ticket> {
        let i = Self::shard_of(skey);
        let Ok(shard) = self.shards[i].lock() else {
            return Err(Ticket {
                shard: i,
                version: u64::MAX,
            });
        };
        match shard.map.get(skey) {
            Some(v) => Ok(v.clone()),
            None => Err(Ticket {
                shard: i,
                version: shard.version,
            }),
        }
    }

    /// Whether the key is stored (expired or not), if the cache knows.
    pub fn stored(&self, skey: &[u8]) -> Option<bool> {
        let shard = self.shards[Self::shard_of(skey)].lock().ok()?;
        shard.map.get(skey).map(Option::is_some)
    }

    /// Fills after a miss, unless a write reached the shard since the ticket was taken.
    pub fn fill(&self, ticket: Ticket, skey: &[u8], value: Option<Stored>) {
        if self.shard_budget == 0 {
            return;
        }
        if let Ok(mut shard) = self.shards[ticket.shard].lock()
            && shard.version == ticket.version
        {
            self.insert(&mut shard, skey.to_vec(), value);
        }
    }

    fn insert(&self, shard: &mut Shard, skey: Vec<u8>, value: Option<Stored>) {
        let add = size(&skey, &value);
        if shard.bytes + add > self.shard_budget {
            shard.map.clear();
            shard.bytes = 0;
        }
        if add > self.shard_budget {
            return;
        }
        let key_len = skey.len();
        if let Some(old) = shard.map.insert(skey, value) {
            shard.bytes = shard.bytes.saturating_sub(
                key_len + old.as_ref().map_or(0, |s| s.value.len()) + ENTRY_OVERHEAD,
            );
        }
        shard.bytes += add;
    }

    /// Write-through of committed state (the writer calls this before acknowledging).
    pub fn put(&self, skey: Vec<u8>, value: Option<Stored>) {
        let i = Self::shard_of(&skey);
        if let Ok(mut shard) = self.shards[i].lock() {
            shard.version += 1;
            if self.shard_budget == 0 {
                return;
            }
            self.insert(&mut shard, skey, value);
        }
    }

    /// `put` from borrowed state: an entry already cached is overwritten in place, reusing its
    /// value's buffer (no allocation for the common overwrite).
    pub fn put_copy(&self, skey: &[u8], value: Option<&Stored>) {
        let i = Self::shard_of(skey);
        let Ok(mut shard) = self.shards[i].lock() else {
            return;
        };
        shard.version += 1;
        if self.shard_budget == 0 {
            return;
        }
        let new_len = value.map_or(0, |s| s.value.len());
        if let Some(slot) = shard.map.get_mut(skey) {
            let old_len = slot.as_ref().map_or(0, |s| s.value.len());
            match (slot.as_mut(), value) {
                (Some(cur), Some(v)) => {
                    cur.value.clear();
                    cur.value.extend_from_slice(&v.value);
                    cur.expires_at = v.expires_at;
                }
                (_, v) => *slot = v.cloned(),
            }
            shard.bytes = shard.bytes.saturating_sub(old_len) + new_len;
            if shard.bytes > self.shard_budget {
                shard.map.clear();
                shard.bytes = 0;
            }
            return;
        }
        self.insert(&mut shard, skey.to_vec(), value.cloned());
    }

    /// Forgets everything (after range clears).
    pub fn clear(&self) {
        for s in &self.shards {
            if let Ok(mut shard) = s.lock() {
                shard.version += 1;
                shard.map.clear();
                shard.bytes = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(v: &str) -> Option<Stored> {
        Some(Stored {
            value: v.as_bytes().to_vec(),
            expires_at: None,
        })
    }

    #[test]
    fn a_fill_after_a_write_is_dropped() {
        let c = ReadCache::new(1 << 20);
        let key = b"12345678k".to_vec();
        let Err(ticket) = c.get(&key) else {
            panic!("hit on empty cache")
        };
        c.put(key.clone(), stored("new"));
        c.fill(ticket, &key, stored("old"));
        assert_eq!(c.get(&key).ok(), Some(stored("new")));
    }

    #[test]
    fn an_overwrite_in_place_is_seen_and_drops_older_fills() {
        let c = ReadCache::new(1 << 20);
        let key = b"12345678k".to_vec();
        c.put_copy(&key, stored("first-long-value").as_ref());
        let Err(ticket) = c.get(b"12345678other") else {
            panic!("hit for a key never cached")
        };
        c.put_copy(&key, stored("2nd").as_ref());
        assert_eq!(c.get(&key).ok(), Some(stored("2nd")));
        // The shard's version moved: a fill from before the overwrite is dropped.
        c.fill(ticket, b"12345678other", stored("old"));
        assert!(c.get(b"12345678other").is_err());
        c.put_copy(&key, None);
        assert_eq!(c.get(&key).ok(), Some(None));
    }

    #[test]
    fn misses_are_cached_and_budget_is_kept() {
        let c = ReadCache::new(SHARDS * 200);
        let key = b"12345678k".to_vec();
        let Err(t) = c.get(&key) else { panic!() };
        c.fill(t, &key, None);
        assert_eq!(c.get(&key).ok(), Some(None));
        for i in 0..100 {
            c.put(format!("1234567{}", i).into_bytes(), stored("xxxxxxxxxx"));
        }
        for s in &c.shards {
            assert!(s.lock().unwrap().bytes <= 200);
        }
    }
}
