use super::*;

fn obs() -> Observed {
    Observed {
        now_ms: 1_000_000,
        policy: PhasePolicy::default(),
        cancel_requested: false,
        paused: false,
        may_start: true,
        source_ready: true,
        target_ready: true,
        transfer: TransferState::Pending,
        cutover: None,
        pull: None,
        all_acked_commit: false,
        source_gone: false,
        target_pulling: false,
        drop: Some(moved()),
        room: crate::room::RoomCheck::Unknown,
        target: "demo-2".into(),
    }
}

fn moved() -> ringshift_ring::RangeSet {
    ringshift_ring::RangeSet::single(ringshift_ring::HashRange::new(100, 199).unwrap())
}

fn state(phase: Phase) -> MoveState {
    MoveState {
        phase,
        attempt: 1,
        copy_attempt: 1,
        since_ms: 999_000,
        ..MoveState::default()
    }
}

fn pull(copied: bool, lag: u64, rate: u64) -> PullView {
    PullView {
        copy_attempt: 1,
        copied,
        verified: copied,
        lag,
        apply_rate: rate,
        failed: None,
        error: None,
    }
}

fn persisted(step: Step) -> MoveState {
    match step {
        Step::Persist(s) => s,
        other => panic!("expected Persist, got {other:?}"),
    }
}

#[test]
fn pending_starts_copying_only_when_allowed() {
    let s = MoveState::default();
    let next = persisted(next_step(&s, &obs()));
    assert_eq!(next.phase, Phase::Copying);
    assert_eq!((next.attempt, next.copy_attempt), (1, 1));
    assert_eq!(next.since_ms, 1_000_000);

    for o in [
        Observed {
            may_start: false,
            ..obs()
        },
        Observed {
            paused: true,
            ..obs()
        },
        Observed {
            target_ready: false,
            ..obs()
        },
        Observed {
            source_ready: false,
            ..obs()
        },
    ] {
        assert!(matches!(next_step(&s, &o), Step::Wait { .. }), "{o:?}");
    }
}

#[test]
fn copying_starts_the_pull_then_waits_then_catches_up() {
    let s = state(Phase::Copying);
    assert_eq!(
        next_step(&s, &obs()),
        Step::StartPull {
            attempt: 1,
            copy_attempt: 1
        }
    );
    let copying = Observed {
        pull: Some(pull(false, 0, 0)),
        ..obs()
    };
    assert!(matches!(next_step(&s, &copying), Step::Wait { .. }));
    let copied = Observed {
        pull: Some(pull(true, 50, 0)),
        ..obs()
    };
    assert_eq!(persisted(next_step(&s, &copied)).phase, Phase::CatchingUp);
}

#[test]
fn a_pull_of_an_older_copy_attempt_is_restarted() {
    let s = MoveState {
        attempt: 3,
        copy_attempt: 3,
        ..state(Phase::Copying)
    };
    let o = Observed {
        pull: Some(pull(true, 0, 0)),
        ..obs()
    };
    assert_eq!(
        next_step(&s, &o),
        Step::StartPull {
            attempt: 3,
            copy_attempt: 3
        }
    );
}

#[test]
fn failed_pull_recopies_with_a_new_attempt_after_backoff() {
    let s = MoveState {
        since_ms: 0,
        ..state(Phase::CatchingUp)
    };
    let failed = PullView {
        failed: Some(PullFailure {
            reason: "offset below retention".into(),
            recopy: true,
        }),
        ..pull(true, 0, 0)
    };
    let next = persisted(next_step(
        &s,
        &Observed {
            pull: Some(failed.clone()),
            ..obs()
        },
    ));
    assert_eq!(next.phase, Phase::Copying);
    assert_eq!((next.attempt, next.copy_attempt, next.failures), (2, 2, 1));

    // non-recopy failures resume the same copy under a new attempt
    let transient = PullView {
        failed: Some(PullFailure {
            reason: "source unreachable".into(),
            recopy: false,
        }),
        ..pull(false, 0, 0)
    };
    let next = persisted(next_step(
        &MoveState {
            since_ms: 0,
            ..state(Phase::Copying)
        },
        &Observed {
            pull: Some(transient),
            ..obs()
        },
    ));
    assert_eq!((next.attempt, next.copy_attempt), (2, 1));

    // within the backoff window it waits
    let recent = MoveState {
        since_ms: 999_900,
        failures: 2,
        ..state(Phase::CatchingUp)
    };
    assert!(matches!(
        next_step(
            &recent,
            &Observed {
                pull: Some(failed),
                ..obs()
            }
        ),
        Step::Wait { .. }
    ));
}

