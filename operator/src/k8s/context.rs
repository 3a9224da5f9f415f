//! Controllers and their shared context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::cache::Stores;
use crate::cluster::desired::ring::RingError;
use crate::log_format::LogFormat;
use crate::metrics::Metrics;

/// Why a reconcile failed; it is retried with backoff.
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
    /// The ShardPlacement could not be read.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The OS random source failed.
    #[error("generating the admin token: {0}")]
    Token(getrandom::Error),
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

impl Error {
    /// Short reason for metrics.
    pub fn reason(&self) -> String {
        match self {
            Self::Kube {
                source: kube::Error::Api(s),
                ..
            } => {
                if s.reason.is_empty() {
                    format!("Http{}", s.code)
                } else {
                    s.reason.clone()
                }
            }
            Self::Kube { .. } => "ClientError".into(),
            Self::Ring(_) => "PlacementUnreadable".into(),
            Self::Token(_) => "TokenGeneration".into(),
            Self::NoNamespace(_) => "NoNamespace".into(),
            Self::Undecodable { .. } => "Undecodable".into(),
        }
    }
}

/// Adds what was being done to a client error.
pub(crate) trait KubeContext<T> {
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

/// Shared by every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Log format of the nodes this operator renders (its own).
    pub node_log_format: LogFormat,
    /// The shared caches reconciles read (see `crate::cache`).
    pub stores: Stores,
    /// Consecutive failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for `client` and the caches `stores`, reporting events as `identity`.
    pub fn new(client: Client, identity: &str, metrics: Arc<Metrics>, stores: Stores) -> Self {
        let reporter = Reporter {
            controller: "ringshift-operator".into(),
            instance: Some(identity.to_string()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            node_log_format: LogFormat::default(),
            stores,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The nodes this operator renders log in `format`.
    pub fn with_node_log_format(mut self, format: LogFormat) -> Self {
        self.node_log_format = format;
        self
    }

    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Exponential backoff: 1s, 2s, 4s ... capped at 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(9);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_delay(1), Duration::from_secs(1));
        assert_eq!(backoff_delay(2), Duration::from_secs(2));
        assert_eq!(backoff_delay(5), Duration::from_secs(16));
        assert_eq!(backoff_delay(50), Duration::from_secs(300));
    }
}
