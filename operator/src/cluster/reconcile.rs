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
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{finalizer, undecodable};
use crate::cache::ClusterFeeds;
use crate::cluster::conditions::{DesiredCondition, Status, merge_conditions, types};
use crate::cluster::desired::names::{self, CLUSTER_LABEL, FIELD_MANAGER};
use crate::cluster::desired::{pdb, ring, secret, services, statefulset};
use crate::cluster::observed::{PodFacts, next_pod_to_roll, pod_facts};
use crate::cluster::status::{self, Inputs, busy_members};
use crate::cluster::validate::{Existing, Invalid, SecretLookup, fits_label_value, validate};
use crate::crd::{ShardCluster, ShardClusterStatus, ShardMigration, ShardPlacement};
use crate::k8s::apply::{Applied, apply, apply_unchanged_since};
use crate::k8s::{Context, Error, KubeContext};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "shardcluster";

/// Resync period while something is changing.
const BUSY_RESYNC: Duration = Duration::from_secs(30);
/// Resync period when all is stable.
const IDLE_RESYNC: Duration = Duration::from_secs(300);

type Guarded = DeserializeGuard<ShardCluster>;

fn api<K>(ctx: &Context, ns: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(ctx.client.clone(), ns)
}

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

fn key(obj: &Guarded) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Reconciles one ShardCluster (or reports why it cannot be read).
pub async fn reconcile(obj: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match &obj.0 {
        Ok(cluster) => reconcile_cluster(cluster, &ctx).await,
        Err(invalid) => undecodable::report(&obj, invalid, &ctx).await,
    };
    let error_reason = result.as_ref().err().map(Error::reason);
    ctx.metrics.observe(
        CONTROLLER,
        started.elapsed().as_secs_f64(),
        error_reason.as_deref(),
    );
    if result.is_ok() {
        ctx.succeeded(&key(&obj));
    }
    result
}

