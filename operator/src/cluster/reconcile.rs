//! The ShardCluster controller: owns the StatefulSet, Services, admin-token
//! Secret, PodDisruptionBudget and ShardPlacement spec of each cluster, and is
//! the only writer of ShardCluster status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use ringshift_ring::{Placement, RingSpec};

use super::Error;
use super::conditions::{DesiredCondition, Status, merge_conditions, types};
use super::desired::names::{self, CLUSTER_LABEL, FIELD_MANAGER};
use super::desired::tuning::Tuning;
use super::desired::{pdb, ring, secret, services, statefulset};
use super::observed::{PodFacts, next_pod_to_roll, pod_facts};
use super::status::{self, Inputs, PlacementView, busy_members};
use super::validate::{Existing, Invalid, SecretLookup, fits_label_value, validate};
use super::{finalizer, undecodable};
use crate::cache::ClusterFeeds;
use crate::crd::{
    NodeAck, ShardCluster, ShardClusterStatus, ShardMigration, ShardPlacement, StorageSpec,
};
use crate::k8s::apply::{self as ssa, Applied};
use crate::k8s::reconcile::{measured, retry_in};
use crate::k8s::{self, Context, KubeContext, ObjectKey};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "shardcluster";

/// Resync period while something is changing.
const BUSY_RESYNC: Duration = Duration::from_secs(30);
/// Resync period when all is stable.
const IDLE_RESYNC: Duration = Duration::from_secs(300);

type Guarded = DeserializeGuard<ShardCluster>;

/// How long the controller gathers triggers for one cluster before it reconciles: a move in
/// flight changes its ShardMigration status every few hundred milliseconds, and one reconcile
/// per burst reports them all.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Runs the controller until `shutdown` resolves, woken by the shared caches' `feeds` (the
/// caches `ctx.stores` must be ready: see `crate::cache`).
pub async fn run(
    ctx: Arc<Context>,
    feeds: ClusterFeeds,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn in_ns(ns: Option<String>, cluster: &str) -> ObjectRef<Guarded> {
        let r = ObjectRef::<Guarded>::new(cluster);
        match ns {
            Some(ns) => r.within(&ns),
            None => r,
        }
    }
    Controller::for_stream(feeds.clusters, ctx.stores.clusters.clone())
        .with_config(controller::Config::default().debounce(DEBOUNCE))
        .owns_stream(feeds.statefulsets)
        .owns_stream(feeds.services)
        .owns_stream(feeds.secrets)
        .owns_stream(feeds.pdbs)
        .owns_stream(feeds.placements)
        .watches_stream(feeds.pods, |pod: Pod| {
            let c = pod.labels().get(CLUSTER_LABEL)?.clone();
            Some(in_ns(pod.namespace(), &c))
        })
        .watches_stream(feeds.migrations, |m: DeserializeGuard<ShardMigration>| {
            let m = m.0.ok()?;
            Some(in_ns(m.namespace(), &m.spec.cluster))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "controller event"),
            }
        })
        .await;
}

/// Reconciles one ShardCluster (or reports why it cannot be read).
pub async fn reconcile(obj: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectKey::lossy(&*obj);
    measured(&ctx, CONTROLLER, &key, async {
        match &obj.0 {
            Ok(cluster) => reconcile_cluster(cluster, &ctx).await,
            Err(invalid) => Ok(undecodable::report(&obj, invalid, &ctx).await?),
        }
    })
    .await
}

