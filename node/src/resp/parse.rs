//! Incremental request parser. Accepts RESP multibulk frames and inline commands, with Redis'
//! error wording for malformed input and a configurable maximum frame size.

/// A protocol error; the connection answers it and then closes, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERR Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// A complete request (arguments, bytes consumed), `None` when more bytes are needed.
pub type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, ProtocolError>;

/// Inline commands longer than this are refused (Redis' PROTO_INLINE_MAX_SIZE).
const INLINE_MAX: usize = 64 * 1024;
const MAX_ARGS: i64 = 1024 * 1024;

/// Parses one request from the front of `buf`. `Ok(None)`: need more bytes. On success returns
/// the arguments (an empty inline line yields no arguments) and the bytes consumed.
pub fn parse(buf: &[u8], max_frame: usize) -> Parsed {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, max_frame),
        Some(_) => parse_inline(buf),
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

fn parse_num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn parse_multibulk(buf: &[u8], max_frame: usize) -> Parsed {
    let Some(eol) = find_crlf(buf, 1) else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError("too big mbulk count string".into()));
        }
        return Ok(None);
    };
    let count = parse_num(&buf[1..eol])
        .filter(|n| *n <= MAX_ARGS)
        .ok_or_else(|| ProtocolError("invalid multibulk length".into()))?;
    let mut pos = eol + 2;
    if count <= 0 {
        return Ok(Some((Vec::new(), pos)));
    }
    let mut args = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&other) => {
                return Err(ProtocolError(format!(
                    "expected '$', got '{}'",
                    char::from(other)
                )));
            }
        }
        let Some(eol) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > INLINE_MAX {
                return Err(ProtocolError("too big bulk count string".into()));
            }
            return Ok(None);
        };
        let len = parse_num(&buf[pos + 1..eol])
            .filter(|n| *n >= 0 && (*n as u64) <= max_frame as u64)
            .ok_or_else(|| ProtocolError("invalid bulk length".into()))? as usize;
        let start = eol + 2;
        let end = start + len;
        if end > max_frame {
            return Err(ProtocolError(format!(
                "request frame larger than the maximum of {max_frame} bytes"
            )));
        }
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not terminated by CRLF".into()));
        }
        args.push(buf[start..end].to_vec());
        pos = end + 2;
    }
    Ok(Some((args, pos)))
}

fn parse_inline(buf: &[u8]) -> Parsed {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(None);
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args =
        split_args(line).ok_or_else(|| ProtocolError("unbalanced quotes in request".into()))?;
    Ok(Some((args, nl + 1)))
}

/// Splits an inline command line like Redis' sdssplitargs: whitespace separated, with "double"
/// (supporting \n, \r, \t, \\, \", \xHH escapes) and 'single' quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut cur = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    let &c = line.get(i)?;
                    match c {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            let &n = line.get(i + 1)?;
                            if n == b'x'
                                && let Some(v) = line
                                    .get(i + 2..i + 4)
                                    .and_then(|h| std::str::from_utf8(h).ok())
                                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                            {
                                cur.push(v);
                                i += 4;
                                continue;
                            }
                            cur.push(match n {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                other => other,
                            });
                            i += 2;
                        }
                        _ => {
                            cur.push(c);
                            i += 1;
                        }
                    }
                }
                if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    return None;
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let &c = line.get(i)?;
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        cur.push(b'\'');
                        i += 2;
                    } else if c == b'\'' {
                        i += 1;
                        break;
                    } else {
                        cur.push(c);
                        i += 1;
                    }
                }
                if line.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    return None;
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    cur.push(line[i]);
                    i += 1;
                }
            }
        }
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    proptest! {
        #[test]
        fn multibulk_round_trips_at_every_split(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let raw = encode(&args);
            let at = cut.index(raw.len());
            prop_assert_eq!(parse(&raw[..at], 1 << 20).unwrap(), None);
            let (got, used) = parse(&raw, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(got, args);
            prop_assert_eq!(used, raw.len());
        }

        #[test]
        fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = &raw[..];
            while let Ok(Some((_, used))) = parse(buf, 1024) {
                prop_assert!(used > 0 && used <= buf.len());
                buf = &buf[used..];
            }
        }

        #[test]
        fn plain_inline_words_split_on_whitespace(words in proptest::collection::vec("[a-z0-9]{1,8}", 1..5)) {
            let line = format!("{}\r\n", words.join("  "));
            let (got, used) = parse(line.as_bytes(), 1024).unwrap().unwrap();
            prop_assert_eq!(used, line.len());
            let expected: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn errors_use_redis_wording() {
        assert_eq!(
            parse(b"*x\r\n", 1024).unwrap_err().to_string(),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            parse(b"*1\r\n+a\r\n", 1024).unwrap_err().to_string(),
            "ERR Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            parse(b"*1\r\n$-5\r\n", 1024).unwrap_err().to_string(),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            parse(b"SET \"a b\r\n", 1024).unwrap_err().to_string(),
            "ERR Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn oversized_frames_are_refused() {
        assert!(parse(b"*1\r\n$5000\r\n", 1024).is_err());
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let (args, _) = parse(b"set \"a\\x41 b\" 'c d'\n", 1024).unwrap().unwrap();
        assert_eq!(
            args,
            vec![b"set".to_vec(), b"aA b".to_vec(), b"c d".to_vec()]
        );
    }
}
