//! RESP2 reply encoding, plus a scanner that finds where one complete reply ends (used by the
//! coordinator to relay an owner's answer verbatim).

pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An error line; newlines in the message are replaced so the frame stays valid.
pub fn error(out: &mut Vec<u8>, msg: &str) {
    out.push(b'-');
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

pub fn int(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

pub fn nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// A null array (RESP3 connections get `_`: see `resp3::upgrade_nulls`).
pub fn nil_array(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*-1\r\n");
}

pub fn array_len(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Encodes a request as a multibulk frame.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_len(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

/// Deepest array nesting accepted in a reply (ringshift's own replies nest at most 2 deep; a
/// peer sending more is broken, and recursing without a bound would overflow the stack).
const MAX_REPLY_DEPTH: usize = 32;

/// Why bytes from a peer are not a RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReply {
    #[error("invalid length in reply")]
    Length,
    #[error("reply nested deeper than {MAX_REPLY_DEPTH} arrays")]
    TooDeep,
    #[error("unexpected reply type byte {0}")]
    TypeByte(u8),
}

/// Length of the first complete reply in `buf`; `Ok(None)` if more bytes are needed.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, MalformedReply> {
    fn line(buf: &[u8], from: usize) -> Option<usize> {
        buf.get(from..)?
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + from)
    }
    fn at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, MalformedReply> {
        if depth > MAX_REPLY_DEPTH {
            return Err(MalformedReply::TooDeep);
        }
        let Some(&t) = buf.get(pos) else {
            return Ok(None);
        };
        let Some(eol) = line(buf, pos + 1) else {
            return Ok(None);
        };
        match t {
            b'+' | b'-' | b':' => Ok(Some(eol + 2)),
            b'$' => {
                let n = num(&buf[pos + 1..eol])?;
                if n < 0 {
                    return Ok(Some(eol + 2));
                }
                let end = eol + 2 + n as usize + 2;
                Ok((buf.len() >= end).then_some(end))
            }
            b'*' => {
                let n = num(&buf[pos + 1..eol])?;
                let mut p = eol + 2;
                for _ in 0..n.max(0) {
                    match at(buf, p, depth + 1)? {
                        Some(next) => p = next,
                        None => return Ok(None),
                    }
                }
                Ok(Some(p))
            }
            other => Err(MalformedReply::TypeByte(other)),
        }
    }
    at(buf, 0, 0)
}

/// A length or count field of a reply.
fn num(b: &[u8]) -> Result<i64, MalformedReply> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(MalformedReply::Length)
}

/// `reply_len` over a buffer that grows: resumes where the last call stopped, so a large
/// reply read in many pieces is parsed once (re-parsing it from the start on every piece made
/// a 4 MiB reply cost seconds).
#[derive(Default)]
pub struct ReplyScanner {
    /// Start of the next unparsed item.
    pos: usize,
    /// Items still expected by each open array, outermost first.
    open: Vec<i64>,
    started: bool,
}

impl ReplyScanner {
    /// Length of the first complete reply in `buf` (the same bytes as before, plus more);
    /// `Ok(None)` if more bytes are needed.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, MalformedReply> {
        loop {
            if self.started && self.open.is_empty() {
                return Ok(Some(self.pos));
            }
            let pos = self.pos;
            let Some(&t) = buf.get(pos) else {
                return Ok(None);
            };
            let Some(eol) = buf
                .get(pos + 1..)
                .and_then(|b| b.windows(2).position(|w| w == b"\r\n"))
                .map(|p| p + pos + 1)
            else {
                return Ok(None);
            };
            match t {
                b'+' | b'-' | b':' => {
                    self.pos = eol + 2;
                    self.item_done();
                }
                b'$' => {
                    let n = num(&buf[pos + 1..eol])?;
                    let end = if n < 0 {
                        eol + 2
                    } else {
                        eol + 2 + n as usize + 2
                    };
                    if buf.len() < end {
                        return Ok(None);
                    }
                    self.pos = end;
                    self.item_done();
                }
                b'*' => {
                    let n = num(&buf[pos + 1..eol])?;
                    self.pos = eol + 2;
                    if n > 0 {
                        if self.open.len() >= MAX_REPLY_DEPTH {
                            return Err(MalformedReply::TooDeep);
                        }
                        self.started = true;
                        self.open.push(n);
                    } else {
                        self.item_done();
                    }
                }
                other => return Err(MalformedReply::TypeByte(other)),
            }
        }
    }

    fn item_done(&mut self) {
        self.started = true;
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            // The array is complete: it is one item of its parent.
            self.open.pop();
        }
    }
}

/// Splits an array reply into its element replies (each raw); `None` if not an array.
pub fn array_items(raw: &[u8]) -> Option<Vec<&[u8]>> {
    if raw.first() != Some(&b'*') {
        return None;
    }
    let eol = raw.windows(2).position(|w| w == b"\r\n")?;
    let n: i64 = std::str::from_utf8(&raw[1..eol]).ok()?.parse().ok()?;
    let mut p = eol + 2;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let len = reply_len(&raw[p..]).ok()??;
        out.push(&raw[p..p + len]);
        p += len;
    }
    Some(out)
}

/// The integer of a `:n` reply.
pub fn as_int(raw: &[u8]) -> Option<i64> {
    let body = raw.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_reply_ends() {
        let mut out = Vec::new();
        array_len(&mut out, 3);
        bulk(&mut out, b"a\r\nb");
        nil(&mut out);
        int(&mut out, 5);
        let whole = out.len();
        out.extend_from_slice(b"+OK\r\n");
        assert_eq!(reply_len(&out).unwrap(), Some(whole));
        assert_eq!(reply_len(&out[..whole - 1]).unwrap(), None);
        let items = array_items(&out[..whole]).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(as_int(items[2]), Some(5));
    }

    /// A reply read in pieces: the resumable scanner finds the same end as `reply_len` on the
    /// whole buffer, and none before the reply is complete.
    #[test]
    fn the_scanner_agrees_with_reply_len_piece_by_piece() {
        let mut out = Vec::new();
        array_len(&mut out, 3);
        array_len(&mut out, 2);
        bulk(&mut out, b"x\r\ny");
        array_len(&mut out, 0);
        nil(&mut out);
        array_len(&mut out, 1);
        int(&mut out, -4);
        let whole = out.len();
        out.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(reply_len(&out).unwrap(), Some(whole));
        for step in [1, 2, 3, 7, 64] {
            let mut s = ReplyScanner::default();
            let mut end = 0;
            let found = loop {
                end = (end + step).min(out.len());
                if let Some(n) = s.scan(&out[..end]).unwrap() {
                    break n;
                }
                assert!(end < whole, "step {step}: nothing found in the whole reply");
            };
            assert_eq!(found, whole, "step {step}");
            assert!(end >= whole);
        }
        let mut s = ReplyScanner::default();
        assert!(s.scan(b"?x\r\n").is_err());
    }

    #[test]
    fn error_text_cannot_break_framing() {
        let mut out = Vec::new();
        error(&mut out, "bad\r\nthing");
        assert_eq!(out, b"-bad  thing\r\n");
    }
}
