//! One watch per kind, shared by both controllers.
//!
//! Each kind the operator reads is watched once; a reflector keeps it in a [`Store`] that both
//! controllers read instead of the API server, and every change is fanned out to each
//! controller's trigger stream ([`Feed`]). Stores and watches live for one leadership term: a new
//! term lists everything afresh.
//!
//! Reads from a store may be a moment old. That is fine wherever a stale read can only cause a
//! retry: every write the reconcilers make is either idempotent (server-side apply of a derived
//! object) or carries a resourceVersion precondition. The few reads a decision's safety rests on
//! stay live and say why where they are made (ShardPlacement status commits in
//! driver/placement_io.rs, the scale-down and ShardPlacement spec writes in
//! controller/cluster.rs).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::crd::{ShardCluster, ShardMigration, ShardPlacement};

/// Label of every object the operator creates (StatefulSet, Services, Secret, PDB).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=ringshift-operator";
/// Label of every member pod.
pub const MEMBER_SELECTOR: &str = "app.kubernetes.io/name=ringshift-node";

/// A controller's trigger stream of one kind (changed or deleted objects).
pub type Feed<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The caches both controllers read.
#[derive(Clone)]
pub struct Stores {
    pub clusters: Store<DeserializeGuard<ShardCluster>>,
    pub placements: Store<DeserializeGuard<ShardPlacement>>,
    pub migrations: Store<DeserializeGuard<ShardMigration>>,
    /// Member pods only.
    pub pods: Store<Pod>,
    /// The operator's own objects only (managed-by label).
    pub statefulsets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub secrets: Store<Secret>,
    pub pdbs: Store<PodDisruptionBudget>,
}

/// What wakes the ShardCluster controller.
pub struct ClusterFeeds {
    pub clusters: Feed<DeserializeGuard<ShardCluster>>,
    pub placements: Feed<DeserializeGuard<ShardPlacement>>,
    pub migrations: Feed<DeserializeGuard<ShardMigration>>,
    pub pods: Feed<Pod>,
    pub statefulsets: Feed<StatefulSet>,
    pub services: Feed<Service>,
    pub secrets: Feed<Secret>,
    pub pdbs: Feed<PodDisruptionBudget>,
}

/// What wakes the migration driver. ShardMigration and ShardCluster changes come only when
/// something besides status changed ([`Intent`]): the driver writes ShardMigration status
/// itself and follows its moves by requeue, and reads nothing of ShardCluster status.
pub struct DriverFeeds {
    pub placements: Feed<DeserializeGuard<ShardPlacement>>,
    pub migrations: Feed<DeserializeGuard<ShardMigration>>,
    pub clusters: Feed<DeserializeGuard<ShardCluster>>,
    pub pods: Feed<Pod>,
}

