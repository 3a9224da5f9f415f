//! The model must be able to fail: under each finding's old rule (every other rule fixed) the
//! checker finds a counterexample, which is printed (`cargo test -p ringshift-model --
//! --nocapture`); under the new rules it finds none.

use ringshift_model::{Config, LOST_WRITE, Rules, check};

/// Checks `cfg`, prints the report, and returns the violated property and its trace.
fn violation(name: &str, cfg: Config) -> (&'static str, String) {
    let report = check(cfg);
    println!("=== {name}: {report}");
    report
        .violation
        .unwrap_or_else(|| panic!("{name}: the checker found no counterexample"))
}

fn with(rules: Rules) -> Config {
    Config::small(rules)
}

#[test]
fn new_rules_hold() {
    let report = check(Config::small(Rules::NEW));
    println!("=== new rules: {report}");
    assert!(report.violation.is_none(), "{report}");
}

/// Finding 1: a drop checks once, a pull does not exclude it, Cleanup holds no move slot:
/// M1 (R0 A->C) commits, A's drop passes its checks, the scale-in's M2 (R0 C->A) copies into
/// A, then the drop's clear lands on A, which owns R0 at the committed epoch.
#[test]
fn finding_1_drop_wipes_a_range_copied_back() {
    let (p, trace) = violation(
        "finding 1 (old drop)",
        with(Rules {
            old_drop: true,
            ..Rules::NEW
        }),
    );
    assert_eq!(p, LOST_WRITE);
    assert!(trace.contains("M2(R0 C->A) pull on A"), "{trace}");
    assert!(trace.contains("A drop of R0 (M1(R0 A->C)) clears"), "{trace}");
}

/// Finding 2: records replace any attempt, aborts check only their own attempt, no leader
/// generation: a stale leader's Aborted(1) replaces Committed(2); the move then looks
/// re-planned away, and its cancel drops the new owner's copy with epoch 0 before the new
/// owner installed the commit.
#[test]
fn finding_2_stale_leader_erases_a_commit() {
    let (p, trace) = violation(
        "finding 2 (old records)",
        with(Rules {
            old_records: true,
            ..Rules::NEW
        }),
    );
    assert_eq!(p, LOST_WRITE);
    assert!(trace.contains("M1 cutover attempt 2: Commit"), "{trace}");
    assert!(trace.contains("M1 cutover attempt 1: Abort"), "{trace}");
    assert!(trace.contains("drop on C (epoch 0)"), "{trace}");
}

/// Finding 5: the cutover takes any pull with applied >= F, and a Recopy keeps the old
/// applied offset: the pull restarts its copy right after the cutover recorded Committing,
/// the source is idle so F equals the old offset, the commit goes through, and the restarted
/// copy's clear empties the new owner.
#[test]
fn finding_5_cutover_commits_a_restarting_copy() {
    let (p, trace) = violation(
        "finding 5 (old cutover)",
        Config {
            recopies: 1,
            ..with(Rules {
                old_cutover: true,
                ..Rules::NEW
            })
        },
    );
    assert_eq!(p, LOST_WRITE);
    let recopy = trace.find("restarts its copy (Recopy)").expect("a recopy");
    let commit = trace.find("cutover attempt 1: Commit").expect("a commit");
    assert!(recopy < commit, "the commit follows the recopy:\n{trace}");
}
