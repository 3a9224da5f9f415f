//! Binary bodies of the node-to-node pull endpoints (snapshot chunks and change-log tails):
//! length-prefixed, big endian, so values need no escaping.

use crate::changelog::{LogRecord, TailBatch};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {what} body")]
pub struct WireError {
    pub what: &'static str,
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (a, b) = self
            .buf
            .split_at_checked(n)
            .ok_or(WireError { what: self.what })?;
        self.buf = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| WireError { what: self.what })?,
        ))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(
            b.try_into().map_err(|_| WireError { what: self.what })?,
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Top bit of an entry's key length: the entry is a collection element (a sub-key, stored in
/// the `sub` keyspace), not a data-keyspace entry.
const SUB_FLAG: u32 = 1 << 31;

/// Appends one chunk entry (as `encode_chunk` lays them out); `sub`: a collection element.
pub fn put_entry(out: &mut Vec<u8>, sub: bool, key: &[u8], value: &[u8]) {
    let flag = if sub { SUB_FLAG } else { 0 };
    out.extend_from_slice(&(key.len() as u32 | flag).to_be_bytes());
    out.extend_from_slice(key);
    put_bytes(out, value);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// A snapshot chunk: entries (storage key, stored value), then collection elements (sub-key,
/// value), and whether the snapshot is exhausted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub sub_entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub done: bool,
}

pub fn encode_chunk(c: &Chunk) -> Vec<u8> {
    let mut out = vec![u8::from(c.done)];
    out.extend_from_slice(&((c.entries.len() + c.sub_entries.len()) as u32).to_be_bytes());
    for (k, v) in &c.entries {
        put_entry(&mut out, false, k, v);
    }
    for (k, v) in &c.sub_entries {
        put_entry(&mut out, true, k, v);
    }
    out
}

pub fn decode_chunk(raw: &[u8]) -> Result<Chunk, WireError> {
    let (done, entries) = chunk_entries(raw)?;
    let mut c = Chunk {
        done,
        ..Chunk::default()
    };
    for e in entries {
        let to = if e.sub {
            &mut c.sub_entries
        } else {
            &mut c.entries
        };
        to.push((e.key.to_vec(), e.value.to_vec()));
    }
    Ok(c)
}

/// An entry borrowed from a received chunk: (storage key, stored value), or with `sub` a
/// collection element (sub-key, value).
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    pub sub: bool,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// A chunk decoded in place: whether the snapshot is exhausted and the entries as slices of
/// `raw` (no copy per entry: a copy goes straight from here into the ingestion).
pub fn chunk_entries(raw: &[u8]) -> Result<(bool, Vec<EntryRef<'_>>), WireError> {
    let mut r = Reader {
        buf: raw,
        what: "snapshot chunk",
    };
    let done = r.take(1)?[0] != 0;
    let n = r.u32()?;
    let mut entries = Vec::with_capacity(n.min(65536) as usize);
    for _ in 0..n {
        let len = r.u32()?;
        let key = r.take((len & !SUB_FLAG) as usize)?;
        let value = r.bytes()?;
        entries.push(EntryRef {
            sub: len & SUB_FLAG != 0,
            key,
            value,
        });
    }
    Ok((done, entries))
}

/// A tail answer plus the source's durable head.
pub fn encode_tail(batch: &TailBatch, head: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&batch.watermark.to_be_bytes());
    out.extend_from_slice(&head.to_be_bytes());
    out.extend_from_slice(&(batch.records.len() as u32).to_be_bytes());
    for (seq, rec) in &batch.records {
        out.extend_from_slice(&seq.to_be_bytes());
        put_bytes(&mut out, &rec.encode());
    }
    out
}

pub fn decode_tail(raw: &[u8]) -> Result<(TailBatch, u64), WireError> {
    let mut r = Reader {
        buf: raw,
        what: "log tail",
    };
    let watermark = r.u64()?;
    let head = r.u64()?;
    let n = r.u32()?;
    let mut records = Vec::with_capacity(n.min(65536) as usize);
    for _ in 0..n {
        let seq = r.u64()?;
        let rec = LogRecord::decode(r.bytes()?).map_err(|_| WireError { what: "log tail" })?;
        records.push((seq, rec));
    }
    Ok((TailBatch { records, watermark }, head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::LogOp;

    #[test]
    fn chunk_and_tail_round_trip() {
        let c = Chunk {
            entries: vec![(b"k".to_vec(), b"\0\0\0\0\0\0\0\0v".to_vec())],
            sub_entries: vec![(b"12345678sub".to_vec(), b"v".to_vec())],
            done: true,
        };
        assert_eq!(decode_chunk(&encode_chunk(&c)).unwrap(), c);
        let t = TailBatch {
            records: vec![(
                4,
                LogRecord {
                    ts_ms: 9,
                    op: LogOp::Del {
                        skey: b"12345678k".to_vec(),
                    },
                },
            )],
            watermark: 7,
        };
        assert_eq!(decode_tail(&encode_tail(&t, 9)).unwrap(), (t, 9));
        assert!(decode_tail(&[1, 2, 3]).is_err());
    }
}
