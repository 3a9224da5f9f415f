//! `kubectl ringshift`: status, live watch, dry-run plans with estimates, approval of a
//! reviewed plan, drain/undrain/reweight, history, pause/resume and cancel. Reads with the
//! user's kubeconfig; writes only what each command says (a spec field or an annotation), with
//! the resourceVersion it read as a precondition, so RBAC errors name exactly what is missing
//! and a concurrent change is refused rather than overwritten.

pub mod estimate;
pub mod history;
pub mod members;
pub mod report;
pub mod view;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use ringshift_ring::{FULL_SPAN, Placement, RingSpec};
use serde_json::json;

use crate::cluster::desired::names;
use crate::cluster::desired::ring::desired_ring;
use crate::cluster::validate::{Existing, validate};
use crate::crd::{ShardCluster, ShardMigration, ShardPlacement};
use crate::migration::CANCEL_ANNOTATION;
use estimate::{Basis, Inputs};
use history::HistoryRow;
use members::Edit;
use view::{MemberRow, MoveRow, PlanRow, PlanView, StatusView};

/// What went wrong, in words for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("no ShardCluster {name} in namespace {namespace}")]
    NoCluster { name: String, namespace: String },
    #[error("no ShardMigration {name} in namespace {namespace}")]
    NoMigration { name: String, namespace: String },
    #[error("not authorised to {action}: {message}")]
    Forbidden { action: String, message: String },
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the plan awaiting approval is {pending}, not the reviewed {reviewed}: it changed since it was reviewed; run `kubectl ringshift plan` and review it again"
    )]
    PlanChanged { reviewed: String, pending: String },
    #[error(
        "ShardCluster {name} changed while {action}; nothing was written: look again and retry"
    )]
    Conflict { name: String, action: String },
    #[error(transparent)]
    Member(#[from] members::EditError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error("{0}")]
    Invalid(String),
}

fn kube_err(action: &str, e: kube::Error) -> PluginError {
    match e {
        kube::Error::Api(s) if s.code == 409 => PluginError::Conflict {
            name: String::new(),
            action: action.to_string(),
        },
        kube::Error::Api(s) if s.code == 403 => PluginError::Forbidden {
            action: action.to_string(),
            message: s.message.clone(),
        },
        e => PluginError::Kube {
            action: action.to_string(),
            source: e,
        },
    }
}

/// The client and namespace the commands use.
pub struct Ctx {
    pub client: Client,
    pub namespace: String,
}

impl Ctx {
    fn clusters(&self) -> Api<ShardCluster> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn cluster(&self, name: &str) -> Result<ShardCluster, PluginError> {
        self.clusters()
            .get_opt(name)
            .await
            .map_err(|e| kube_err(&format!("read ShardCluster {name}"), e))?
            .ok_or_else(|| PluginError::NoCluster {
                name: name.to_string(),
                namespace: self.namespace.clone(),
            })
    }

    async fn migrations(&self, name: &str) -> Result<Vec<ShardMigration>, PluginError> {
        let api: Api<ShardMigration> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(api
            .list(&ListParams::default().labels(&format!("{}={name}", names::CLUSTER_LABEL)))
            .await
            .map_err(|e| kube_err("list ShardMigrations", e))?
            .items)
    }

    /// A member's stored bytes from its admin `/metrics`, through the API server's pod proxy
    /// (needs `get pods/proxy`). None when refused or unreachable: the API server does not
    /// proxy to some pod addresses (loopback ones, as the local test harness uses).
    async fn stored_bytes(&self, pod: &str) -> Option<u64> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{pod}:{}/proxy/metrics",
            self.namespace,
            names::ADMIN_PORT
        );
        let req = http::Request::get(path).body(Vec::new()).ok()?;
        let text = tokio::time::timeout(PROXY_TIMEOUT, self.client.request_text(req))
            .await
            .ok()?
            .ok()?;
        crate::migration::room::gauge(&text, crate::migration::room::DATA_GAUGE)
    }

    async fn committed(
        &self,
        name: &str,
    ) -> Result<(Option<RingSpec>, Option<Placement>), PluginError> {
        let api: Api<ShardPlacement> = Api::namespaced(self.client.clone(), &self.namespace);
        let p = api
            .get_opt(&names::placement(name))
            .await
            .map_err(|e| kube_err(&format!("read ShardPlacement {name}"), e))?;
        let ring = crate::cluster::desired::ring::current_ring(p.as_ref())
            .map_err(|e| PluginError::Invalid(e.to_string()))?;
        let placement = crate::cluster::desired::ring::committed(p.as_ref())
            .map_err(|e| PluginError::Invalid(e.to_string()))?;
        Ok((ring, placement))
    }
}

