//! OBJECT ENCODING for collections, and the CONFIG parameters it follows. Nothing is stored
//! differently: the answer is the encoding Redis 7.0 would use for the same contents under the
//! same thresholds (hash: listpack up to `hash-max-listpack-entries` fields with fields and
//! values up to `hash-max-listpack-value` bytes, else hashtable; set: intset up to
//! `set-max-intset-entries` integer members, else hashtable; sorted set: listpack up to
//! `zset-max-listpack-entries` members of at most `zset-max-listpack-value` bytes, else
//! skiplist; list: always quicklist, as in Redis 7.0, whose `list-max-listpack-size` and
//! `list-compress-depth` only shape the nodes of its quicklist: they are kept for CONFIG GET and
//! change nothing here). CONFIG SET may change them.

use crate::engine::view::KeyView;
use crate::engine::{EngineError, KvPair};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::engine::collection::{CollMeta, CollType};
use crate::engine::writer_parse_int as parse_int;
use crate::node::Node;

pub struct Limits {
    hash_entries: AtomicU64,
    hash_value: AtomicU64,
    set_intset_entries: AtomicU64,
    zset_entries: AtomicU64,
    zset_value: AtomicU64,
    /// list-max-listpack-size (negative: a node size class, as in Redis) and
    /// list-compress-depth.
    list_size: AtomicI64,
    list_compress_depth: AtomicI64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hash_entries: AtomicU64::new(128),
            hash_value: AtomicU64::new(64),
            set_intset_entries: AtomicU64::new(512),
            zset_entries: AtomicU64::new(128),
            zset_value: AtomicU64::new(64),
            list_size: AtomicI64::new(-2),
            list_compress_depth: AtomicI64::new(0),
        }
    }
}

impl Limits {
    fn slot(&self, name: &str) -> Option<&AtomicU64> {
        Some(match name {
            "hash-max-listpack-entries" | "hash-max-ziplist-entries" => &self.hash_entries,
            "hash-max-listpack-value" | "hash-max-ziplist-value" => &self.hash_value,
            "set-max-intset-entries" => &self.set_intset_entries,
            "zset-max-listpack-entries" | "zset-max-ziplist-entries" => &self.zset_entries,
            "zset-max-listpack-value" | "zset-max-ziplist-value" => &self.zset_value,
            _ => return None,
        })
    }

    fn list_slot(&self, name: &str) -> Option<&AtomicI64> {
        Some(match name {
            "list-max-listpack-size" | "list-max-ziplist-size" => &self.list_size,
            "list-compress-depth" => &self.list_compress_depth,
            _ => return None,
        })
    }

    pub fn knows(&self, name: &str) -> bool {
        self.slot(name).is_some() || self.list_slot(name).is_some()
    }

    /// CONFIG SET of one parameter: None if it is not one of these, else whether the value
    /// was accepted.
    pub fn set(&self, name: &str, value: &[u8]) -> Option<bool> {
        if let Some(slot) = self.list_slot(name) {
            // Redis' ranges: a size class from -5 up, a depth from 0 up.
            let min = if name == "list-compress-depth" { 0 } else { -5 };
            return Some(match parse_int(value).filter(|v| *v >= min) {
                Some(v) => {
                    slot.store(v, Ordering::Relaxed);
                    true
                }
                None => false,
            });
        }
        let slot = self.slot(name)?;
        match parse_int(value).and_then(|v| u64::try_from(v).ok()) {
            Some(v) => {
                slot.store(v, Ordering::Relaxed);
                Some(true)
            }
            None => Some(false),
        }
    }

    /// (name, value) for CONFIG GET.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let geti = |a: &AtomicI64| a.load(Ordering::Relaxed).to_string();
        vec![
            ("hash-max-listpack-entries", get(&self.hash_entries)),
            ("hash-max-ziplist-entries", get(&self.hash_entries)),
            ("hash-max-listpack-value", get(&self.hash_value)),
            ("hash-max-ziplist-value", get(&self.hash_value)),
            ("set-max-intset-entries", get(&self.set_intset_entries)),
            ("zset-max-listpack-entries", get(&self.zset_entries)),
            ("zset-max-ziplist-entries", get(&self.zset_entries)),
            ("zset-max-listpack-value", get(&self.zset_value)),
            ("zset-max-ziplist-value", get(&self.zset_value)),
            ("list-max-listpack-size", geti(&self.list_size)),
            ("list-max-ziplist-size", geti(&self.list_size)),
            ("list-compress-depth", geti(&self.list_compress_depth)),
        ]
    }
}

/// OBJECT ENCODING of a collection (reads its elements only when it is small enough for a
/// compact encoding).
pub fn encoding(
    node: &Node,
    view: &dyn KeyView,
    key: &[u8],
    m: &CollMeta,
) -> Result<&'static str, EngineError> {
    let l = &node.encodings;
    let elements = |limit: u64| -> Result<Option<Vec<KvPair>>, EngineError> {
        if m.count > limit {
            return Ok(None);
        }
        view.all_elements(key, m).map(Some)
    };
    Ok(match m.ty {
        CollType::Hash => {
            let max = l.hash_value.load(Ordering::Relaxed) as usize;
            match elements(l.hash_entries.load(Ordering::Relaxed))? {
                Some(all) if all.iter().all(|(f, v)| f.len() <= max && v.len() <= max) => {
                    "listpack"
                }
                _ => "hashtable",
            }
        }
        CollType::Set => match elements(l.set_intset_entries.load(Ordering::Relaxed))? {
            Some(all) if all.iter().all(|(f, _)| parse_int(f).is_some()) => "intset",
            _ => "hashtable",
        },
        CollType::ZSet => {
            let max = l.zset_value.load(Ordering::Relaxed) as usize;
            match elements(l.zset_entries.load(Ordering::Relaxed))? {
                Some(all) if all.iter().all(|(f, _)| f.len() <= max) => "listpack",
                _ => "skiplist",
            }
        }
        CollType::List => "quicklist",
    })
}
