//! Change log records (post-images) and the pure tail logic: filter by hash ranges and advance a
//! watermark past filtered records so a reader can tell it has seen everything up to an offset.

use crate::keys::split_storage_key;
use ringshift_ring::{HashRange, RangeSet};

/// What a log record says happened. Post-images: replaying a record sets the key to its
/// resulting state, so replay is idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOp {
    /// Key (as storage key) now holds `value`, expiring at `expires_at` (unix ms); `typed`: the
    /// value is a collection's metadata record (see `engine::collection`), not a string.
    Put {
        skey: Vec<u8>,
        value: Vec<u8>,
        expires_at: Option<u64>,
        typed: bool,
    },
    /// Key (as storage key) no longer exists (delete or expiry).
    Del { skey: Vec<u8> },
    /// A collection element (sub-key, see `engine::collection`) now holds `value`.
    SubPut { skey: Vec<u8>, value: Vec<u8> },
    /// A collection element no longer exists.
    SubDel { skey: Vec<u8> },
    /// Every key with a hash in the range was removed (drop or clear before copy).
    ClearRange { range: HashRange },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub ts_ms: u64,
    pub op: LogOp,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("log record truncated")]
    Truncated,
    #[error("unknown log record tag {0}")]
    UnknownTag(u8),
}

const TAG_PUT: u8 = 1;
const TAG_DEL: u8 = 2;
const TAG_CLEAR: u8 = 3;
const TAG_SUB_PUT: u8 = 4;
const TAG_SUB_DEL: u8 = 5;

/// Encodes a put record without building a [`LogRecord`] (writer hot path). `exp_word` is the
/// stored expiry word (`keys::Stored::expiry_word`: expiry ms, top bit = typed metadata).
pub fn encode_put(ts_ms: u64, skey: &[u8], value: &[u8], exp_word: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(put_len(skey, value));
    put_into(&mut out, ts_ms, skey, value, exp_word);
    out
}

/// Encodes a sub-key put (`SubPut`) or, with `value` None, a sub-key delete (`SubDel`).
pub fn encode_sub(ts_ms: u64, skey: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(sub_len(skey, value));
    sub_into(&mut out, ts_ms, skey, value);
    out
}

fn sub_len(skey: &[u8], value: Option<&[u8]>) -> usize {
    match value {
        Some(v) => 8 + 1 + 4 + skey.len() + v.len(),
        None => 8 + 1 + skey.len(),
    }
}

fn sub_into(out: &mut Vec<u8>, ts_ms: u64, skey: &[u8], value: Option<&[u8]>) {
    out.extend_from_slice(&ts_ms.to_be_bytes());
    match value {
        Some(v) => {
            out.push(TAG_SUB_PUT);
            out.extend_from_slice(&(skey.len() as u32).to_be_bytes());
            out.extend_from_slice(skey);
            out.extend_from_slice(v);
        }
        None => {
            out.push(TAG_SUB_DEL);
            out.extend_from_slice(skey);
        }
    }
}

fn put_len(skey: &[u8], value: &[u8]) -> usize {
    8 + 1 + 4 + skey.len() + 8 + value.len()
}

fn put_into(out: &mut Vec<u8>, ts_ms: u64, skey: &[u8], value: &[u8], exp_word: u64) {
    out.extend_from_slice(&ts_ms.to_be_bytes());
    out.push(TAG_PUT);
    out.extend_from_slice(&(skey.len() as u32).to_be_bytes());
    out.extend_from_slice(skey);
    out.extend_from_slice(&exp_word.to_be_bytes());
    out.extend_from_slice(value);
}