/// Reads everything `status` shows.
pub async fn status(ctx: &Ctx, name: &str) -> Result<StatusView, PluginError> {
    let c = ctx.cluster(name).await?;
    let (_, placement) = ctx.committed(name).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pods = pods
        .list(&ListParams::default().labels(&names::selector_string(name)))
        .await
        .map_err(|e| kube_err("list pods", e))?;
    let current = placement.as_ref().and_then(|p| p.current().ok());
    let mut members: Vec<MemberRow> = pods
        .items
        .iter()
        .map(|p| {
            let f = crate::cluster::observed::pod_facts(p);
            let share = current
                .as_ref()
                .map(|m| m.ranges_of(&f.name).span() as f64 / FULL_SPAN as f64)
                .unwrap_or(0.0);
            MemberRow {
                name: f.name.clone(),
                ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
                ready: f.ready,
                share,
            }
        })
        .collect();
    members.sort_by_key(|m| names::ordinal(name, &m.name).unwrap_or(i32::MAX));
    let migs: Api<ShardMigration> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut moves: Vec<MoveRow> = migs
        .list(&ListParams::default().labels(&format!("{}={name}", names::CLUSTER_LABEL)))
        .await
        .map_err(|e| kube_err("list ShardMigrations", e))?
        .items
        .iter()
        .map(|m| {
            let s = m.status.clone().unwrap_or_default();
            MoveRow {
                name: m.name_any(),
                source: m.spec.source.clone(),
                target: m.spec.target.clone(),
                phase: format!("{:?}", s.phase),
                percent: s
                    .progress
                    .as_ref()
                    .map(|p| i64::from(p.percent))
                    .unwrap_or(0),
                lag: s.lag.clone(),
                eta: s.eta.clone(),
                pause: s.cutover_pause.clone(),
                message: s.message.clone(),
            }
        })
        .collect();
    moves.sort_by(|a, b| a.name.cmp(&b.name));
    let st = c.status.clone().unwrap_or_default();
    Ok(StatusView {
        namespace: ctx.namespace.clone(),
        cluster: name.to_string(),
        replicas: i64::from(c.spec.replicas),
        ready: i64::from(st.ready_replicas),
        epoch: st.epoch.clone(),
        state: st.state.clone(),
        conditions: st
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect(),
        members,
        moves,
        pending_plan: st.pending_plan.map(|p| p.hash),
    })
}

/// Whether the view shows a settled cluster (Balanced=True, nothing in flight).
pub fn is_balanced(v: &StatusView) -> bool {
    v.conditions
        .iter()
        .any(|(t, s, _)| t == "Balanced" && s == "True")
}

/// A change to dry-run.
#[derive(Debug, Clone, Default)]
pub struct WhatIf {
    pub replicas: Option<i32>,
    /// (member, weight)
    pub weights: Vec<(String, i32)>,
    /// Members to drain.
    pub drain: Vec<String>,
}

