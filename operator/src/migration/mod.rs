//! The migration driver: the only writer of ShardMigration and ShardPlacement status.
//!
//! Each round for a cluster: make sure every node runs the committed placement; let the pure
//! planner (`ringshift-planner`) compare the desired ring with the placement in transition;
//! write a re-plan first if the desired ring moved; create the ShardMigrations the change
//! needs; then drive each one through copy, catch-up, cutover and cleanup. Every decision is
//! persisted before its side effect and every side effect is idempotent, so a new leader picks
//! up from status.

mod announce;
pub mod convert;
mod cutover;
mod drive;
mod env;
pub mod failpoints;
pub mod follow;
pub mod metrics;
mod nodes;
mod own_writes;
mod placement_io;
pub mod room;
#[cfg(test)]
mod stale_leader_tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use ringshift_node_api::PlacementAccepted;
use ringshift_planner::moves::MoveView;
use ringshift_planner::{Phase, plan};
use ringshift_ring::Placement;
use tokio::sync::watch;

use crate::cache::DriverFeeds;
use crate::cluster::desired::names::CLUSTER_LABEL;
use crate::crd::{
    CutoverState, MigrationPhase, NodeAck, ShardCluster, ShardMigration, ShardMigrationSpec,
    ShardPlacement,
};
use crate::k8s::reconcile::{measured, retry_in};
use crate::k8s::{self, Context, ObjectKey, Reason};
use crate::leader::Role;
use convert::{crd_ranges, uid_of};
use env::Env;
use metrics::{ClusterLabels, PhaseLabels};
use nodes::Nodes;
use placement_io::{Written, placement_of, set_placement, set_record, update};

pub use drive::CANCEL_ANNOTATION;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "migration";

/// Next look at a cluster with moves in flight or members behind, unless a move asks sooner.
const BUSY_RESYNC: Duration = Duration::from_secs(10);
/// Next look at a settled cluster (every member on the epoch, no move in flight). It reads only
/// the caches, and every change that matters wakes the driver earlier by watch event.
const IDLE_RESYNC: Duration = Duration::from_secs(60);

/// Why a round failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call, a lost write race or an object without a namespace (see [`k8s::Error`]).
    #[error(transparent)]
    Api(#[from] k8s::Error),
    /// A stored document that does not parse.
    #[error("{0}")]
    Document(String),
    #[error("placement: {0}")]
    Ring(#[from] ringshift_ring::Error),
    #[error("planning: {0}")]
    Plan(#[from] ringshift_planner::moves::PlanError),
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    /// A ShardPlacement field that does not hold its document.
    #[error("ShardPlacement {0}")]
    Placement(#[from] crate::crd::DocumentError),
    /// A node call that must succeed before going on.
    #[error("node: {0}")]
    Node(String),
    /// Another replica took the lease since this one did (rule 13): it writes nothing more.
    #[error(
        "ShardPlacement status carries leader generation {stored}, above this replica's {mine}: \
         another replica leads (or the leader Lease was re-created: then remove \
         status.leaderGeneration)"
    )]
    StaleLeader { mine: i64, stored: i64 },
    /// This replica lost the lease while the round ran; the round was cancelled.
    #[error("leadership lost; the round was cancelled")]
    LeadershipLost,
}

impl Error {
    /// A client error while doing `action`.
    pub fn kube(action: String, source: kube::Error) -> Error {
        Error::Api(k8s::Error::kube(action, source))
    }

    /// Somebody else wrote first (`what` says where).
    pub fn conflict(what: String) -> Error {
        Error::Api(k8s::Error::Conflict(what))
    }

    /// Whether somebody else wrote first: the round is retried soon, without backoff.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api(e) if e.is_conflict())
    }
}

impl Reason for Error {
    fn reason(&self) -> Cow<'static, str> {
        match self {
            Error::Api(e) => e.reason(),
            Error::Document(_) | Error::Ring(_) | Error::Convert(_) | Error::Placement(_) => {
                "BadDocument".into()
            }
            Error::Plan(_) => "PlanError".into(),
            Error::Node(_) => "NodeError".into(),
            Error::StaleLeader { .. } => "StaleLeader".into(),
            Error::LeadershipLost => "LeadershipLost".into(),
        }
    }
}

