//! Why a ShardCluster reconcile failed; it is retried with backoff.

use std::borrow::Cow;

use super::desired::ring::RingError;
use crate::k8s::{self, Reason};

/// Why a ShardCluster reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call or a cached object failed (see [`k8s::Error`]).
    #[error(transparent)]
    Api(#[from] k8s::Error),
    /// The ShardPlacement could not be read.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The OS random source failed.
    #[error("generating the admin token: {0}")]
    Token(getrandom::Error),
}

impl Reason for Error {
    fn reason(&self) -> Cow<'static, str> {
        match self {
            Self::Api(e) => e.reason(),
            Self::Ring(_) => "PlacementUnreadable".into(),
            Self::Token(_) => "TokenGeneration".into(),
        }
    }
}
