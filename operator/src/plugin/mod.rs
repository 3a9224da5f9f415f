//! `kubectl ringshift`: status, live watch, dry-run plans, approval, pause/resume and cancel.
//! Reads with the user's kubeconfig; writes only what each command says (a spec field or an
//! annotation), so RBAC errors name exactly what is missing.

pub mod view;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use ringshift_ring::{FULL_SPAN, Placement, RingSpec};
use serde_json::json;

use crate::crd::{ShardCluster, ShardMigration, ShardPlacement};
use crate::desired::names;
use crate::desired::ring::desired_ring;
use crate::driver::CANCEL_ANNOTATION;
use crate::validate::{Existing, validate};
use view::{MemberRow, MoveRow, PlanRow, StatusView};

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
    #[error("{0}")]
    Invalid(String),
}

fn kube_err(action: &str, e: kube::Error) -> PluginError {
    match e {
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

    async fn committed(
        &self,
        name: &str,
    ) -> Result<(Option<RingSpec>, Option<Placement>), PluginError> {
        let api: Api<ShardPlacement> = Api::namespaced(self.client.clone(), &self.namespace);
        let p = api
            .get_opt(&names::placement(name))
            .await
            .map_err(|e| kube_err(&format!("read ShardPlacement {name}"), e))?;
        let ring = crate::desired::ring::current_ring(p.as_ref())
            .map_err(|e| PluginError::Invalid(e.to_string()))?;
        let placement = crate::desired::ring::committed(p.as_ref())
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
            let f = crate::observed::pod_facts(p);
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
}

/// The moves a change would cause, computed like the operator does; writes nothing.
pub async fn plan(
    ctx: &Ctx,
    name: &str,
    what: &WhatIf,
) -> Result<(Option<String>, Vec<PlanRow>), PluginError> {
    let c = ctx.cluster(name).await?;
    let (ring, placement) = ctx.committed(name).await?;
    let mut spec = c.spec.clone();
    if let Some(r) = what.replicas {
        spec.replicas = r;
    }
    for (member, weight) in &what.weights {
        match spec.members.iter_mut().find(|m| &m.name == member) {
            Some(m) => m.weight = *weight,
            None => spec.members.push(crate::crd::MemberSpec {
                name: member.clone(),
                weight: *weight,
                drain: false,
            }),
        }
    }
    let valid = validate(name, &spec, &Existing::default()).map_err(|errs| {
        PluginError::Invalid(
            errs.iter()
                .map(|e| format!("{}: {}", e.reason, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
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
    let rows = planned
        .transfers
        .iter()
        .map(|t| PlanRow {
            source: t.source.clone(),
            target: t.target.clone(),
            ranges: t.ranges.len(),
            share: t.ranges.span() as f64 / FULL_SPAN as f64,
        })
        .collect();
    Ok((planned.plan_hash, rows))
}

/// Approves the plan published in status (Manual approval).
pub async fn approve(ctx: &Ctx, name: &str) -> Result<String, PluginError> {
    let c = ctx.cluster(name).await?;
    let Some(plan) = c.status.and_then(|s| s.pending_plan) else {
        return Err(PluginError::Invalid(format!(
            "{name} has no plan awaiting approval (approval mode {:?})",
            c.spec.migration.approval
        )));
    };
    patch_spec(
        ctx,
        name,
        json!({"migration": {"approvedPlan": plan.hash}}),
        "approve the plan",
    )
    .await?;
    Ok(plan.hash)
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

/// Refresh period of `watch`.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
