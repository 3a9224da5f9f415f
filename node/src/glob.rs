//! Redis-style glob matching for SCAN MATCH: `*`, `?`, `[abc]`, `[^a-z]`, `\x`.

/// Redis gives up (no match) on a pattern that nests more than this many `*` (its guard
/// against runaway backtracking); this matcher does not backtrack that way, but answers the
/// same.
const MAX_STARS: usize = 1000;

pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    let stars = pattern
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'*' && (i == 0 || pattern[i - 1] != b'*'))
        .count();
    if stars > MAX_STARS {
        return false;
    }
    let (mut p, mut i) = (0usize, 0usize);
    // Backtracking point for the last `*`: (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, next)) = class(pattern, p, s[i])
                        && ok
                    {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == s[i] => {
                    p += 2;
                    i += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start] == b'['`; returns (matched, index
/// after the class), or None if the class is not closed.
fn class(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = start + 1;
    let negate = pattern.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut hit = false;
    loop {
        let &pc = pattern.get(j)?;
        if pc == b']' {
            break;
        }
        if pc == b'\\' {
            let &e = pattern.get(j + 1)?;
            hit |= e == c;
            j += 2;
        } else if pattern.get(j + 1) == Some(&b'-')
            && pattern.get(j + 2).is_some_and(|&x| x != b']')
        {
            let (lo, hi) = (pc.min(pattern[j + 2]), pc.max(pattern[j + 2]));
            hit |= lo <= c && c <= hi;
            j += 3;
        } else {
            hit |= pc == c;
            j += 1;
        }
    }
    Some((hit != negate, j + 1))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches(b"*", b"anything"));
        assert!(matches(b"user:*", b"user:42"));
        assert!(!matches(b"user:*", b"order:1"));
        assert!(matches(b"h?llo", b"hello"));
        assert!(matches(b"h[ae]llo", b"hallo"));
        assert!(!matches(b"h[^e]llo", b"hello"));
        assert!(matches(b"h[a-c]llo", b"hbllo"));
        assert!(matches(b"a\\*b", b"a*b"));
        assert!(matches(b"*x*y", b"axxbxy"));
        assert!(!matches(b"", b"a"));
        assert!(matches(b"", b""));
        // Redis' nesting limit: too many separate stars never match.
        let long = vec![b'a'; 3000];
        assert!(matches(&b"*?".repeat(1000), &long));
        assert!(!matches(&b"*?".repeat(1001), &long));
        assert!(matches(&b"**".repeat(1001), &long));
    }
}