/// The watch tasks of one term; dropping this stops them.
pub struct Reflectors {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Reflectors {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Why the caches could not be filled.
#[derive(Debug, thiserror::Error)]
#[error("the {kind} cache stopped before its first list completed")]
pub struct NotReady {
    kind: &'static str,
}

impl Stores {
    /// Resolves once every store holds a complete first list.
    pub async fn ready(&self) -> Result<(), NotReady> {
        async fn one<K>(s: &Store<K>, kind: &'static str) -> Result<(), NotReady>
        where
            K: kube::runtime::reflector::Lookup + Clone + 'static,
            K::DynamicType: Eq + Hash + Clone,
        {
            s.wait_until_ready().await.map_err(|_| NotReady { kind })
        }
        one(&self.clusters, "ShardCluster").await?;
        one(&self.placements, "ShardPlacement").await?;
        one(&self.migrations, "ShardMigration").await?;
        one(&self.pods, "Pod").await?;
        one(&self.statefulsets, "StatefulSet").await?;
        one(&self.services, "Service").await?;
        one(&self.secrets, "Secret").await?;
        one(&self.pdbs, "PodDisruptionBudget").await
    }

    /// Stores that never fill (for unit tests of code that holds but does not read them).
    #[cfg(test)]
    pub fn empty() -> Stores {
        fn e<K>() -> Store<K>
        where
            K: kube::runtime::reflector::Lookup + Clone + 'static,
            K::DynamicType: Eq + Hash + Clone + Default,
        {
            reflector::store::Writer::<K>::default().as_reader()
        }
        Stores {
            clusters: e(),
            placements: e(),
            migrations: e(),
            pods: e(),
            statefulsets: e(),
            services: e(),
            secrets: e(),
            pdbs: e(),
        }
    }

    /// A cached ShardCluster.
    pub fn cluster(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<std::sync::Arc<DeserializeGuard<ShardCluster>>> {
        self.clusters.get(&ObjectRef::new(name).within(ns))
    }

    /// A cached ShardPlacement.
    pub fn placement(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<std::sync::Arc<DeserializeGuard<ShardPlacement>>> {
        self.placements.get(&ObjectRef::new(name).within(ns))
    }

    /// The cached pods of namespace `ns` that carry every label of `selector`.
    pub fn pods_with(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<Pod> {
        self.pods
            .state_filter(|p| {
                p.namespace().as_deref() == Some(ns)
                    && selector.iter().all(|(k, v)| p.labels().get(k) == Some(v))
            })
            .into_iter()
            .map(|p| (*p).clone())
            .collect()
    }

    /// The cached ShardMigrations (the readable ones) of cluster `name` in namespace `ns`.
    pub fn migrations_of(&self, ns: &str, name: &str) -> Vec<ShardMigration> {
        self.migrations
            .state_filter(|m| m.namespace().as_deref() == Some(ns))
            .into_iter()
            .filter_map(|m| m.0.as_ref().ok().cloned())
            .filter(|m| m.spec.cluster == name)
            .collect()
    }
}

/// Starts one watch per kind in `namespace` (all when None); returns the stores, each
/// controller's trigger streams, and the tasks that keep them current.
pub fn start(
    client: &Client,
    namespace: Option<&str>,
) -> (Stores, ClusterFeeds, DriverFeeds, Reflectors) {
    fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let all = watcher::Config::default;
    let managed = || watcher::Config::default().labels(MANAGED_SELECTOR);
    let mut tasks = Vec::new();
    let mut spawn = |f: BoxFuture<'static, ()>| tasks.push(tokio::spawn(f));

    let (clusters, [c_clusters, d_clusters], f) = reflect(scoped(client, namespace), all());
    spawn(f);
    let (placements, [c_placements, d_placements], f) = reflect(scoped(client, namespace), all());
    spawn(f);
    let (migrations, [c_migrations, d_migrations], f) = reflect(scoped(client, namespace), all());
    spawn(f);
    let (pods, [c_pods, d_pods], f) = reflect(
        scoped(client, namespace),
        watcher::Config::default().labels(MEMBER_SELECTOR),
    );
    spawn(f);
    let (statefulsets, [c_sts], f) = reflect(scoped(client, namespace), managed());
    spawn(f);
    let (services, [c_services], f) = reflect(scoped(client, namespace), managed());
    spawn(f);
    let (secrets, [c_secrets], f) = reflect(scoped(client, namespace), managed());
    spawn(f);
    let (pdbs, [c_pdbs], f) = reflect(scoped(client, namespace), managed());
    spawn(f);

    let stores = Stores {
        clusters,
        placements,
        migrations,
        pods,
        statefulsets,
        services,
        secrets,
        pdbs,
    };
    let cluster = ClusterFeeds {
        clusters: every_change(c_clusters),
        placements: every_change(c_placements),
        migrations: every_change(c_migrations),
        pods: every_change(c_pods),
        statefulsets: every_change(c_sts),
        services: every_change(c_services),
        secrets: every_change(c_secrets),
        pdbs: every_change(c_pdbs),
    };
    let driver = DriverFeeds {
        placements: every_change(d_placements),
        migrations: intent_changes(d_migrations),
        clusters: intent_changes(d_clusters),
        pods: every_change(d_pods),
    };
    (stores, cluster, driver, Reflectors { tasks })
}

/// An object that changed (or was deleted), as the fan-out passes it on.
#[derive(Clone)]
struct Touched<K> {
    obj: K,
    deleted: bool,
}

/// Watches `api` into a store and fans every change out to `N` receivers. Objects of the first
/// list are passed on when the list is complete (the store holds them then), so that a trigger
/// never names an object its controller cannot find yet. The channels are unbounded: the
/// watch must never wait for a controller that has not started (it waits for the stores).
fn reflect<K, const N: usize>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    [mpsc::UnboundedReceiver<Touched<K>>; N],
    BoxFuture<'static, ()>,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let mut senders = Vec::with_capacity(N);
    let receivers: [mpsc::UnboundedReceiver<Touched<K>>; N] = std::array::from_fn(|_| {
        let (tx, rx) = mpsc::unbounded();
        senders.push(tx);
        rx
    });
    let store = reader.clone();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let task = async move {
        let events = watcher(api, config).default_backoff().reflect(writer);
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let touched: Vec<Touched<K>> = match event {
                Ok(watcher::Event::Apply(obj)) => vec![Touched {
                    obj,
                    deleted: false,
                }],
                Ok(watcher::Event::Delete(obj)) => vec![Touched { obj, deleted: true }],
                Ok(watcher::Event::InitDone) => store
                    .state()
                    .into_iter()
                    .map(|o| Touched {
                        obj: (*o).clone(),
                        deleted: false,
                    })
                    .collect(),
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            for t in touched {
                for tx in &senders {
                    // A closed receiver is a controller that stopped: nothing to tell it.
                    let _ = tx.unbounded_send(t.clone());
                }
            }
        }
    }
    .boxed();
    (reader, receivers, task)
}

fn every_change<K: Send + 'static>(rx: mpsc::UnboundedReceiver<Touched<K>>) -> Feed<K> {
    rx.map(|t| Ok(t.obj)).boxed()
}

/// The parts of an object that say what its owner wants of it (as opposed to its status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    generation: Option<i64>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    deleting: bool,
    uid: Option<String>,
}

impl Intent {
    /// The intent recorded in `meta`.
    pub fn of(meta: &ObjectMeta) -> Intent {
        Intent {
            generation: meta.generation,
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            uid: meta.uid.clone(),
        }
    }
}

/// Whether a change to an object whose intent was `seen` (None: never seen) and now is `now`
/// should wake the driver: a new or deleted object, or one whose intent changed. Status-only
/// changes do not.
pub fn wakes(seen: Option<&Intent>, now: &Intent, deleted: bool) -> bool {
    deleted || seen != Some(now)
}

/// The changes of `rx` that [`wakes`] lets through.
fn intent_changes<K>(rx: mpsc::UnboundedReceiver<Touched<K>>) -> Feed<K>
where
    K: Resource + Send + 'static,
{
    let mut seen: HashMap<(Option<String>, String), Intent> = HashMap::new();
    rx.filter_map(move |t| {
        let key = (
            t.obj.meta().namespace.clone(),
            t.obj.meta().name.clone().unwrap_or_default(),
        );
        let now = Intent::of(t.obj.meta());
        let wake = wakes(seen.get(&key), &now, t.deleted);
        if t.deleted {
            seen.remove(&key);
        } else {
            seen.insert(key, now);
        }
        futures::future::ready(wake.then_some(Ok(t.obj)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(generation: i64, annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some("m".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            generation: Some(generation),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn status_only_changes_do_not_wake_the_driver() {
        let a = Intent::of(&meta(1, &[]));
        assert!(wakes(None, &a, false), "a new object wakes");
        assert!(
            !wakes(Some(&a), &a.clone(), false),
            "same intent: a status write"
        );
        assert!(wakes(Some(&a), &a, true), "a deletion wakes");
    }

    #[test]
    fn spec_annotation_deletion_and_recreation_wake_the_driver() {
        let a = Intent::of(&meta(1, &[]));
        assert!(
            wakes(Some(&a), &Intent::of(&meta(2, &[])), false),
            "spec edit"
        );
        let cancel = Intent::of(&meta(1, &[("ringshift.dev/cancel", "true")]));
        assert!(wakes(Some(&a), &cancel, false), "cancel annotation");
        let mut deleting = meta(1, &[]);
        deleting.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert!(
            wakes(Some(&a), &Intent::of(&deleting), false),
            "deletion started"
        );
        let mut recreated = meta(1, &[]);
        recreated.uid = Some("u2".into());
        assert!(
            wakes(Some(&a), &Intent::of(&recreated), false),
            "same name, new object"
        );
    }

    #[tokio::test]
    async fn the_driver_feed_drops_status_writes_but_keeps_deletions() {
        let (tx, rx) = mpsc::unbounded();
        let pod = |generation: i64, phase: &str| Pod {
            metadata: meta(generation, &[]),
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        for (obj, deleted) in [
            (pod(1, "Pending"), false),
            (pod(1, "Running"), false),
            (pod(2, "Running"), false),
            (pod(2, "Running"), true),
        ] {
            tx.unbounded_send(Touched { obj, deleted }).unwrap();
        }
        drop(tx);
        let got: Vec<(Option<i64>, Option<String>)> = intent_changes(rx)
            .map(|r| {
                let p = r.unwrap();
                (p.metadata.generation, p.status.and_then(|s| s.phase))
            })
            .collect()
            .await;
        assert_eq!(
            got,
            vec![
                (Some(1), Some("Pending".into())),
                (Some(2), Some("Running".into())),
                (Some(2), Some("Running".into())),
            ]
        );
    }
}
