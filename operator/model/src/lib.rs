//! An exhaustive model of ringshift's migration protocol (issue 13, "Check the protocol
//! exhaustively").
//!
//! The model is a [`stateright::Model`]: every action of every process (two operator replicas,
//! three nodes, the network that carries placement pushes, clients) is an atomic transition,
//! and stateright's breadth-first checker visits every reachable state of a small
//! configuration, checking three safety properties in each:
//!
//! * **no acknowledged write lost**: the member that owns a range at the committed epoch holds
//!   the last acknowledged version of its key, or a later one;
//! * **one writer per hash**: at most one live member would accept a write for a range now
//!   (it owns the range by its installed placement and the range is not fenced there);
//! * **no stale read**: every member that would serve a read of a range now returns at least
//!   the last acknowledged version (a read is one atomic step, so this is the strongest form of
//!   "not older than the last write acknowledged before the read began").
//!
//! Why stateright and not a hand-written checker: it builds with this toolchain, it is small
//! (no async runtime, no I/O in the checker), its BFS keeps only state fingerprints and parent
//! links, and it reconstructs the shortest counterexample path, which the tests print. Its
//! `fn`-pointer properties fit invariants over one state.
//!
//! The move's phase machine is not re-written here: [`Ringshift::decide`] builds the
//! planner's `Observed` from the model state and calls `ringshift_planner::phase::next_step`
//! (and `after_abort` / `after_drop`), so the model and the operator cannot drift. Everything
//! else (node handlers, the cutover sequence of `operator/src/migration/cutover.rs`, the status
//! edits) is re-stated in the model; each such piece names the code it stands for.
//!
//! Old (buggy) and new (fixed) behaviour is selected per finding by [`Rules`]. Abstractions,
//! configurations and run times: see README.md beside this crate.

use std::fmt::{self, Write as _};

use ringshift_planner::phase::{
    CutoverState, MoveState, Observed, Phase, PhasePolicy, PullFailure, PullView, Step,
    TransferState, after_abort, after_drop, next_step,
};
use ringshift_planner::room::RoomCheck;
use ringshift_ring::{HashRange, RangeSet};

/// The hash range standing for the model's range `r` (only its identity matters here).
fn range_of(r: u8) -> HashRange {
    let start = u64::from(r) << 32;
    HashRange::new(start, start | 0xffff_ffff).expect("start <= end")
}
pub use stateright::{Checker, Model, Property};

/// Members.
pub const NODES: usize = 3;
/// Most ranges a configuration may have.
pub const MAXR: usize = 3;
/// Most moves (ShardMigrations) a run may create.
pub const MAXM: usize = 4;
/// Most epochs a run may reach (placement history is kept up to this).
pub const MAXE: usize = 8;
/// Member names, for traces.
pub const NAMES: [char; NODES] = ['A', 'B', 'C'];

/// Old (buggy, `true`) or new (fixed, `false`) behaviour per finding of issue 13.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rules {
    /// Finding 1. Old: a drop checks ownership and "no active pull" once, then clears later
    /// without re-checking in the writer; a pull does not look for a drop in progress; the
    /// drop carries the move's own commit epoch; the planner drops ranges that are coming back.
    pub old_drop: bool,
    /// Finding 2. Old: `set_record` replaces the migration's record whatever its attempt; an
    /// abort only checks "my attempt is not Committed"; no leader generation; a replica that
    /// lost the lease finishes its in-flight work; CancelPull drops with epoch 0; a fence of an
    /// attempt already released is accepted.
    pub old_records: bool,
    /// Finding 5. Old: the cutover accepts any pull whose applied offset reaches F, whatever
    /// its phase, copy attempt or verification; a Recopy keeps the old applied offset.
    pub old_cutover: bool,
    /// Finding 3. Old: a catch-up step publishes its new offset even when the apply failed.
    pub old_tail: bool,
    /// Found by this model (a case of finding 4, "`start()` treats a Cancelled pull as
    /// gone"). Old: a StartPull for the attempt of a pull that was cancelled or completed
    /// starts it afresh, clearing the ranges. A stale replica's delayed StartPull that lands
    /// after the commit (the push to the target still on its way, Cleanup's EndPull done)
    /// wipes the new owner's copy. New: such a StartPull is refused as stale.
    pub old_pull_restart: bool,
    /// Found by this model (the second window of finding 1, with a stale replica). Old:
    /// Cleanup ends the target's pull before every node acknowledged the commit epoch, so
    /// until the target installs it, it neither owns the ranges nor has a pull in them, and a
    /// drop decided earlier by a replica that lost the lease (its epoch check passes: it
    /// carries the epoch current when it was decided) clears them. New: Cleanup pushes the
    /// placement and waits for every acknowledgement first, then ends the pull (so the
    /// target owns the ranges before they are unprotected), then drops.
    pub old_cleanup_order: bool,
    /// Found by this model (finding 1's family). Old: a source serves its change log for
    /// ranges it no longer owns, so the pull of a committed move that has not been ended yet
    /// tails the clear logged by a later copy into the source (the move back) and applies it
    /// to the new owner before that one installed the commit. New: the source refuses a tail
    /// of ranges it does not own (the puller retries until Cleanup ends it; it must not end by
    /// itself, or the target would neither own the ranges nor have a pull in them).
    pub old_tail_unowned: bool,
    /// Found by this model (finding 5's family). Old: a pull that must re-copy restarts on
    /// its own and `begin()` clears the ranges first, also after the move committed (the
    /// target has not installed the commit yet, so nothing refuses the clear). New: `begin()`
    /// first opens the source's snapshot, which the source refuses for ranges it does not own
    /// or has fenced, and clears only then.
    pub old_begin_order: bool,
    /// Found by this model (rule 13's wording). Old: "records only move forward" read as
    /// "never over a higher attempt or a Committed record" lets Committing(N) replace
    /// Aborted(N): a replica that lost the lease aborts attempt N after its drain ran out,
    /// the leader (deciding from the same state) records Committing(N) over it and fences,
    /// the stale replica's unfence(N) lifts that fence (same migration and attempt), and the
    /// leader commits while the source takes writes again. New: an Aborted attempt stays
    /// Aborted.
    pub old_record_revive: bool,
}

impl Rules {
    /// Every fix in place.
    pub const NEW: Rules = Rules {
        old_drop: false,
        old_records: false,
        old_cutover: false,
        old_tail: false,
        old_pull_restart: false,
        old_cleanup_order: false,
        old_tail_unowned: false,
        old_begin_order: false,
        old_record_revive: false,
    };
    /// What the code on main implements: every fix but two defences the model shows are not
    /// needed once a pull opens its snapshot before it clears (`old_begin_order` fixed): a
    /// StartPull of an ended pull's attempt still restarts it, and a source still serves tails
    /// of ranges it no longer owns. `cargo test` checks these rules, so the model follows the
    /// code; NEW (both defences too) is checked beside them.
    pub const MAIN: Rules = Rules {
        old_pull_restart: true,
        old_tail_unowned: true,
        ..Rules::NEW
    };
    /// Today's main before issue 13.
    pub const OLD: Rules = Rules {
        old_drop: true,
        old_records: true,
        old_cutover: true,
        old_tail: true,
        old_pull_restart: true,
        old_cleanup_order: true,
        old_tail_unowned: true,
        old_begin_order: true,
        old_record_revive: true,
    };
}

/// A configuration: the scenario and the fault budgets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Owner of each range before the scale-out (and after the scale-in).
    pub initial: Vec<u8>,
    /// Owner of each range after the scale-out.
    pub scaled_out: Vec<u8>,
    /// Whether the user scales back in (the desired ring returns to `initial`).
    pub scale_in: bool,
    /// Client writes per range (versions 1..=n of the range's key).
    pub writes: Vec<u8>,
    /// Leases taken over by the other replica.
    pub leader_changes: u8,
    /// Node crashes (each followed by a restart at any later point).
    pub crashes: u8,
    /// Placement pushes lost in the network.
    pub push_losses: u8,
    /// Storage errors on a client write or a catch-up apply.
    pub storage_errors: u8,
    /// Pulls that restart their copy (the source's log no longer covers the offset).
    pub recopies: u8,
    /// Cutovers whose drain runs past the write-pause budget.
    pub drain_timeouts: u8,
    /// Highest attempt a move may reach (retries beyond it are not explored).
    pub max_attempt: u8,
    pub rules: Rules,
}

