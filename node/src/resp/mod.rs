//! The Redis protocol (RESP2): request parsing (multibulk and inline) and reply encoding.

pub mod parse;
pub mod reply;
pub mod resp3;
pub mod resp3_scores;
