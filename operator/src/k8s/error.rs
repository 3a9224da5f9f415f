//! The errors every controller shares: API calls, optimistic concurrency, objects without a
//! namespace or that do not deserialize. Each controller's own error wraps this one.

use std::borrow::Cow;

/// A failed step of a reconcile that talks to the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Optimistic concurrency: somebody else wrote first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An object without a namespace (the CRDs are namespaced).
    #[error("object {0} has no namespace")]
    NoNamespace(String),
    /// A cached object that does not deserialize (its own reconcile reports why).
    #[error("{what} does not deserialize: {message}")]
    Undecodable {
        /// Which object.
        what: String,
        /// The decoding error.
        message: String,
    },
}

/// The short reason of a failure: the `reason` label of the reconcile error metric.
pub trait Reason {
    /// A CamelCase word or two (`Conflict`, `NotFound`, `StaleLeader`).
    fn reason(&self) -> Cow<'static, str>;
}

impl Reason for Error {
    fn reason(&self) -> Cow<'static, str> {
        match self {
            Self::Kube {
                source: kube::Error::Api(s),
                ..
            } => {
                if s.reason.is_empty() {
                    format!("Http{}", s.code).into()
                } else {
                    s.reason.clone().into()
                }
            }
            Self::Kube { .. } => "ClientError".into(),
            Self::Conflict(_) => "Conflict".into(),
            Self::NoNamespace(_) => "NoNamespace".into(),
            Self::Undecodable { .. } => "Undecodable".into(),
        }
    }
}

impl Error {
    /// A client error while doing `action`.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Error {
        Error::Kube {
            action: action.into(),
            source,
        }
    }

    /// Whether somebody else wrote first (a lost optimistic-concurrency race).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// A refusal the same request would get again (the object is invalid or forbidden).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if matches!(s.code, 400 | 403 | 404 | 422))
    }
}

/// Adds what was being done to a client error.
pub trait KubeContext<T> {
    /// The error, saying it happened while doing `action`.
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> Error {
        Error::kube(
            "patching",
            kube::Error::Api(
                kube::core::Status::failure("refused", reason)
                    .with_code(code)
                    .boxed(),
            ),
        )
    }

    #[test]
    fn an_api_refusal_is_reported_by_the_server_s_reason() {
        assert_eq!(api_error(422, "Invalid").reason(), "Invalid");
        assert_eq!(api_error(500, "").reason(), "Http500");
        assert_eq!(Error::Conflict("x".into()).reason(), "Conflict");
    }

    #[test]
    fn only_refusals_the_server_repeats_are_permanent() {
        assert!(api_error(422, "Invalid").is_permanent());
        assert!(api_error(404, "NotFound").is_permanent());
        assert!(!api_error(409, "Conflict").is_permanent());
        assert!(!api_error(500, "InternalError").is_permanent());
        assert!(!Error::NoNamespace("x".into()).is_permanent());
    }
}
