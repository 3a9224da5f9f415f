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

/// Appends one chunk entry (as `encode_chunk` lays them out).
pub fn put_entry(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_bytes(out, key);
    put_bytes(out, value);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// A snapshot chunk: entries (storage key, stored value) and whether the snapshot is exhausted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    pub done: bool,
}

pub fn encode_chunk(c: &Chunk) -> Vec<u8> {
    let mut out = vec![u8::from(c.done)];
    out.extend_from_slice(&(c.entries.len() as u32).to_be_bytes());
    for (k, v) in &c.entries {
        put_bytes(&mut out, k);
        put_bytes(&mut out, v);
    }
    out
}

pub fn decode_chunk(raw: &[u8]) -> Result<Chunk, WireError> {
    let (done, entries) = chunk_entries(raw)?;
    let entries = entries
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    Ok(Chunk { entries, done })
}

/// An entry (storage key, stored value) borrowed from a received chunk.
pub type EntryRef<'a> = (&'a [u8], &'a [u8]);

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
        let k = r.bytes()?;
        let v = r.bytes()?;
        entries.push((k, v));
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
