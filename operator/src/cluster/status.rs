//! ShardCluster status and conditions from what was observed. Pure: the
//! controller gathers the inputs and writes the result.

use std::collections::BTreeSet;

use crate::cluster::conditions::{DesiredCondition, Status, types};
use crate::cluster::observed::PodFacts;
use crate::cluster::validate::Invalid;
use crate::crd::{MigrationPhase, ShardClusterStatus, ShardMigration};

/// What the committed placement says, reduced for status decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementView {
    /// Committed epoch, when a placement was committed.
    pub epoch: Option<u64>,
    /// The committed placement equals the desired ring, with no target in flight.
    pub balanced: bool,
    /// Members that own ranges in the committed placement (including ranges in transition).
    pub data_holders: BTreeSet<String>,
    /// Every member acknowledged the committed epoch.
    pub all_acknowledged: bool,
    /// Member pods that have acknowledged no placement at all: they cannot serve a command
    /// (clients of theirs get CLUSTERDOWN) until the operator's push reaches them.
    pub unplaced: BTreeSet<String>,
}

/// Everything status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Inputs<'a> {
    /// Generation of the ShardCluster.
    pub generation: Option<i64>,
    /// Validation errors (empty when the spec is valid).
    pub invalid: &'a [Invalid],
    /// Whether the StatefulSet exists.
    pub statefulset_exists: bool,
    /// Pods the StatefulSet should have.
    pub expected_pods: i32,
    /// StatefulSet status.replicas.
    pub sts_replicas: i32,
    /// Member pods.
    pub pods: &'a [PodFacts],
    /// Pods not yet on the StatefulSet's update revision.
    pub outdated_pods: usize,
    /// Committed placement summary.
    pub placement: PlacementView,
    /// ShardMigrations of this cluster.
    pub migrations: &'a [ShardMigration],
    /// Label selector string of the pods.
    pub selector: String,
    /// Last error applying owned objects, if the last attempt failed.
    pub apply_error: Option<String>,
    /// Why the ShardPlacement could not be read, if it could not.
    pub placement_error: Option<String>,
    /// The plan waiting for a person's approval (Manual approval), if one waits.
    pub awaiting_approval: Option<crate::crd::PublishedPlan>,
    /// `spec.migration.paused`.
    pub paused: bool,
    /// Unix ms now (for the rebalance ETA).
    pub now_ms: i64,
}

/// Condition reasons a person acts on (Progressing and Balanced), and the state they show.
pub mod reasons {
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    pub const PAUSED: &str = "Paused";
}

