//! The admin API's error answers: an HTTP status plus an [`ApiError`] JSON body, and the one
//! place where the node's domain errors (pulls, drops, placements) become them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ringshift_node_api::{ApiError, ErrorReason};

use crate::engine::WriteError;
use crate::placement::PlacementError;
use crate::pull::{ClaimError, PullError};

/// An error answer: status plus [`ApiError`] JSON.
#[derive(Debug)]
pub struct ApiErr(pub StatusCode, pub ApiError);

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

pub fn api_err(reason: ErrorReason, error: impl Into<String>) -> ApiErr {
    let status = match reason {
        ErrorReason::BadRequest => StatusCode::BAD_REQUEST,
        ErrorReason::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorReason::NotFound => StatusCode::NOT_FOUND,
        ErrorReason::Recopy => StatusCode::GONE,
        ErrorReason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorReason::OtherCluster
        | ErrorReason::StaleEpoch
        | ErrorReason::StaleAttempt
        | ErrorReason::Owned
        | ErrorReason::Conflict => StatusCode::CONFLICT,
    };
    ApiErr(
        status,
        ApiError {
            reason,
            error: error.into(),
        },
    )
}

pub type ApiResult<T> = Result<T, ApiErr>;

/// The reason a pull's refusal or failure is reported with.
fn pull_reason(e: &PullError) -> ErrorReason {
    match e {
        PullError::StaleAttempt { .. } => ErrorReason::StaleAttempt,
        PullError::DropInProgress | PullError::RangesTaken { .. } => ErrorReason::Conflict,
        PullError::NoPull { .. } | PullError::NoRecord { .. } => ErrorReason::NotFound,
        PullError::Poisoned | PullError::Storage(_) | PullError::Persist(_) => {
            ErrorReason::Internal
        }
    }
}

/// The reason a placement's refusal or failure is reported with.
fn placement_reason(e: &PlacementError) -> ErrorReason {
    match e {
        PlacementError::NotStartedFor { .. } | PlacementError::OtherCluster { .. } => {
            ErrorReason::OtherCluster
        }
        // The writer re-checks the epoch in order with other installs: a newer one won.
        PlacementError::StaleEpoch { .. } | PlacementError::Write(WriteError::Refused(_)) => {
            ErrorReason::StaleEpoch
        }
        PlacementError::DifferentAtEpoch { .. } | PlacementError::RingDiffers { .. } => {
            ErrorReason::Conflict
        }
        PlacementError::Unresolvable(_)
        | PlacementError::Unencodable(_)
        | PlacementError::Undecodable(_) => ErrorReason::BadRequest,
        PlacementError::Store(_) | PlacementError::Write(_) | PlacementError::Task(_) => {
            ErrorReason::Internal
        }
    }
}

impl From<PullError> for ApiErr {
    fn from(e: PullError) -> ApiErr {
        api_err(pull_reason(&e), e.to_string())
    }
}

impl From<PlacementError> for ApiErr {
    fn from(e: PlacementError) -> ApiErr {
        api_err(placement_reason(&e), e.to_string())
    }
}

/// A drop refused because a pull or another drop holds overlapping ranges.
impl From<ClaimError> for ApiErr {
    fn from(e: ClaimError) -> ApiErr {
        api_err(ErrorReason::Conflict, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_status_and_text() {
        let e = ApiErr::from(PullError::StaleAttempt {
            uid: "m1".into(),
            attempt: 3,
        });
        assert_eq!(e.0, StatusCode::CONFLICT);
        assert_eq!(e.1.reason, ErrorReason::StaleAttempt);
        assert_eq!(e.1.error, "pull of migration m1 runs attempt 3");

        let e = ApiErr::from(PullError::NoPull { uid: "m2".into() });
        assert_eq!(e.0, StatusCode::NOT_FOUND);
        assert_eq!(e.1.error, "no pull for migration m2");

        let e = ApiErr::from(PlacementError::StaleEpoch {
            epoch: 2,
            installed: 5,
        });
        assert_eq!(e.1.reason, ErrorReason::StaleEpoch);
        assert_eq!(
            e.1.error,
            "placement epoch 2 is lower than the installed epoch 5"
        );

        let e = ApiErr::from(ClaimError::PullWritesInto { uid: "m3".into() });
        assert_eq!(e.0, StatusCode::CONFLICT);
        assert_eq!(
            e.1.error,
            "the pull of migration m3 writes into these ranges; cancel it first"
        );
    }
}