#[test]
fn repeated_failures_end_in_failed_with_a_reason() {
    let s = MoveState {
        since_ms: 0,
        failures: 9,
        ..state(Phase::Copying)
    };
    let failed = PullView {
        failed: Some(PullFailure {
            reason: "disk full".into(),
            recopy: false,
        }),
        ..pull(false, 0, 0)
    };
    let next = persisted(next_step(
        &s,
        &Observed {
            pull: Some(failed),
            ..obs()
        },
    ));
    assert_eq!(next.phase, Phase::Failed);
    assert!(next.reason.unwrap().contains("disk full"));
}

#[test]
fn catching_up_cuts_over_only_when_the_lag_drains_within_budget() {
    let s = state(Phase::CatchingUp);
    let big_lag = Observed {
        pull: Some(pull(true, 5000, 100_000)),
        ..obs()
    };
    assert!(matches!(next_step(&s, &big_lag), Step::Wait { .. }));
    // under the threshold but too slow to drain within half the 2 s budget
    let slow = Observed {
        pull: Some(pull(true, 900, 100)),
        ..obs()
    };
    assert!(matches!(next_step(&s, &slow), Step::Wait { .. }));
    let ok = Observed {
        pull: Some(pull(true, 900, 10_000)),
        ..obs()
    };
    assert_eq!(persisted(next_step(&s, &ok)).phase, Phase::CuttingOver);
    let idle = Observed {
        pull: Some(pull(true, 0, 0)),
        ..obs()
    };
    assert_eq!(persisted(next_step(&s, &idle)).phase, Phase::CuttingOver);
    let paused = Observed {
        paused: true,
        ..idle
    };
    assert!(matches!(next_step(&s, &paused), Step::Wait { .. }));
}

#[test]
fn cutover_runs_once_and_a_half_done_one_is_aborted_before_unfencing() {
    let s = state(Phase::CuttingOver);
    assert_eq!(next_step(&s, &obs()), Step::Cutover { attempt: 1 });
    let half = Observed {
        cutover: Some(CutoverState::Committing),
        ..obs()
    };
    assert_eq!(next_step(&s, &half), Step::RecordAbort { attempt: 1 });
    let aborted = Observed {
        cutover: Some(CutoverState::Aborted),
        ..obs()
    };
    assert_eq!(next_step(&s, &aborted), Step::Unfence { attempt: 1 });
    let again = after_abort(&s, 2_000_000, "write-pause budget exceeded");
    assert_eq!(
        (again.phase, again.attempt, again.copy_attempt),
        (Phase::CatchingUp, 2, 1)
    );
}

#[test]
fn a_committed_transfer_rolls_forward_from_any_phase() {
    for phase in [
        Phase::Pending,
        Phase::Copying,
        Phase::CatchingUp,
        Phase::CuttingOver,
    ] {
        let o = Observed {
            transfer: TransferState::Committed { epoch: 7 },
            ..obs()
        };
        let next = persisted(next_step(&state(phase), &o));
        assert_eq!(next.phase, Phase::Cleanup);
        assert_eq!(next.committed_epoch, Some(7));
        assert_eq!(next.committed_at_ms, Some(1_000_000));
    }
    // even a cancel request cannot undo a commit
    let o = Observed {
        transfer: TransferState::Committed { epoch: 7 },
        cancel_requested: true,
        ..obs()
    };
    assert_eq!(
        persisted(next_step(&state(Phase::CuttingOver), &o)).phase,
        Phase::Cleanup
    );
}

#[test]
fn cancel_removes_the_partial_copy_then_records_cancelled() {
    let s = state(Phase::Copying);
    let o = Observed {
        cancel_requested: true,
        pull: Some(pull(false, 0, 0)),
        ..obs()
    };
    assert_eq!(next_step(&s, &o), Step::CancelPull);
    let o = Observed {
        cancel_requested: true,
        ..obs()
    };
    let next = persisted(next_step(&s, &o));
    assert_eq!(next.phase, Phase::Cancelled);
    assert!(next.reason.unwrap().contains("annotation"));
    let replanned = Observed {
        transfer: TransferState::Gone,
        ..obs()
    };
    assert_eq!(
        persisted(next_step(&state(Phase::Pending), &replanned)).phase,
        Phase::Cancelled
    );
}

#[test]
fn cancel_during_cutover_goes_back_before_fencing() {
    let s = state(Phase::CuttingOver);
    let o = Observed {
        transfer: TransferState::Gone,
        ..obs()
    };
    assert_eq!(persisted(next_step(&s, &o)).phase, Phase::CatchingUp);
    // if the fence may have happened, the abort is recorded first
    let o = Observed {
        transfer: TransferState::Gone,
        cutover: Some(CutoverState::Committing),
        ..obs()
    };
    assert_eq!(next_step(&s, &o), Step::RecordAbort { attempt: 1 });
}