/// Moves that have not finished.
pub fn moves_in_flight(migrations: &[ShardMigration]) -> i32 {
    let n = migrations
        .iter()
        .filter(|m| {
            !m.status
                .as_ref()
                .map(|s| s.phase)
                .unwrap_or_default()
                .is_finished()
        })
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Members that a migration is using right now (as source or target): copying, catching up or
/// cutting over. A move waiting to start or in Cleanup (committed; the source's copy is only
/// kept for sourceRetention) does not stop a rollout: a restarted pod keeps its volume.
pub fn busy_members(migrations: &[ShardMigration]) -> BTreeSet<String> {
    migrations
        .iter()
        .filter(|m| {
            matches!(
                m.status.as_ref().map(|s| s.phase).unwrap_or_default(),
                MigrationPhase::Copying | MigrationPhase::CatchingUp | MigrationPhase::CuttingOver
            )
        })
        .flat_map(|m| [m.spec.source.clone(), m.spec.target.clone()])
        .collect()
}

fn ready_condition(i: &Inputs<'_>) -> DesiredCondition {
    let ready: Vec<&PodFacts> = i
        .pods
        .iter()
        .filter(|p| p.ready && !p.terminating)
        .collect();
    if !i.statefulset_exists {
        let (reason, msg) = if i.invalid.is_empty() {
            ("Creating", "the StatefulSet is being created".to_string())
        } else {
            (
                "InvalidSpec",
                "nothing was created: the spec is invalid (see Degraded)".to_string(),
            )
        };
        return DesiredCondition::new(types::READY, Status::False, reason, msg);
    }
    let want = usize::try_from(i.expected_pods).unwrap_or(0);
    // A pod that runs but was never given a placement answers every command with CLUSTERDOWN.
    let unplaced: Vec<&str> = ready
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| i.placement.unplaced.contains(*n))
        .collect();
    if ready.len() >= want && want > 0 && !unplaced.is_empty() {
        return DesiredCondition::new(
            types::READY,
            Status::False,
            "PlacementNotInstalled",
            format!(
                "{}/{} members run, but {} installed no placement yet (the operator pushes it)",
                ready.len(),
                want,
                unplaced.join(", ")
            ),
        );
    }
    if ready.len() >= want && want > 0 {
        return DesiredCondition::new(
            types::READY,
            Status::True,
            "AllMembersReady",
            format!("{}/{} members ready", ready.len(), want),
        );
    }
    let mut not_ready: Vec<String> = i
        .pods
        .iter()
        .filter(|p| !p.ready || p.terminating)
        .map(|p| match &p.stuck {
            Some(why) => format!("{} ({why})", p.name),
            None => p.name.clone(),
        })
        .collect();
    let missing = want.saturating_sub(i.pods.len());
    if missing > 0 {
        not_ready.push(format!("{missing} pod(s) not created yet"));
    }
    DesiredCondition::new(
        types::READY,
        Status::False,
        "MembersNotReady",
        format!(
            "{}/{} members ready; waiting for {}",
            ready.len(),
            want,
            not_ready.join(", ")
        ),
    )
}

/// Why nothing moves although the ring should change: a pause or a plan awaiting approval.
fn held(i: &Inputs<'_>, moves: i32) -> Option<(&'static str, String)> {
    let change_pending =
        i.invalid.is_empty() && i.placement.epoch.is_some() && !i.placement.balanced;
    if i.paused && (moves > 0 || change_pending) {
        return Some((
            reasons::PAUSED,
            format!(
                "spec.migration.paused is true: {moves} move(s) hold where they are and no new \
                 one starts; set it to false to continue"
            ),
        ));
    }
    let plan = i.awaiting_approval.as_ref().filter(|_| moves == 0)?;
    Some((
        reasons::AWAITING_APPROVAL,
        format!(
            "a plan of {} move(s) waits for approval: review it and set \
             spec.migration.approvedPlan to {} (kubectl ringshift approve)",
            plan.moves.len(),
            plan.hash
        ),
    ))
}

fn progressing_condition(i: &Inputs<'_>, moves: i32) -> DesiredCondition {
    let p = |reason: &str, msg: String| {
        DesiredCondition::new(types::PROGRESSING, Status::True, reason, msg)
    };
    if let Some((reason, msg)) = held(i, moves).filter(|(r, _)| *r == reasons::PAUSED) {
        return DesiredCondition::new(types::PROGRESSING, Status::False, reason, msg);
    }
    if moves > 0 {
        return p("MovingRanges", format!("{moves} range move(s) in flight"));
    }
    if i.statefulset_exists
        && (i.sts_replicas != i.expected_pods
            || i.pods.len() != usize::try_from(i.expected_pods).unwrap_or(0))
    {
        return p(
            "ScalingMembers",
            format!("{} of {} member pods exist", i.pods.len(), i.expected_pods),
        );
    }
    let ready = i.pods.iter().filter(|p| p.ready && !p.terminating).count();
    let expected = usize::try_from(i.expected_pods).unwrap_or(0);
    if i.statefulset_exists && ready < expected && i.pods.iter().all(|p| p.stuck.is_none()) {
        return p(
            "MembersStarting",
            format!("{ready}/{expected} members ready"),
        );
    }
    if i.outdated_pods > 0 {
        return p(
            "RollingUpdate",
            format!(
                "{} member pod(s) wait to be replaced one at a time",
                i.outdated_pods
            ),
        );
    }
    if let Some((reason, msg)) = held(i, moves) {
        return DesiredCondition::new(types::PROGRESSING, Status::False, reason, msg);
    }
    if i.invalid.is_empty() && i.placement.epoch.is_some() && !i.placement.balanced {
        return p(
            "RingChangePending",
            "the desired ring differs from the committed placement".into(),
        );
    }
    DesiredCondition::new(
        types::PROGRESSING,
        Status::False,
        "Stable",
        "nothing is changing",
    )
}