impl Config {
    /// The scenario without faults: 3 members, 2 ranges (R0 on A, R1 on B), scale out (R0
    /// A->C) and back in (R0 C->A), two operator replicas with one leader change, one client
    /// write. The counterexample tests start from it.
    pub fn small(rules: Rules) -> Config {
        Config {
            initial: vec![0, 1],
            scaled_out: vec![2, 1],
            scale_in: true,
            writes: vec![1, 0],
            leader_changes: 1,
            crashes: 0,
            push_losses: 0,
            storage_errors: 0,
            recopies: 0,
            drain_timeouts: 0,
            max_attempt: 2,
            rules,
        }
    }

    /// The exhaustive check of `cargo test`: [`Config::small`] plus one pull re-copy and one
    /// storage error.
    pub fn standard(rules: Rules) -> Config {
        Config {
            recopies: 1,
            storage_errors: 1,
            ..Config::small(rules)
        }
    }

    /// The exhaustive check of `make reliability`: [`Config::standard`] plus a cutover whose
    /// drain runs out of budget.
    pub fn large(rules: Rules) -> Config {
        Config {
            drain_timeouts: 1,
            ..Config::standard(rules)
        }
    }

    /// Three ranges (R0 on A, R1 and R2 on B): the scale-out moves R0 A->C and R2 B->C, the
    /// scale-in moves them back; one move at a time; one write to R0.
    pub fn three_ranges(rules: Rules) -> Config {
        Config {
            initial: vec![0, 1, 1],
            scaled_out: vec![2, 1, 2],
            writes: vec![1, 0, 0],
            ..Config::small(rules)
        }
    }

    /// Node faults on [`Config::small`]: a crash and a lost placement push.
    pub fn node_faults(rules: Rules) -> Config {
        Config {
            crashes: 1,
            push_losses: 1,
            ..Config::small(rules)
        }
    }

    fn ranges(&self) -> usize {
        self.initial.len()
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A move's persisted state (ShardMigration status), the fields the phase machine reads;
/// times, failure counts and reasons are abstracted away (see [`Ringshift::observed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mv {
    pub range: u8,
    pub src: u8,
    pub tgt: u8,
    pub phase: Phase,
    pub attempt: u8,
    pub copy_attempt: u8,
    pub committed_epoch: Option<u8>,
}

impl Mv {
    fn to_state(self) -> MoveState {
        MoveState {
            phase: self.phase,
            attempt: u32::from(self.attempt),
            copy_attempt: u32::from(self.copy_attempt),
            since_ms: 0,
            committed_epoch: self.committed_epoch.map(u64::from),
            committed_at_ms: self.committed_epoch.map(|_| 0),
            failures: 0,
            reason: None,
        }
    }

    fn with(self, s: &MoveState) -> Mv {
        Mv {
            phase: s.phase,
            attempt: small(u64::from(s.attempt)),
            copy_attempt: small(u64::from(s.copy_attempt)),
            committed_epoch: s.committed_epoch.map(small),
            ..self
        }
    }
}

fn small(v: u64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// A cutover record in ShardPlacement status (one per migration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub attempt: u8,
    pub state: CutoverState,
}

impl std::hash::Hash for Record {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.attempt.hash(h);
        (self.state as u8).hash(h);
    }
}

/// ShardPlacement status: committed placement, target ring, cutover records, acks, leader
/// generation. Every edit is a read-modify-write with a resourceVersion precondition; see
/// [`Ringshift::edit_sp`] for why it is one atomic step here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sp {
    pub epoch: u8,
    pub owners: [u8; MAXR],
    /// The target ring's owners (equal to `owners` when balanced).
    pub target: [u8; MAXR],
    pub records: [Option<Record>; MAXM],
    pub acks: [u8; NODES],
    /// Leader generation (the Lease's leaseTransitions) of the last writer (new rules).
    pub leader_gen: u8,
}

/// Phase of a pull as the node publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PullPhase {
    Starting,
    /// Half-way through `begin()` (ranges cleared, or under the new rule the source's
    /// snapshot opened); the published status still says Starting.
    Begun,
    Copying,
    Verifying,
    CatchingUp,
    Completed,
    Cancelled,
    Failed,
}

impl PullPhase {
    fn active(self) -> bool {
        !matches!(
            self,
            PullPhase::Completed | PullPhase::Cancelled | PullPhase::Failed
        )
    }
}

/// A pull on a move's target (node/src/pull.rs `PullRecord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pull {
    /// The copy attempt (caller attempt of StartPull).
    pub attempt: u8,
    pub phase: PullPhase,
    /// Snapshot offset and the value of the range's key in it.
    pub snap: Option<(u8, u8)>,
    /// The source restarted after the snapshot was opened (its session is gone).
    pub snap_lost: bool,
    pub applied: Option<u8>,
    pub verified: bool,
}

/// A fence on a source (durable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    pub mig: u8,
    pub attempt: u8,
    pub range: u8,
    pub offset: u8,
}

/// A drop running on a node (node/src/admin/handlers.rs `drop_ranges` after its checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DropJob {
    pub mig: u8,
    pub range: u8,
    /// The operator replica waiting for the answer.
    pub waiter: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub up: bool,
    /// Installed placement (durable).
    pub epoch: u8,
    pub owners: [u8; MAXR],
    /// Stored version of each range's key (0: absent).
    pub data: [u8; MAXR],
    /// Change log: head sequence, and the sequence of the last record touching each range.
    pub seq: u8,
    pub last: [u8; MAXR],
    pub fence: Option<Fence>,
    /// Highest attempt seen per migration (check_caller).
    pub seen: [u8; MAXM],
    /// Released (unfenced) attempts, bit `mig * 8 + attempt` (new rules).
    pub released: u32,
    pub drop: Option<DropJob>,
}

impl Node {
    fn owns(&self, me: usize, r: usize) -> bool {
        usize::from(self.owners[r]) == me
    }
    fn fenced(&self, r: usize) -> bool {
        self.fence.is_some_and(|f| usize::from(f.range) == r)
    }
    /// A logged range clear. Clearing a range that is already empty is not logged here: a
    /// tail could apply nothing from it (this keeps repeated drops from growing the log).
    fn clear(&mut self, r: usize) {
        if self.data[r] != 0 {
            self.data[r] = 0;
            self.seq += 1;
            self.last[r] = self.seq;
        }
    }

    /// Would accept a write (and serve a read) of range `r` now.
    fn serves(&self, me: usize, r: usize) -> bool {
        self.up && self.owns(me, r) && !self.fenced(r)
    }
}

/// What a drop call does once the node answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AfterDrop {
    /// DropSource: persist Completed.
    Complete,
    /// CancelPull: persist Cancelled.
    Cancelled,
}

/// Stage of an in-flight cutover (operator/src/migration/cutover.rs `run` and `abort`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cut {
    Record,
    Fence,
    Drain { f: u8 },
    Commit,
    PushTarget { e: u8 },
    PersistCommitted { e: u8 },
    Abort,
    Unfence,
    PersistAborted,
}

/// Work an operator replica decided and is carrying out (node calls and status writes that
/// follow one decision). `base` is the move state the decision was made from: a persist at the
/// end is a compare-and-set on the ShardMigration and fails if it moved on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    StartPull {
        m: u8,
        ca: u8,
        ep: u8,
    },
    CancelPull {
        m: u8,
        ca: u8,
        ep: u8,
        base: Mv,
    },
    Cutover {
        m: u8,
        a: u8,
        ep: u8,
        stage: Cut,
        base: Mv,
    },
    RecordAbort {
        m: u8,
        a: u8,
    },
    Unfence {
        m: u8,
        a: u8,
        ep: u8,
        base: Mv,
    },
    EndPull {
        m: u8,
        a: u8,
        ep: u8,
    },
    /// A drop call.
    Drop(DropCall),
}

