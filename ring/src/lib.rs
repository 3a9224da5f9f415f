//! Consistent-hash ring for ringshift: the pure core (no I/O).
//!
//! * [`key_hash`] hashes a key (XXH3-64, seed 0, over its Redis hash tag [`hash_tag`]).
//! * A [`RingSpec`] is a ring as its membership history (algorithm version, vnodes, ops);
//!   [`RingSpec::build`] replays it into a [`Ring`] (tokens; owner of hash `h` = member of the
//!   first token `>= h`, wrapping). The token allocation is described in the `alloc` module and
//!   in the crate README. A [`Replay`] keeps the replayed state so that a spec grown by a few
//!   ops costs only those ops.
//! * An [`OwnerMap`] partitions the hash space into maximal inclusive [`HashRange`]s;
//!   [`diff`] turns two owner maps into [`Transfer`]s.
//! * A [`Placement`] is the ring in transition (base, overlay, target, committed transfers) that
//!   the operator stores and nodes enforce.
//!
//! All 64-bit values are decimal strings in JSON ([`serde_u64`]).
//!
//! Deviations from the first API sketch: [`Placement::current`] and friends return `Result`
//! (a placement read from JSON may hold a spec that does not build); the placement overlay is
//! stored grouped per owner with compact range strings
//! (`overlay: [{owner, ranges: "start-end,..."}]`) and committed transfers grouped per source
//! (`committed: [{source, targets}]`) to keep the JSON of a 1000-member change small.

mod alloc;
mod diff;
mod error;
mod hash;
mod load_order;
mod member_ranges;
mod owner_map;
mod placement;
mod range;
mod replay;
mod ring;
pub mod serde_u64;
mod spec;
mod token_list;

pub use diff::{Transfer, diff};
pub use error::{Error, Result};
pub use hash::{hash_tag, key_hash};
pub use owner_map::OwnerMap;
pub use placement::{CommittedTransfer, OverlayEntry, Placement, ResolvedPlacement};
pub use range::{FULL_SPAN, HashRange, RangeSet, compact as range_set_compact};
pub use replay::Replay;
pub use ring::{Balance, Ring};
pub use spec::{ALGORITHMS, CURRENT_ALGORITHM, MAX_VNODES, Member, RingOp, RingSpec};