/// Encodes a delete record.
pub fn encode_del(ts_ms: u64, skey: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + skey.len());
    out.extend_from_slice(&ts_ms.to_be_bytes());
    out.push(TAG_DEL);
    out.extend_from_slice(skey);
    out
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.ts_ms.to_be_bytes());
        match &self.op {
            LogOp::Put {
                skey,
                value,
                expires_at,
                typed,
            } => {
                let word = crate::keys::expiry_word(*expires_at, *typed);
                return encode_put(self.ts_ms, skey, value, word);
            }
            LogOp::Del { skey } => return encode_del(self.ts_ms, skey),
            LogOp::SubPut { skey, value } => return encode_sub(self.ts_ms, skey, Some(value)),
            LogOp::SubDel { skey } => return encode_sub(self.ts_ms, skey, None),
            LogOp::ClearRange { range } => {
                out.push(TAG_CLEAR);
                out.extend_from_slice(&range.start.to_be_bytes());
                out.extend_from_slice(&range.end.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(raw: &[u8]) -> Result<LogRecord, DecodeError> {
        let (ts, rest) = raw.split_at_checked(8).ok_or(DecodeError::Truncated)?;
        let ts_ms = be_u64(ts)?;
        let (&tag, body) = rest.split_first().ok_or(DecodeError::Truncated)?;
        let op = match tag {
            TAG_PUT => {
                let (len, body) = body.split_at_checked(4).ok_or(DecodeError::Truncated)?;
                let len = u32::from_be_bytes(len.try_into().map_err(|_| DecodeError::Truncated)?);
                let (skey, body) = body
                    .split_at_checked(len as usize)
                    .ok_or(DecodeError::Truncated)?;
                let (exp, value) = body.split_at_checked(8).ok_or(DecodeError::Truncated)?;
                let (expires_at, typed) = crate::keys::split_expiry_word(be_u64(exp)?);
                LogOp::Put {
                    skey: skey.to_vec(),
                    value: value.to_vec(),
                    expires_at,
                    typed,
                }
            }
            TAG_DEL => LogOp::Del {
                skey: body.to_vec(),
            },
            TAG_SUB_PUT => {
                let (len, body) = body.split_at_checked(4).ok_or(DecodeError::Truncated)?;
                let len = u32::from_be_bytes(len.try_into().map_err(|_| DecodeError::Truncated)?);
                let (skey, value) = body
                    .split_at_checked(len as usize)
                    .ok_or(DecodeError::Truncated)?;
                LogOp::SubPut {
                    skey: skey.to_vec(),
                    value: value.to_vec(),
                }
            }
            TAG_SUB_DEL => LogOp::SubDel {
                skey: body.to_vec(),
            },
            TAG_CLEAR => {
                let (s, e) = body.split_at_checked(8).ok_or(DecodeError::Truncated)?;
                LogOp::ClearRange {
                    range: HashRange {
                        start: be_u64(s)?,
                        end: be_u64(e)?,
                    },
                }
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        Ok(LogRecord { ts_ms, op })
    }

    /// True if the record concerns any hash in `filter`.
    pub fn touches(&self, filter: &RangeSet) -> bool {
        match &self.op {
            LogOp::Put { skey, .. }
            | LogOp::Del { skey }
            | LogOp::SubPut { skey, .. }
            | LogOp::SubDel { skey } => {
                split_storage_key(skey).is_some_and(|(hash, _)| filter.contains(hash))
            }
            LogOp::ClearRange { range } => filter.iter().any(|f| f.overlaps(range)),
        }
    }
}

fn be_u64(b: &[u8]) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(
        b.try_into().map_err(|_| DecodeError::Truncated)?,
    ))
}

/// The records of one group commit, stored as one entry of the log keyspace (keyed by the
/// first sequence, big endian): `[seq u64][len u32][record]...`. One entry per batch instead of
/// one per record keeps the log's cost per write small.
#[derive(Default)]
pub struct EntryBuilder {
    pub first_seq: Option<u64>,
    pub bytes: Vec<u8>,
}

impl EntryBuilder {
    pub fn push(&mut self, seq: u64, raw: &[u8]) {
        self.first_seq.get_or_insert(seq);
        self.bytes.extend_from_slice(&seq.to_be_bytes());
        self.bytes
            .extend_from_slice(&(raw.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(raw);
    }

    /// Appends an element's record (`encode_sub`), encoded in place.
    pub fn push_sub(&mut self, seq: u64, ts_ms: u64, skey: &[u8], value: Option<&[u8]>) {
        self.first_seq.get_or_insert(seq);
        self.bytes.extend_from_slice(&seq.to_be_bytes());
        self.bytes
            .extend_from_slice(&(sub_len(skey, value) as u32).to_be_bytes());
        sub_into(&mut self.bytes, ts_ms, skey, value);
    }

    /// Appends a put record, encoded in place (the writer's hot path).
    pub fn push_put(&mut self, seq: u64, ts_ms: u64, skey: &[u8], value: &[u8], exp_word: u64) {
        self.first_seq.get_or_insert(seq);
        self.bytes.extend_from_slice(&seq.to_be_bytes());
        self.bytes
            .extend_from_slice(&(put_len(skey, value) as u32).to_be_bytes());
        put_into(&mut self.bytes, ts_ms, skey, value, exp_word);
    }
}

/// Decodes a log entry into (sequence, record) pairs.
pub fn decode_entry(raw: &[u8]) -> Result<Vec<(u64, LogRecord)>, DecodeError> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (seq, r) = rest.split_at_checked(8).ok_or(DecodeError::Truncated)?;
        let (len, r) = r.split_at_checked(4).ok_or(DecodeError::Truncated)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| DecodeError::Truncated)?) as usize;
        let (rec, r) = r.split_at_checked(len).ok_or(DecodeError::Truncated)?;
        out.push((be_u64(seq)?, LogRecord::decode(rec)?));
        rest = r;
    }
    Ok(out)
}

