//! RESP3's double type for sorted-set scores. Replies are built in RESP2 (peers speak RESP2),
//! where a score is a bulk string; a RESP3 connection gets the scores as doubles (`,1.5`) and
//! WITHSCORES lists as [member, score] pairs, as Redis 7 sends them.

use super::reply::{self, array_items};

/// Where a sorted-set reply holds its scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreShape {
    /// The reply is a score (or nil): ZSCORE, ZINCRBY, ZADD INCR.
    One,
    /// An array of scores or nils: ZMSCORE.
    Each,
    /// A flat member, score, ... array, sent as [member, score] pairs: WITHSCORES, ZPOPMIN
    /// with a count.
    Pairs,
    /// A flat [member, score] kept flat: ZPOPMIN without a count.
    Flat,
    /// [rank, score]: ZRANK WITHSCORE.
    Second,
    /// [key, [[member, score], ...]]: ZMPOP.
    KeyPairs,
    /// [key, member, score]: BZPOPMIN, BZPOPMAX.
    Third,
}

/// A bulk score as a RESP3 double; anything else (a nil, an error) as it is.
fn double(frame: &[u8], out: &mut Vec<u8>) {
    let body = frame
        .strip_prefix(b"$")
        .and_then(|r| r.split(|b| *b == b'\n').nth(1))
        .and_then(|r| r.strip_suffix(b"\r"));
    match body {
        Some(score) if !frame.starts_with(b"$-") => {
            out.push(b',');
            out.extend_from_slice(score);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(frame),
    }
}

/// An array of `[member, score]` pairs from a flat `member, score, ...` list.
fn pairs(items: &[&[u8]], out: &mut Vec<u8>) {
    reply::array_len(out, items.len() / 2);
    for p in items.chunks_exact(2) {
        reply::array_len(out, 2);
        out.extend_from_slice(p[0]);
        double(p[1], out);
    }
}

/// Rewrites the RESP2 reply at `out[start..]` for a RESP3 connection (errors and nulls are
/// left as they are; `upgrade_nulls` turns the nulls).
pub fn scores_to_doubles(out: &mut Vec<u8>, start: usize, shape: ScoreShape) {
    let Some(tail) = out.get(start..) else {
        return;
    };
    let mut rewritten = Vec::with_capacity(tail.len() + 16);
    match shape {
        ScoreShape::One => double(tail, &mut rewritten),
        _ => {
            let Some(items) = array_items(tail) else {
                return;
            };
            match shape {
                ScoreShape::Each => {
                    reply::array_len(&mut rewritten, items.len());
                    for i in &items {
                        double(i, &mut rewritten);
                    }
                }
                ScoreShape::Pairs if items.len().is_multiple_of(2) => pairs(&items, &mut rewritten),
                ScoreShape::Flat | ScoreShape::Second => {
                    reply::array_len(&mut rewritten, items.len());
                    for (n, i) in items.iter().enumerate() {
                        if n % 2 == 1 {
                            double(i, &mut rewritten);
                        } else {
                            rewritten.extend_from_slice(i);
                        }
                    }
                }
                ScoreShape::Third if items.len() == 3 => {
                    reply::array_len(&mut rewritten, 3);
                    rewritten.extend_from_slice(items[0]);
                    rewritten.extend_from_slice(items[1]);
                    double(items[2], &mut rewritten);
                }
                ScoreShape::KeyPairs if items.len() == 2 => {
                    reply::array_len(&mut rewritten, 2);
                    rewritten.extend_from_slice(items[0]);
                    let Some(list) = array_items(items[1]) else {
                        return;
                    };
                    reply::array_len(&mut rewritten, list.len());
                    for pair in list {
                        match array_items(pair) {
                            Some(p) if p.len() == 2 => {
                                reply::array_len(&mut rewritten, 2);
                                rewritten.extend_from_slice(p[0]);
                                double(p[1], &mut rewritten);
                            }
                            _ => rewritten.extend_from_slice(pair),
                        }
                    }
                }
                _ => return,
            }
        }
    }
    out.truncate(start);
    out.extend_from_slice(&rewritten);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str, shape: ScoreShape) -> String {
        let mut out = b"+OK\r\n".to_vec();
        out.extend_from_slice(raw.as_bytes());
        scores_to_doubles(&mut out, 5, shape);
        String::from_utf8(out[5..].to_vec()).unwrap()
    }

    #[test]
    fn scores_become_doubles_in_each_shape() {
        assert_eq!(run("$3\r\n1.5\r\n", ScoreShape::One), ",1.5\r\n");
        assert_eq!(run("$-1\r\n", ScoreShape::One), "$-1\r\n");
        assert_eq!(run("-ERR x\r\n", ScoreShape::One), "-ERR x\r\n");
        assert_eq!(
            run("*2\r\n$1\r\n1\r\n$-1\r\n", ScoreShape::Each),
            "*2\r\n,1\r\n$-1\r\n"
        );
        assert_eq!(
            run(
                "*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$3\r\ninf\r\n",
                ScoreShape::Pairs
            ),
            "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,inf\r\n"
        );
        assert_eq!(
            run("*2\r\n$1\r\na\r\n$2\r\n-2\r\n", ScoreShape::Flat),
            "*2\r\n$1\r\na\r\n,-2\r\n"
        );
        assert_eq!(run("*0\r\n", ScoreShape::Flat), "*0\r\n");
        assert_eq!(
            run("*2\r\n:3\r\n$1\r\n2\r\n", ScoreShape::Second),
            "*2\r\n:3\r\n,2\r\n"
        );
        assert_eq!(
            run(
                "*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n",
                ScoreShape::KeyPairs
            ),
            "*2\r\n$1\r\nk\r\n*1\r\n*2\r\n$1\r\na\r\n,1\r\n"
        );
        assert_eq!(run("*-1\r\n", ScoreShape::KeyPairs), "*-1\r\n");
    }
}