/// Requeues a failed reconcile with exponential backoff.
pub fn error_policy(obj: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectKey::lossy(&*obj);
    let delay = retry_in(&ctx, CONTROLLER, &key, None);
    tracing::warn!(cluster = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// One pass over a ShardCluster: observe -> validate -> build -> apply -> status.
async fn reconcile_cluster(cluster: &ShardCluster, ctx: &Context) -> Result<Action, Error> {
    let key = ObjectKey::of(cluster)?;
    if cluster.metadata.deletion_timestamp.is_some() {
        return Ok(finalizer::finalize(cluster, ctx, &key.namespace).await?);
    }
    if finalizer::ensure(cluster, ctx, &key.namespace).await? {
        // The patch triggers another reconcile with the new metadata.
        return Ok(Action::await_change());
    }
    // `decide` is what comes from the caches (but for the rare live reads: no cached placement,
    // spec.auth's Secret, the placement before a scale-down); `apply` and `status` are API writes.
    let step = Instant::now();
    let seen = observe(cluster, ctx, &key).await?;
    let checked = validate_spec(cluster, &seen);
    let desired = build(cluster, ctx, &key, &seen, &checked).await?;
    ctx.metrics
        .observe_step(CONTROLLER, "decide", step.elapsed());
    let step = Instant::now();
    let outcome = apply(cluster, ctx, &key, &seen, desired.as_ref()).await?;
    ctx.metrics
        .observe_step(CONTROLLER, "apply", step.elapsed());
    let step = Instant::now();
    let action = write_status(cluster, ctx, &key, &seen, &checked, outcome).await;
    ctx.metrics
        .observe_step(CONTROLLER, "status", step.elapsed());
    action
}

/// What a reconcile found: the cluster's owned objects, pods and moves, and its ring.
struct Observed {
    sts: Option<StatefulSet>,
    placement: Option<ShardPlacement>,
    /// Member pods, by ordinal.
    pods: Vec<PodFacts>,
    migrations: Vec<ShardMigration>,
    /// Storage of the StatefulSet, when it exists.
    live_storage: Option<StorageSpec>,
    /// The desired ring in the ShardPlacement spec.
    current_ring: Option<RingSpec>,
    /// The committed placement in the ShardPlacement status.
    committed: Option<Placement>,
    /// Why the ShardPlacement could not be read, if it could not.
    placement_error: Option<String>,
    password_secret: Option<SecretLookup>,
}

/// Reads what the cluster has now. Everything comes from the shared caches (`crate::cache`)
/// but the reads named live below: a stale read only costs a retry, since the writes that
/// follow are idempotent or carry a precondition, and the reads a decision's safety rests on
/// are made live where that decision is taken.
async fn observe(
    cluster: &ShardCluster,
    ctx: &Context,
    key: &ObjectKey,
) -> Result<Observed, Error> {
    let (ns, name) = (&key.namespace, &key.name);
    let stores = &ctx.stores;
    let sts = stores
        .statefulsets
        .get(&ObjectRef::new(name).within(ns))
        .map(|s| (*s).clone());
    let placement = match stores.placement(ns, name) {
        Some(p) => match &p.0 {
            Ok(p) => Some(p.clone()),
            Err(e) => {
                return Err(k8s::Error::Undecodable {
                    what: format!("ShardPlacement {key}"),
                    message: e.error.clone(),
                }
                .into());
            }
        },
        // Live: without a placement the desired ring starts afresh and is written. A cache
        // that has not seen the placement yet must not make that decision.
        None => ctx
            .api::<ShardPlacement>(ns)
            .get_opt(name)
            .await
            .during(|| format!("reading ShardPlacement {key}"))?,
    };
    // A name that cannot be a label value has no pods (validation refuses it).
    let pods = if fits_label_value(name) {
        stores.pods_with(ns, &names::selector_labels(name))
    } else {
        Vec::new()
    };
    let migrations: Vec<ShardMigration> = stores.migrations_of(ns, name);
    let mut pods: Vec<PodFacts> = pods.iter().map(pod_facts).collect();
    pods.sort_by_key(|p| names::ordinal(name, &p.name).unwrap_or(i32::MAX));

    let live_storage = sts.as_ref().and_then(statefulset::live_storage);
    // An unreadable ShardPlacement blocks every change (who holds data is unknown) but
    // still gets reported on the status.
    let mut placement_error: Option<String> = None;
    let current_ring = ring::current_ring(placement.as_ref()).unwrap_or_else(|e| {
        placement_error = Some(e.to_string());
        None
    });
    let committed = ring::committed(placement.as_ref()).unwrap_or_else(|e| {
        placement_error.get_or_insert(e.to_string());
        None
    });
    let password_secret = match cluster
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.password_secret_ref.as_ref())
    {
        // Live: the user's Secret is not labelled as ours, so no cache holds it (watching
        // every Secret would cache all of them); read once per reconcile with auth set.
        Some(r) => Some(lookup_secret(ctx, ns, &r.name).await?),
        None => None,
    };
    Ok(Observed {
        sts,
        placement,
        pods,
        migrations,
        live_storage,
        current_ring,
        committed,
        placement_error,
        password_secret,
    })
}

impl Observed {
    fn pod_names(&self) -> Vec<String> {
        self.pods.iter().map(|p| p.name.clone()).collect()
    }

    fn acks(&self) -> Vec<NodeAck> {
        acks_of(self.placement.as_ref())
    }
}

fn acks_of(placement: Option<&ShardPlacement>) -> Vec<NodeAck> {
    placement
        .and_then(|p| p.status.as_ref())
        .map(|s| s.acks.clone())
        .unwrap_or_default()
}

/// The spec checked against what exists, and the desired ring it asks for.
struct Checked {
    /// What is wrong with the spec (empty when it is valid).
    invalid: Vec<Invalid>,
    /// The ring the spec asks for, when the spec is valid.
    desired_ring: Option<RingSpec>,
    log_retention: Duration,
    tuning: Tuning,
    /// The committed placement against the desired ring (or the current one).
    view: PlacementView,
    /// Why the ShardPlacement could not be read, if it could not.
    placement_error: Option<String>,
}

/// Validates the spec against what exists and derives the desired ring from it.
fn validate_spec(cluster: &ShardCluster, seen: &Observed) -> Checked {
    let name = cluster.name_any();
    let existing = Existing {
        storage: seen.live_storage.as_ref(),
        vnodes: seen.current_ring.as_ref().map(|r| r.vnodes),
        password_secret: seen.password_secret.clone(),
    };
    let mut checked = Checked {
        invalid: Vec::new(),
        desired_ring: None,
        log_retention: Duration::from_secs(3600),
        tuning: Tuning::default(),
        view: PlacementView::default(),
        placement_error: seen.placement_error.clone(),
    };
    match validate(&name, &cluster.spec, &existing) {
        Ok(valid) => match ring::desired_ring(seen.current_ring.as_ref(), &valid) {
            Ok(r) => {
                checked.desired_ring = Some(r);
                checked.log_retention = valid.change_log_retention;
                checked.tuning = valid.tuning;
            }
            Err(e) => checked.invalid.push(Invalid {
                reason: "RingInvalid",
                message: format!("the desired ring cannot be built: {e}"),
            }),
        },
        Err(errors) => checked.invalid = errors,
    }
    if let Some(r) = checked.desired_ring.as_ref().or(seen.current_ring.as_ref()) {
        checked.view =
            ring::placement_view(seen.committed.as_ref(), r, &seen.acks(), &seen.pod_names())
                .unwrap_or_else(|e| {
                    checked.placement_error.get_or_insert(e.to_string());
                    PlacementView::default()
                });
    }
    checked
}

/// The objects a cluster owns, as its spec wants them.
struct Desired {
    replicas: i32,
    /// Operations of the desired ring (for the log).
    ring_ops: usize,
    services: [Service; 2],
    placement: ShardPlacement,
    statefulset: StatefulSet,
    pdb: PodDisruptionBudget,
}

/// Builds the owned objects, or `None` when the spec is invalid or the placement unreadable
/// (then nothing is changed).
async fn build(
    cluster: &ShardCluster,
    ctx: &Context,
    key: &ObjectKey,
    seen: &Observed,
    checked: &Checked,
) -> Result<Option<Desired>, Error> {
    let Some(desired_ring) = &checked.desired_ring else {
        return Ok(None);
    };
    if !checked.invalid.is_empty() || checked.placement_error.is_some() {
        return Ok(None);
    }
    let name = &key.name;
    let current_replicas = seen.sts.as_ref().and_then(|s| s.spec.replicas);
    let mut replicas = statefulset::replicas(
        name,
        cluster.spec.replicas,
        current_replicas,
        &checked.view.data_holders,
        checked.view.all_acknowledged,
    );
    if current_replicas.is_some_and(|c| replicas < c) {
        // Live: removing members is safe only if they hold no data, and a cached
        // placement may predate the commit that gave one of them ranges.
        let fresh = ctx
            .api::<ShardPlacement>(&key.namespace)
            .get_opt(name)
            .await
            .during(|| format!("re-reading ShardPlacement {key}"))?;
        let fresh_view = ring::placement_view(
            ring::committed(fresh.as_ref())?.as_ref(),
            desired_ring,
            &acks_of(fresh.as_ref()),
            &seen.pod_names(),
        )?;
        replicas = replicas.max(statefulset::replicas(
            name,
            cluster.spec.replicas,
            current_replicas,
            &fresh_view.data_holders,
            fresh_view.all_acknowledged,
        ));
    }
    let storage = seen
        .live_storage
        .clone()
        .unwrap_or_else(|| cluster.spec.storage.clone());
    Ok(Some(Desired {
        replicas,
        ring_ops: desired_ring.ops.len(),
        services: [services::headless(cluster), services::client(cluster)],
        placement: ring::placement_object(cluster, desired_ring)?,
        statefulset: statefulset::statefulset(
            cluster,
            replicas,
            &storage,
            checked.log_retention,
            &checked.tuning,
            ctx.node_log_format,
        ),
        pdb: pdb::pdb(cluster),
    }))
}

/// What applying the owned objects did, for status.
struct Outcome {
    expected_pods: i32,
    apply_error: Option<String>,
    retry: Option<Error>,
}

/// Applies the desired objects and replaces the next out-of-date pod. A refusal the API server
/// would repeat is reported on the status instead of retried.
async fn apply(
    cluster: &ShardCluster,
    ctx: &Context,
    key: &ObjectKey,
    seen: &Observed,
    desired: Option<&Desired>,
) -> Result<Outcome, Error> {
    let Some(desired) = desired else {
        return Ok(Outcome {
            expected_pods: seen.sts.as_ref().and_then(|s| s.spec.replicas).unwrap_or(0),
            apply_error: None,
            retry: None,
        });
    };
    let mut outcome = Outcome {
        expected_pods: desired.replicas,
        apply_error: None,
        retry: None,
    };
    match apply_owned(cluster, ctx, key, desired, seen).await {
        Ok(()) => {
            roll_one_pod(
                cluster,
                ctx,
                &key.namespace,
                seen.sts.as_ref(),
                &seen.pods,
                desired.replicas,
                &seen.migrations,
            )
            .await?;
        }
        Err(Error::Api(e)) if e.is_permanent() => outcome.apply_error = Some(e.to_string()),
        Err(e) => outcome.retry = Some(e),
    }
    Ok(outcome)
}

/// Computes and writes the status, publishes the cluster's metrics, and decides when to look
/// again.
async fn write_status(
    cluster: &ShardCluster,
    ctx: &Context,
    key: &ObjectKey,
    seen: &Observed,
    checked: &Checked,
    outcome: Outcome,
) -> Result<Action, Error> {
    let name = &key.name;
    let sts = seen.sts.as_ref();
    let outdated = match sts
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone())
    {
        Some(rev) => seen
            .pods
            .iter()
            .filter(|p| p.revision.as_deref() != Some(rev.as_str()))
            .count(),
        None => 0,
    };
    let inputs = Inputs {
        generation: cluster.metadata.generation,
        invalid: &checked.invalid,
        statefulset_exists: sts.is_some(),
        expected_pods: outcome.expected_pods,
        sts_replicas: sts
            .and_then(|s| s.status.as_ref())
            .map(|s| s.replicas)
            .unwrap_or(0),
        pods: &seen.pods,
        outdated_pods: outdated,
        placement: checked.view.clone(),
        migrations: &seen.migrations,
        selector: names::selector_string(name),
        apply_error: outcome.apply_error.clone(),
        placement_error: checked.placement_error.clone(),
        awaiting_approval: match (&checked.desired_ring, &seen.committed) {
            (Some(ring), Some(p)) => status::published_plan(name, &cluster.spec, ring, p),
            _ => None,
        },
        paused: cluster.spec.migration.paused,
        now_ms: k8s_openapi::jiff::Timestamp::now().as_millisecond(),
    };
    let (mut next, desired_conditions) = status::compute(&inputs);
    publish_metrics(
        ctx,
        &key.namespace,
        name,
        &next,
        &desired_conditions,
        seen.committed.as_ref(),
    );
    let stable = next.state.as_deref() == Some("Ready");
    patch_status(cluster, ctx, key, &mut next, &desired_conditions).await?;

    if let Some(e) = outcome.retry {
        return Err(e);
    }
    Ok(if checked.placement_error.is_some() {
        // Written by the driver: look again later even without an event.
        Action::requeue(BUSY_RESYNC)
    } else if checked
        .invalid
        .iter()
        .any(|i| i.reason == "PasswordSecretMissing")
    {
        // A Secret the user creates later wakes nothing here (its Secrets are not watched).
        Action::requeue(BUSY_RESYNC)
    } else if !checked.invalid.is_empty() || outcome.apply_error.is_some() {
        // Nothing to do until the spec changes; owned objects' events still wake us.
        Action::await_change()
    } else if stable {
        Action::requeue(IDLE_RESYNC)
    } else {
        Action::requeue(BUSY_RESYNC)
    })
}

