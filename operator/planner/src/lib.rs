//! The pure core of ringshift's migration driver: which moves a ring change needs, which may
//! start, what each move does next, and when membership may shrink. No I/O, no clock (the
//! caller passes `now`), no Kubernetes types: the operator maps its custom resources to these
//! views, carries out the returned steps, and persists phases before their side effects.

pub mod approval;
pub mod eta;
pub mod membership;
pub mod moves;
pub mod phase;
pub mod room;

pub use approval::plan_hash;
pub use moves::{MoveSpec, MoveView, Plan, Policy, plan};
pub use phase::{
    CutoverState, MoveState, Observed, Phase, PullView, Step, TransferState, next_step,
};
