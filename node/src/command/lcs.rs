//! LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest common subsequence
//! of two strings (missing keys read as empty), by dynamic programming over both lengths.

use super::arg_error::ArgError;
use crate::engine::writer_parse_int as parse_int;
use crate::resp::reply;

/// What LCS answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LcsOpts {
    pub len: bool,
    pub idx: bool,
    pub min_match_len: u64,
    pub with_match_len: bool,
}

/// Largest DP table built (cells of 4 bytes, so 128 MiB of transient memory; Redis allows up
/// to its address space): strings whose lengths multiply past this get Redis' memory error.
const MAX_CELLS: u64 = 32 * 1024 * 1024;

pub fn parse_opts(opts: &[Vec<u8>]) -> Result<LcsOpts, ArgError> {
    let mut o = LcsOpts {
        len: false,
        idx: false,
        min_match_len: 0,
        with_match_len: false,
    };
    let mut i = 0;
    while i < opts.len() {
        match String::from_utf8_lossy(&opts[i])
            .to_ascii_lowercase()
            .as_str()
        {
            "len" => o.len = true,
            "idx" => o.idx = true,
            "withmatchlen" => o.with_match_len = true,
            "minmatchlen" if i + 1 < opts.len() => {
                let n = parse_int(&opts[i + 1]).ok_or(ArgError::NotInteger)?;
                o.min_match_len = n.max(0) as u64;
                i += 1;
            }
            _ => return Err(ArgError::Syntax),
        }
        i += 1;
    }
    if o.len && o.idx {
        return Err("ERR If you want both the length and indexes, please just use IDX.".into());
    }
    Ok(o)
}

/// A run of matching bytes: inclusive ranges in each string.
struct Run {
    a: (usize, usize),
    b: (usize, usize),
}

pub fn reply_lcs(a: &[u8], b: &[u8], o: LcsOpts, out: &mut Vec<u8>) {
    let (n, m) = (a.len(), b.len());
    if (n as u64 + 1).saturating_mul(m as u64 + 1) > MAX_CELLS {
        reply::error(
            out,
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
        return;
    }
    let w = m + 1;
    // dp[i * w + j]: LCS length of a[..i] and b[..j].
    let mut dp = vec![0u32; (n + 1) * w];
    for i in 1..=n {
        for j in 1..=m {
            dp[i * w + j] = if a[i - 1] == b[j - 1] {
                dp[(i - 1) * w + j - 1] + 1
            } else {
                dp[(i - 1) * w + j].max(dp[i * w + j - 1])
            };
        }
    }
    let total = dp[n * w + m] as usize;
    if o.len {
        reply::int(out, total as i64);
        return;
    }
    // Walk back from the end, collecting the subsequence and its runs (last run first).
    let mut seq = Vec::with_capacity(total);
    let mut runs: Vec<Run> = Vec::new();
    let mut cur: Option<Run> = None;
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            let (x, y) = (i - 1, j - 1);
            seq.push(a[x]);
            match &mut cur {
                Some(r) if r.a.0 == x + 1 && r.b.0 == y + 1 => {
                    r.a.0 = x;
                    r.b.0 = y;
                }
                _ => {
                    if let Some(r) = cur.take() {
                        runs.push(r);
                    }
                    cur = Some(Run {
                        a: (x, x),
                        b: (y, y),
                    });
                }
            }
            i -= 1;
            j -= 1;
        } else if dp[(i - 1) * w + j] > dp[i * w + j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    if let Some(r) = cur {
        runs.push(r);
    }
    if !o.idx {
        seq.reverse();
        reply::bulk(out, &seq);
        return;
    }
    let kept: Vec<&Run> = runs
        .iter()
        .filter(|r| (r.a.1 - r.a.0 + 1) as u64 >= o.min_match_len)
        .collect();
    reply::array_len(out, 4);
    reply::bulk(out, b"matches");
    reply::array_len(out, kept.len());
    for r in kept {
        reply::array_len(out, if o.with_match_len { 3 } else { 2 });
        for (s, e) in [r.a, r.b] {
            reply::array_len(out, 2);
            reply::int(out, s as i64);
            reply::int(out, e as i64);
        }
        if o.with_match_len {
            reply::int(out, (r.a.1 - r.a.0 + 1) as i64);
        }
    }
    reply::bulk(out, b"len");
    reply::int(out, total as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(len: bool, idx: bool, min: u64, with: bool) -> LcsOpts {
        LcsOpts {
            len,
            idx,
            min_match_len: min,
            with_match_len: with,
        }
    }

    #[test]
    fn subsequence_length_and_runs() {
        let mut out = Vec::new();
        reply_lcs(
            b"ohmytext",
            b"mynewtext",
            opts(false, false, 0, false),
            &mut out,
        );
        assert_eq!(out, b"$6\r\nmytext\r\n");
        out.clear();
        reply_lcs(
            b"ohmytext",
            b"mynewtext",
            opts(true, false, 0, false),
            &mut out,
        );
        assert_eq!(out, b":6\r\n");
        out.clear();
        reply_lcs(
            b"ohmytext",
            b"mynewtext",
            opts(false, true, 4, true),
            &mut out,
        );
        let want = "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n$3\r\nlen\r\n:6\r\n";
        assert_eq!(String::from_utf8_lossy(&out), want);
        assert!(parse_opts(&[b"LEN".to_vec(), b"IDX".to_vec()]).is_err());
    }
}