#[test]
fn cleanup_pushes_until_acked_then_waits_retention_then_drops() {
    let s = MoveState {
        committed_epoch: Some(7),
        committed_at_ms: Some(990_000),
        ..state(Phase::Cleanup)
    };
    assert_eq!(next_step(&s, &obs()), Step::PushPlacement);
    let acked = Observed {
        all_acked_commit: true,
        ..obs()
    };
    match next_step(&s, &acked) {
        Step::Wait { after_ms, .. } => assert_eq!(after_ms, 50_000),
        other => panic!("{other:?}"),
    }
    let later = Observed {
        now_ms: 1_050_000,
        ..acked
    };
    assert_eq!(next_step(&s, &later), Step::DropSource { ranges: moved() });
    assert_eq!(after_drop(&s, 1_050_001).phase, Phase::Completed);
}

#[test]
fn terminal_phases_do_nothing() {
    for phase in [Phase::Completed, Phase::Cancelled, Phase::Failed] {
        assert!(matches!(
            next_step(&state(phase), &obs()),
            Step::Wait { .. }
        ));
        assert!(phase.is_terminal());
    }
}

#[test]
fn backoff_doubles_and_caps() {
    assert_eq!(backoff_ms(0), 1000);
    assert_eq!(backoff_ms(1), 2000);
    assert_eq!(backoff_ms(5), 32_000);
    assert_eq!(backoff_ms(30), 60_000);
}

#[test]
fn cleanup_of_a_removed_source_completes_without_a_drop() {
    let s = MoveState {
        committed_epoch: Some(7),
        committed_at_ms: Some(999_999),
        ..state(Phase::Cleanup)
    };
    let gone = Observed {
        source_gone: true,
        all_acked_commit: true,
        ..obs()
    };
    let next = persisted(next_step(&s, &gone));
    assert_eq!(next.phase, Phase::Completed);
    // not before every node runs the commit epoch
    let unacked = Observed {
        source_gone: true,
        ..obs()
    };
    assert_eq!(next_step(&s, &unacked), Step::PushPlacement);
}

#[test]
fn cleanup_ends_the_targets_pull_once_every_node_runs_the_commit() {
    let s = MoveState {
        committed_epoch: Some(7),
        committed_at_ms: Some(900_000),
        ..state(Phase::Cleanup)
    };
    for o in [
        Observed {
            all_acked_commit: true,
            ..obs()
        },
        Observed {
            all_acked_commit: true,
            source_gone: true,
            ..obs()
        },
    ] {
        let pulling = Observed {
            target_pulling: true,
            ..o.clone()
        };
        assert_eq!(next_step(&s, &pulling), Step::EndPull, "{o:?}");
        assert_ne!(next_step(&s, &o), Step::EndPull, "{o:?}");
    }
    // Until the target runs the commit epoch its pull stays: it keeps old drops of the ranges
    // off the target (finding 1 of issue 13, second window).
    let unacked = Observed {
        target_pulling: true,
        ..obs()
    };
    assert_eq!(next_step(&s, &unacked), Step::PushPlacement);
    // Before the commit a running pull is the copy itself: never ended by this.
    let copying = Observed {
        target_pulling: true,
        pull: Some(pull(false, u64::MAX, 0)),
        ..obs()
    };
    assert_ne!(next_step(&state(Phase::Copying), &copying), Step::EndPull);
}

#[test]
fn cleanup_drops_only_what_the_planner_grants() {
    let s = MoveState {
        committed_epoch: Some(7),
        committed_at_ms: Some(900_000),
        ..state(Phase::Cleanup)
    };
    // No drop slot: wait (a drop never runs beyond maxConcurrentMoves).
    let no_slot = Observed {
        all_acked_commit: true,
        drop: None,
        ..obs()
    };
    assert!(matches!(next_step(&s, &no_slot), Step::Wait { .. }));
    // The ranges came back to the source (a re-plan): the drop is cancelled, the move ends.
    let back = Observed {
        drop: Some(ringshift_ring::RangeSet::empty()),
        ..no_slot.clone()
    };
    let next = persisted(next_step(&s, &back));
    assert_eq!(next.phase, Phase::Completed);
    // Part of them came back: only the rest is dropped.
    let part = ringshift_ring::RangeSet::single(ringshift_ring::HashRange::new(150, 199).unwrap());
    let some = Observed {
        drop: Some(part.clone()),
        ..no_slot
    };
    assert_eq!(next_step(&s, &some), Step::DropSource { ranges: part });
}
#[test]
fn a_copy_the_target_restarted_on_its_own_shows_as_copying_again_with_the_reason() {
    let restarted = PullView {
        error: Some("offset 42 is below the source's log retention; re-copy".into()),
        ..pull(false, 0, 0)
    };
    let next = persisted(next_step(
        &state(Phase::CatchingUp),
        &Observed {
            pull: Some(restarted),
            ..obs()
        },
    ));
    assert_eq!(next.phase, Phase::Copying);
    assert!(
        next.reason
            .as_deref()
            .is_some_and(|r| r.contains("re-copying: offset 42")),
        "{:?}",
        next.reason
    );
    assert_eq!(
        next.attempt,
        state(Phase::CatchingUp).attempt,
        "same attempt"
    );
    // Once copied again it catches up as before.
    let again = persisted(next_step(
        &next,
        &Observed {
            pull: Some(pull(true, 0, 0)),
            ..obs()
        },
    ));
    assert_eq!(again.phase, Phase::CatchingUp);
}

