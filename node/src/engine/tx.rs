//! A transaction (MULTI ... EXEC) as one writer request: its commands are evaluated in order
//! under the writer lock, as one operation with one undo record, so no other client's write
//! lands between them and their writes commit in one group commit, all or none.
//!
//! Why one request instead of holding the writer lock across the commands: the lock is a
//! plain mutex held only while evaluating (never across an await or an fsync), and every
//! write, fence and install is checked against ownership inside it. Evaluating the whole
//! transaction there keeps those properties (a fence cannot cut a transaction in half; the
//! WATCH check, the ownership check and the writes see one state) at the cost of evaluating
//! the transaction's reads in the writer too, against the batch view, so they see the
//! transaction's own earlier writes.

use super::ops::{DataCmd, DataReply};
use super::view::KeyView;

/// A queued read, answered with its RESP reply from the view it is given.
pub type TxRead = Box<dyn FnOnce(&dyn KeyView) -> Vec<u8> + Send>;

pub enum TxItem {
    Write(DataCmd),
    Read(TxRead),
    /// FLUSHALL / FLUSHDB: clears the ranges this node owns.
    Flush,
}

pub enum TxReply {
    Data(DataReply),
    /// A read's (or a refused flush's) RESP reply as is.
    Raw(Vec<u8>),
}

/// A key a connection watches: the writer's clock when WATCH ran and whether the key was live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedKey {
    pub key: Vec<u8>,
    pub stamp: u64,
    pub live: bool,
}

pub struct Transaction {
    pub items: Vec<TxItem>,
    /// Every key the items touch: all must be served here, else nothing is applied.
    pub keys: Vec<Vec<u8>>,
    pub watched: Vec<WatchedKey>,
    /// A forwarded transaction's coordinator deadline (unix ms): refused unapplied at or
    /// after it.
    pub deadline_ms: Option<u64>,
}