/// A drop call: `sent` once the node accepted it, `done` with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DropCall {
    pub m: u8,
    pub node: u8,
    pub a: u8,
    pub ep: u8,
    /// `ownership_ended_epoch`: a node at a lower epoch refuses.
    pub ended: u8,
    pub then: AfterDrop,
    pub sent: bool,
    pub done: Option<bool>,
    pub base: Mv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    /// Believes it leads (a stale leader still does).
    pub leader: bool,
    /// Its leader generation.
    pub generation: u8,
    pub work: Option<Work>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Client {
    /// Versions issued so far.
    pub issued: u8,
    /// A write in flight (retried by the coordinator on "not applied" answers).
    pub pending: Option<u8>,
    /// Highest acknowledged version.
    pub acked: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Budget {
    pub leader_changes: u8,
    pub crashes: u8,
    pub push_losses: u8,
    pub storage_errors: u8,
    pub recopies: u8,
    pub drain_timeouts: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub sp: Sp,
    /// Placement owners per epoch (what a push of that epoch carries).
    pub history: [[u8; MAXR]; MAXE],
    /// The ShardCluster's desired ring.
    pub desired: [u8; MAXR],
    pub scaled_in: bool,
    /// Lease: holder and leaseTransitions.
    pub lease_holder: u8,
    pub lease_transitions: u8,
    pub ops: [Op; 2],
    pub moves: [Option<Mv>; MAXM],
    /// The pull of each move, on its target.
    pub pulls: [Option<Pull>; MAXM],
    pub nodes: [Node; NODES],
    /// Placement pushes in flight, bit `node * MAXE + epoch`.
    pub pushes: u32,
    pub clients: [Client; MAXR],
    pub budget: Budget,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The user scales back in (desired ring returns to the initial one).
    ScaleIn,
    /// Replica takes the lease over (leaseTransitions + 1); the other keeps believing it leads.
    Acquire(u8),
    /// Replica notices it lost the lease.
    StepDown(u8),
    /// Driver round start: re-plan or create the moves the plan needs.
    Plan(u8),
    /// Driver round start: push the committed placement to members behind it.
    Sync(u8),
    /// Observe a move and act on the phase machine's step.
    Decide(u8, u8),
    /// Carry in-flight work one step further.
    Exec(u8),
    /// The cutover's drain runs past the write-pause budget.
    DrainTimeout(u8),
    /// A placement push (node, epoch) arrives.
    Deliver(u8, u8),
    LosePush(u8, u8),
    /// A pull (of move m) takes its next step.
    PullStep(u8),
    /// A pull restarts its copy (Stop::Recopy in catch-up).
    Recopy(u8),
    /// A catch-up apply fails with a storage error.
    TailError(u8),
    /// A drop's last (logged) clear runs.
    DropClear(u8),
    Crash(u8),
    Restart(u8),
    /// A client sends the next version of range r's key.
    Write(u8),
    /// The coordinator's forward of range r's write reaches node n, which applies it.
    Apply(u8, u8),
    /// ... which fails it with a storage error (not applied, the client gets an error).
    WriteError(u8, u8),
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

pub struct Ringshift {
    pub cfg: Config,
}

fn arr(v: &[u8]) -> [u8; MAXR] {
    let mut a = [0; MAXR];
    a[..v.len()].copy_from_slice(v);
    a
}

impl Ringshift {
    pub fn new(cfg: Config) -> Ringshift {
        assert!(cfg.ranges() <= MAXR && cfg.writes.len() == cfg.ranges());
        Ringshift { cfg }
    }

    fn rules(&self) -> Rules {
        self.cfg.rules
    }

    pub fn initial(&self) -> State {
        let init = arr(&self.cfg.initial);
        let out = arr(&self.cfg.scaled_out);
        let mut history = [[0; MAXR]; MAXE];
        history[1] = init;
        let node = |_| Node {
            up: true,
            epoch: 1,
            owners: init,
            data: [0; MAXR],
            seq: 0,
            last: [0; MAXR],
            fence: None,
            seen: [0; MAXM],
            released: 0,
            drop: None,
        };
        let idle = Op {
            leader: false,
            generation: 0,
            work: None,
        };
        State {
            // The scale-out's re-plan is written: epoch 1 has the target ring in it.
            sp: Sp {
                epoch: 1,
                owners: init,
                target: out,
                records: [None; MAXM],
                acks: [1; NODES],
                leader_gen: 1,
            },
            history,
            desired: out,
            scaled_in: false,
            lease_holder: 0,
            lease_transitions: 1,
            ops: [
                Op {
                    leader: true,
                    generation: 1,
                    work: None,
                },
                idle,
            ],
            moves: [None; MAXM],
            pulls: [None; MAXM],
            nodes: std::array::from_fn(node),
            pushes: 0,
            clients: [Client::default(); MAXR],
            budget: Budget {
                leader_changes: self.cfg.leader_changes,
                crashes: self.cfg.crashes,
                push_losses: self.cfg.push_losses,
                storage_errors: self.cfg.storage_errors,
                recopies: self.cfg.recopies,
                drain_timeouts: self.cfg.drain_timeouts,
            },
        }
    }

    /// A ShardPlacement status edit by replica `op`: `update()` in
    /// operator/src/migration/placement_io.rs re-reads the object, edits, and writes with the read
    /// resourceVersion as precondition. A write that meets a concurrent one fails and changes
    /// nothing, which is the same as the edit not having run yet, so read-edit-write is one
    /// atomic step here (the commit's `update_known` likewise re-reads on a conflict). Under
    /// the new rules the edit also checks the leader generation and stamps it.
    fn edit_sp(&self, s: &mut State, op: usize, edit: impl FnOnce(&mut Sp) -> bool) -> bool {
        let generation = s.ops[op].generation;
        if !self.rules().old_records && s.sp.leader_gen > generation {
            return false;
        }
        let mut sp = s.sp.clone();
        if !edit(&mut sp) {
            return false;
        }
        if !self.rules().old_records {
            sp.leader_gen = generation;
        }
        s.sp = sp;
        true
    }

    /// placement_io.rs `set_record`. Old: replaces whatever record the migration has. New
    /// (rule 13): never replaces a higher attempt or any Committed record, and an attempt
    /// once Aborted stays Aborted (`Rules::old_record_revive`).
    fn set_record(&self, sp: &mut Sp, m: usize, attempt: u8, state: CutoverState) -> bool {
        if !self.rules().old_records
            && let Some(r) = sp.records[m]
            && (r.state == CutoverState::Committed
                || r.attempt > attempt
                || (!self.rules().old_record_revive
                    && r.attempt == attempt
                    && r.state == CutoverState::Aborted
                    && state != CutoverState::Aborted))
        {
            return false;
        }
        sp.records[m] = Some(Record { attempt, state });
        true
    }

    fn cutover_of(sp: &Sp, m: usize, attempt: u8) -> Option<CutoverState> {
        sp.records[m]
            .filter(|r| r.attempt == attempt)
            .map(|r| r.state)
    }

    /// cutover.rs `still_planned`: the move's transfer is pending in the placement.
    fn still_planned(sp: &Sp, mv: &Mv) -> bool {
        let r = usize::from(mv.range);
        sp.owners[r] == mv.src && sp.target[r] == mv.tgt
    }

    /// drive.rs `observe` (and `transfer_state`, convert.rs `pull_view`): the planner's view.
    /// Time is abstracted: `now` is always past every backoff and sourceRetention, the apply
    /// rate always drains the lag in budget, retries never run out (safety does not depend on
    /// them).
    fn observed(&self, s: &State, m: usize) -> Observed {
        let mv = s.moves[m].expect("move exists");
        let transfer = if s.sp.records[m].is_some_and(|r| r.state == CutoverState::Committed) {
            TransferState::Committed {
                epoch: u64::from(s.sp.epoch),
            }
        } else if Self::still_planned(&s.sp, &mv) {
            TransferState::Pending
        } else {
            TransferState::Gone
        };
        let tgt = &s.nodes[usize::from(mv.tgt)];
        let pull = s.pulls[m].filter(|_| tgt.up);
        let view = pull.filter(|p| p.phase != PullPhase::Cancelled).map(|p| {
            let copied = matches!(p.phase, PullPhase::CatchingUp | PullPhase::Completed);
            PullView {
                copy_attempt: u32::from(p.attempt),
                copied,
                // Old cutover rule: verification was not part of the decision.
                verified: p.verified || self.rules().old_cutover,
                lag: if copied { 0 } else { u64::MAX },
                apply_rate: 1,
                failed: (p.phase == PullPhase::Failed).then(|| PullFailure {
                    reason: "failed".into(),
                    recopy: false,
                }),
                error: None,
            }
        });
        let committed = mv.committed_epoch.unwrap_or(u8::MAX);
        let all_acked_commit = s.sp.acks.iter().all(|&a| a >= committed);
        let target_pulling = mv.phase == Phase::Cleanup && pull.is_some_and(|p| p.phase.active());
        let rules = self.rules();
        // moves.rs `Plan::drops`: the ranges this move's source may drop now; none of those
        // coming back to the source in the change in flight or owned by it again (new rule).
        let r = usize::from(mv.range);
        let coming_back = s.sp.target[r] == mv.src || s.sp.owners[r] == mv.src;
        let drop = if coming_back && !rules.old_drop {
            RangeSet::default()
        } else {
            RangeSet::single(range_of(mv.range))
        };
        let active_other = s.moves.iter().enumerate().any(|(i, o)| {
            i != m
                && o.is_some_and(|o| {
                    o.phase.is_active()
                        // New rule (finding 1): a move in Cleanup holds the slot of its ranges
                        // until its pull ended and every node has its commit epoch.
                        || (!rules.old_drop && o.phase == Phase::Cleanup && o.range == mv.range)
                })
        });
        Observed {
            now_ms: 1 << 40,
            policy: PhasePolicy {
                lag_threshold: 1000,
                write_pause_budget_ms: 2000,
                source_retention_ms: 0,
                max_failures: u32::MAX,
            },
            cancel_requested: false,
            paused: false,
            // moves.rs: one move slot (maxConcurrentMoves 1); Cleanup holds none (old).
            may_start: !active_other,
            source_ready: s.nodes[usize::from(mv.src)].up,
            target_ready: tgt.up,
            transfer,
            cutover: Self::cutover_of(&s.sp, m, mv.attempt),
            pull: view,
            source_gone: false,
            // The planner's `cleanup()` pushes the placement until every node acknowledged
            // the commit, then ends the pull. Old order: the pull ended first (the planner is
            // shown every acknowledgement while the pull runs).
            all_acked_commit: all_acked_commit || (rules.old_cleanup_order && target_pulling),
            target_pulling,
            drop: Some(drop),
            room: RoomCheck::Fits,
            target: NAMES[usize::from(mv.tgt)].to_string(),
        }
    }

    /// drive.rs `drive`: one observation, `next_step`, and the start of the step's side effect.
    fn decide(&self, s: &mut State, op: usize, m: usize) -> bool {
        let Some(mv) = s.moves[m] else { return false };
        if mv.phase.is_terminal() {
            return false;
        }
        let obs = self.observed(s, m);
        let step = next_step(&mv.to_state(), &obs);
        let ep = s.sp.epoch;
        let m8 = m as u8;
        let work = match step {
            Step::Persist(next) => {
                // drive.rs `persist`: a CAS write of the ShardMigration status.
                return self.persist(s, op, m, mv, &next);
            }
            Step::Wait { .. } => return false,
            Step::StartPull { copy_attempt, .. } => Work::StartPull {
                m: m8,
                ca: small(u64::from(copy_attempt)),
                ep,
            },
            Step::CancelPull => Work::CancelPull {
                m: m8,
                ca: mv.copy_attempt,
                ep,
                base: mv,
            },
            Step::Cutover { attempt } => Work::Cutover {
                m: m8,
                a: small(u64::from(attempt)),
                ep,
                stage: Cut::Record,
                base: mv,
            },
            Step::RecordAbort { attempt } => Work::RecordAbort {
                m: m8,
                a: small(u64::from(attempt)),
            },
            Step::Unfence { attempt } => Work::Unfence {
                m: m8,
                a: small(u64::from(attempt)),
                ep,
                base: mv,
            },
            Step::EndPull => Work::EndPull {
                m: m8,
                a: mv.attempt,
                ep,
            },
            Step::PushPlacement => {
                return self.sync(s, op);
            }
            Step::DropSource { .. } => {
                Work::Drop(DropCall {
                    m: m8,
                    node: mv.src,
                    a: mv.attempt,
                    ep,
                    // Old: the move's own commit epoch; new: the current committed epoch.
                    ended: if self.rules().old_drop {
                        mv.committed_epoch.unwrap_or(0)
                    } else {
                        ep
                    },
                    then: AfterDrop::Complete,
                    sent: false,
                    done: None,
                    base: mv,
                })
            }
        };
        s.ops[op].work = Some(work);
        true
    }

    /// drive.rs `persist` / `write`: replace_status with the ShardMigration's resourceVersion;
    /// `base` is the state the decision was made from (a changed object fails the write).
    /// Under the new rules a replica whose generation is behind ShardPlacement's does not write.
    fn persist(&self, s: &mut State, op: usize, m: usize, base: Mv, next: &MoveState) -> bool {
        if s.moves[m] != Some(base) || next.attempt > u32::from(self.cfg.max_attempt) {
            return false;
        }
        if !self.rules().old_records && s.sp.leader_gen > s.ops[op].generation {
            return false;
        }
        s.moves[m] = Some(base.with(next));
        true
    }

    /// driver/mod.rs `sync_nodes` (and Step::PushPlacement): push the committed placement to
    /// members that have not acknowledged its epoch.
    fn sync(&self, s: &mut State, _op: usize) -> bool {
        let e = usize::from(s.sp.epoch);
        let before = s.pushes;
        for n in 0..NODES {
            if s.sp.acks[n] < s.sp.epoch {
                s.pushes |= 1 << (n * MAXE + e);
            }
        }
        s.pushes != before
    }

    /// admin/mod.rs `check_caller`: a stale epoch or an attempt older than one seen is refused;
    /// the attempt is remembered.
    fn check_caller(node: &mut Node, m: usize, attempt: u8, epoch: u8) -> bool {
        if !node.up || epoch < node.epoch || node.seen[m] > attempt {
            return false;
        }
        node.seen[m] = attempt;
        true
    }

    /// One step of replica `op`'s in-flight work. Returns false when nothing changed.
    fn exec(&self, s: &mut State, op: usize) -> bool {
        let Some(work) = s.ops[op].work else {
            return false;
        };
        let rules = self.rules();
        match work {
            // admin/handlers.rs `start_pull` + pull.rs `start`.
            Work::StartPull { m, ca, ep } => {
                let mi = usize::from(m);
                s.ops[op].work = None;
                let Some(mv) = s.moves[mi] else { return true };
                let t = usize::from(mv.tgt);
                let r = usize::from(mv.range);
                let node = &mut s.nodes[t];
                if !Self::check_caller(node, mi, ca, ep) || node.owns(t, r) {
                    return true;
                }
                if let Some(cur) = s.pulls[mi] {
                    if cur.attempt == ca && cur.phase.active() {
                        return true;
                    }
                    if cur.attempt > ca {
                        return true;
                    }
                    if !rules.old_pull_restart
                        && cur.attempt == ca
                        && matches!(cur.phase, PullPhase::Cancelled | PullPhase::Completed)
                    {
                        return true;
                    }
                }
                let other_pull = (0..MAXM).any(|o| {
                    o != mi
                        && s.moves[o].is_some_and(|om| {
                            usize::from(om.tgt) == t && usize::from(om.range) == r
                        })
                        && s.pulls[o].is_some_and(|p| p.phase.active())
                });
                // New rule (14): a drop of overlapping ranges in progress excludes the pull.
                let dropping =
                    !rules.old_drop && s.nodes[t].drop.is_some_and(|d| usize::from(d.range) == r);
                if other_pull || dropping {
                    return true;
                }
                s.pulls[mi] = Some(Pull {
                    attempt: ca,
                    phase: PullPhase::Starting,
                    snap: None,
                    snap_lost: false,
                    applied: None,
                    verified: false,
                });
                true
            }
            // drive.rs Step::CancelPull: cancel the pull, then drop the partial copy.
            Work::CancelPull { m, ca, ep, base } => {
                let mi = usize::from(m);
                let mv = base;
                s.ops[op].work = None;
                let t = usize::from(mv.tgt);
                if !self.cancel_pull(s, mi, t, ca, ep) {
                    return true;
                }
                s.ops[op].work = Some(Work::Drop(DropCall {
                    m,
                    node: mv.tgt,
                    a: ca,
                    ep,
                    // Old: `ownership_ended_epoch: 0`; new: the current committed epoch.
                    ended: if rules.old_records { 0 } else { ep },
                    then: AfterDrop::Cancelled,
                    sent: false,
                    done: None,
                    base,
                }));
                true
            }
            Work::EndPull { m, a, ep } => {
                let mi = usize::from(m);
                s.ops[op].work = None;
                if let Some(mv) = s.moves[mi] {
                    self.cancel_pull(s, mi, usize::from(mv.tgt), a, ep);
                }
                true
            }
            Work::Drop(call) => {
                let DropCall {
                    m,
                    node,
                    a,
                    ep,
                    ended,
                    then,
                    sent,
                    done,
                    base,
                } = call;
                let mi = usize::from(m);
                let n = usize::from(node);
                let r = usize::from(base.range);
                match (sent, done) {
                    (false, _) => {
                        // admin/handlers.rs `drop_ranges`: the checks, once.
                        s.ops[op].work = None;
                        let pulling = (0..MAXM).any(|o| {
                            s.moves[o].is_some_and(|om| {
                                usize::from(om.tgt) == n && usize::from(om.range) == r
                            }) && s.pulls[o].is_some_and(|p| p.phase.active())
                        });
                        let nd = &mut s.nodes[n];
                        if !Self::check_caller(nd, mi, a, ep) || nd.epoch < ended {
                            return true;
                        }
                        if nd.owns(n, r) {
                            // ErrorReason::Owned: CancelPull takes it as done.
                            if then == AfterDrop::Cancelled {
                                s.ops[op].work = Some(Work::Drop(DropCall {
                                    sent: true,
                                    done: Some(true),
                                    ..call
                                }));
                            }
                            return true;
                        }
                        if pulling || nd.drop.is_some() {
                            return true;
                        }
                        nd.drop = Some(DropJob {
                            mig: m,
                            range: base.range,
                            waiter: op as u8,
                        });
                        s.ops[op].work = Some(Work::Drop(DropCall { sent: true, ..call }));
                        true
                    }
                    (true, None) => false,
                    (true, Some(ok)) => {
                        s.ops[op].work = None;
                        if ok {
                            let next = match then {
                                AfterDrop::Complete => after_drop(&base.to_state(), 0),
                                AfterDrop::Cancelled => MoveState {
                                    phase: Phase::Cancelled,
                                    ..base.to_state()
                                },
                            };
                            self.persist(s, op, mi, base, &next);
                        }
                        true
                    }
                }
            }
            // drive.rs Step::RecordAbort.
            Work::RecordAbort { m, a } => {
                let mi = usize::from(m);
                s.ops[op].work = None;
                self.edit_sp(s, op, |sp| {
                    if Self::cutover_of(sp, mi, a) == Some(CutoverState::Committed) {
                        return false;
                    }
                    self.set_record(sp, mi, a, CutoverState::Aborted)
                });
                true
            }
            // drive.rs Step::Unfence, then `after_abort`.
            Work::Unfence { m, a, ep, base } => {
                let mi = usize::from(m);
                s.ops[op].work = None;
                if self.unfence(s, mi, usize::from(base.src), a, ep) {
                    let next = after_abort(&base.to_state(), 0, "aborted");
                    self.persist(s, op, mi, base, &next);
                }
                true
            }
            Work::Cutover {
                m,
                a,
                ep,
                stage,
                base,
            } => self.cutover(s, op, usize::from(m), a, ep, stage, base),
        }
    }

    fn set_stage(s: &mut State, op: usize, stage: Cut) {
        if let Some(Work::Cutover { stage: st, .. }) = &mut s.ops[op].work {
            *st = stage;
        }
    }

    /// operator/src/migration/cutover.rs `run` and `abort`, one stage per step.
    #[allow(clippy::too_many_arguments)]
    fn cutover(
        &self,
        s: &mut State,
        op: usize,
        m: usize,
        a: u8,
        ep: u8,
        stage: Cut,
        base: Mv,
    ) -> bool {
        let rules = self.rules();
        let src = usize::from(base.src);
        let tgt = usize::from(base.tgt);
        let r = usize::from(base.range);
        match stage {
            // 1. Record Committing (only while the transfer is still planned).
            Cut::Record => {
                let ok = self.edit_sp(s, op, |sp| {
                    Self::still_planned(sp, &base)
                        && self.set_record(sp, m, a, CutoverState::Committing)
                });
                if ok {
                    Self::set_stage(s, op, Cut::Fence);
                } else {
                    s.ops[op].work = None; // Outcome::NotStarted
                }
                true
            }
            // 2. Fence the source (admin/handlers.rs `fence`, writer Op::Fence).
            Cut::Fence => {
                let node = &mut s.nodes[src];
                let mut f = None;
                if Self::check_caller(node, m, a, ep) && node.owns(src, r) {
                    let released = node.released & (1 << (m * 8 + usize::from(a).min(7))) != 0;
                    match node.fence {
                        Some(x) if usize::from(x.mig) == m && x.attempt == a => f = Some(x.offset),
                        Some(x) if usize::from(x.mig) == m && x.attempt > a => {}
                        _ if !rules.old_records && released => {}
                        _ => {
                            let fence = Fence {
                                mig: m as u8,
                                attempt: a,
                                range: base.range,
                                offset: node.seq,
                            };
                            node.fence = Some(fence);
                            f = Some(fence.offset);
                        }
                    }
                }
                Self::set_stage(
                    s,
                    op,
                    match f {
                        Some(f) => Cut::Drain { f },
                        None => Cut::Abort,
                    },
                );
                true
            }
            // 3. Wait until the target applied up to F (convert.rs `applied_through`).
            Cut::Drain { f } => {
                if !s.nodes[tgt].up {
                    return false;
                }
                let Some(p) = s.pulls[m] else { return false };
                let through = p.applied.is_some_and(|x| x >= f);
                let ok = if rules.old_cutover {
                    through
                } else {
                    // Rule 16: catching up, this move's copy attempt, verified.
                    through
                        && p.phase == PullPhase::CatchingUp
                        && p.attempt == base.copy_attempt
                        && p.verified
                };
                if !ok {
                    return false;
                }
                Self::set_stage(s, op, Cut::Commit);
                true
            }
            // 4. Commit: our record still Committing and the transfer still planned.
            Cut::Commit => {
                let mut epoch = 0;
                let ok = self.edit_sp(s, op, |sp| {
                    if Self::cutover_of(sp, m, a) != Some(CutoverState::Committing)
                        || !Self::still_planned(sp, &base)
                    {
                        return false;
                    }
                    sp.owners[r] = base.tgt;
                    sp.epoch += 1;
                    epoch = sp.epoch;
                    sp.records[m] = Some(Record {
                        attempt: a,
                        state: CutoverState::Committed,
                    });
                    true
                });
                if ok {
                    s.history[usize::from(epoch).min(MAXE - 1)] = s.sp.owners;
                    Self::set_stage(s, op, Cut::PushTarget { e: epoch });
                } else {
                    Self::set_stage(s, op, Cut::Abort);
                }
                true
            }
            // 5. Tell the target first (the others learn it from later pushes).
            Cut::PushTarget { e } => {
                s.pushes |= 1 << (tgt * MAXE + usize::from(e));
                Self::set_stage(s, op, Cut::PersistCommitted { e });
                true
            }
            Cut::PersistCommitted { e } => {
                s.ops[op].work = None;
                let next = MoveState {
                    phase: Phase::Cleanup,
                    committed_epoch: Some(u64::from(e)),
                    committed_at_ms: Some(0),
                    ..base.to_state()
                };
                self.persist(s, op, m, base, &next);
                true
            }
            // `abort`: record Aborted unless committed, then (only then) unfence.
            Cut::Abort => {
                let mut committed = false;
                let ok = self.edit_sp(s, op, |sp| {
                    if Self::cutover_of(sp, m, a) == Some(CutoverState::Committed) {
                        committed = true;
                        return false;
                    }
                    self.set_record(sp, m, a, CutoverState::Aborted)
                });
                if ok {
                    Self::set_stage(s, op, Cut::Unfence);
                } else {
                    s.ops[op].work = None; // Err: rolling forward / conflict
                }
                true
            }
            Cut::Unfence => {
                if self.unfence(s, m, src, a, ep) {
                    Self::set_stage(s, op, Cut::PersistAborted);
                } else {
                    s.ops[op].work = None;
                }
                true
            }
            Cut::PersistAborted => {
                s.ops[op].work = None;
                let next = after_abort(&base.to_state(), 0, "aborted");
                self.persist(s, op, m, base, &next);
                true
            }
        }
    }

    /// admin/handlers.rs `unfence` + writer Op::Unfence (new rules: the attempt is recorded as
    /// released, and a later fence for it is refused).
    fn unfence(&self, s: &mut State, m: usize, n: usize, a: u8, ep: u8) -> bool {
        let node = &mut s.nodes[n];
        if !Self::check_caller(node, m, a, ep) {
            return false;
        }
        match node.fence {
            Some(f) if usize::from(f.mig) == m && f.attempt != a => return false,
            Some(f) if usize::from(f.mig) == m => node.fence = None,
            _ => {}
        }
        if !self.rules().old_records {
            node.released |= 1 << (m * 8 + usize::from(a).min(7));
        }
        true
    }

    /// admin/handlers.rs `cancel_pull` + pull.rs `cancel` (NotFound counts as done).
    fn cancel_pull(&self, s: &mut State, m: usize, t: usize, a: u8, ep: u8) -> bool {
        if !Self::check_caller(&mut s.nodes[t], m, a, ep) {
            return false;
        }
        match &mut s.pulls[m] {
            None => true,
            Some(p) if p.attempt > a => false,
            Some(p) => {
                p.phase = PullPhase::Cancelled;
                true
            }
        }
    }

    /// driver/mod.rs `round` (plan part): a re-plan for a changed desired ring, written first
    /// (epoch + 1), else the ShardMigrations the change needs.
    fn plan(&self, s: &mut State, op: usize) -> bool {
        let nr = self.cfg.ranges();
        if s.desired[..nr] != s.sp.target[..nr] {
            let desired = s.desired;
            let mut epoch = 0;
            let ok = self.edit_sp(s, op, |sp| {
                sp.target = desired;
                sp.epoch += 1;
                epoch = sp.epoch;
                true
            });
            if ok {
                s.history[usize::from(epoch).min(MAXE - 1)] = s.sp.owners;
            }
            return ok;
        }
        // create_moves: one per pending transfer without a live move.
        for r in 0..nr {
            let (src, tgt) = (s.sp.owners[r], s.sp.target[r]);
            if src == tgt {
                continue;
            }
            let live = s.moves.iter().flatten().any(|mv| {
                usize::from(mv.range) == r
                    && mv.src == src
                    && mv.tgt == tgt
                    && !mv.phase.is_terminal()
            });
            if live {
                continue;
            }
            if let Some(slot) = s.moves.iter().position(Option::is_none) {
                s.moves[slot] = Some(Mv {
                    range: r as u8,
                    src,
                    tgt,
                    phase: Phase::Pending,
                    attempt: 0,
                    copy_attempt: 0,
                    committed_epoch: None,
                });
                return true;
            }
        }
        false
    }

    /// node/src/placement.rs `install`: a higher epoch replaces the placement; fences of ranges
    /// it moves away are lifted. The driver records the acknowledgement (`record_acks`).
    fn deliver(&self, s: &mut State, n: usize, e: usize) -> bool {
        let bit = 1 << (n * MAXE + e);
        if s.pushes & bit == 0 || !s.nodes[n].up {
            return false;
        }
        s.pushes &= !bit;
        let e8 = e as u8;
        let owners = s.history[e];
        let node = &mut s.nodes[n];
        if e8 > node.epoch {
            node.epoch = e8;
            node.owners = owners;
            if let Some(f) = node.fence
                && usize::from(owners[usize::from(f.range)]) != n
            {
                node.fence = None;
            }
        }
        if e8 == node.epoch && s.sp.acks[n] < e8 {
            s.sp.acks[n] = e8;
        }
        true
    }

    /// One step of the pull of move `m` (pull.rs `Puller::run`: begin, copy, verify, catch_up).
    fn pull_step(&self, s: &mut State, m: usize) -> bool {
        let rules = self.rules();
        let (Some(mv), Some(mut p)) = (s.moves[m], s.pulls[m]) else {
            return false;
        };
        let t = usize::from(mv.tgt);
        let src = usize::from(mv.src);
        let r = usize::from(mv.range);
        if !s.nodes[t].up {
            return false;
        }
        let owned = s.nodes[t].owns(t, r);
        match p.phase {
            // `begin`: refuse owned ranges, clear them (a logged clear) and open the source's
            // snapshot. The published status keeps Starting (and, old rule, the old applied
            // offset) until the snapshot is open. New rule: the snapshot first.
            PullPhase::Starting => {
                if owned {
                    p.phase = PullPhase::Failed;
                } else if rules.old_begin_order {
                    s.nodes[t].clear(r);
                    p.phase = PullPhase::Begun;
                } else {
                    let so = &s.nodes[src];
                    if !so.up || !so.owns(src, r) || so.fenced(r) {
                        return false;
                    }
                    p.snap = Some((so.seq, so.data[r]));
                    p.snap_lost = false;
                    p.phase = PullPhase::Begun;
                }
            }
            PullPhase::Begun => {
                if owned {
                    p.phase = PullPhase::Failed;
                    s.pulls[m] = Some(p);
                    return true;
                }
                if rules.old_begin_order {
                    let so = &s.nodes[src];
                    if !so.up {
                        return false;
                    }
                    p.snap = Some((so.seq, so.data[r]));
                    p.snap_lost = false;
                } else {
                    s.nodes[t].clear(r);
                }
                p.applied = None;
                p.verified = false;
                p.phase = PullPhase::Copying;
            }
            // Bulk ingestion; the writer's guard refuses owned ranges (Stop::Owned).
            PullPhase::Copying => {
                if owned {
                    p.phase = PullPhase::Completed;
                } else {
                    s.nodes[t].data[r] = p.snap.map_or(0, |x| x.1);
                    p.phase = PullPhase::Verifying;
                }
            }
            // Checksums at the snapshot offset; a lost snapshot session means Recopy.
            PullPhase::Verifying => {
                if !s.nodes[src].up {
                    return false;
                }
                let (off, val) = p.snap.unwrap_or((0, 0));
                if p.snap_lost {
                    p.phase = PullPhase::Starting;
                } else if s.nodes[t].data[r] == val {
                    p.verified = true;
                    p.applied = Some(off);
                    p.phase = PullPhase::CatchingUp;
                } else {
                    p.phase = PullPhase::Failed;
                }
            }
            // Tail the source's log after `applied` (post-images: the range's last record is
            // the source's current value of its key).
            PullPhase::CatchingUp => {
                let so = &s.nodes[src];
                let applied = p.applied.unwrap_or(0);
                if !so.up {
                    return false;
                }
                if !rules.old_tail_unowned && !so.owns(src, r) {
                    // Refused: the puller retries (and keeps excluding drops) until it is
                    // ended.
                    return false;
                }
                if so.seq == applied {
                    return false;
                }
                let (head, changed, val) = (so.seq, so.last[r] > applied, so.data[r]);
                if changed {
                    if owned {
                        p.phase = PullPhase::Completed;
                        s.pulls[m] = Some(p);
                        return true;
                    }
                    s.nodes[t].data[r] = val;
                }
                p.applied = Some(head);
            }
            _ => return false,
        }
        s.pulls[m] = Some(p);
        true
    }
}

impl Ringshift {
    /// A drop's clear (the unlogged chunks and the last, logged clear; one key per range makes
    /// them one step). The writer's Op::Clear refuses ranges the node owns (both rules); the
    /// answer goes to the waiting replica.
    fn drop_clear(&self, s: &mut State, n: usize) -> bool {
        let Some(job) = s.nodes[n].drop else {
            return false;
        };
        if !s.nodes[n].up {
            return false;
        }
        let r = usize::from(job.range);
        let node = &mut s.nodes[n];
        node.drop = None;
        let ok = !node.owns(n, r);
        if ok {
            node.clear(r);
        }
        Self::answer_drop(s, job, ok);
        true
    }

    fn answer_drop(s: &mut State, job: DropJob, ok: bool) {
        if let Some(Work::Drop(call)) = &mut s.ops[usize::from(job.waiter)].work
            && call.m == job.mig
            && call.sent
            && call.done.is_none()
        {
            call.done = Some(ok);
        }
    }

    fn crash(&self, s: &mut State, n: usize) -> bool {
        if !s.nodes[n].up || s.budget.crashes == 0 {
            return false;
        }
        s.budget.crashes -= 1;
        s.nodes[n].up = false;
        if let Some(job) = s.nodes[n].drop.take() {
            Self::answer_drop(s, job, false);
        }
        // Snapshot sessions live in the source's memory.
        for m in 0..MAXM {
            if let (Some(mv), Some(p)) = (s.moves[m], &mut s.pulls[m])
                && usize::from(mv.src) == n
                && matches!(p.phase, PullPhase::Copying | PullPhase::Verifying)
            {
                p.snap_lost = true;
            }
        }
        true
    }

    fn step(&self, s: &mut State, a: Action) -> bool {
        let rules = self.rules();
        match a {
            Action::ScaleIn => {
                s.scaled_in = true;
                s.desired = arr(&self.cfg.initial);
                true
            }
            Action::Acquire(op) => {
                let op = usize::from(op);
                s.budget.leader_changes -= 1;
                s.lease_holder = op as u8;
                s.lease_transitions += 1;
                s.ops[op] = Op {
                    leader: true,
                    generation: s.lease_transitions,
                    work: None,
                };
                true
            }
            Action::StepDown(op) => {
                let o = &mut s.ops[usize::from(op)];
                o.leader = false;
                if !rules.old_records {
                    // New rule 13: in-flight work is cancelled with the leadership.
                    o.work = None;
                }
                true
            }
            Action::Plan(op) => self.plan(s, usize::from(op)),
            Action::Sync(op) => self.sync(s, usize::from(op)),
            Action::Decide(op, m) => self.decide(s, usize::from(op), usize::from(m)),
            Action::Exec(op) => self.exec(s, usize::from(op)),
            Action::DrainTimeout(op) => {
                s.budget.drain_timeouts -= 1;
                Self::set_stage(s, usize::from(op), Cut::Abort);
                true
            }
            Action::Deliver(n, e) => self.deliver(s, usize::from(n), usize::from(e)),
            Action::LosePush(n, e) => {
                s.budget.push_losses -= 1;
                s.pushes &= !(1 << (usize::from(n) * MAXE + usize::from(e)));
                true
            }
            Action::PullStep(m) => self.pull_step(s, usize::from(m)),
            Action::Recopy(m) => {
                s.budget.recopies -= 1;
                let Some(p) = &mut s.pulls[usize::from(m)] else {
                    return false;
                };
                // pull.rs `run`, Stop::Recopy: back to Starting. Old: the published status
                // keeps the old applied offset (and verification) until `begin` ends.
                p.phase = PullPhase::Starting;
                if !rules.old_cutover {
                    p.applied = None;
                    p.verified = false;
                }
                true
            }
            Action::TailError(m) => {
                // pull.rs `catch_up`: old rule publishes the new offset although the apply
                // failed (finding 3).
                s.budget.storage_errors -= 1;
                let mi = usize::from(m);
                let (Some(mv), Some(p)) = (s.moves[mi], &mut s.pulls[mi]) else {
                    return false;
                };
                p.applied = Some(s.nodes[usize::from(mv.src)].seq);
                true
            }
            Action::DropClear(n) => self.drop_clear(s, usize::from(n)),
            Action::Crash(n) => self.crash(s, usize::from(n)),
            Action::Restart(n) => {
                s.nodes[usize::from(n)].up = true;
                true
            }
            Action::Write(r) => {
                let c = &mut s.clients[usize::from(r)];
                c.issued += 1;
                c.pending = Some(c.issued);
                true
            }
            Action::Apply(r, n) => {
                let (r, n) = (usize::from(r), usize::from(n));
                let Some(v) = s.clients[r].pending.take() else {
                    return false;
                };
                let node = &mut s.nodes[n];
                node.data[r] = v;
                node.seq += 1;
                node.last[r] = node.seq;
                s.clients[r].acked = s.clients[r].acked.max(v);
                true
            }
            Action::WriteError(r, _) => {
                s.budget.storage_errors -= 1;
                s.clients[usize::from(r)].pending = None;
                true
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Invariants
    // -----------------------------------------------------------------------------------------

    /// (a) Every acknowledged write's value, or a later one, is held by the range's owner at
    /// the committed epoch.
    pub fn no_lost_write(&self, s: &State) -> bool {
        (0..self.cfg.ranges()).all(|r| {
            let owner = usize::from(s.sp.owners[r]);
            s.nodes[owner].data[r] >= s.clients[r].acked
        })
    }

    /// (b) At most one member accepts writes for a range at any moment.
    pub fn one_writer(&self, s: &State) -> bool {
        (0..self.cfg.ranges()).all(|r| (0..NODES).filter(|&n| s.nodes[n].serves(n, r)).count() <= 1)
    }

    /// (c) A read (one atomic step at whichever member serves it now) never returns a value
    /// older than the last acknowledged write.
    pub fn no_stale_read(&self, s: &State) -> bool {
        (0..self.cfg.ranges()).all(|r| {
            (0..NODES)
                .filter(|&n| s.nodes[n].serves(n, r))
                .all(|n| s.nodes[n].data[r] >= s.clients[r].acked)
        })
    }
}

/// Names of the three properties.
pub const LOST_WRITE: &str = "no acknowledged write lost";
pub const TWO_WRITERS: &str = "at most one member accepts writes for a hash";
pub const STALE_READ: &str = "no read older than the last acknowledged write";

impl Model for Ringshift {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial()]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        let rules = self.rules();
        if self.cfg.scale_in && !s.scaled_in {
            out.push(Action::ScaleIn);
        }
        for (i, op) in s.ops.iter().enumerate() {
            let i8 = i as u8;
            if s.budget.leader_changes > 0 && usize::from(s.lease_holder) != i && !op.leader {
                out.push(Action::Acquire(i8));
            }
            if op.leader && usize::from(s.lease_holder) != i {
                out.push(Action::StepDown(i8));
            }
            match op.work {
                Some(w) => {
                    out.push(Action::Exec(i8));
                    if s.budget.drain_timeouts > 0
                        && matches!(
                            w,
                            Work::Cutover {
                                stage: Cut::Drain { .. },
                                ..
                            }
                        )
                    {
                        out.push(Action::DrainTimeout(i8));
                    }
                }
                None if op.leader => {
                    out.push(Action::Plan(i8));
                    out.push(Action::Sync(i8));
                    for (m, mv) in s.moves.iter().enumerate() {
                        if mv.is_some_and(|mv| !mv.phase.is_terminal()) {
                            out.push(Action::Decide(i8, m as u8));
                        }
                    }
                }
                None => {}
            }
        }
        for n in 0..NODES {
            for e in 0..MAXE {
                if s.pushes & (1 << (n * MAXE + e)) != 0 {
                    out.push(Action::Deliver(n as u8, e as u8));
                    if s.budget.push_losses > 0 {
                        out.push(Action::LosePush(n as u8, e as u8));
                    }
                }
            }
        }
        for m in 0..MAXM {
            let (Some(mv), Some(p)) = (s.moves[m], s.pulls[m]) else {
                continue;
            };
            if !p.phase.active() {
                continue;
            }
            out.push(Action::PullStep(m as u8));
            if p.phase == PullPhase::CatchingUp && s.nodes[usize::from(mv.tgt)].up {
                if s.budget.recopies > 0 {
                    out.push(Action::Recopy(m as u8));
                }
                let so = &s.nodes[usize::from(mv.src)];
                if rules.old_tail
                    && s.budget.storage_errors > 0
                    && so.up
                    && so.seq > p.applied.unwrap_or(0)
                {
                    out.push(Action::TailError(m as u8));
                }
            }
        }
        for (n, node) in s.nodes.iter().enumerate() {
            let n8 = n as u8;
            if node.up && node.drop.is_some() {
                out.push(Action::DropClear(n8));
            }
            if node.up && s.budget.crashes > 0 {
                out.push(Action::Crash(n8));
            }
            if !node.up {
                out.push(Action::Restart(n8));
            }
        }
        for r in 0..self.cfg.ranges() {
            let c = s.clients[r];
            match c.pending {
                None if c.issued < self.cfg.writes[r] => out.push(Action::Write(r as u8)),
                None => {}
                Some(_) => {
                    for n in 0..NODES {
                        if s.nodes[n].serves(n, r) {
                            out.push(Action::Apply(r as u8, n as u8));
                            if s.budget.storage_errors > 0 {
                                out.push(Action::WriteError(r as u8, n as u8));
                            }
                        }
                    }
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        if self.step(&mut s, action) && s != *last {
            Some(s)
        } else {
            None
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(LOST_WRITE, |m: &Ringshift, s: &State| m.no_lost_write(s)),
            Property::always(TWO_WRITERS, |m: &Ringshift, s: &State| m.one_writer(s)),
            Property::always(STALE_READ, |m: &Ringshift, s: &State| m.no_stale_read(s)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Traces and runs
// ---------------------------------------------------------------------------------------------

fn name(n: u8) -> char {
    NAMES.get(usize::from(n)).copied().unwrap_or('?')
}

impl Ringshift {
    /// One line for an action, in the words of the protocol.
    pub fn describe(&self, s: &State, a: Action) -> String {
        let mv = |m: u8| {
            s.moves[usize::from(m)]
                .map(|mv| {
                    format!(
                        "M{}(R{} {}->{})",
                        m + 1,
                        mv.range,
                        name(mv.src),
                        name(mv.tgt)
                    )
                })
                .unwrap_or_default()
        };
        match a {
            Action::ScaleIn => "user scales back in".into(),
            Action::Acquire(o) => format!(
                "op{o} takes the lease (generation {})",
                s.lease_transitions + 1
            ),
            Action::StepDown(o) => format!("op{o} notices it lost the lease"),
            Action::Plan(o) => format!("op{o} plans (re-plan or create moves)"),
            Action::Sync(o) => format!("op{o} pushes epoch {} to members behind", s.sp.epoch),
            Action::Decide(o, m) => {
                let step = next_step(
                    &s.moves[usize::from(m)].expect("move").to_state(),
                    &self.observed(s, usize::from(m)),
                );
                let step = match step {
                    Step::Persist(n) => format!("persist {:?} attempt {}", n.phase, n.attempt),
                    other => format!("{other:?}"),
                };
                format!("op{o} {}: {step}", mv(m))
            }
            Action::Exec(o) => format!("op{o} {}", self.describe_work(s, usize::from(o))),
            Action::DrainTimeout(o) => format!("op{o} cutover drain runs past the budget"),
            Action::Deliver(n, e) => format!("push of epoch {e} reaches {}", name(n)),
            Action::LosePush(n, e) => format!("push of epoch {e} to {} is lost", name(n)),
            Action::PullStep(m) => {
                let p = s.pulls[usize::from(m)].expect("pull");
                format!(
                    "{} pull on {} steps from {:?}",
                    mv(m),
                    name(s.moves[usize::from(m)].expect("move").tgt),
                    p.phase
                )
            }
            Action::Recopy(m) => format!("{} pull restarts its copy (Recopy)", mv(m)),
            Action::TailError(m) => format!("{} catch-up apply fails (storage error)", mv(m)),
            Action::DropClear(n) => {
                let j = s.nodes[usize::from(n)].drop.expect("drop");
                format!("{} drop of R{} ({}) clears", name(n), j.range, mv(j.mig))
            }
            Action::Crash(n) => format!("{} crashes", name(n)),
            Action::Restart(n) => format!("{} restarts", name(n)),
            Action::Write(r) => format!(
                "client writes R{r} v{}",
                s.clients[usize::from(r)].issued + 1
            ),
            Action::Apply(r, n) => format!(
                "{} applies and acks R{r} v{}",
                name(n),
                s.clients[usize::from(r)].pending.unwrap_or(0)
            ),
            Action::WriteError(r, n) => format!("{} fails R{r} write (storage error)", name(n)),
        }
    }

    fn describe_work(&self, s: &State, op: usize) -> String {
        match s.ops[op].work {
            None => "(idle)".into(),
            Some(Work::StartPull { m, ca, .. }) => {
                format!("M{} StartPull copy attempt {ca}", m + 1)
            }
            Some(Work::CancelPull { m, .. }) => format!("M{} CancelPull", m + 1),
            Some(Work::EndPull { m, .. }) => format!("M{} EndPull", m + 1),
            Some(Work::RecordAbort { m, a }) => format!("M{} records Aborted({a})", m + 1),
            Some(Work::Unfence { m, a, .. }) => format!("M{} unfences attempt {a}", m + 1),
            Some(Work::Drop(c)) => format!(
                "M{} drop on {} (epoch {}): {}",
                c.m + 1,
                name(c.node),
                c.ended,
                match (c.sent, c.done) {
                    (false, _) => "send",
                    (true, None) => "waiting",
                    (true, Some(true)) => "done, persist",
                    (true, Some(false)) => "failed",
                }
            ),
            Some(Work::Cutover { m, a, stage, .. }) => {
                format!("M{} cutover attempt {a}: {stage:?}", m + 1)
            }
        }
    }

    /// A compact picture of the state for traces.
    pub fn summary(&self, s: &State) -> String {
        let nr = self.cfg.ranges();
        let mut out = String::new();
        let owners = |o: &[u8; MAXR]| o[..nr].iter().map(|&n| name(n)).collect::<String>();
        let _ = write!(
            out,
            "SP e{} owners {} target {} gen {} rec [",
            s.sp.epoch,
            owners(&s.sp.owners),
            owners(&s.sp.target),
            s.sp.leader_gen
        );
        for (m, r) in s.sp.records.iter().enumerate() {
            if let Some(r) = r {
                let _ = write!(out, " M{}:{:?}({})", m + 1, r.state, r.attempt);
            }
        }
        out.push_str(" ] moves [");
        for (m, mv) in s.moves.iter().enumerate() {
            if let Some(mv) = mv {
                let _ = write!(
                    out,
                    " M{}:{:?}/a{}/c{}",
                    m + 1,
                    mv.phase,
                    mv.attempt,
                    mv.copy_attempt
                );
            }
        }
        out.push_str(" ] nodes [");
        for (n, node) in s.nodes.iter().enumerate() {
            let _ = write!(
                out,
                " {}{}:e{} data {:?}{}",
                NAMES[n],
                if node.up { "" } else { "(down)" },
                node.epoch,
                &node.data[..nr],
                node.fence
                    .map(|f| format!(" fence M{}({})@{}", f.mig + 1, f.attempt, f.offset))
                    .unwrap_or_default()
            );
        }
        out.push_str(" ] pulls [");
        for (m, p) in s.pulls.iter().enumerate() {
            if let Some(p) = p {
                let _ = write!(
                    out,
                    " M{}:{:?}/c{} applied {:?}{}",
                    m + 1,
                    p.phase,
                    p.attempt,
                    p.applied,
                    if p.verified { " verified" } else { "" }
                );
            }
        }
        let _ = write!(
            out,
            " ] acked {:?}",
            s.clients[..nr].iter().map(|c| c.acked).collect::<Vec<_>>()
        );
        out
    }

    /// A counterexample path as numbered lines: each action, then the state it led to.
    pub fn trace(&self, path: &[(State, Option<Action>)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "    init: {}", self.summary(&path[0].0));
        for (i, w) in path.windows(2).enumerate() {
            let (before, Some(a)) = (&w[0].0, w[0].1) else {
                continue;
            };
            let _ = writeln!(out, "{:>3}. {}", i + 1, self.describe(before, a));
            let _ = writeln!(out, "       {}", self.summary(&w[1].0));
        }
        out
    }
}

/// The outcome of one exhaustive check.
pub struct Report {
    pub unique_states: usize,
    pub states: usize,
    pub max_depth: usize,
    pub elapsed: std::time::Duration,
    /// Violated property and the trace that reaches it.
    pub violation: Option<(&'static str, String)>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} unique states ({} generated), depth {}, {:.1} s",
            self.unique_states,
            self.states,
            self.max_depth,
            self.elapsed.as_secs_f64()
        )?;
        if let Some((p, t)) = &self.violation {
            write!(f, "\nVIOLATED: {p}\n{t}")?;
        }
        Ok(())
    }
}

/// Checks every reachable state of `cfg` (breadth first, so a counterexample is a shortest
/// one); stops at the first violation. One checker thread: the search order, and so the
/// counterexample found, is the same on every run.
pub fn check(cfg: Config) -> Report {
    check_with(cfg, 1)
}

/// [`check`] with `threads` checker threads (faster on a large configuration; which of
/// several shortest counterexamples is found may then vary).
pub fn check_with(cfg: Config, threads: usize) -> Report {
    check_capped(cfg, threads, None)
}

/// [`check_with`], stopping after about `cap` generated states (then the check is not
/// exhaustive: for sizing configurations only).
pub fn check_capped(cfg: Config, threads: usize, cap: Option<usize>) -> Report {
    let started = std::time::Instant::now();
    let model = Ringshift::new(cfg);
    let mut builder = model
        .checker()
        .threads(threads)
        .finish_when(stateright::HasDiscoveries::AnyFailures);
    if let Some(cap) = cap {
        builder = builder.target_state_count(cap);
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = started.elapsed();
    let model = checker.model();
    let violation = [LOST_WRITE, TWO_WRITERS, STALE_READ]
        .into_iter()
        .find_map(|p| {
            checker
                .discovery(p)
                .map(|path| (p, model.trace(&path.into_vec())))
        });
    Report {
        unique_states: checker.unique_state_count(),
        states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        violation,
    }
}