#[test]
fn a_target_without_room_waits_before_copying() {
    use crate::room::RoomCheck;
    let s = MoveState::default();
    let full = Observed {
        room: RoomCheck::TooSmall {
            need_bytes: 3 << 30,
            free_bytes: 1 << 30,
        },
        ..obs()
    };
    match next_step(&s, &full) {
        Step::Wait { reason, .. } => {
            assert!(
                reason.contains("demo-2") && reason.contains("1.0 GiB"),
                "{reason}"
            )
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    for room in [RoomCheck::Fits, RoomCheck::Unknown] {
        let o = Observed { room, ..obs() };
        assert_eq!(persisted(next_step(&s, &o)).phase, Phase::Copying);
    }
}

#[test]
fn cutover_records_only_move_forward() {
    use CutoverState::{Aborted, Committed, Committing};
    // Nothing there yet: anything goes.
    assert!(record_may_replace(None, (1, Committing)));
    // Within one attempt, Committing turns into a decision, never back.
    assert!(record_may_replace(Some((1, Committing)), (1, Committed)));
    assert!(record_may_replace(Some((1, Committing)), (1, Aborted)));
    assert!(!record_may_replace(Some((1, Aborted)), (1, Committing)));
    assert!(!record_may_replace(Some((1, Aborted)), (1, Committed)));
    // A newer attempt replaces an aborted or half-done older one.
    assert!(record_may_replace(Some((1, Aborted)), (2, Committing)));
    // A stale leader's older attempt never replaces a newer one (finding 2 of issue 13)...
    assert!(!record_may_replace(Some((2, Committing)), (1, Aborted)));
    assert!(!record_may_replace(Some((2, Committed)), (1, Aborted)));
    // ...and nothing replaces a commit, not even a newer attempt.
    assert!(!record_may_replace(Some((1, Committed)), (2, Committing)));
    assert!(!record_may_replace(Some((1, Committed)), (1, Aborted)));
}

fn record_state() -> impl proptest::strategy::Strategy<Value = CutoverState> {
    use proptest::prelude::*;
    prop_oneof![
        Just(CutoverState::Committing),
        Just(CutoverState::Committed),
        Just(CutoverState::Aborted)
    ]
}

proptest::proptest! {
    /// Whatever sequence of writes (by any number of leaders, stale or not) is applied through
    /// the rule, the record's attempt never goes down, a commit is never lost, and a decided
    /// attempt is never decided differently.
    #[test]
    fn any_sequence_of_record_writes_only_moves_forward(
        writes in proptest::collection::vec((0u32..5, record_state()), 0..40)
    ) {
        let mut rec: Option<(u32, CutoverState)> = None;
        for w in writes {
            let before = rec;
            if record_may_replace(rec, w) {
                rec = Some(w);
            }
            if let Some((a, s)) = before {
                let (a2, s2) = rec.expect("a record is never removed by a write");
                proptest::prop_assert!(a2 >= a);
                if s == CutoverState::Committed {
                    proptest::prop_assert_eq!((a2, s2), (a, s));
                }
                if a2 == a && s != CutoverState::Committing {
                    proptest::prop_assert_eq!(s2, s);
                }
            }
        }
    }
}

/// Rule 16: a catching-up copy whose checksums have not matched is never fenced for: the
/// cutover would refuse it and clients would see a pause for nothing.
#[test]
fn no_cutover_from_an_unverified_copy() {
    let unverified = Observed {
        pull: Some(PullView {
            verified: false,
            ..pull(true, 0, 100)
        }),
        ..obs()
    };
    assert!(matches!(
        next_step(&state(Phase::CatchingUp), &unverified),
        Step::Wait { .. }
    ));
    let verified = Observed {
        pull: Some(pull(true, 0, 100)),
        ..obs()
    };
    assert_eq!(
        persisted(next_step(&state(Phase::CatchingUp), &verified)).phase,
        Phase::CuttingOver
    );
}
