//! Read cache in front of the data keyspace: a sharded hash map of recent values (and of
//! misses), written through by the writer after each commit. A reader fills it after a miss
//! only if no write touched the shard meanwhile (shard version check), so a fill can never
//! overwrite a newer value with an older one. Keys and values are kept inline when short
//! (`SmallBytes`), so a lookup touches one map slot.

use std::collections::HashMap;
use std::sync::Mutex;

use super::small::SmallBytes;
use crate::keys::Stored;

const SHARDS: usize = 64;
/// Rough per-entry overhead (map slot, allocations) counted against the budget.
const ENTRY_OVERHEAD: usize = 96;

/// A cached value (expired or not); the map holds `None` for a known miss.
#[derive(Clone)]
struct Cached {
    value: SmallBytes,
    expires_at: Option<u64>,
    typed: bool,
}

impl Cached {
    fn new(s: &Stored) -> Cached {
        Cached {
            value: SmallBytes::new(&s.value),
            expires_at: s.expires_at,
            typed: s.typed,
        }
    }

    fn stored(&self) -> Stored {
        Stored {
            value: self.value.as_slice().to_vec(),
            expires_at: self.expires_at,
            typed: self.typed,
        }
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<SmallBytes, Option<Cached>, crate::keys::KeyHashBuilder>,
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

fn value_len(v: Option<&Stored>) -> usize {
    v.map_or(0, |s| s.value.len())
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
            Some(v) => Ok(v.as_ref().map(Cached::stored)),
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
    pub fn fill(&self, ticket: Ticket, skey: &[u8], value: Option<&Stored>) {
        if self.shard_budget == 0 {
            return;
        }
        if let Ok(mut shard) = self.shards[ticket.shard].lock()
            && shard.version == ticket.version
        {
            self.upsert(&mut shard, skey, value);
        }
    }

    /// Write-through of committed state (the writer calls this before acknowledging).
    pub fn put(&self, skey: &[u8], value: Option<&Stored>) {
        let i = Self::shard_of(skey);
        let Ok(mut shard) = self.shards[i].lock() else {
            return;
        };
        shard.version += 1;
        if self.shard_budget == 0 {
            return;
        }
        self.upsert(&mut shard, skey, value);
    }

    /// Inserts or overwrites (in place: no allocation for short values); a shard over its
    /// budget starts over.
    fn upsert(&self, shard: &mut Shard, skey: &[u8], value: Option<&Stored>) {
        let add = skey.len() + value_len(value) + ENTRY_OVERHEAD;
        if add > self.shard_budget {
            shard.map.remove(skey);
            return;
        }
        if let Some(slot) = shard.map.get_mut(skey) {
            let old_len = slot.as_ref().map_or(0, |c| c.value.as_slice().len());
            match (slot.as_mut(), value) {
                (Some(cur), Some(v)) => {
                    cur.value.set(&v.value);
                    cur.expires_at = v.expires_at;
                    // A string overwritten by a collection (SUNIONSTORE, ZUNIONSTORE, ... onto
                    // a string key) changes kind too.
                    cur.typed = v.typed;
                }
                (_, v) => *slot = v.map(Cached::new),
            }
            shard.bytes = shard.bytes.saturating_sub(old_len) + value_len(value);
        } else {
            if shard.bytes + add > self.shard_budget {
                shard.map.clear();
                shard.bytes = 0;
            }
            shard
                .map
                .insert(SmallBytes::new(skey), value.map(Cached::new));
            shard.bytes += add;
        }
        if shard.bytes > self.shard_budget {
            shard.map.clear();
            shard.bytes = 0;
        }
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
        Some(Stored::string(v.as_bytes().to_vec(), None))
    }

    #[test]
    fn a_fill_after_a_write_is_dropped() {
        let c = ReadCache::new(1 << 20);
        let key = b"12345678k".to_vec();
        let Err(ticket) = c.get(&key) else {
            panic!("hit on empty cache")
        };
        c.put(&key, stored("new").as_ref());
        c.fill(ticket, &key, stored("old").as_ref());
        assert_eq!(c.get(&key).ok(), Some(stored("new")));
    }

    /// A collection written over a cached string (ZUNIONSTORE onto a string key) reads back
    /// as a collection: the in-place overwrite takes the new kind too.
    #[test]
    fn an_overwrite_in_place_takes_the_new_kind() {
        let c = ReadCache::new(1 << 20);
        let key = b"12345678k".to_vec();
        c.put(&key, stored("v").as_ref());
        let typed = Stored {
            value: vec![4; 17],
            expires_at: None,
            typed: true,
        };
        c.put(&key, Some(&typed));
        assert_eq!(c.get(&key).ok(), Some(Some(typed)));
    }

    #[test]
    fn an_overwrite_in_place_is_seen_and_drops_older_fills() {
        let c = ReadCache::new(1 << 20);
        let key = b"12345678k".to_vec();
        c.put(&key, stored("first-long-value").as_ref());
        let Err(ticket) = c.get(b"12345678other") else {
            panic!("hit for a key never cached")
        };
        c.put(&key, stored("2nd").as_ref());
        assert_eq!(c.get(&key).ok(), Some(stored("2nd")));
        // The shard's version moved: a fill from before the overwrite is dropped.
        c.fill(ticket, b"12345678other", stored("old").as_ref());
        assert!(c.get(b"12345678other").is_err());
        c.put(&key, None);
        assert_eq!(c.get(&key).ok(), Some(None));
    }

    #[test]
    fn misses_are_cached_and_budget_is_kept() {
        let c = ReadCache::new(SHARDS * 300);
        let key = b"12345678k".to_vec();
        let Err(t) = c.get(&key) else { panic!() };
        c.fill(t, &key, None);
        assert_eq!(c.get(&key).ok(), Some(None));
        for i in 0..100 {
            c.put(
                format!("1234567{}", i).as_bytes(),
                stored("xxxxxxxxxx").as_ref(),
            );
        }
        for s in &c.shards {
            assert!(s.lock().unwrap().bytes <= 300);
        }
    }
}