fn balanced_condition(i: &Inputs<'_>, moves: i32) -> DesiredCondition {
    match i.placement.epoch {
        None => DesiredCondition::new(
            types::BALANCED,
            Status::False,
            "PlacementNotCommitted",
            "no placement has been committed yet",
        ),
        Some(epoch) if i.placement.balanced => DesiredCondition::new(
            types::BALANCED,
            Status::True,
            "Balanced",
            format!("the committed placement (epoch {epoch}) equals the desired ring"),
        ),
        Some(epoch) => DesiredCondition::new(
            types::BALANCED,
            Status::False,
            match held(i, moves) {
                Some((reason, _)) => reason,
                None if moves > 0 => "MovesInProgress",
                None => "RingChangePending",
            },
            format!(
                "the committed placement (epoch {epoch}) differs from the desired ring; \
                 {moves} move(s) in flight"
            ),
        ),
    }
}

fn degraded_condition(i: &Inputs<'_>) -> DesiredCondition {
    if let Some(first) = i.invalid.first() {
        let all: Vec<&str> = i.invalid.iter().map(|e| e.message.as_str()).collect();
        return DesiredCondition::new(types::DEGRADED, Status::True, first.reason, all.join("; "));
    }
    let stuck: Vec<String> = i
        .pods
        .iter()
        .filter_map(|p| p.stuck.as_ref().map(|why| format!("{}: {why}", p.name)))
        .collect();
    if !stuck.is_empty() {
        return DesiredCondition::new(
            types::DEGRADED,
            Status::True,
            "MemberNotStarting",
            format!(
                "{}; check spec.image, spec.pod and the pods' events",
                stuck.join("; ")
            ),
        );
    }
    let failed: Vec<String> = i
        .migrations
        .iter()
        .filter(|m| m.status.as_ref().map(|s| s.phase) == Some(MigrationPhase::Failed))
        .map(|m| {
            let why = m
                .status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default();
            format!(
                "{} ({} -> {}): {why}",
                m.metadata.name.clone().unwrap_or_default(),
                m.spec.source,
                m.spec.target
            )
        })
        .collect();
    if !failed.is_empty() {
        return DesiredCondition::new(
            types::DEGRADED,
            Status::True,
            "MigrationFailed",
            format!("failed migration(s): {}", failed.join("; ")),
        );
    }
    if let Some(err) = &i.placement_error {
        return DesiredCondition::new(
            types::DEGRADED,
            Status::True,
            "PlacementUnreadable",
            format!("ShardPlacement cannot be read, so no member is added or removed: {err}"),
        );
    }
    if let Some(err) = &i.apply_error {
        return DesiredCondition::new(types::DEGRADED, Status::True, "ApplyFailed", err.clone());
    }
    DesiredCondition::new(
        types::DEGRADED,
        Status::False,
        "AsExpected",
        "no problem detected",
    )
}

