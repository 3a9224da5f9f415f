//! Errors of the ring crate.

/// Everything that can go wrong when building rings, owner maps and placements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The ring (or owner map) has no member that could own a hash.
    #[error("the ring has no members")]
    EmptyRing,
    /// A member name appears twice in a membership list or history.
    #[error("member {member:?} appears more than once")]
    DuplicateMember { member: String },
    /// An operation names a member that is not in the ring.
    #[error("unknown member {member:?}")]
    UnknownMember { member: String },
    /// Member names must be non-empty.
    #[error("invalid member name {member:?}: names must be non-empty")]
    InvalidMemberName { member: String },
    /// Members exist but all have weight zero, so nobody can own a hash.
    #[error("the total weight of the ring members is zero")]
    ZeroTotalWeight,
    /// A hash range with start > end, or ranges that overlap where they must not.
    #[error("malformed hash range [{start}, {end}]: {reason}")]
    MalformedRange {
        start: u64,
        end: u64,
        reason: String,
    },
    /// An owner map that is not a partition of the whole hash space.
    #[error("malformed owner map: {reason}")]
    MalformedOwnerMap { reason: String },
    /// `Placement::commit` named a (source, target) pair that is not a pending transfer.
    #[error("no pending transfer from {from:?} to {to:?}")]
    UnknownTransfer { from: String, to: String },
    /// The ring spec names an allocation algorithm this build does not implement.
    #[error("unsupported ring algorithm version {algorithm} (this build supports {supported})")]
    UnsupportedAlgorithm { algorithm: u32, supported: u32 },
    /// vnodes out of the supported range.
    #[error("vnodes must be between 1 and {max}, got {vnodes}")]
    InvalidVnodes { vnodes: u16, max: u16 },
    /// `Replay::advance` was given a spec that does not append to the replayed history.
    #[error("the ring spec does not extend the replayed history")]
    NotAnExtension,
    /// `Placement::finish` was called while transfers are still pending.
    #[error("{pending} transfers are still pending")]
    TransfersPending { pending: usize },
}

/// Result alias of the ring crate.
pub type Result<T> = std::result::Result<T, Error>;