/// This replica's term as leader, as the driver sees it: its generation, and a signal that
/// fires when the term ends (lease lost, or taken again under a new generation).
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<Role>,
    term: Role,
}

impl Leadership {
    /// The term that `rx` shows now.
    pub fn new(rx: watch::Receiver<Role>) -> Leadership {
        let term = *rx.borrow();
        Leadership { rx, term }
    }

    /// The generation every ShardPlacement status edit carries.
    pub fn generation(&self) -> Option<i64> {
        match self.term {
            Role::Leading { generation } => generation,
            Role::Standby => None,
        }
    }

    /// Resolves when this term is over (at once if it already is, or was never leading).
    pub async fn ended(&self) {
        if !self.term.is_leading() {
            return;
        }
        let mut rx = self.rx.clone();
        let term = self.term;
        // A closed channel means the elector is gone: nobody renews the lease any more.
        let _ = rx.wait_for(|r| *r != term).await;
    }

    /// Runs `work` for as long as this term lasts. When the term ends first, `work` is dropped
    /// at its next await point (an HTTP call in flight is abandoned; every node call is
    /// idempotent and carries the attempt, every status write a precondition), so a replica that
    /// lost the lease stops acting before another replica may take it.
    pub async fn run<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::select! {
            biased;
            () = self.ended() => Err(Error::LeadershipLost),
            r = work => r,
        }
    }
}

