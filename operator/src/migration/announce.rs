//! Which phase changes of a move become Kubernetes Events.
//!
//! Each Event is an API write. The steps of a move that goes as planned (Pending -> Copying ->
//! CatchingUp -> CuttingOver -> Cleanup) are in its status, its metrics and the operator's log;
//! an Event is kept for what someone on call looks for: a move that ended (Completed,
//! Cancelled, Failed) and every turn off the usual path (a cutover aborted, a copy started
//! over, a committed move rolled forward after a restart).

use kube::runtime::events::EventType;
use ringshift_planner::Phase;

/// The Event type of the phase change `before -> after`, or None when it is not announced.
pub fn event_of(before: Phase, after: Phase) -> Option<EventType> {
    use Phase::*;
    match (before, after) {
        (Pending, Copying)
        | (Copying, CatchingUp)
        | (CatchingUp, CuttingOver)
        | (CuttingOver, Cleanup) => None,
        (_, Failed) | (CuttingOver, CatchingUp) => Some(EventType::Warning),
        _ => Some(EventType::Normal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_that_goes_as_planned_announces_only_its_end() {
        let path = [
            Phase::Pending,
            Phase::Copying,
            Phase::CatchingUp,
            Phase::CuttingOver,
            Phase::Cleanup,
            Phase::Completed,
        ];
        let events: Vec<(Phase, EventType)> = path
            .windows(2)
            .filter_map(|w| event_of(w[0], w[1]).map(|t| (w[1], t)))
            .collect();
        assert_eq!(events, vec![(Phase::Completed, EventType::Normal)]);
    }

    #[test]
    fn turns_off_the_path_are_announced() {
        assert_eq!(
            event_of(Phase::CuttingOver, Phase::CatchingUp),
            Some(EventType::Warning),
            "an aborted cutover"
        );
        assert_eq!(
            event_of(Phase::Copying, Phase::Failed),
            Some(EventType::Warning)
        );
        assert_eq!(
            event_of(Phase::CatchingUp, Phase::Copying),
            Some(EventType::Normal),
            "a copy started over"
        );
        assert_eq!(
            event_of(Phase::CatchingUp, Phase::Cleanup),
            Some(EventType::Normal),
            "a committed move rolled forward"
        );
        assert_eq!(
            event_of(Phase::Pending, Phase::Cancelled),
            Some(EventType::Normal)
        );
    }
}