/// Last sequence in an entry and the timestamp of its first record, without decoding records.
pub fn entry_bounds(raw: &[u8]) -> Result<(u64, u64), DecodeError> {
    let mut rest = raw;
    let mut last = None;
    let mut first_ts = None;
    while !rest.is_empty() {
        let (seq, r) = rest.split_at_checked(8).ok_or(DecodeError::Truncated)?;
        let (len, r) = r.split_at_checked(4).ok_or(DecodeError::Truncated)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| DecodeError::Truncated)?) as usize;
        let (rec, r) = r.split_at_checked(len).ok_or(DecodeError::Truncated)?;
        if first_ts.is_none() {
            first_ts = Some(be_u64(rec.get(..8).ok_or(DecodeError::Truncated)?)?);
        }
        last = Some(be_u64(seq)?);
        rest = r;
    }
    Ok((last.ok_or(DecodeError::Truncated)?, first_ts.unwrap_or(0)))
}

/// One answer to a tail request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailBatch {
    /// Records (sequence, record) that touch the filter, in sequence order.
    pub records: Vec<(u64, LogRecord)>,
    /// Every record with a sequence `<= watermark` was either returned or filtered out, so a
    /// reader that applied `records` has applied the filtered log up to `watermark`.
    pub watermark: u64,
}