/// Shared by every round of the driver.
pub struct DriverCtx {
    pub base: Arc<Context>,
    pub leadership: Leadership,
    pub http: reqwest::Client,
    rates: drive::RateMeter,
    pushed: nodes::PushedEndpoints,
    /// Source drops in flight, by migration UID (see `Step::DropSource` in drive.rs).
    drops: std::sync::Mutex<
        BTreeMap<String, tokio::task::JoinHandle<Result<(), nodes::NodeCallError>>>,
    >,
    /// Looks at each waiting move since its last phase change (see `follow`).
    looks: follow::Looks,
    /// ShardMigrations as this replica last wrote them, until the cache shows the writes.
    own: own_writes::OwnWrites,
    /// Copy and catch-up progress meters for the ETA, by (migration UID, what).
    meters: std::sync::Mutex<BTreeMap<(String, &'static str), ringshift_planner::eta::RateMeter>>,
}

impl DriverCtx {
    pub fn new(base: Arc<Context>, leadership: Leadership) -> DriverCtx {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        DriverCtx {
            base,
            leadership,
            http,
            rates: drive::RateMeter::new(),
            pushed: nodes::PushedEndpoints::default(),
            meters: std::sync::Mutex::new(BTreeMap::new()),
            looks: follow::Looks::default(),
            own: own_writes::OwnWrites::default(),
            drops: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Feeds `value` to the meter `what` of migration `uid`; its smoothed rate per second.
    fn meter(&self, uid: &str, what: &'static str, value: u64, now_ms: u64) -> Option<f64> {
        let mut m = self.meters.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((uid.to_string(), what))
            .or_default()
            .observe(value, now_ms)
    }

    /// Aborts the source drops this replica started (its term ended; a new leader asks again).
    fn abort_drops(&self) {
        let mut drops = self.drops.lock().unwrap_or_else(|p| p.into_inner());
        for (_, task) in std::mem::take(&mut *drops) {
            task.abort();
        }
    }

    fn apply_rate(&self, uid: &str, s: &ringshift_node_api::PullStatus) -> u64 {
        match &s.applied_offset {
            Some(o) => self.rates.rate(uid, o.sequence),
            None => 0,
        }
    }
}

type Guarded = DeserializeGuard<ShardPlacement>;

/// Runs the driver until `shutdown` resolves, woken by the shared caches' `feeds` (the caches
/// `ctx.stores` must be ready: see `crate::cache`).
pub async fn run(
    ctx: Arc<Context>,
    feeds: DriverFeeds,
    leadership: Leadership,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn by_cluster(ns: Option<String>, cluster: &str) -> ObjectRef<Guarded> {
        let r = ObjectRef::<Guarded>::new(cluster);
        match ns {
            Some(ns) => r.within(&ns),
            None => r,
        }
    }
    let placements = ctx.stores.placements.clone();
    let dctx = Arc::new(DriverCtx::new(ctx, leadership));
    // Drops run on tasks of their own: when the term ends they are aborted too, whether or not
    // a round is running then (rounds stop by themselves, see `Leadership::run`).
    let on_loss = abort_drops_when_the_term_ends(dctx.clone());
    let controller = Controller::for_stream(feeds.placements, placements)
        .watches_stream(feeds.migrations, |m: DeserializeGuard<ShardMigration>| {
            let m = m.0.ok()?;
            Some(by_cluster(m.namespace(), &m.spec.cluster))
        })
        .watches_stream(feeds.pods, |pod: Pod| {
            let c = pod.labels().get(CLUSTER_LABEL)?.clone();
            Some(by_cluster(pod.namespace(), &c))
        })
        .watches_stream(feeds.clusters, |c: DeserializeGuard<ShardCluster>| {
            let c = c.0.ok()?;
            Some(by_cluster(c.namespace(), &c.name_any()))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, dctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "driver event");
            }
        });
    tokio::select! {
        () = controller => {}
        () = on_loss => {}
    }
}

/// Aborts the drops this replica started as soon as its term ends; never returns.
async fn abort_drops_when_the_term_ends(dctx: Arc<DriverCtx>) {
    dctx.leadership.ended().await;
    dctx.abort_drops();
    std::future::pending::<()>().await;
}

/// One round for one cluster.
pub async fn reconcile(obj: Arc<Guarded>, dctx: Arc<DriverCtx>) -> Result<Action, Error> {
    let key = ObjectKey::lossy(&*obj);
    measured(&dctx.base, CONTROLLER, &key, async {
        match &obj.0 {
            Ok(p) => {
                let r = dctx.leadership.run(round(p, &dctx)).await;
                if matches!(r, Err(Error::LeadershipLost)) {
                    dctx.abort_drops();
                }
                r
            }
            Err(e) => {
                tracing::warn!(placement = %key, error = %e, "ShardPlacement does not deserialize");
                Ok(Action::await_change())
            }
        }
    })
    .await
}

pub fn error_policy(obj: Arc<Guarded>, error: &Error, dctx: Arc<DriverCtx>) -> Action {
    let key = ObjectKey::lossy(&*obj);
    // Conflicts are expected when two writers race; look again soon.
    let soon = error.is_conflict().then_some(Duration::from_millis(200));
    let delay = retry_in(&dctx.base, CONTROLLER, &key, soon);
    tracing::warn!(placement = %key, error = %error, retry_in = ?delay, "migration round failed");
    Action::requeue(delay)
}

async fn round(sp: &ShardPlacement, dctx: &DriverCtx) -> Result<Action, Error> {
    let step = Instant::now();
    let Some(mut env) = Env::load(&dctx.base.client, &dctx.base.stores, sp)? else {
        return Ok(Action::await_change());
    };
    env.generation = dctx.leadership.generation();
    // The cache may not show this replica's last ShardMigration writes yet: planning on it
    // would create a move again, and writing on it would conflict (see `own_writes`).
    env.migrations = dctx
        .own
        .overlay(&env.ns, &env.name, std::mem::take(&mut env.migrations));
    env.migrations.sort_by_key(|m| m.name_any());
    dctx.base
        .metrics
        .observe_step(CONTROLLER, "decide", step.elapsed());
    let w = env.writer();
    // A new leader stores its generation before it acts (rule 13): from then on a replica that
    // lost the lease can write nothing. The cached copy tells whether that is still to do.
    let stored = sp.status.as_ref().and_then(|s| s.leader_generation);
    if placement_io::check_generation(stored, env.generation)?
        && matches!(placement_io::claim(&w).await?, Written::Done)
    {
        tracing::info!(cluster = %env.name, generation = ?env.generation, "leader generation stored");
        return Ok(Action::requeue(Duration::from_millis(50)));
    }

    // The first placement is the desired ring itself: nothing to move yet.
    let Some(placement) = env.placement.clone() else {
        if env.desired.ops.is_empty() {
            return Ok(Action::await_change());
        }
        let p = Placement::new(env.cluster_uid(), env.desired.clone())?;
        let written = update(&w, |st| {
            if st.placement.is_some() {
                return Ok(false);
            }
            set_placement(st, &p)?;
            Ok(true)
        })
        .await?;
        if matches!(written, Written::Done) {
            failpoints::hit("placement.initial");
        }
        tracing::info!(cluster = %env.name, epoch = p.epoch(), "initial placement committed");
        return Ok(Action::requeue(Duration::from_millis(50)));
    };
    if placement.cluster_uid() != env.cluster_uid() {
        return Err(Error::Document(format!(
            "ShardPlacement {}/{} belongs to cluster UID {}, not {}",
            env.ns,
            sp.name_any(),
            placement.cluster_uid(),
            env.cluster_uid()
        )));
    }
    let Some(nodes) = Nodes::new(&dctx.http, &env) else {
        return Ok(Action::requeue(Duration::from_secs(2)));
    };

    // Every node runs the committed placement.
    let step = Instant::now();
    sync_nodes(&env, &nodes, &placement, &dctx.pushed).await?;
    release_orphans(&env, &nodes).await?;
    dctx.base
        .metrics
        .observe_step(CONTROLLER, "sync", step.elapsed());

    // Plan against the placement in transition.
    let views: Vec<MoveView> = env
        .migrations
        .iter()
        .map(|m| {
            Ok(MoveView {
                name: m.name_any(),
                source: m.spec.source.clone(),
                target: m.spec.target.clone(),
                phase: m.status.as_ref().map(|s| s.phase).unwrap_or_default(),
                ranges: convert::ranges_of(&m.spec.ranges)?,
            })
        })
        .collect::<Result<_, convert::ConvertError>>()?;
    let the_plan = plan(
        &env.name,
        &env.desired,
        &placement,
        &views,
        &env.limits.plan,
    )?;
    if let Some(next) = &the_plan.retarget {
        let written = update(&w, |st| {
            if placement_of(st)?.as_ref() != Some(&placement) {
                return Ok(false);
            }
            set_placement(st, next)?;
            Ok(true)
        })
        .await?;
        if matches!(written, Written::Done) {
            failpoints::hit("replan.written");
            tracing::info!(cluster = %env.name, epoch = next.epoch(), transfers = the_plan.transfers.len(), "re-planned for a new desired ring");
            dctx.base
                .publish(
                    &env.cluster,
                    EventType::Normal,
                    "Replanned",
                    "Plan",
                    format!(
                        "desired ring changed: {} transfer(s) planned at epoch {}",
                        the_plan.transfers.len(),
                        next.epoch()
                    ),
                )
                .await;
        }
        return Ok(Action::requeue(Duration::from_millis(50)));
    }
    if the_plan.awaiting_approval {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if !the_plan.create.is_empty() {
        let step = Instant::now();
        create_moves(&env, &placement, &the_plan.create, &dctx.own).await?;
        dctx.base
            .metrics
            .observe_step(CONTROLLER, "create", step.elapsed());
        failpoints::hit("moves.created");
        return Ok(Action::requeue(Duration::from_millis(50)));
    }

    let unfinished: Vec<&ShardMigration> = env
        .migrations
        .iter()
        .filter(|m| !m.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .collect();
    dctx.looks
        .retain(&unfinished.iter().map(|m| uid_of(m)).collect());
    let settled = unfinished.is_empty()
        && nodes
            .endpoints
            .keys()
            .all(|m| env.acked(m) >= placement.epoch());
    let mut next = if settled { IDLE_RESYNC } else { BUSY_RESYNC };
    for m in unfinished {
        let step = Instant::now();
        let wait = drive::drive(dctx, &env, &nodes, m, &the_plan).await?;
        dctx.base
            .metrics
            .observe_step(CONTROLLER, "drive", step.elapsed());
        next = next.min(wait);
    }
    collect_garbage(&env, &dctx.own).await?;
    publish_gauges(dctx, &env);
    Ok(Action::requeue(
        next.clamp(Duration::from_millis(20), IDLE_RESYNC),
    ))
}

/// Pushes the committed placement to every Ready member that has not acknowledged its epoch or
/// has not seen the current member addresses (see [`nodes::due_for_push`]).
pub(crate) async fn sync_nodes(
    env: &Env,
    nodes: &Nodes,
    p: &Placement,
    pushed: &nodes::PushedEndpoints,
) -> Result<(), Error> {
    let uid = env.cluster_uid();
    let addrs = nodes::PushedEndpoints::digest(&nodes.endpoints);
    let behind = nodes::due_for_push(
        nodes.endpoints.keys(),
        |m| nodes::Due {
            acked: env.acked(m),
            addresses_current: pushed.is_current(&uid, m, addrs),
            ready: env.ready(m),
        },
        p.epoch(),
    );
    if behind.is_empty() {
        return Ok(());
    }
    let body = nodes.install(p, env, env.incarnations());
    let answers = nodes.push_many(&behind, &body).await;
    if answers.values().any(Result::is_ok) {
        failpoints::hit("sync.pushed");
    }
    for (m, a) in &answers {
        if matches!(a, Ok(a) if a.epoch == p.epoch()) {
            pushed.record(&uid, m, addrs);
        }
        match a {
            Ok(a) if a.degraded.is_some() => {
                tracing::warn!(cluster = %env.name, member = %m, reason = a.degraded.as_deref().unwrap_or(""), "member is degraded")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(cluster = %env.name, member = %m, error = %e, "placement push failed; retrying")
            }
        }
    }
    // Not a commit point: the cached copy's resourceVersion is the precondition (a stale copy
    // costs a conflict, then a live read), so an ack costs one request, not two.
    record_acks(&env.writer(), Some(env.placement_obj.clone()), &answers).await
}

/// Records the epochs (and incarnations) members acknowledged.
pub(crate) async fn record_acks(
    w: &placement_io::Writer,
    known: Option<ShardPlacement>,
    answers: &BTreeMap<String, Result<PlacementAccepted, nodes::NodeCallError>>,
) -> Result<(), Error> {
    let accepted: Vec<(&String, &PlacementAccepted)> = answers
        .iter()
        .filter_map(|(m, a)| a.as_ref().ok().map(|a| (m, a)))
        .collect();
    if accepted.is_empty() {
        return Ok(());
    }
    let edit = |st: &mut crate::crd::ShardPlacementStatus| {
        let mut changed = false;
        for (member, a) in &accepted {
            let inc = (!a.incarnation.is_empty()).then(|| a.incarnation.clone());
            match st.acks.iter_mut().find(|x| &x.member == *member) {
                Some(ack) => {
                    let cur: u64 = ack.epoch.parse().unwrap_or(0);
                    if a.epoch > cur {
                        ack.epoch = a.epoch.to_string();
                        changed = true;
                    }
                    if inc.is_some() && ack.incarnation != inc {
                        ack.incarnation = inc;
                        changed = true;
                    }
                }
                None => {
                    st.acks.push(NodeAck {
                        member: (*member).clone(),
                        epoch: a.epoch.to_string(),
                        incarnation: inc,
                    });
                    changed = true;
                }
            }
        }
        st.acks.sort_by(|a, b| a.member.cmp(&b.member));
        Ok(changed)
    };
    let r = match known {
        Some(obj) => placement_io::update_known(w, obj, edit).await,
        None => update(w, edit).await,
    };
    match r {
        Ok(_) => Ok(()),
        // Acks are re-collected next round.
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the ShardMigrations a plan needs (idempotent: an existing one is left alone).
async fn create_moves(
    env: &Env,
    placement: &Placement,
    create: &[ringshift_planner::MoveSpec],
    own: &own_writes::OwnWrites,
) -> Result<(), Error> {
    let api: Api<ShardMigration> = Api::namespaced(env.client.clone(), &env.ns);
    let owner = env.placement_obj.controller_owner_ref(&());
    for m in create {
        let obj = ShardMigration {
            metadata: ObjectMeta {
                name: Some(m.name.clone()),
                namespace: Some(env.ns.clone()),
                labels: Some(BTreeMap::from([(
                    CLUSTER_LABEL.to_string(),
                    env.name.clone(),
                )])),
                owner_references: owner.clone().map(|o| vec![o]),
                ..Default::default()
            },
            spec: ShardMigrationSpec {
                cluster: env.name.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
                ranges: crd_ranges(&m.ranges),
                epoch: placement.epoch().to_string(),
                target_ring: m.ring_id.clone(),
            },
            status: None,
        };
        match api.create(&PostParams::default(), &obj).await {
            Ok(created) => {
                own.record(&created, None);
                tracing::info!(cluster = %env.name, migration = %m.name, source = %m.source, target = %m.target, ranges = m.ranges.len(), "migration planned")
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                return Err(Error::kube(
                    format!("creating ShardMigration {}", m.name),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Cutover records of moves that no longer need them: a record whose move reached Cleanup (or
/// ended, or was deleted) is dropped; a half-done one (Committing) of a deleted move is aborted
/// and its fence lifted, in that order.
async fn release_orphans(env: &Env, nodes: &Nodes) -> Result<(), Error> {
    let Some(status) = &env.placement_obj.status else {
        return Ok(());
    };
    let phases: BTreeMap<String, MigrationPhase> = env
        .migrations
        .iter()
        .map(|m| {
            (
                uid_of(m),
                m.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            )
        })
        .collect();
    let convert::Orphans {
        abort,
        mut release,
        forget: drop_uids,
    } = convert::orphans(&status.cutovers, &phases);
    let w = env.writer();
    for r in &abort {
        let attempt = u32::try_from(r.attempt).unwrap_or(u32::MAX);
        // The cached record may be stale (a newer leader may have moved on): decide on the
        // fresh read, only forward, and lift the fence only when the abort of exactly this
        // attempt is on record.
        let mut aborted = false;
        update(&w, |st| {
            aborted = false;
            let fresh = st
                .cutovers
                .iter()
                .find(|c| c.migration_uid == r.migration_uid)
                .map(|c| (c.attempt, c.state));
            match fresh {
                Some((a, CutoverState::Committing)) if a == r.attempt => {
                    match set_record(st, &r.migration_uid, attempt, CutoverState::Aborted) {
                        placement_io::RecordEdit::Written => {
                            aborted = true;
                            Ok(true)
                        }
                        placement_io::RecordEdit::Unchanged => {
                            aborted = true;
                            Ok(false)
                        }
                        placement_io::RecordEdit::Refused { .. } => Ok(false),
                    }
                }
                Some((a, CutoverState::Aborted)) if a == r.attempt => {
                    aborted = true;
                    Ok(false)
                }
                _ => Ok(false),
            }
        })
        .await?;
        if !aborted {
            tracing::info!(cluster = %env.name, migration_uid = %r.migration_uid, attempt, "the orphaned cutover record moved on since it was cached; not aborting it");
            continue;
        }
        tracing::warn!(cluster = %env.name, migration_uid = %r.migration_uid, attempt, "aborted the cutover of a deleted migration");
        release.push(crate::crd::CutoverRecord {
            state: CutoverState::Aborted,
            ..r.clone()
        });
    }
    // Unfence every aborted attempt of a deleted move on every node, every round until each
    // member answered: the node then also refuses a late fence of that attempt (an old leader's
    // call still in flight), so no fence is ever left without an owner to lift it. The deleted
    // move's source is whichever node holds its fence, hence all.
    let mut released: BTreeMap<String, i64> = BTreeMap::new();
    for r in &release {
        let attempt = u64::try_from(r.attempt).unwrap_or(u64::MAX);
        let who = ringshift_node_api::Caller {
            cluster_uid: env.cluster_uid(),
            epoch: env.placement.as_ref().map(|p| p.epoch()).unwrap_or(0),
            migration_uid: r.migration_uid.clone(),
            attempt,
        };
        let mut all = true;
        for m in env.members.keys() {
            let answered = match nodes.client(m) {
                Some(c) => match tokio::time::timeout(
                    nodes::CALL_TIMEOUT,
                    c.unfence(&ringshift_node_api::UnfenceRequest {
                        caller: who.clone(),
                    }),
                )
                .await
                {
                    Ok(Ok(_)) => true,
                    // A newer attempt's fence stands there: this attempt is over on that node.
                    Ok(Err(e)) => e.reason() == Some(ringshift_node_api::ErrorReason::StaleAttempt),
                    Err(_) => false,
                },
                None => false,
            };
            all &= answered;
        }
        if all {
            released.insert(r.migration_uid.clone(), r.attempt);
        } else {
            tracing::info!(cluster = %env.name, migration_uid = %r.migration_uid, attempt = r.attempt, "not every member confirmed the unfence of a deleted migration's attempt yet; asking again next round");
        }
    }
    if !drop_uids.is_empty() || !released.is_empty() {
        let r = update(&w, |st| {
            let before = st.cutovers.len();
            // A half-done cutover is never forgotten here, whatever the cached copy said, and a
            // released attempt only while its record is still that attempt's abort.
            st.cutovers.retain(|c| {
                let forget = drop_uids.contains(&c.migration_uid)
                    && c.state != CutoverState::Committing
                    || released.get(&c.migration_uid) == Some(&c.attempt)
                        && c.state == CutoverState::Aborted;
                !forget
            });
            Ok(st.cutovers.len() != before)
        })
        .await;
        if let Err(e) = r
            && !e.is_conflict()
        {
            return Err(e);
        }
    }
    Ok(())
}
/// Deletes finished ShardMigrations beyond the cluster's history limit (oldest first).
async fn collect_garbage(env: &Env, own: &own_writes::OwnWrites) -> Result<(), Error> {
    let mut finished: Vec<&ShardMigration> = env
        .migrations
        .iter()
        .filter(|m| m.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .collect();
    if finished.len() <= env.limits.history_limit {
        return Ok(());
    }
    finished.sort_by_key(|m| m.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let api: Api<ShardMigration> = Api::namespaced(env.client.clone(), &env.ns);
    let excess = finished.len() - env.limits.history_limit;
    for m in finished.into_iter().take(excess) {
        own.forget(m);
        match api.delete(&m.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(Error::kube(
                    format!("deleting ShardMigration {}", m.name_any()),
                    e,
                ));
            }
        }
    }
    Ok(())
}

fn publish_gauges(dctx: &DriverCtx, env: &Env) {
    let m = &dctx.base.metrics.migration;
    let mut by_phase: BTreeMap<Phase, i64> = BTreeMap::new();
    let (mut bytes, mut lag, mut no_room) = (0i64, 0i64, 0i64);
    for mig in &env.migrations {
        let s = mig.status.clone().unwrap_or_default();
        *by_phase.entry(s.phase).or_default() += 1;
        if !s.phase.is_terminal() {
            no_room += i64::from(
                s.conditions
                    .iter()
                    .any(|c| c.type_ == drive::ROOM_CONDITION && c.status == "False"),
            );
            bytes += s
                .progress
                .as_ref()
                .and_then(|p| p.bytes.parse::<i64>().ok())
                .unwrap_or(0);
            lag = lag.max(s.lag.as_deref().and_then(|l| l.parse().ok()).unwrap_or(0));
        }
    }
    for phase in Phase::ALL {
        m.moves
            .get_or_create(&PhaseLabels {
                namespace: env.ns.clone(),
                cluster: env.name.clone(),
                phase: format!("{:?}", phase),
            })
            .set(by_phase.get(&phase).copied().unwrap_or(0));
    }
    let labels = ClusterLabels {
        namespace: env.ns.clone(),
        cluster: env.name.clone(),
    };
    m.bytes_copied.get_or_create(&labels).set(bytes);
    m.lag.get_or_create(&labels).set(lag);
    m.moves_waiting_for_room.get_or_create(&labels).set(no_room);
    // Present from the start, so that rate() and increase() see the first one.
    drop(m.cutovers_over_budget.get_or_create(&labels));
}
