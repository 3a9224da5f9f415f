//! Pre-flight room check: a move starts copying only when its target has room for the
//! estimated bytes plus headroom, so a copy never fills a member's volume.

/// A member's data filesystem, from its `ringshift_node_data_free_bytes` and
/// `ringshift_node_data_total_bytes` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// How much headroom a copy must leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    /// Extra space per copied byte, in percent, for the engine's temporary space (an LSM
    /// writes a byte more than once before compaction settles).
    pub overhead_percent: u64,
    /// Keep this share of the filesystem free after the copy, in percent...
    pub reserve_percent: u64,
    /// ...but at least this many bytes (small volumes)...
    pub reserve_min_bytes: u64,
    /// ...and at most this many (on a large volume a share would hold back gigabytes the copy
    /// could safely use).
    pub reserve_max_bytes: u64,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        RoomPolicy {
            overhead_percent: 20,
            reserve_percent: 5,
            reserve_min_bytes: 64 << 20,
            reserve_max_bytes: 2 << 30,
        }
    }
}

/// The verdict for one move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomCheck {
    /// The target has room (or the move copies nothing).
    Fits,
    /// The target's room is not known (its metrics did not answer, or the node is older than
    /// the gauges): the move is not held back, since no data could be lost by trying.
    Unknown,
    /// The copy would leave the target below its reserve.
    TooSmall { need_bytes: u64, free_bytes: u64 },
}

impl RoomCheck {
    /// Why the move waits, for status and Events.
    pub fn reason(&self, target: &str) -> Option<String> {
        match self {
            RoomCheck::TooSmall {
                need_bytes,
                free_bytes,
            } => Some(format!(
                "target {target} has {} free but the copy needs {} (estimated bytes plus engine overhead and the free-space reserve); free space on its volume or give the member a larger one",
                human_bytes(*free_bytes),
                human_bytes(*need_bytes)
            )),
            _ => None,
        }
    }
}

/// Bytes the target must have free to take `estimated_bytes`.
pub fn bytes_needed(estimated_bytes: u64, total_bytes: u64, policy: &RoomPolicy) -> u64 {
    let overhead = u128::from(estimated_bytes) * u128::from(policy.overhead_percent) / 100;
    let reserve = (u128::from(total_bytes) * u128::from(policy.reserve_percent) / 100)
        .min(u128::from(policy.reserve_max_bytes))
        .max(u128::from(policy.reserve_min_bytes));
    let need = u128::from(estimated_bytes) + overhead + reserve;
    u64::try_from(need).unwrap_or(u64::MAX)
}

/// Whether a target with `room` can take a copy of `estimated_bytes`.
pub fn check_room(
    estimated_bytes: Option<u64>,
    room: Option<Room>,
    policy: &RoomPolicy,
) -> RoomCheck {
    let (Some(estimated), Some(room)) = (estimated_bytes, room) else {
        return RoomCheck::Unknown;
    };
    if estimated == 0 {
        return RoomCheck::Fits;
    }
    let need = bytes_needed(estimated, room.total_bytes, policy);
    if room.free_bytes >= need {
        RoomCheck::Fits
    } else {
        RoomCheck::TooSmall {
            need_bytes: need,
            free_bytes: room.free_bytes,
        }
    }
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`, `10 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn room(free: u64, total: u64) -> Option<Room> {
        Some(Room {
            free_bytes: free,
            total_bytes: total,
        })
    }

    #[test]
    fn a_copy_that_fits_with_its_reserve_starts() {
        let p = RoomPolicy::default();
        // 1 GiB + 20% overhead + 5% of 20 GiB reserve = 2.2 GiB
        assert_eq!(
            check_room(Some(GIB), room(3 * GIB, 20 * GIB), &p),
            RoomCheck::Fits
        );
        assert!(matches!(
            check_room(Some(GIB), room(2 * GIB, 20 * GIB), &p),
            RoomCheck::TooSmall { need_bytes, free_bytes }
                if need_bytes > 2 * GIB && free_bytes == 2 * GIB
        ));
        // A large volume keeps at most 2 GiB back: 1.2 GiB + 2 GiB.
        assert_eq!(bytes_needed(GIB, 250 * GIB, &p), GIB + GIB / 5 + 2 * GIB);
    }

    #[test]
    fn small_volumes_keep_the_minimum_reserve() {
        let p = RoomPolicy::default();
        // 100 MiB volume: 5% would be 5 MiB, but 64 MiB is kept.
        assert_eq!(
            bytes_needed(10 << 20, 100 << 20, &p),
            (12 << 20) + (64 << 20)
        );
        assert!(matches!(
            check_room(Some(10 << 20), room(70 << 20, 100 << 20), &p),
            RoomCheck::TooSmall { .. }
        ));
    }

    #[test]
    fn unknown_room_or_estimate_does_not_block() {
        let p = RoomPolicy::default();
        assert_eq!(check_room(None, room(0, GIB), &p), RoomCheck::Unknown);
        assert_eq!(check_room(Some(GIB), None, &p), RoomCheck::Unknown);
        assert_eq!(check_room(Some(0), room(0, GIB), &p), RoomCheck::Fits);
    }

    #[test]
    fn the_reason_names_target_and_sizes() {
        let r = RoomCheck::TooSmall {
            need_bytes: 3 * GIB + GIB / 2,
            free_bytes: 512 << 20,
        }
        .reason("demo-3")
        .unwrap();
        assert!(
            r.contains("demo-3") && r.contains("512.0 MiB") && r.contains("3.5 GiB"),
            "{r}"
        );
        assert_eq!(RoomCheck::Fits.reason("x"), None);
        assert_eq!(human_bytes(10), "10 B");
    }

    proptest! {
        #[test]
        fn more_free_space_never_turns_a_fit_into_a_wait(
            est in 1u64..u64::MAX / 4, free in 0u64..u64::MAX / 2, extra in 0u64..u64::MAX / 4,
            total in 0u64..u64::MAX / 2,
        ) {
            let p = RoomPolicy::default();
            if check_room(Some(est), room(free, total), &p) == RoomCheck::Fits {
                prop_assert_eq!(check_room(Some(est), room(free + extra, total), &p), RoomCheck::Fits);
            }
            // and the need always covers the copy itself
            prop_assert!(bytes_needed(est, total, &p) >= est);
        }
    }
}