/// Conditions, ring shares (of the committed placement) and progress as metrics.
fn publish_metrics(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &ShardClusterStatus,
    conditions: &[DesiredCondition],
    committed: Option<&Placement>,
) {
    let on: Vec<(&str, bool)> = conditions
        .iter()
        .map(|c| (c.type_, c.status == Status::True))
        .collect();
    let full = 2f64.powi(64);
    let shares: Vec<(String, f64)> = committed
        .and_then(|p| p.current().ok())
        .map(|owners| {
            owners
                .shares()
                .into_iter()
                .map(|(m, span)| (m.to_string(), span as f64 / full))
                .collect()
        })
        .unwrap_or_default();
    ctx.metrics.cluster.publish(
        ns,
        name,
        &on,
        &shares,
        status.rebalance.as_ref().map(|r| r.percent),
    );
}

/// Server-side applies the desired objects (creating the admin-token Secret first).
async fn apply_owned(
    cluster: &ShardCluster,
    ctx: &Context,
    key: &ObjectKey,
    desired: &Desired,
    seen: &Observed,
) -> Result<(), Error> {
    let (ns, name) = (&key.namespace, &key.name);
    ensure_admin_secret(cluster, ctx, ns).await?;

    let svc_api: Api<Service> = ctx.api(ns);
    for svc in &desired.services {
        let svc_name = svc.metadata.name.clone().unwrap_or_default();
        let live = ctx
            .stores
            .services
            .get(&ObjectRef::new(&svc_name).within(ns));
        ssa::apply(&svc_api, &svc_name, svc, live.as_deref())
            .await
            .during(|| format!("applying Service {ns}/{svc_name}"))?;
    }

    let placement_api: Api<ShardPlacement> = ctx.api(ns);
    // The desired ring was derived from the observed placement's ring: written only onto
    // that version.
    if ssa::apply_unchanged_since(
        &placement_api,
        name,
        &desired.placement,
        seen.placement.as_ref(),
    )
    .await
    .during(|| format!("applying ShardPlacement {key}"))?
        == Applied::Patched
    {
        tracing::info!(cluster = %name, namespace = %ns, ops = desired.ring_ops, "desired ring updated");
    }

    let sts_api: Api<StatefulSet> = ctx.api(ns);
    if ssa::apply(&sts_api, name, &desired.statefulset, seen.sts.as_ref())
        .await
        .during(|| format!("applying StatefulSet {key}"))?
        == Applied::Patched
    {
        tracing::info!(cluster = %name, namespace = %ns, replicas = desired.replicas, "StatefulSet applied");
    }

    let pdb_api: Api<PodDisruptionBudget> = ctx.api(ns);
    let pdb_name = names::pdb(name);
    let live = ctx.stores.pdbs.get(&ObjectRef::new(&pdb_name).within(ns));
    ssa::apply(&pdb_api, &pdb_name, &desired.pdb, live.as_deref())
        .await
        .during(|| format!("applying PodDisruptionBudget {ns}/{pdb_name}"))?;
    Ok(())
}