/// Requeues a failed reconcile with exponential backoff.
pub fn error_policy(obj: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&key(&obj));
    tracing::warn!(cluster = %key(&obj), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// What the reconcile did to owned objects, for status.
struct Outcome {
    expected_pods: i32,
    apply_error: Option<String>,
    retry: Option<Error>,
}

async fn reconcile_cluster(cluster: &ShardCluster, ctx: &Context) -> Result<Action, Error> {
    let name = cluster.name_any();
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    if cluster.metadata.deletion_timestamp.is_some() {
        return finalizer::finalize(cluster, ctx, &ns).await;
    }
    if finalizer::ensure(cluster, ctx, &ns).await? {
        // The patch triggers another reconcile with the new metadata.
        return Ok(Action::await_change());
    }

    let step = Instant::now();
    // Everything here is read from the shared caches (`crate::cache`): a stale read only costs
    // a retry, since the writes below are idempotent or carry a precondition. The reads a
    // decision's safety rests on are made live where that decision is taken.
    let stores = &ctx.stores;
    let sts = stores
        .statefulsets
        .get(&ObjectRef::new(&name).within(&ns))
        .map(|s| (*s).clone());
    let placement = match stores.placement(&ns, &name) {
        Some(p) => match &p.0 {
            Ok(p) => Some(p.clone()),
            Err(e) => {
                return Err(Error::Undecodable {
                    what: format!("ShardPlacement {ns}/{name}"),
                    message: e.error.clone(),
                });
            }
        },
        // Live: without a placement the desired ring starts afresh and is written. A cache
        // that has not seen the placement yet must not make that decision.
        None => api::<ShardPlacement>(ctx, &ns)
            .get_opt(&name)
            .await
            .during(|| format!("reading ShardPlacement {ns}/{name}"))?,
    };
    // A name that cannot be a label value has no pods (validation refuses it below).
    let pods = if fits_label_value(&name) {
        stores.pods_with(&ns, &names::selector_labels(&name))
    } else {
        Vec::new()
    };
    let migrations: Vec<ShardMigration> = stores.migrations_of(&ns, &name);
    let mut pod_facts: Vec<PodFacts> = pods.iter().map(pod_facts).collect();
    pod_facts.sort_by_key(|p| names::ordinal(&name, &p.name).unwrap_or(i32::MAX));

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
        Some(r) => Some(lookup_secret(ctx, &ns, &r.name).await?),
        None => None,
    };
    let existing = Existing {
        storage: live_storage.as_ref(),
        vnodes: current_ring.as_ref().map(|r| r.vnodes),
        password_secret,
    };
    let pod_names: Vec<String> = pod_facts.iter().map(|p| p.name.clone()).collect();
    let acks = placement
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .map(|s| s.acks.clone())
        .unwrap_or_default();

    let mut invalid: Vec<Invalid> = Vec::new();
    let mut desired_ring = None;
    let mut log_retention = std::time::Duration::from_secs(3600);
    let mut tuning = crate::cluster::desired::tuning::Tuning::default();
    match validate(&name, &cluster.spec, &existing) {
        Ok(valid) => match ring::desired_ring(current_ring.as_ref(), &valid) {
            Ok(r) => {
                desired_ring = Some(r);
                log_retention = valid.change_log_retention;
                tuning = valid.tuning;
            }
            Err(e) => invalid.push(Invalid {
                reason: "RingInvalid",
                message: format!("the desired ring cannot be built: {e}"),
            }),
        },
        Err(errors) => invalid = errors,
    }
    let view_ring = desired_ring.clone().or_else(|| current_ring.clone());
    let view = match &view_ring {
        Some(r) => {
            ring::placement_view(committed.as_ref(), r, &acks, &pod_names).unwrap_or_else(|e| {
                placement_error.get_or_insert(e.to_string());
                Default::default()
            })
        }
        None => Default::default(),
    };

    // From the caches, but for the rare live reads (no cached placement, spec.auth's Secret).
    ctx.metrics
        .observe_step(CONTROLLER, "decide", step.elapsed());
    let outcome = match &desired_ring {
        Some(desired_ring) if invalid.is_empty() && placement_error.is_none() => {
            let current_replicas = sts.as_ref().and_then(|s| s.spec.replicas);
            let mut replicas = statefulset::replicas(
                &name,
                cluster.spec.replicas,
                current_replicas,
                &view.data_holders,
                view.all_acknowledged,
            );
            if current_replicas.is_some_and(|c| replicas < c) {
                // Live: removing members is safe only if they hold no data, and a cached
                // placement may predate the commit that gave one of them ranges.
                let fresh = api::<ShardPlacement>(ctx, &ns)
                    .get_opt(&name)
                    .await
                    .during(|| format!("re-reading ShardPlacement {ns}/{name}"))?;
                let fresh_acks = fresh
                    .as_ref()
                    .and_then(|p| p.status.as_ref())
                    .map(|s| s.acks.clone())
                    .unwrap_or_default();
                let fresh_view = ring::placement_view(
                    ring::committed(fresh.as_ref())?.as_ref(),
                    desired_ring,
                    &fresh_acks,
                    &pod_names,
                )?;
                replicas = replicas.max(statefulset::replicas(
                    &name,
                    cluster.spec.replicas,
                    current_replicas,
                    &fresh_view.data_holders,
                    fresh_view.all_acknowledged,
                ));
            }
            let storage = live_storage
                .clone()
                .unwrap_or_else(|| cluster.spec.storage.clone());
            let applying = Instant::now();
            let r = apply_owned(
                cluster,
                ctx,
                &ns,
                desired_ring,
                placement.as_ref(),
                sts.as_ref(),
                replicas,
                &storage,
                log_retention,
                &tuning,
            )
            .await;
            let mut outcome = Outcome {
                expected_pods: replicas,
                apply_error: None,
                retry: None,
            };
            match r {
                Ok(()) => {
                    roll_one_pod(
                        cluster,
                        ctx,
                        &ns,
                        sts.as_ref(),
                        &pod_facts,
                        replicas,
                        &migrations,
                    )
                    .await?;
                }
                Err(e) if is_permanent(&e) => outcome.apply_error = Some(e.to_string()),
                Err(e) => outcome.retry = Some(e),
            }
            ctx.metrics
                .observe_step(CONTROLLER, "apply", applying.elapsed());
            outcome
        }
        _ => Outcome {
            expected_pods: sts.as_ref().and_then(|s| s.spec.replicas).unwrap_or(0),
            apply_error: None,
            retry: None,
        },
    };

    let outdated = match sts
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone())
    {
        Some(rev) => pod_facts
            .iter()
            .filter(|p| p.revision.as_deref() != Some(rev.as_str()))
            .count(),
        None => 0,
    };
    let inputs = Inputs {
        generation: cluster.metadata.generation,
        invalid: &invalid,
        statefulset_exists: sts.is_some(),
        expected_pods: outcome.expected_pods,
        sts_replicas: sts
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .map(|s| s.replicas)
            .unwrap_or(0),
        pods: &pod_facts,
        outdated_pods: outdated,
        placement: view,
        migrations: &migrations,
        selector: names::selector_string(&name),
        apply_error: outcome.apply_error.clone(),
        placement_error: placement_error.clone(),
        awaiting_approval: match (&desired_ring, &committed) {
            (Some(ring), Some(p)) => status::published_plan(&name, &cluster.spec, ring, p),
            _ => None,
        },
        paused: cluster.spec.migration.paused,
        now_ms: k8s_openapi::jiff::Timestamp::now().as_millisecond(),
    };
    let (mut next, desired_conditions) = status::compute(&inputs);
    publish_metrics(
        ctx,
        &ns,
        &name,
        &next,
        &desired_conditions,
        committed.as_ref(),
    );
    let stable = next.state.as_deref() == Some("Ready");
    let writing = Instant::now();
    write_status(cluster, ctx, &ns, &mut next, &desired_conditions).await?;
    ctx.metrics
        .observe_step(CONTROLLER, "status", writing.elapsed());

    if let Some(e) = outcome.retry {
        return Err(e);
    }
    Ok(if placement_error.is_some() {
        // Written by the driver: look again later even without an event.
        Action::requeue(BUSY_RESYNC)
    } else if invalid.iter().any(|i| i.reason == "PasswordSecretMissing") {
        // A Secret the user creates later wakes nothing here (its Secrets are not watched).
        Action::requeue(BUSY_RESYNC)
    } else if !invalid.is_empty() || outcome.apply_error.is_some() {
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
    status: &crate::crd::ShardClusterStatus,
    conditions: &[crate::cluster::conditions::DesiredCondition],
    committed: Option<&ringshift_ring::Placement>,
) {
    let on: Vec<(&str, bool)> = conditions
        .iter()
        .map(|c| {
            (
                c.type_,
                c.status == crate::cluster::conditions::Status::True,
            )
        })
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

/// A client error the same request would get again (the object is refused).
fn is_permanent(e: &Error) -> bool {
    matches!(e, Error::Kube { source: kube::Error::Api(s), .. } if matches!(s.code, 400 | 403 | 404 | 422))
}

#[allow(clippy::too_many_arguments)]
async fn apply_owned(
    cluster: &ShardCluster,
    ctx: &Context,
    ns: &str,
    desired_ring: &ringshift_ring::RingSpec,
    placement: Option<&ShardPlacement>,
    sts: Option<&StatefulSet>,
    replicas: i32,
    storage: &crate::crd::StorageSpec,
    log_retention: std::time::Duration,
    tuning: &crate::cluster::desired::tuning::Tuning,
) -> Result<(), Error> {
    let name = cluster.name_any();
    ensure_admin_secret(cluster, ctx, ns).await?;

    let svc_api: Api<Service> = api(ctx, ns);
    for svc in [services::headless(cluster), services::client(cluster)] {
        let svc_name = svc.metadata.name.clone().unwrap_or_default();
        let live = ctx
            .stores
            .services
            .get(&ObjectRef::new(&svc_name).within(ns));
        apply(&svc_api, &svc_name, &svc, live.as_deref())
            .await
            .during(|| format!("applying Service {ns}/{svc_name}"))?;
    }

    let placement_api: Api<ShardPlacement> = api(ctx, ns);
    let desired_placement = ring::placement_object(cluster, desired_ring)?;
    // The desired ring was derived from `placement`'s ring: written only onto that version.
    if apply_unchanged_since(&placement_api, &name, &desired_placement, placement)
        .await
        .during(|| format!("applying ShardPlacement {ns}/{name}"))?
        == Applied::Patched
    {
        tracing::info!(cluster = %name, namespace = %ns, ops = desired_ring.ops.len(), "desired ring updated");
    }

    let sts_api: Api<StatefulSet> = api(ctx, ns);
    let desired_sts = statefulset::statefulset(
        cluster,
        replicas,
        storage,
        log_retention,
        tuning,
        ctx.node_log_format,
    );
    if apply(&sts_api, &name, &desired_sts, sts)
        .await
        .during(|| format!("applying StatefulSet {ns}/{name}"))?
        == Applied::Patched
    {
        tracing::info!(cluster = %name, namespace = %ns, replicas, "StatefulSet applied");
    }

    let pdb_api: Api<PodDisruptionBudget> = api(ctx, ns);
    let pdb_name = names::pdb(&name);
    let live = ctx.stores.pdbs.get(&ObjectRef::new(&pdb_name).within(ns));
    apply(&pdb_api, &pdb_name, &pdb::pdb(cluster), live.as_deref())
        .await
        .during(|| format!("applying PodDisruptionBudget {ns}/{pdb_name}"))?;
    Ok(())
}

/// Whether the Secret `name` exists and which keys it has (never its values).
async fn lookup_secret(ctx: &Context, ns: &str, name: &str) -> Result<SecretLookup, Error> {
    let secret = api::<Secret>(ctx, ns)
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
    let secret_api: Api<Secret> = api(ctx, ns);
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
        Err(source) => Err(Error::Kube {
            action: format!("creating Secret {ns}/{secret_name}"),
            source,
        }),
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
    let pod_api: Api<Pod> = api(ctx, ns);
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
            return Err(Error::Kube {
                action: format!("deleting pod {ns}/{pod}"),
                source,
            });
        }
    }
    tracing::info!(cluster = %cluster.name_any(), namespace = %ns, pod = %pod, "replacing a member pod with the new template");
    publish(
        ctx,
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
async fn write_status(
    cluster: &ShardCluster,
    ctx: &Context,
    ns: &str,
    next: &mut ShardClusterStatus,
    desired: &[DesiredCondition],
) -> Result<(), Error> {
    let old = cluster.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    next.conditions = merge_conditions(&old.conditions, desired, cluster.metadata.generation, &now);
    if *next == old {
        return Ok(());
    }
    let name = cluster.name_any();
    let patch = json!({
        "apiVersion": ShardCluster::api_version(&()),
        "kind": ShardCluster::kind(&()),
        "status": next,
    });
    api::<ShardCluster>(ctx, ns)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .during(|| format!("writing status of ShardCluster {ns}/{name}"))?;
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
        publish(ctx, cluster, type_, &d.reason, d.type_, d.message.clone()).await;
    }
}

/// Publishes an Event about `cluster` on a task of its own (an Event is best effort, and the
/// reconcile does not wait for the API server to store it); failures are logged, not fatal.
pub(crate) async fn publish(
    ctx: &Context,
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
    let recorder = ctx.recorder.clone();
    let reference = obj.object_ref(&());
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %e, reason = %ev.reason, "publishing an Event failed");
        }
    });
}
