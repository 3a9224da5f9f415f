//! Writes of ShardPlacement status: the commit point of every move (rule 4). Each write re-reads
//! the object from the API server (never a cache) and carries its resourceVersion, so a stale
//! leader's delayed write fails instead of overwriting a newer decision.

use kube::api::{Api, PostParams};
use ringshift_ring::Placement;

use ringshift_planner::phase::record_may_replace;

use super::Error;
use crate::crd::{CutoverRecord, CutoverState, ShardPlacement, ShardPlacementStatus};

/// Outcome of a guarded status write.
pub enum Written {
    /// Written.
    Done,
    /// The edit found nothing to change.
    Unchanged,
}

/// Sets the placement document and the fields derived from it.
pub fn set_placement(status: &mut ShardPlacementStatus, p: &Placement) -> Result<(), Error> {
    Ok(status.set_committed(p)?)
}

/// The committed placement in a status.
pub fn placement_of(status: &ShardPlacementStatus) -> Result<Option<Placement>, Error> {
    Ok(status.committed()?)
}

/// What [`set_record`] did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEdit {
    /// The record now says what was asked.
    Written,
    /// It already did.
    Unchanged,
    /// A record that only moves forward stands (rule 13): a commit, a newer attempt's record,
    /// or this attempt's decision.
    Refused { attempt: i64, state: CutoverState },
}

/// Sets the cutover record of a migration, only forward
/// (`ringshift_planner::phase::record_may_replace`).
pub fn set_record(
    status: &mut ShardPlacementStatus,
    uid: &str,
    attempt: u32,
    state: CutoverState,
) -> RecordEdit {
    let old = status.cutovers.iter().find(|r| r.migration_uid == uid);
    if let Some(r) = old {
        if r.attempt == i64::from(attempt) && r.state == state {
            return RecordEdit::Unchanged;
        }
        // An attempt beyond u32 cannot come from this operator: treat it as newer than any.
        let seen = u32::try_from(r.attempt).unwrap_or(u32::MAX);
        if !record_may_replace(Some((seen, r.state)), (attempt, state)) {
            return RecordEdit::Refused {
                attempt: r.attempt,
                state: r.state,
            };
        }
    }
    status.cutovers.retain(|r| r.migration_uid != uid);
    status.cutovers.push(CutoverRecord {
        migration_uid: uid.to_string(),
        attempt: i64::from(attempt),
        state,
    });
    status
        .cutovers
        .sort_by(|a, b| a.migration_uid.cmp(&b.migration_uid));
    RecordEdit::Written
}

/// Where, and as which leader, ShardPlacement status is written.
#[derive(Clone)]
pub struct Writer {
    pub api: Api<ShardPlacement>,
    pub name: String,
    /// This replica's leader generation (None without leader election).
    pub generation: Option<i64>,
}

/// Whether a replica of generation `mine` may edit a status whose stored generation is
/// `stored`; `Ok(true)` when the write must also store `mine` (a new leader's first write).
pub fn check_generation(stored: Option<i64>, mine: Option<i64>) -> Result<bool, Error> {
    match (stored, mine) {
        (_, None) => Ok(false),
        (Some(s), Some(m)) if s > m => Err(Error::StaleLeader { mine: m, stored: s }),
        (Some(s), Some(m)) => Ok(s < m),
        (None, Some(_)) => Ok(true),
    }
}

/// Re-reads the object, lets `edit` change its status (returning false when nothing changes),
/// and writes it back with the read resourceVersion as precondition. A concurrent write makes
/// this fail with [`Error::is_conflict`]; a newer leader's generation on the object, with
/// [`Error::StaleLeader`].
pub async fn update<F>(w: &Writer, edit: F) -> Result<Written, Error>
where
    F: FnOnce(&mut ShardPlacementStatus) -> Result<bool, Error>,
{
    let obj = read(w).await?;
    write_edit(w, obj, edit).await.map(|(w, _)| w)
}

/// Stores this leader's generation unless the object has it already (a new leader does this
/// before it acts, so that a replica that lost the lease can write nothing any more).
pub async fn claim(w: &Writer) -> Result<Written, Error> {
    update(w, |_| Ok(false)).await
}

/// Like [`update`], but returns the object as written (for a following [`update_known`]).
pub async fn update_returning<F>(w: &Writer, edit: F) -> Result<(Written, ShardPlacement), Error>
where
    F: FnOnce(&mut ShardPlacementStatus) -> Result<bool, Error>,
{
    let obj = read(w).await?;
    write_edit(w, obj, edit).await
}

/// Like [`update`], but first tries the edit on `known`, an object this leader got back from
/// the API server moments ago, so that the common case costs one round trip instead of two
/// (the cutover's commit is inside the clients' write pause). The write still carries
/// `known`'s resourceVersion, so it lands only if nothing changed since; otherwise the object is
/// read afresh and `edit` runs again on what is there now (it must decide from its argument
/// alone, and reset whatever it records, since it may run twice).
pub async fn update_known<F>(w: &Writer, known: ShardPlacement, edit: F) -> Result<Written, Error>
where
    F: FnMut(&mut ShardPlacementStatus) -> Result<bool, Error>,
{
    update_known_returning(w, known, edit).await.map(|(w, _)| w)
}