/// The conditions and fields of the status, without times (the caller merges
/// them into the existing conditions).
pub fn compute(i: &Inputs<'_>) -> (ShardClusterStatus, Vec<DesiredCondition>) {
    let moves = moves_in_flight(i.migrations);
    let ready = ready_condition(i);
    let progressing = progressing_condition(i, moves);
    let balanced = balanced_condition(i, moves);
    let degraded = degraded_condition(i);
    let state = if !i.invalid.is_empty() {
        "Invalid"
    } else if degraded.status == Status::True {
        "Degraded"
    } else if progressing.reason == reasons::PAUSED {
        reasons::PAUSED
    } else if progressing.reason == reasons::AWAITING_APPROVAL {
        reasons::AWAITING_APPROVAL
    } else if progressing.status == Status::True {
        "Progressing"
    } else if ready.status == Status::True {
        "Ready"
    } else {
        "Pending"
    };
    let ready_count = i.pods.iter().filter(|p| p.ready && !p.terminating).count();
    let status = ShardClusterStatus {
        observed_generation: i.generation,
        replicas: i.sts_replicas,
        ready_replicas: i32::try_from(ready_count).unwrap_or(i32::MAX),
        selector: Some(i.selector.clone()),
        epoch: i.placement.epoch.map(|e| e.to_string()),
        moves_in_flight: moves,
        state: Some(state.to_string()),
        conditions: Vec::new(),
        pending_plan: i.awaiting_approval.clone(),
        rebalance: crate::cluster::rebalance::rebalance(i.migrations, i.now_ms),
    };
    (status, vec![ready, progressing, balanced, degraded])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ShardMigrationSpec, ShardMigrationStatus};

    fn pod(name: &str, ready: bool) -> PodFacts {
        PodFacts {
            name: name.into(),
            ready,
            terminating: false,
            revision: None,
            stuck: None,
        }
    }

    fn migration(phase: MigrationPhase) -> ShardMigration {
        let mut m = ShardMigration::new(
            "demo-m1",
            ShardMigrationSpec {
                cluster: "demo".into(),
                source: "demo-0".into(),
                target: "demo-3".into(),
                ranges: vec![],
                epoch: "1".into(),
                target_ring: "abc".into(),
            },
        );
        m.status = Some(ShardMigrationStatus {
            phase,
            ..Default::default()
        });
        m
    }

    fn find<'a>(c: &'a [DesiredCondition], t: &str) -> &'a DesiredCondition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    fn base<'a>(pods: &'a [PodFacts]) -> Inputs<'a> {
        Inputs {
            generation: Some(4),
            statefulset_exists: true,
            expected_pods: 3,
            sts_replicas: 3,
            pods,
            placement: PlacementView {
                epoch: Some(7),
                balanced: true,
                ..Default::default()
            },
            selector: "a=b".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ready_members_without_a_placement_are_not_ready() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let mut i = base(&pods);
        i.placement.unplaced = ["demo-1".to_string()].into();
        let (_, c) = compute(&i);
        let ready = find(&c, types::READY);
        assert_eq!(ready.status, Status::False);
        assert_eq!(ready.reason, "PlacementNotInstalled");
        assert!(ready.message.contains("demo-1"), "{}", ready.message);
    }

    #[test]
    fn all_members_ready_and_balanced_is_ready() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let (status, c) = compute(&base(&pods));
        assert_eq!(find(&c, types::READY).status, Status::True);
        assert_eq!(find(&c, types::BALANCED).status, Status::True);
        assert_eq!(find(&c, types::PROGRESSING).status, Status::False);
        assert_eq!(find(&c, types::DEGRADED).status, Status::False);
        assert_eq!(status.state.as_deref(), Some("Ready"));
        assert_eq!(status.ready_replicas, 3);
        assert_eq!(status.epoch.as_deref(), Some("7"));
        assert_eq!(status.observed_generation, Some(4));
    }

    #[test]
    fn a_member_not_ready_is_named() {
        let mut stuck = pod("demo-2", false);
        stuck.stuck = Some("ImagePullBackOff".into());
        let pods = [pod("demo-0", true), pod("demo-1", true), stuck];
        let (status, c) = compute(&base(&pods));
        let ready = find(&c, types::READY);
        assert_eq!(ready.status, Status::False);
        assert!(ready.message.contains("2/3"), "{}", ready.message);
        assert!(
            ready.message.contains("demo-2 (ImagePullBackOff)"),
            "{}",
            ready.message
        );
        let degraded = find(&c, types::DEGRADED);
        assert_eq!(
            (degraded.status, degraded.reason.as_str()),
            (Status::True, "MemberNotStarting")
        );
        assert_eq!(status.state.as_deref(), Some("Degraded"));
    }

    #[test]
    fn members_starting_is_progressing() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", false),
        ];
        let (status, c) = compute(&base(&pods));
        assert_eq!(find(&c, types::PROGRESSING).reason, "MembersStarting");
        assert_eq!(status.state.as_deref(), Some("Progressing"));
    }

    #[test]
    fn moves_in_flight_mean_progressing_and_not_balanced() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let migrations = [
            migration(MigrationPhase::Copying),
            migration(MigrationPhase::Completed),
        ];
        let mut i = base(&pods);
        i.migrations = &migrations;
        i.placement.balanced = false;
        let (status, c) = compute(&i);
        assert_eq!(status.moves_in_flight, 1);
        assert_eq!(find(&c, types::PROGRESSING).reason, "MovingRanges");
        assert_eq!(find(&c, types::BALANCED).reason, "MovesInProgress");
        assert_eq!(
            busy_members(&migrations),
            ["demo-0".to_string(), "demo-3".to_string()].into()
        );
        let later = [
            migration(MigrationPhase::Cleanup),
            migration(MigrationPhase::Pending),
        ];
        assert!(
            busy_members(&later).is_empty(),
            "Cleanup and Pending do not block a rollout"
        );
    }

    #[test]
    fn a_plan_waiting_for_approval_is_not_progressing() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let mut i = base(&pods);
        i.placement.balanced = false;
        i.awaiting_approval = Some(crate::crd::PublishedPlan {
            hash: "0123abcd".into(),
            moves: vec![Default::default(), Default::default()],
        });
        let (status, c) = compute(&i);
        let p = find(&c, types::PROGRESSING);
        assert_eq!(
            (p.status, p.reason.as_str()),
            (Status::False, "AwaitingApproval")
        );
        assert!(
            p.message.contains("2 move(s)") && p.message.contains("0123abcd"),
            "{}",
            p.message
        );
        assert_eq!(find(&c, types::BALANCED).reason, "AwaitingApproval");
        assert_eq!(status.state.as_deref(), Some("AwaitingApproval"));
        assert_eq!(
            status.pending_plan.map(|p| p.hash).as_deref(),
            Some("0123abcd")
        );
    }

    #[test]
    fn paused_moves_say_paused() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let migrations = [migration(MigrationPhase::Copying)];
        let mut i = base(&pods);
        i.migrations = &migrations;
        i.placement.balanced = false;
        i.paused = true;
        let (status, c) = compute(&i);
        let p = find(&c, types::PROGRESSING);
        assert_eq!((p.status, p.reason.as_str()), (Status::False, "Paused"));
        assert_eq!(find(&c, types::BALANCED).reason, "Paused");
        assert_eq!(status.state.as_deref(), Some("Paused"));
        assert_eq!(
            status.rebalance.map(|r| r.summary).as_deref(),
            Some("0% (0/1)")
        );
        // Paused with nothing to move changes nothing.
        let mut i = base(&pods);
        i.paused = true;
        assert_eq!(compute(&i).0.state.as_deref(), Some("Ready"));
    }

    #[test]
    fn invalid_spec_is_degraded_with_its_reason() {
        let invalid = [Invalid {
            reason: "ReplicationFactorUnsupported",
            message: "spec.replicationFactor is 3".into(),
        }];
        let mut i = base(&[]);
        i.invalid = &invalid;
        i.statefulset_exists = false;
        i.placement = PlacementView::default();
        let (status, c) = compute(&i);
        let d = find(&c, types::DEGRADED);
        assert_eq!(
            (d.status, d.reason.as_str()),
            (Status::True, "ReplicationFactorUnsupported")
        );
        assert_eq!(find(&c, types::READY).reason, "InvalidSpec");
        assert_eq!(find(&c, types::BALANCED).reason, "PlacementNotCommitted");
        assert_eq!(status.state.as_deref(), Some("Invalid"));
    }

    #[test]
    fn unreadable_placement_is_degraded() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let mut i = base(&pods);
        i.placement_error = Some("status.placement does not parse".into());
        let (status, c) = compute(&i);
        assert_eq!(find(&c, types::DEGRADED).reason, "PlacementUnreadable");
        assert_eq!(status.state.as_deref(), Some("Degraded"));
    }

    #[test]
    fn failed_migration_is_degraded() {
        let pods = [
            pod("demo-0", true),
            pod("demo-1", true),
            pod("demo-2", true),
        ];
        let mut failed = migration(MigrationPhase::Failed);
        if let Some(s) = failed.status.as_mut() {
            s.message = Some("target volume full".into());
        }
        let migrations = [failed];
        let mut i = base(&pods);
        i.migrations = &migrations;
        let (_, c) = compute(&i);
        let d = find(&c, types::DEGRADED);
        assert_eq!(d.reason, "MigrationFailed");
        assert!(d.message.contains("target volume full"));
    }
}

