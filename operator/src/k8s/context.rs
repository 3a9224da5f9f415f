//! What every reconcile of both controllers shares: client, Event recorder, metrics, caches
//! and backoff.

use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};

use super::key::scoped;
use super::reconcile::Backoff;
use crate::cache::Stores;
use crate::log_format::LogFormat;
use crate::metrics::Metrics;

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
    pub backoff: Backoff,
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
            backoff: Backoff::default(),
        }
    }

    /// The nodes this operator renders log in `format`.
    pub fn with_node_log_format(mut self, format: LogFormat) -> Self {
        self.node_log_format = format;
        self
    }

    /// Kind `K` in namespace `ns`.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        scoped(&self.client, ns)
    }

    /// Publishes an Event about `obj` on a task of its own (an Event is best effort, and a
    /// reconcile does not wait for the API server to store it); a failure is logged, not fatal.
    pub async fn publish(
        &self,
        obj: &impl Resource<DynamicType = ()>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        let reference = obj.object_ref(&());
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, reason = %ev.reason, "publishing an Event failed");
            }
        });
    }
}
