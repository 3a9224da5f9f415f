//! Load generator with a checker: many clients write unique versioned values through any node
//! and read them back; every acknowledged write must survive (issue 8).

pub mod checker;
pub mod collections;
pub mod driver;
pub mod split_brain;
pub mod stats;

pub use checker::{Ledger, Violation};
pub use collections::{Kind, parse_mix};
pub use driver::{Addrs, LoadConfig, Outcomes, Report, StopFlag, drive, finish, run};
pub use stats::{Stats, StatsSnapshot};
