//! Who serves a hash on this node right now: the installed placement (owner table, epoch,
//! cluster UID, member addresses), the fences in force and the degraded state. Immutable
//! snapshots of it are swapped in by the writer after each committed batch.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use ringshift_ring::{HashRange, RangeSet};

/// Addresses of a member as the placement install told us.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddrs {
    pub data_addr: String,
    pub admin_addr: String,
}

/// Sorted, non-overlapping owner ranges for fast lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerTable {
    entries: Vec<(HashRange, Arc<str>)>,
}

impl OwnerTable {
    pub fn new(mut entries: Vec<(HashRange, Arc<str>)>) -> OwnerTable {
        entries.sort_by_key(|(r, _)| r.start);
        OwnerTable { entries }
    }

    pub fn owner(&self, hash: u64) -> Option<&Arc<str>> {
        let idx = self.entries.partition_point(|(r, _)| r.start <= hash);
        let (range, owner) = self.entries.get(idx.checked_sub(1)?)?;
        (hash <= range.end).then_some(owner)
    }

    pub fn ranges_of(&self, member: &str) -> Vec<HashRange> {
        self.entries
            .iter()
            .filter(|(_, o)| &**o == member)
            .map(|(r, _)| *r)
            .collect()
    }
}

/// A placement this node accepted.
#[derive(Clone, Debug)]
pub struct Installed {
    pub cluster_uid: String,
    pub epoch: u64,
    pub owners: OwnerTable,
    pub members: HashMap<String, MemberAddrs>,
    pub write_pause_budget_ms: u64,
    /// The placement as JSON, to tell a re-send of the same epoch from a conflicting one.
    pub placement_json: String,
}

/// A fence in force: writes and reads of `ranges` are held; no record of them gets a sequence
/// above `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub migration_uid: String,
    pub attempt: u64,
    pub ranges: RangeSet,
    pub offset: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Routing {
    pub me: String,
    pub placement: Option<Arc<Installed>>,
    pub fences: Vec<Fence>,
    pub degraded: Option<String>,
}

/// Where a command for a hash goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Local,
    Remote {
        epoch: u64,
        owner: Arc<str>,
        data_addr: Option<String>,
    },
    Fenced {
        epoch: u64,
        migration_uid: String,
    },
    NoPlacement,
    Unowned {
        epoch: u64,
    },
    Degraded(String),
}

impl Routing {
    pub fn route(&self, hash: u64) -> Route {
        let Some(p) = &self.placement else {
            return Route::NoPlacement;
        };
        match p.owners.owner(hash) {
            None => Route::Unowned { epoch: p.epoch },
            Some(owner) if **owner == *self.me => {
                if let Some(reason) = &self.degraded {
                    return Route::Degraded(reason.clone());
                }
                match self.fences.iter().find(|f| f.ranges.contains(hash)) {
                    Some(f) => Route::Fenced {
                        epoch: p.epoch,
                        migration_uid: f.migration_uid.clone(),
                    },
                    None => Route::Local,
                }
            }
            Some(owner) => Route::Remote {
                epoch: p.epoch,
                owner: owner.clone(),
                data_addr: p.members.get(&**owner).map(|m| m.data_addr.clone()),
            },
        }
    }

    pub fn epoch(&self) -> u64 {
        self.placement.as_ref().map_or(0, |p| p.epoch)
    }

    /// The owner table's ranges of this member, as the table holds them (adjacent ones apart).
    pub fn owned_ranges(&self) -> Vec<HashRange> {
        self.placement
            .as_ref()
            .map(|p| p.owners.ranges_of(&self.me))
            .unwrap_or_default()
    }

    /// The hashes this member owns, as a set.
    pub fn owned_set(&self) -> RangeSet {
        self.owned_ranges().into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        let owners = OwnerTable::new(vec![
            (HashRange { start: 0, end: 99 }, Arc::from("a")),
            (
                HashRange {
                    start: 100,
                    end: u64::MAX,
                },
                Arc::from("b"),
            ),
        ]);
        Routing {
            me: "a".into(),
            placement: Some(Arc::new(Installed {
                cluster_uid: "c".into(),
                epoch: 3,
                owners,
                members: HashMap::new(),
                write_pause_budget_ms: 100,
                placement_json: String::new(),
            })),
            fences: vec![],
            degraded: None,
        }
    }

    #[test]
    fn routes_by_owner_then_fence_then_degraded() {
        let mut r = routing();
        assert_eq!(r.route(5), Route::Local);
        assert!(matches!(r.route(100), Route::Remote { epoch: 3, .. }));
        r.fences.push(Fence {
            migration_uid: "m".into(),
            attempt: 1,
            ranges: RangeSet::single(HashRange { start: 0, end: 10 }),
            offset: 7,
        });
        assert!(matches!(r.route(5), Route::Fenced { .. }));
        assert_eq!(r.route(50), Route::Local);
        r.degraded = Some("lost".into());
        assert_eq!(r.route(50), Route::Degraded("lost".into()));
        assert!(matches!(r.route(u64::MAX), Route::Remote { .. }));
    }

    #[test]
    fn no_placement_serves_nothing() {
        let r = Routing::default();
        assert_eq!(r.route(1), Route::NoPlacement);
    }
}
