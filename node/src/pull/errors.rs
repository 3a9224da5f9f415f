//! Why a pull could not be started, cancelled or persisted, and why a drop could not claim its
//! ranges. Domain errors: `admin/` alone turns them into HTTP status codes and bodies.

use crate::engine::{EngineError, WriteError};

/// Why `pull::start` or `pull::cancel` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// A newer attempt of the migration is pulling.
    #[error("pull of migration {uid} runs attempt {attempt}")]
    StaleAttempt { uid: String, attempt: u64 },
    /// A drop of overlapping ranges runs: the pull would copy into what it removes.
    #[error("a drop of these ranges is in progress on this node; retry when it is done")]
    DropInProgress,
    /// Another migration's pull writes into overlapping ranges.
    #[error("migration {other} is already pulling into these ranges")]
    RangesTaken { other: String },
    #[error("no pull for migration {uid}")]
    NoPull { uid: String },
    /// Registered but its persisted record is gone or unreadable.
    #[error("no pull record for migration {uid}")]
    NoRecord { uid: String },
    /// A panic while a pull's status was locked.
    #[error("poisoned lock: another task failed inside")]
    Poisoned,
    #[error(transparent)]
    Storage(#[from] EngineError),
    /// The pull record could not be stored through the writer.
    #[error(transparent)]
    Persist(#[from] WriteError),
}

/// Why a drop may not take its ranges now.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the pull of migration {uid} writes into these ranges; cancel it first")]
    PullWritesInto { uid: String },
    #[error("a drop of these ranges is already in progress")]
    DropInProgress,
}