/// Like [`update_known`], but returns the object as written (or as read, when unchanged), for
/// a following write that needs no read of its own.
pub async fn update_known_returning<F>(
    w: &Writer,
    known: ShardPlacement,
    mut edit: F,
) -> Result<(Written, ShardPlacement), Error>
where
    F: FnMut(&mut ShardPlacementStatus) -> Result<bool, Error>,
{
    match write_edit(w, known, &mut edit).await {
        Err(e) if e.is_conflict() => {
            let fresh = read(w).await?;
            write_edit(w, fresh, edit).await
        }
        other => other,
    }
}

async fn read(w: &Writer) -> Result<ShardPlacement, Error> {
    w.api
        .get(&w.name)
        .await
        .map_err(|e| Error::kube(format!("re-reading ShardPlacement {}", w.name), e))
}

async fn write_edit<F>(
    w: &Writer,
    mut obj: ShardPlacement,
    edit: F,
) -> Result<(Written, ShardPlacement), Error>
where
    F: FnOnce(&mut ShardPlacementStatus) -> Result<bool, Error>,
{
    let name = &w.name;
    let mut status = obj.status.clone().unwrap_or_default();
    // Checked on the object the write's precondition is taken from: a newer leader's claim
    // either is in it (refused here) or lands after the read (the precondition fails).
    let claim = check_generation(status.leader_generation, w.generation)?;
    if !edit(&mut status)? && !claim {
        return Ok((Written::Unchanged, obj));
    }
    if claim {
        status.leader_generation = w.generation;
    }
    obj.status = Some(status);
    match w
        .api
        .replace_status(name, &PostParams::default(), &obj)
        .await
    {
        Ok(o) => Ok((Written::Done, o)),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::conflict(format!(
            "ShardPlacement {name} changed since it was read"
        ))),
        Err(e) => Err(Error::kube(
            format!("writing ShardPlacement {name} status"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringshift_ring::{Member, RingSpec};

    #[test]
    fn records_are_one_per_migration() {
        let mut s = ShardPlacementStatus::default();
        let _ = set_record(&mut s, "b", 1, CutoverState::Committing);
        let _ = set_record(&mut s, "a", 1, CutoverState::Aborted);
        assert_eq!(
            set_record(&mut s, "b", 2, CutoverState::Committed),
            RecordEdit::Written
        );
        assert_eq!(s.cutovers.len(), 2);
        assert_eq!(s.cutovers[0].migration_uid, "a");
        assert_eq!(
            (s.cutovers[1].attempt, s.cutovers[1].state),
            (2, CutoverState::Committed)
        );
    }

    #[test]
    fn records_are_refused_unless_they_move_forward() {
        let mut s = ShardPlacementStatus::default();
        assert_eq!(
            set_record(&mut s, "m", 2, CutoverState::Committed),
            RecordEdit::Written
        );
        assert_eq!(
            set_record(&mut s, "m", 1, CutoverState::Aborted),
            RecordEdit::Refused {
                attempt: 2,
                state: CutoverState::Committed
            }
        );
        assert_eq!(
            set_record(&mut s, "m", 2, CutoverState::Committed),
            RecordEdit::Unchanged
        );
        assert_eq!(s.cutovers[0].attempt, 2);
        assert_eq!(s.cutovers[0].state, CutoverState::Committed);
    }

    #[test]
    fn generations_are_claimed_once_and_never_go_back() {
        assert!(matches!(check_generation(None, None), Ok(false)));
        assert!(matches!(check_generation(Some(4), None), Ok(false)));
        assert!(matches!(check_generation(None, Some(0)), Ok(true)));
        assert!(matches!(check_generation(Some(3), Some(4)), Ok(true)));
        assert!(matches!(check_generation(Some(4), Some(4)), Ok(false)));
        assert!(matches!(
            check_generation(Some(5), Some(4)),
            Err(Error::StaleLeader { mine: 4, stored: 5 })
        ));
    }

    #[test]
    fn placement_round_trips_with_derived_fields() {
        let ring = RingSpec::with_members(8, &[Member::new("demo-0", 1), Member::new("demo-1", 1)])
            .unwrap();
        let p = Placement::new("uid", ring.clone()).unwrap();
        let q = p
            .set_target(ring.evolve(&[Member::new("demo-0", 1)]).unwrap())
            .unwrap();
        let mut s = ShardPlacementStatus::default();
        set_placement(&mut s, &q).unwrap();
        assert_eq!(s.epoch.as_deref(), Some("2"));
        assert!(s.in_transition);
        assert_eq!(placement_of(&s).unwrap(), Some(q));
    }
}
