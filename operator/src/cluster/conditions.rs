//! Kubernetes conditions: setting one keeps its lastTransitionTime unless its
//! status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types of a ShardCluster.
pub mod types {
    /// Every member's pod is Ready and the spec is valid.
    pub const READY: &str = "Ready";
    /// Pods are being created or replaced, or ranges are moving.
    pub const PROGRESSING: &str = "Progressing";
    /// The committed placement equals the desired ring.
    pub const BALANCED: &str = "Balanced";
    /// Something needs a person: invalid spec, pods not starting, lost data.
    pub const DEGRADED: &str = "Degraded";
}

/// What a condition should say; the time is filled in by [`set_condition`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    /// Condition type.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: Status,
    /// CamelCase reason.
    pub reason: String,
    /// Sentence for a person.
    pub message: String,
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Not known yet.
    Unknown,
}

impl Status {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    /// True when `b`, else False.
    pub fn from_bool(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

impl DesiredCondition {
    /// A condition with the given fields.
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merges `desired` into `conditions` for `generation`. lastTransitionTime
/// changes only when the status changes; reason, message and
/// observedGeneration follow the desired condition.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    desired: &DesiredCondition,
    generation: Option<i64>,
    now: &Time,
) {
    let status = desired.status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(existing) => {
            if existing.status != status {
                existing.status = status.to_string();
                existing.last_transition_time = now.clone();
            }
            existing.reason = desired.reason.clone();
            existing.message = desired.message.clone();
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: desired.type_.to_string(),
            status: status.to_string(),
            reason: desired.reason.clone(),
            message: desired.message.clone(),
            last_transition_time: now.clone(),
            observed_generation: generation,
        }),
    }
}

/// Applies every desired condition, keeping the others as they are.
pub fn merge_conditions(
    existing: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out = existing.to_vec();
    for d in desired {
        set_condition(&mut out, d, generation, now);
    }
    out
}

/// The condition of a type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut c = Vec::new();
        let not_ready = DesiredCondition::new(types::READY, Status::False, "PodsNotReady", "0/3");
        set_condition(&mut c, &not_ready, Some(1), &at(10));
        let still = DesiredCondition::new(types::READY, Status::False, "PodsNotReady", "2/3");
        set_condition(&mut c, &still, Some(2), &at(20));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, at(10));
        assert_eq!(c[0].message, "2/3");
        assert_eq!(c[0].observed_generation, Some(2));
        let ready = DesiredCondition::new(types::READY, Status::True, "AllReady", "3/3");
        set_condition(&mut c, &ready, Some(2), &at(30));
        assert_eq!(c[0].last_transition_time, at(30));
        assert_eq!(c[0].status, "True");
    }

    #[test]
    fn merging_keeps_other_types() {
        let existing = merge_conditions(
            &[],
            &[DesiredCondition::new(
                types::BALANCED,
                Status::True,
                "Balanced",
                "",
            )],
            Some(1),
            &at(1),
        );
        let out = merge_conditions(
            &existing,
            &[DesiredCondition::new(
                types::READY,
                Status::True,
                "AllReady",
                "",
            )],
            Some(1),
            &at(2),
        );
        assert!(find(&out, types::BALANCED).is_some());
        assert!(find(&out, types::READY).is_some());
    }

    proptest::proptest! {
        /// Over any sequence of updates, lastTransitionTime is the time of the last status
        /// change, and reason/message/observedGeneration are the latest ones.
        #[test]
        fn transition_time_is_the_last_status_change(
            updates in proptest::collection::vec((0u8..3, "[A-Z][a-z]{0,5}", 0i64..5), 1..20)
        ) {
            let mut c = Vec::new();
            let mut last_change = None;
            let mut previous = None;
            for (step, (s, reason, generation)) in updates.iter().enumerate() {
                let status = [Status::True, Status::False, Status::Unknown][usize::from(*s)];
                let now = at(1_000 + i64::try_from(step).unwrap());
                if previous != Some(status) {
                    last_change = Some(now.clone());
                }
                previous = Some(status);
                let d = DesiredCondition::new(types::READY, status, reason.clone(), "m");
                set_condition(&mut c, &d, Some(*generation), &now);
                proptest::prop_assert_eq!(c.len(), 1);
                proptest::prop_assert_eq!(Some(&c[0].last_transition_time), last_change.as_ref());
                proptest::prop_assert_eq!(&c[0].reason, reason);
                proptest::prop_assert_eq!(c[0].observed_generation, Some(*generation));
            }
        }
    }
}