fn invalid_spec(errs: &[crate::cluster::validate::Invalid]) -> PluginError {
    PluginError::Invalid(
        errs.iter()
            .map(|e| format!("{}: {}", e.reason, e.message))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// The moves a change would cause, computed like the operator does, with estimated bytes and
/// time per move; writes nothing.
pub async fn plan(ctx: &Ctx, name: &str, what: &WhatIf) -> Result<PlanView, PluginError> {
    let c = ctx.cluster(name).await?;
    let (ring, placement) = ctx.committed(name).await?;
    let mut spec = c.spec.clone();
    if let Some(r) = what.replicas {
        spec.replicas = r;
    }
    for (member, weight) in &what.weights {
        let member = members::resolve(name, spec.replicas, member)?;
        spec.members = members::apply(&spec.members, &member, Edit::Reweight(*weight))?.0;
    }
    for member in &what.drain {
        let member = members::resolve(name, spec.replicas, member)?;
        spec.members = members::apply(&spec.members, &member, Edit::Drain)?.0;
    }
    let valid = validate(name, &spec, &Existing::default()).map_err(|e| invalid_spec(&e))?;
    let desired =
        desired_ring(ring.as_ref(), &valid).map_err(|e| PluginError::Invalid(e.to_string()))?;
    let Some(p) = placement else {
        return Err(PluginError::Invalid(format!(
            "{name} has no committed placement yet; nothing to plan against"
        )));
    };
    let planned = ringshift_planner::plan(
        name,
        &desired,
        &p,
        &[],
        &ringshift_planner::Policy::default(),
    )
    .map_err(|e| PluginError::Invalid(e.to_string()))?;
    let mut inputs = Inputs {
        bandwidth: valid.bandwidth_bytes_per_second,
        samples: history::samples(&ctx.migrations(name).await?),
        ..Inputs::default()
    };
    if let Ok(current) = p.current() {
        for t in &planned.transfers {
            let owned = current.ranges_of(&t.source).span();
            inputs.owned.insert(t.source.clone(), owned);
            if let std::collections::btree_map::Entry::Vacant(v) =
                inputs.stored.entry(t.source.clone())
                && let Some(bytes) = ctx.stored_bytes(&t.source).await
            {
                v.insert(bytes);
            }
        }
    }
    let sources: Vec<&str> = planned
        .transfers
        .iter()
        .map(|t| t.source.as_str())
        .collect();
    let basis = inputs.basis(&sources);
    let moves: Vec<PlanRow> = planned
        .transfers
        .iter()
        .map(|t| {
            let e = inputs.estimate(basis, &t.source, t.ranges.span());
            PlanRow {
                source: t.source.clone(),
                target: t.target.clone(),
                ranges: t.ranges.len(),
                share: t.ranges.span() as f64 / FULL_SPAN as f64,
                estimated_bytes: e.map(|e| e.bytes),
                estimated_secs: e.and_then(|e| e.secs),
            }
        })
        .collect();
    let concurrent_moves = usize::try_from(spec.migration.max_concurrent_moves.max(1)).unwrap_or(1);
    let secs: Option<Vec<u64>> = moves.iter().map(|m| m.estimated_secs).collect();
    Ok(PlanView {
        cluster: name.to_string(),
        plan_hash: planned.plan_hash,
        estimated_secs: secs
            .filter(|s| !s.is_empty())
            .map(|s| estimate::total_secs(&s, concurrent_moves)),
        moves,
        basis: if planned.transfers.is_empty() {
            Basis::None
        } else {
            basis
        },
        concurrent_moves,
    })
}

/// Approves the plan published in status (Manual approval). With `reviewed`, only if the plan
/// awaiting approval is still that one; the write carries the resourceVersion the check read,
/// so a plan republished in between is refused, not approved unseen.
pub async fn approve(ctx: &Ctx, name: &str, reviewed: Option<&str>) -> Result<String, PluginError> {
    retry_on_conflict(|| async {
        let c = ctx.cluster(name).await?;
        let Some(plan) = c.status.as_ref().and_then(|s| s.pending_plan.clone()) else {
            return Err(PluginError::Invalid(format!(
                "{name} has no plan awaiting approval (approval mode {:?})",
                c.spec.migration.approval
            )));
        };
        if let Some(r) = reviewed
            && r != plan.hash
        {
            return Err(PluginError::PlanChanged {
                reviewed: r.to_string(),
                pending: plan.hash,
            });
        }
        patch_spec_at(
            ctx,
            &c,
            json!({"migration": {"approvedPlan": plan.hash}}),
            "approving the plan",
        )
        .await?;
        Ok(plan.hash)
    })
    .await
}

/// Runs a read-check-write step again while its write meets a newer resourceVersion (the
/// operator writes status all the time); each try reads and checks afresh, so nothing is
/// written on the strength of an old read.
async fn retry_on_conflict<T, F, Fut>(mut step: F) -> Result<T, PluginError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PluginError>>,
{
    let mut tries = 0;
    loop {
        match step().await {
            Err(PluginError::Conflict { .. }) if tries < CONFLICT_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
            other => return other,
        }
    }
}

/// How often a step is retried after a conflicting write.
const CONFLICT_RETRIES: u64 = 5;

/// What a member edit did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EditOutcome {
    pub member: String,
    pub changed: bool,
}

/// Drains, undrains or reweights one member (`demo-2` or `2`), after checking the edited spec
/// as the operator will.
pub async fn edit_member(
    ctx: &Ctx,
    name: &str,
    member: &str,
    edit: Edit,
) -> Result<EditOutcome, PluginError> {
    retry_on_conflict(|| async {
        let c = ctx.cluster(name).await?;
        let member = members::resolve(name, c.spec.replicas, member)?;
        let (after, changed) = members::apply(&c.spec.members, &member, edit)?;
        if changed {
            let mut spec = c.spec.clone();
            spec.members = after.clone();
            validate(name, &spec, &Existing::default()).map_err(|e| invalid_spec(&e))?;
            patch_spec_at(ctx, &c, json!({ "members": after }), "editing spec.members").await?;
        }
        Ok(EditOutcome { member, changed })
    })
    .await
}

/// The cluster's moves, oldest first.
pub async fn history(ctx: &Ctx, name: &str) -> Result<Vec<HistoryRow>, PluginError> {
    ctx.cluster(name).await?;
    Ok(history::rows(&ctx.migrations(name).await?))
}

/// Sets spec.migration.paused.
pub async fn set_paused(ctx: &Ctx, name: &str, paused: bool) -> Result<(), PluginError> {
    ctx.cluster(name).await?;
    patch_spec(
        ctx,
        name,
        json!({"migration": {"paused": paused}}),
        "pause or resume",
    )
    .await
}

/// Merge-patches `spec` of `c` only if the object is still at the resourceVersion read.
async fn patch_spec_at(
    ctx: &Ctx,
    c: &ShardCluster,
    spec: serde_json::Value,
    action: &str,
) -> Result<(), PluginError> {
    let name = c.name_any();
    let body = json!({
        "metadata": {"resourceVersion": c.resource_version()},
        "spec": spec,
    });
    ctx.clusters()
        .patch(&name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map(|_| ())
        .map_err(|e| match kube_err(action, e) {
            PluginError::Conflict { action, .. } => PluginError::Conflict {
                name: name.clone(),
                action,
            },
            other => other,
        })
}

async fn patch_spec(
    ctx: &Ctx,
    name: &str,
    spec: serde_json::Value,
    action: &str,
) -> Result<(), PluginError> {
    ctx.clusters()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .map(|_| ())
        .map_err(|e| kube_err(&format!("{action} (patch ShardCluster {name})"), e))
}

/// Asks the operator to cancel a move before its commit.
pub async fn cancel(ctx: &Ctx, migration: &str) -> Result<(), PluginError> {
    let api: Api<ShardMigration> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    if api
        .get_opt(migration)
        .await
        .map_err(|e| kube_err(&format!("read ShardMigration {migration}"), e))?
        .is_none()
    {
        return Err(PluginError::NoMigration {
            name: migration.to_string(),
            namespace: ctx.namespace.clone(),
        });
    }
    api.patch(
        migration,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {CANCEL_ANNOTATION: "true"}}})),
    )
    .await
    .map(|_| ())
    .map_err(|e| kube_err(&format!("annotate ShardMigration {migration}"), e))
}

/// How long `plan` waits for one member's metrics.
const PROXY_TIMEOUT: Duration = Duration::from_secs(3);

/// Refresh period of `watch`.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
