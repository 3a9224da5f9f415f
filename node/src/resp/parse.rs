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
/// A length line (`*<n>` or `$<n>`) longer than this cannot hold a valid number; refusing it
/// there keeps every header scan short however slowly the bytes arrive.
const LEN_LINE_MAX: usize = 32;

/// Parses one request from the front of `buf` with no state kept between calls (tests, one-off
/// frames). A connection uses [`RequestParser`], which resumes a partial frame.
pub fn parse(buf: &[u8], max_frame: usize) -> Parsed {
    RequestParser::default().parse(buf, max_frame)
}

/// A request parser for one connection. It remembers how far it got in a partial request, so a
/// frame that arrives in many small reads is scanned once, not once per read (which would let
/// a slow sender of a large frame burn CPU quadratically). Call [`RequestParser::parse`] with
/// the buffer starting at the partial request each time more bytes arrive.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// A multibulk request whose header and first arguments were parsed.
    frame: Option<Frame>,
    /// Bytes of an inline line already searched for its newline.
    inline_scanned: usize,
    /// Bytes looked at in total (to test that work is linear in the input).
    examined: usize,
}

#[derive(Debug)]
struct Frame {
    count: usize,
    args: Vec<Vec<u8>>,
    /// Offset of the next argument's `$` from the start of the request.
    pos: usize,
}

impl RequestParser {
    /// Parses one request from the front of `buf`. `Ok(None)`: need more bytes (call again
    /// with the same request at the front of `buf` plus what arrived). On success returns the
    /// arguments (an empty inline line yields no arguments) and the bytes consumed. After an
    /// error the parser is reset.
    pub fn parse(&mut self, buf: &[u8], max_frame: usize) -> Parsed {
        let r = match buf.first() {
            None => Ok(None),
            Some(b'*') => self.parse_multibulk(buf, max_frame),
            Some(_) => self.parse_inline(buf),
        };
        if !matches!(r, Ok(None)) {
            self.frame = None;
            self.inline_scanned = 0;
        }
        r
    }

    /// Bytes examined so far, over all requests.
    pub fn bytes_examined(&self) -> usize {
        self.examined
    }

    /// The end of a length line starting at `from` (the index of its CR), `Ok(None)` if it has
    /// not all arrived, or `Err` when it is too long to be valid.
    fn len_line(
        &mut self,
        buf: &[u8],
        from: usize,
        what: &str,
    ) -> Result<Option<usize>, ProtocolError> {
        let window = buf.len().min(from + LEN_LINE_MAX + 2);
        let found = find_crlf(&buf[..window], from);
        self.examined += found.map_or(window, |eol| eol + 2).saturating_sub(from);
        match found {
            Some(eol) => Ok(Some(eol)),
            None if window == from + LEN_LINE_MAX + 2 => {
                Err(ProtocolError(format!("too big {what} count string")))
            }
            None => Ok(None),
        }
    }

    fn parse_multibulk(&mut self, buf: &[u8], max_frame: usize) -> Parsed {
        let mut frame = match self.frame.take() {
            Some(f) if f.pos <= buf.len() => f,
            _ => {
                let Some(eol) = self.len_line(buf, 1, "mbulk")? else {
                    return Ok(None);
                };
                let count = parse_num(&buf[1..eol])
                    .filter(|n| *n <= MAX_ARGS)
                    .ok_or_else(|| ProtocolError("invalid multibulk length".into()))?;
                if count <= 0 {
                    return Ok(Some((Vec::new(), eol + 2)));
                }
                let count = usize::try_from(count).unwrap_or(0);
                Frame {
                    count,
                    args: Vec::with_capacity(count.min(1024)),
                    pos: eol + 2,
                }
            }
        };
        while frame.args.len() < frame.count {
            let pos = frame.pos;
            match buf.get(pos) {
                None => {
                    self.frame = Some(frame);
                    return Ok(None);
                }
                Some(b'$') => {}
                Some(&other) => {
                    return Err(ProtocolError(format!(
                        "expected '$', got '{}'",
                        char::from(other)
                    )));
                }
            }
            let Some(eol) = self.len_line(buf, pos + 1, "bulk")? else {
                self.frame = Some(frame);
                return Ok(None);
            };
            let len = parse_num(&buf[pos + 1..eol])
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= max_frame)
                .ok_or_else(|| ProtocolError("invalid bulk length".into()))?;
            let start = eol + 2;
            let end = start + len;
            if end > max_frame {
                return Err(ProtocolError(format!(
                    "request frame larger than the maximum of {max_frame} bytes"
                )));
            }
            if buf.len() < end + 2 {
                self.frame = Some(frame);
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not terminated by CRLF".into()));
            }
            self.examined += len + 2;
            frame.args.push(buf[start..end].to_vec());
            frame.pos = end + 2;
        }
        Ok(Some((frame.args, frame.pos)))
    }

    fn parse_inline(&mut self, buf: &[u8]) -> Parsed {
        let from = self.inline_scanned.min(buf.len());
        self.examined += buf.len() - from;
        let Some(nl) = buf[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + from)
        else {
            if buf.len() > INLINE_MAX {
                return Err(ProtocolError("too big inline request".into()));
            }
            self.inline_scanned = buf.len();
            return Ok(None);
        };
        // The same limit whether or not the newline came in the same read.
        if nl > INLINE_MAX {
            return Err(ProtocolError("too big inline request".into()));
        }
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args =
            split_args(line).ok_or_else(|| ProtocolError("unbalanced quotes in request".into()))?;
        Ok(Some((args, nl + 1)))
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