/// Whether the Secret `name` exists and which keys it has (never its values).
async fn lookup_secret(ctx: &Context, ns: &str, name: &str) -> Result<SecretLookup, Error> {
    let secret = ctx
        .api::<Secret>(ns)
        .get_opt(name)
        .await
        .during(|| format!("reading Secret {ns}/{name}"))?;
    Ok(match secret {
        None => SecretLookup::Missing,
        Some(s) => SecretLookup::Keys(
            s.data
                .unwrap_or_default()
                .into_keys()
                .chain(s.string_data.unwrap_or_default().into_keys())
                .collect(),
        ),
    })
}

/// Creates the admin-token Secret once; an existing one is never rewritten.
async fn ensure_admin_secret(cluster: &ShardCluster, ctx: &Context, ns: &str) -> Result<(), Error> {
    let secret_api: Api<Secret> = ctx.api(ns);
    let secret_name = names::admin_secret(&cluster.name_any());
    // A Secret the cache has not seen yet is created again: the API server refuses (409).
    if ctx
        .stores
        .secrets
        .get(&ObjectRef::new(&secret_name).within(ns))
        .is_some()
    {
        return Ok(());
    }
    let token = secret::AdminToken::generate().map_err(Error::Token)?;
    match secret_api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &secret::admin_secret(cluster, &token),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(cluster = %cluster.name_any(), namespace = %ns, secret = %secret_name, "admin token Secret created");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => {
            Err(k8s::Error::kube(format!("creating Secret {ns}/{secret_name}"), source).into())
        }
    }
}

