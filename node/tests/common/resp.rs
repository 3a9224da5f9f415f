//! A raw RESP client for tests that check replies byte by byte: each reply is rendered as a
//! short string (`OK`, `(error) ERR ...`, `5`, `"v"`, `(nil)`, `[a, b]`, `>[...]` for a RESP3
//! push, `(nil-array)`), so assertions read like a redis-cli session.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Resp {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Resp {
    pub fn connect(addr: &str) -> Resp {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Resp {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut f = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            f.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            f.extend_from_slice(a.as_bytes());
            f.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&f).unwrap();
    }

    /// Sends a command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.read()
    }

    pub fn set_timeout(&mut self, t: Duration) {
        self.w.set_read_timeout(Some(t)).unwrap();
    }

    /// Reads one reply; panics on a closed connection or a timeout.
    pub fn read(&mut self) -> String {
        self.try_read().expect("a reply")
    }

    /// One reply, or None if the connection closed (or timed out).
    pub fn try_read(&mut self) -> Option<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches("\r\n");
        let (t, rest) = line.split_at(1);
        Some(match t {
            "+" => rest.to_string(),
            "-" => format!("(error) {rest}"),
            ":" => rest.to_string(),
            "_" => "(nil)".to_string(),
            "#" => rest.to_string(),
            "," => rest.to_string(),
            "$" => {
                let n: i64 = rest.parse().ok()?;
                if n < 0 {
                    return Some("(nil)".into());
                }
                let mut b = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut b).ok()?;
                format!("\"{}\"", String::from_utf8_lossy(&b[..n as usize]))
            }
            "*" | ">" | "~" | "%" => {
                let n: i64 = rest.parse().ok()?;
                if n < 0 {
                    return Some("(nil-array)".into());
                }
                let n = if t == "%" { 2 * n } else { n };
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.try_read()?);
                }
                let prefix = match t {
                    ">" => ">",
                    "%" => "%",
                    _ => "",
                };
                format!("{prefix}[{}]", items.join(", "))
            }
            other => panic!("unexpected reply type {other}: {line}"),
        })
    }
}
