//! RESP3 for connections that asked for it (HELLO 3). Commands encode their replies in RESP2
//! (also what owners answer forwarded commands with); the few replies whose RESP3 form has
//! another shape (HELLO, CONFIG GET: maps) are encoded for the connection's protocol directly.
//! What remains is the null: RESP2's `$-1` and `*-1` become RESP3's `_`, rewritten here over
//! the replies appended for a RESP3 connection.

/// Rewrites the RESP2 nulls in `out[start..]` (a sequence of complete replies) as RESP3 nulls.
/// Anything it cannot parse is left as it is.
pub fn upgrade_nulls(out: &mut Vec<u8>, start: usize) {
    let Some(tail) = out.get(start..) else {
        return;
    };
    if !has_null(tail) {
        return;
    }
    let mut rewritten = Vec::with_capacity(tail.len());
    let mut pos = 0;
    while pos < tail.len() {
        match copy_frame(tail, pos, &mut rewritten, 0) {
            Some(next) => pos = next,
            None => {
                rewritten.extend_from_slice(&tail[pos..]);
                break;
            }
        }
    }
    out.truncate(start);
    out.extend_from_slice(&rewritten);
}

/// Turns the flat RESP2 array of pairs at `out[start..]` (`*2n`) into a RESP3 map header
/// (`%n`); anything else (an error, a null) is left as it is.
pub fn array_to_map(out: &mut Vec<u8>, start: usize) {
    let Some(tail) = out.get(start..) else {
        return;
    };
    let Some(body) = tail.strip_prefix(b"*") else {
        return;
    };
    let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
        return;
    };
    let Some(n) = std::str::from_utf8(&body[..eol])
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| n % 2 == 0)
    else {
        return;
    };
    let header = format!("%{}\r\n", n / 2);
    out.splice(start..start + 1 + eol + 2, header.into_bytes());
}

/// Turns the flat RESP2 array of pairs at `out[start..]` (`*2n`) into an array of n two-item
/// arrays (RESP3 HRANDFIELD ... WITHVALUES); anything else is left as it is.
pub fn array_to_pairs(out: &mut Vec<u8>, start: usize) {
    let Some(items) = out.get(start..).and_then(super::reply::array_items) else {
        return;
    };
    if !items.len().is_multiple_of(2) {
        return;
    }
    let mut rewritten = Vec::with_capacity(out.len() - start + 4 * items.len());
    super::reply::array_len(&mut rewritten, items.len() / 2);
    for pair in items.chunks_exact(2) {
        super::reply::array_len(&mut rewritten, 2);
        rewritten.extend_from_slice(pair[0]);
        rewritten.extend_from_slice(pair[1]);
    }
    out.truncate(start);
    out.extend_from_slice(&rewritten);
}

/// Cheap pre-check: a RESP2 null can only be there if `-1\r\n` is.
fn has_null(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"-1\r\n")
}

/// Deepest nesting followed; deeper replies are copied as they are.
const MAX_DEPTH: usize = 64;

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

/// Copies the frame at `pos` into `dst` with its nulls rewritten; returns where it ends.
fn copy_frame(buf: &[u8], pos: usize, dst: &mut Vec<u8>, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let t = *buf.get(pos)?;
    let eol = line_end(buf, pos + 1)?;
    let header = &buf[pos..eol + 2];
    let num = || -> Option<i64> { std::str::from_utf8(&buf[pos + 1..eol]).ok()?.parse().ok() };
    match t {
        b'$' | b'=' | b'!' => {
            let n = num()?;
            if n < 0 {
                dst.extend_from_slice(b"_\r\n");
                return Some(eol + 2);
            }
            let end = (eol + 2).checked_add(n as usize)?.checked_add(2)?;
            dst.extend_from_slice(buf.get(pos..end)?);
            Some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = num()?;
            if n < 0 {
                dst.extend_from_slice(b"_\r\n");
                return Some(eol + 2);
            }
            dst.extend_from_slice(header);
            let items = if matches!(t, b'%' | b'|') { n * 2 } else { n };
            let mut p = eol + 2;
            for _ in 0..items {
                p = copy_frame(buf, p, dst, depth + 1)?;
            }
            Some(p)
        }
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
            dst.extend_from_slice(header);
            Some(eol + 2)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_become_resp3_nulls() {
        let mut out = b"+OK\r\n".to_vec();
        out.extend_from_slice(b"$-1\r\n*2\r\n$-1\r\n$2\r\n-1\r\n*-1\r\n:-1\r\n-ERR x -1\r\n");
        upgrade_nulls(&mut out, 5);
        assert_eq!(
            out,
            b"+OK\r\n_\r\n*2\r\n_\r\n$2\r\n-1\r\n_\r\n:-1\r\n-ERR x -1\r\n".to_vec()
        );
    }

    #[test]
    fn pair_arrays_become_maps() {
        let mut out = b"+OK\r\n*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n".to_vec();
        array_to_map(&mut out, 5);
        assert_eq!(
            out,
            b"+OK\r\n%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n".to_vec()
        );
        let mut err = b"-ERR x\r\n".to_vec();
        array_to_map(&mut err, 0);
        assert_eq!(err, b"-ERR x\r\n".to_vec());
    }

    #[test]
    fn flat_pairs_become_nested_pairs() {
        let mut out = b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n".to_vec();
        array_to_pairs(&mut out, 0);
        assert_eq!(
            out,
            b"*2\r\n*2\r\n$1\r\na\r\n:1\r\n*2\r\n$1\r\nb\r\n:2\r\n".to_vec()
        );
        let mut odd = b"*1\r\n:1\r\n".to_vec();
        array_to_pairs(&mut odd, 0);
        assert_eq!(odd, b"*1\r\n:1\r\n".to_vec());
    }

    #[test]
    fn maps_and_broken_input_are_kept() {
        let mut out = b"%1\r\n$1\r\na\r\n$-1\r\n$5\r\nab".to_vec();
        upgrade_nulls(&mut out, 0);
        assert_eq!(out, b"%1\r\n$1\r\na\r\n_\r\n$5\r\nab".to_vec());
    }
}