/// Deletes the next pod whose template is out of date, one at a time.
async fn roll_one_pod(
    cluster: &ShardCluster,
    ctx: &Context,
    ns: &str,
    sts: Option<&StatefulSet>,
    pods: &[PodFacts],
    replicas: i32,
    migrations: &[ShardMigration],
) -> Result<(), Error> {
    let Some(sts) = sts else { return Ok(()) };
    let update_revision = sts
        .status
        .as_ref()
        .and_then(|s| s.update_revision.as_deref());
    let expected = usize::try_from(replicas).unwrap_or(0);
    let busy = busy_members(migrations);
    let Some(pod) = next_pod_to_roll(pods, expected, update_revision, &busy) else {
        return Ok(());
    };
    let pod_api: Api<Pod> = ctx.api(ns);
    // The UID precondition makes a cached UID safe: a pod re-created since is not deleted.
    let uid = ctx
        .stores
        .pods
        .get(&ObjectRef::new(&pod).within(ns))
        .and_then(|p| p.metadata.uid.clone());
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match pod_api.delete(&pod, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(()),
        Err(source) => {
            return Err(k8s::Error::kube(format!("deleting pod {ns}/{pod}"), source).into());
        }
    }
    tracing::info!(cluster = %cluster.name_any(), namespace = %ns, pod = %pod, "replacing a member pod with the new template");
    ctx.publish(
        cluster,
        EventType::Normal,
        "RollingMember",
        "RollMember",
        format!("deleted {pod} to recreate it from the new template"),
    )
    .await;
    Ok(())
}