/// Filters `log` (records after `after`, in sequence order, none above `durable_head`) by
/// `filter`, stopping after `max_records` matches. The watermark reaches `durable_head` when the
/// scan ran to the end, so filtered-out records still advance it.
pub fn tail<I>(
    log: I,
    after: u64,
    durable_head: u64,
    filter: &RangeSet,
    max_records: usize,
) -> TailBatch
where
    I: IntoIterator<Item = (u64, LogRecord)>,
{
    let mut records = Vec::new();
    let mut watermark = after;
    for (seq, rec) in log {
        if seq <= after {
            continue;
        }
        if seq > durable_head {
            break;
        }
        if rec.touches(filter) {
            if records.len() >= max_records {
                return TailBatch { records, watermark };
            }
            records.push((seq, rec));
        }
        watermark = seq;
    }
    TailBatch {
        records,
        watermark: watermark.max(durable_head.max(after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::storage_key_with_hash;
    use proptest::prelude::*;

    fn put(hash: u64) -> LogRecord {
        LogRecord {
            ts_ms: 1,
            op: LogOp::Put {
                skey: storage_key_with_hash(hash, b"k"),
                value: b"v".to_vec(),
                expires_at: None,
                typed: false,
            },
        }
    }

    fn arb_op() -> impl Strategy<Value = LogOp> {
        prop_oneof![
            (
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..8),
                proptest::option::of(1u64..(1 << 62)),
                any::<bool>()
            )
                .prop_map(|(h, v, e, typed)| LogOp::Put {
                    skey: storage_key_with_hash(h, b"key"),
                    value: v,
                    expires_at: e,
                    typed
                }),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(h, v)| {
                LogOp::SubPut {
                    skey: storage_key_with_hash(h, b"sub"),
                    value: v,
                }
            }),
            any::<u64>().prop_map(|h| LogOp::SubDel {
                skey: storage_key_with_hash(h, b"sub")
            }),
            any::<u64>().prop_map(|h| LogOp::Del {
                skey: storage_key_with_hash(h, b"x")
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| LogOp::ClearRange {
                range: HashRange {
                    start: a.min(b),
                    end: a.max(b)
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(ts in any::<u64>(), op in arb_op()) {
            let rec = LogRecord { ts_ms: ts, op };
            prop_assert_eq!(LogRecord::decode(&rec.encode()).unwrap(), rec);
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = LogRecord::decode(&raw);
        }

        /// Reading a log in tail batches of any size yields exactly the matching records, in
        /// order, and the final watermark is the durable head.
        #[test]
        fn repeated_tails_see_every_matching_record_once(
            hashes in proptest::collection::vec(any::<u64>(), 0..60),
            split in any::<u64>(),
            max in 1usize..5,
            head_cut in 0usize..60,
        ) {
            let log: Vec<(u64, LogRecord)> =
                hashes.iter().enumerate().map(|(i, h)| (i as u64 + 1, put(*h))).collect();
            let head = (head_cut.min(log.len())) as u64;
            let filter = RangeSet::single(HashRange { start: 0, end: split });
            let mut after = 0;
            let mut seen = Vec::new();
            for _ in 0..200 {
                let batch = tail(log.clone(), after, head, &filter, max);
                prop_assert!(batch.watermark >= after);
                prop_assert!(batch.watermark <= head);
                for (seq, _) in &batch.records {
                    prop_assert!(*seq > after && *seq <= batch.watermark);
                }
                seen.extend(batch.records.iter().map(|(s, _)| *s));
                if batch.watermark == after && batch.records.is_empty() {
                    break;
                }
                after = batch.watermark;
            }
            let expected: Vec<u64> = log.iter()
                .filter(|(s, r)| *s <= head && r.touches(&filter))
                .map(|(s, _)| *s)
                .collect();
            prop_assert_eq!(seen, expected);
            prop_assert_eq!(after, head);
        }
    }

    proptest! {
        #[test]
        fn entries_round_trip(ops in proptest::collection::vec(arb_op(), 1..8), first in 1u64..1000) {
            let mut b = EntryBuilder::default();
            let recs: Vec<(u64, LogRecord)> = ops
                .into_iter()
                .enumerate()
                .map(|(i, op)| (first + i as u64, LogRecord { ts_ms: 5 + i as u64, op }))
                .collect();
            for (seq, r) in &recs {
                match &r.op {
                    // Puts are encoded in place by the writer: same bytes as `encode`.
                    LogOp::Put { skey, value, expires_at, typed } => {
                        let word = crate::keys::expiry_word(*expires_at, *typed);
                        b.push_put(*seq, r.ts_ms, skey, value, word)
                    }
                    // So are element writes.
                    LogOp::SubPut { skey, value } => b.push_sub(*seq, r.ts_ms, skey, Some(value)),
                    LogOp::SubDel { skey } => b.push_sub(*seq, r.ts_ms, skey, None),
                    _ => b.push(*seq, &r.encode()),
                }
            }
            prop_assert_eq!(b.first_seq, Some(first));
            prop_assert_eq!(decode_entry(&b.bytes).unwrap(), recs.clone());
            prop_assert_eq!(entry_bounds(&b.bytes).unwrap(), (recs.last().unwrap().0, 5));
            let _ = decode_entry(&b.bytes[..b.bytes.len() / 2]);
        }
    }

    #[test]
    fn watermark_passes_filtered_records() {
        let log = vec![(1, put(5)), (2, put(500)), (3, put(600))];
        let b = tail(
            log,
            0,
            3,
            &RangeSet::single(HashRange { start: 0, end: 10 }),
            10,
        );
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.watermark, 3);
    }
}