/// The plan a person must approve (Manual approval), or None when nothing waits for approval.
/// The hash is the planner's, over the moves only, so it matches what the driver checks.
pub fn published_plan(
    cluster: &str,
    spec: &crate::crd::ShardClusterSpec,
    desired: &ringshift_ring::RingSpec,
    committed: &ringshift_ring::Placement,
) -> Option<crate::crd::PublishedPlan> {
    let policy = ringshift_planner::Policy {
        manual_approval: spec.migration.approval == crate::crd::ApprovalMode::Manual,
        approved_plan: spec.migration.approved_plan.clone(),
        ..ringshift_planner::Policy::default()
    };
    let plan = ringshift_planner::plan(cluster, desired, committed, &[], &policy).ok()?;
    if !plan.awaiting_approval {
        return None;
    }
    Some(crate::crd::PublishedPlan {
        hash: plan.plan_hash?,
        moves: plan
            .transfers
            .iter()
            .map(|t| crate::crd::PlannedMove {
                source: t.source.clone(),
                target: t.target.clone(),
                ranges: i32::try_from(t.ranges.len()).unwrap_or(i32::MAX),
                estimated_bytes: None,
            })
            .collect(),
    })
}

#[cfg(test)]
mod plan_tests {
    use super::published_plan;
    use crate::crd::ShardClusterSpec;
    use ringshift_ring::{Member, Placement, RingSpec};

    fn ring(n: u32) -> RingSpec {
        let m: Vec<Member> = (0..n)
            .map(|i| Member::new(format!("demo-{i}"), 100))
            .collect();
        RingSpec::with_members(16, &m).unwrap()
    }

    #[test]
    fn manual_approval_publishes_the_plan_until_approved() {
        let mut spec: ShardClusterSpec =
            serde_json::from_value(serde_json::json!({"migration": {"approval": "Manual"}}))
                .unwrap();
        let p = Placement::new("uid", ring(3)).unwrap();
        let desired = p
            .base()
            .evolve(
                &(0..4)
                    .map(|i| Member::new(format!("demo-{i}"), 100))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let plan = published_plan("demo", &spec, &desired, &p).expect("a plan waits");
        assert_eq!(plan.hash.len(), 32);
        assert!(plan.moves.iter().all(|m| m.target == "demo-3"));
        spec.migration.approved_plan = Some(plan.hash.clone());
        assert!(published_plan("demo", &spec, &desired, &p).is_none());
        // automatic approval never publishes
        let auto: ShardClusterSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(published_plan("demo", &auto, &desired, &p).is_none());
        // nothing to move, nothing to approve
        assert!(published_plan("demo", &spec, p.base(), &p).is_none());
    }
}