/// Merges the conditions, writes the status when it changed, and publishes
/// Events for condition transitions.
async fn patch_status(
    cluster: &ShardCluster,
    ctx: &Context,
    key: &ObjectKey,
    next: &mut ShardClusterStatus,
    desired: &[DesiredCondition],
) -> Result<(), Error> {
    let old = cluster.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    next.conditions = merge_conditions(&old.conditions, desired, cluster.metadata.generation, &now);
    if *next == old {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": ShardCluster::api_version(&()),
        "kind": ShardCluster::kind(&()),
        "status": next,
    });
    ctx.api::<ShardCluster>(&key.namespace)
        .patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .during(|| format!("writing status of ShardCluster {key}"))?;
    for d in desired {
        let before = old.conditions.iter().find(|c| c.type_ == d.type_);
        if transitioned(before, d) {
            announce(ctx, cluster, before, d).await;
        }
    }
    Ok(())
}

fn transitioned(before: Option<&Condition>, d: &DesiredCondition) -> bool {
    before.is_none_or(|b| b.status != d.status.as_str() || b.reason != d.reason)
}

async fn announce(
    ctx: &Context,
    cluster: &ShardCluster,
    before: Option<&Condition>,
    d: &DesiredCondition,
) {
    let was_ready = before.is_some_and(|b| b.status == Status::True.as_str());
    let warning = (d.type_ == types::DEGRADED && d.status == Status::True)
        || (d.type_ == types::READY && d.status == Status::False && was_ready);
    let type_ = if warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let interesting = warning
        || (d.type_ == types::READY && d.status == Status::True)
        || (d.type_ == types::BALANCED && d.status == Status::True);
    if interesting {
        tracing::info!(cluster = %cluster.name_any(), condition = d.type_, status = d.status.as_str(), reason = %d.reason, message = %d.message, "condition changed");
        ctx.publish(cluster, type_, &d.reason, d.type_, d.message.clone())
            .await;
    }
}
