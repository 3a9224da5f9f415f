//! `--memory-hashes N`: memory and disk bytes per key after writing N small hashes (distinct
//! keys, `FIELDS` fields of `VALUE_LEN`-byte values each) to every server of the run.
//!
//! Per server: resident memory (and redis' own `used_memory`) before and after the writes, then
//! what is on disk. A node acknowledges a write only once it is fsynced, so its data directory is
//! complete when the load ends; it is measured then and again once flushes and compactions have
//! settled (its size unchanged for a while), broken down by fjall keyspace. For redis-server: its
//! append-only file as written (appendfsync everysec) and an RDB snapshot taken with BGSAVE.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fields per hash and bytes per value: a small session-like record.
pub const FIELDS: usize = 5;
pub const VALUE_LEN: usize = 10;
/// Commands in flight per connection, and loader connections per server.
const WINDOW: usize = 512;
const CONNECTIONS: u64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum MemoryBenchError {
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} answered an HSET with {reply:?}")]
    Reply { addr: String, reply: String },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("{addr}: BGSAVE did not finish")]
    Bgsave { addr: String },
    #[error("loader thread panicked")]
    Panicked,
}

/// What kind of server a target is: the measurements differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Node,
}

pub struct Target<'a> {
    pub name: &'a str,
    pub addr: String,
    pub pid: u32,
    /// The server's working directory (redis `--dir`, or the node's bench dir).
    pub dir: PathBuf,
    pub kind: Kind,
}

/// The key of hash `i`: distinct for every i, 12 bytes.
pub fn hash_key(i: u64) -> String {
    format!("hash:{i:07}")
}

/// RESP for `HSET hash:i field1 v1 ... fieldN vN` (values distinct per key and field).
pub fn hset_command(i: u64) -> Vec<u8> {
    let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), hash_key(i).into_bytes()];
    for f in 1..=FIELDS {
        args.push(format!("field{f}").into_bytes());
        let mut v = format!("{i:0w$}{f}", w = VALUE_LEN - 1).into_bytes();
        v.truncate(VALUE_LEN);
        args.push(v);
    }
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(&a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Whether an HSET reply line is the answer a new hash gets (`:FIELDS`).
pub fn reply_ok(line: &[u8]) -> bool {
    line == format!(":{FIELDS}\r\n").as_bytes()
}

/// Writes hashes `from..to` on one connection, `WINDOW` commands at a time.
fn load_range(addr: &str, from: u64, to: u64) -> Result<(), MemoryBenchError> {
    let io = |source| MemoryBenchError::Io {
        addr: addr.to_string(),
        source,
    };
    let stream = TcpStream::connect(addr).map_err(io)?;
    let mut writer = stream.try_clone().map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut i = from;
    while i < to {
        let end = (i + WINDOW as u64).min(to);
        let buf: Vec<u8> = (i..end).flat_map(hset_command).collect();
        writer.write_all(&buf).map_err(io)?;
        for _ in i..end {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
                return Err(MemoryBenchError::Closed {
                    addr: addr.to_string(),
                });
            }
            if !reply_ok(&line) {
                return Err(MemoryBenchError::Reply {
                    addr: addr.to_string(),
                    reply: String::from_utf8_lossy(&line).into_owned(),
                });
            }
        }
        i = end;
    }
    Ok(())
}

/// Writes hashes `0..n` over `CONNECTIONS` connections; returns the seconds it took.
fn load(addr: &str, n: u64) -> Result<f64, MemoryBenchError> {
    let started = Instant::now();
    let per = n.div_ceil(CONNECTIONS);
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let addr = addr.to_string();
            let (from, to) = ((c * per).min(n), ((c + 1) * per).min(n));
            std::thread::spawn(move || load_range(&addr, from, to))
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| MemoryBenchError::Panicked)??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Sends one command and returns its reply's text (a bulk string's body, else the line).
fn command(addr: &str, args: &[&str]) -> Result<String, MemoryBenchError> {
    let io = |source| MemoryBenchError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(addr).map_err(io)?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let Some(len) = line.strip_prefix('$') else {
        return Ok(line.trim_end().to_string());
    };
    let len: usize = len.trim_end().parse().unwrap_or(0);
    let mut body = vec![0; len + 2];
    std::io::Read::read_exact(&mut reader, &mut body).map_err(io)?;
    body.truncate(len);
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A numeric field of redis' INFO text (`name:value` lines).
pub fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident memory of a process in bytes (0 if unreadable).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .as_deref()
        .and_then(vm_rss)
        .unwrap_or(0)
}

/// `VmRSS` of a /proc status text, in bytes.
pub fn vm_rss(status: &str) -> Option<u64> {
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Disk bytes under `dir` (allocated blocks, as du counts), per group of `group_of(path)`.
fn disk_usage(dir: &Path, group_of: &dyn Fn(&Path) -> String) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut groups: std::collections::BTreeMap<String, u64> = Default::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).map(Path::to_path_buf);
                let group = rel.map(|r| group_of(&r)).unwrap_or_default();
                *groups.entry(group).or_default() += m.blocks() * 512;
            }
        }
    }
    groups.into_iter().collect()
}

/// fjall numbers keyspaces in the order they are first created, from 1; a fresh data dir gets
/// the order of `engine/open.rs`.
const KEYSPACES: [&str; 5] = ["data", "sub", "log", "meta", "expiry"];

/// The group of a file in a fresh node data directory: its fjall keyspace, or the journal.
pub fn node_group(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        // (Keyspace 0 is fjall's own: the names and options of the others.)
        [_, ks, id, _, ..] if ks == "keyspaces" && id == "0" => "fjall metadata".into(),
        [_, ks, id, _, ..] if ks == "keyspaces" => id
            .parse::<usize>()
            .ok()
            .and_then(|i| KEYSPACES.get(i.checked_sub(1)?))
            .map_or_else(|| format!("keyspace {id}"), |n| format!("keyspace {n}")),
        [_, file] if file.ends_with(".jnl") => "journal".into(),
        _ => "other".into(),
    }
}

fn total(groups: &[(String, u64)]) -> u64 {
    groups.iter().map(|(_, b)| b).sum()
}

/// Waits until the size of `dir` has not changed for `quiet` (at most `max`).
fn settle(dir: &Path, quiet: Duration, max: Duration) -> Duration {
    let started = Instant::now();
    let mut last = total(&disk_usage(dir, &|_| String::new()));
    let mut since = Instant::now();
    while started.elapsed() < max && since.elapsed() < quiet {
        std::thread::sleep(Duration::from_millis(500));
        let now = total(&disk_usage(dir, &|_| String::new()));
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    started.elapsed()
}

/// One row of the table: a measured quantity in bytes, also shown per key.
struct Row {
    what: String,
    bytes: u64,
}

fn measure(t: &Target, n: u64) -> Result<Vec<Row>, MemoryBenchError> {
    let mut rows = Vec::new();
    let mut row = |what: String, bytes: u64| rows.push(Row { what, bytes });
    let used = |addr: &str| -> Result<u64, MemoryBenchError> {
        Ok(info_field(&command(addr, &["INFO", "memory"])?, "used_memory").unwrap_or(0))
    };
    let rss_before = rss(t.pid);
    let used_before = if t.kind == Kind::Redis {
        // The AOF is measured as written: no automatic rewrite (which would also hold off
        // BGSAVE below).
        command(
            &t.addr,
            &["CONFIG", "SET", "auto-aof-rewrite-percentage", "0"],
        )?;
        used(&t.addr)?
    } else {
        0
    };
    eprintln!("memory: loading {n} hashes into {}", t.name);
    let secs = load(&t.addr, n)?;
    eprintln!(
        "memory: {} took {secs:.1} s ({:.0} HSET/s)",
        t.name,
        n as f64 / secs
    );
    let rss_after = rss(t.pid);
    row(
        "RSS after the writes, minus before".into(),
        rss_after.saturating_sub(rss_before),
    );
    row("RSS after the writes".into(), rss_after);
    match t.kind {
        Kind::Redis => {
            row(
                "used_memory after, minus before".into(),
                used(&t.addr)?.saturating_sub(used_before),
            );
            let aof = disk_usage(&t.dir, &|p| {
                if p.starts_with("appendonlydir") {
                    "aof".into()
                } else {
                    "other".into()
                }
            });
            let aof_bytes = aof.iter().filter(|(g, _)| g == "aof").map(|(_, b)| b).sum();
            row(
                "disk: AOF as written (appendfsync everysec)".into(),
                aof_bytes,
            );
            let deadline = Instant::now() + Duration::from_secs(300);
            // Refused (an error) while a rewrite runs: asked again until it is taken.
            while command(&t.addr, &["BGSAVE"])?.starts_with('-') {
                if Instant::now() > deadline {
                    return Err(MemoryBenchError::Bgsave {
                        addr: t.addr.clone(),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            loop {
                // (Nothing writes meanwhile: no changes since the last save means this one.)
                let info = command(&t.addr, &["INFO", "persistence"])?;
                let done = info_field(&info, "rdb_bgsave_in_progress") == Some(0)
                    && info_field(&info, "rdb_changes_since_last_save") == Some(0);
                if done {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(MemoryBenchError::Bgsave {
                        addr: t.addr.clone(),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let rdb = std::fs::metadata(t.dir.join("dump.rdb")).map_or(0, |m| m.len());
            row("disk: RDB snapshot (BGSAVE)".into(), rdb);
        }
        Kind::Node => {
            let data = t.dir.join("data");
            let at_ack = disk_usage(&data, &node_group);
            row(
                "disk: data dir when the last write is acknowledged".into(),
                total(&at_ack),
            );
            let waited = settle(&data, Duration::from_secs(10), Duration::from_secs(180));
            let settled = disk_usage(&data, &node_group);
            row(
                format!(
                    "disk: data dir settled ({:.0} s later; flushes and compactions done)",
                    waited.as_secs_f64()
                ),
                total(&settled),
            );
            for (group, bytes) in settled {
                row(format!("disk settled: {group}"), bytes);
            }
            row("RSS settled".into(), rss(t.pid));
        }
    }
    Ok(rows)
}

/// Loads every target and prints one table per target.
pub fn run(targets: &[Target], n: u64) -> Result<(), MemoryBenchError> {
    let mut tables = Vec::new();
    for t in targets {
        tables.push((t.name, measure(t, n)?));
    }
    println!(
        "{n} hashes (distinct 12-byte keys, {FIELDS} fields of {VALUE_LEN}-byte values each)\n"
    );
    for (name, rows) in tables {
        println!("| {name} | bytes | per key |");
        println!("|---|---|---|");
        for r in rows {
            println!(
                "| {} | {} | {:.0} |",
                r.what,
                r.bytes,
                r.bytes as f64 / n.max(1) as f64
            );
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hset_commands_are_resp_arrays_of_distinct_keys() {
        let c = String::from_utf8(hset_command(42)).unwrap();
        assert!(c.starts_with("*12\r\n$4\r\nHSET\r\n$12\r\nhash:0000042\r\n$6\r\nfield1\r\n"));
        assert!(c.contains("$10\r\n0000000421\r\n"));
        assert!(c.ends_with("$6\r\nfield5\r\n$10\r\n0000000425\r\n"));
        assert_ne!(hset_command(1), hset_command(2));
    }

    #[test]
    fn only_a_new_hash_reply_counts_as_loaded() {
        assert!(reply_ok(b":5\r\n"));
        assert!(!reply_ok(b":0\r\n"));
        assert!(!reply_ok(b"-ERR something\r\n"));
    }

    #[test]
    fn info_fields_parse() {
        let info = "# Memory\r\nused_memory:1234\r\nused_memory_human:1.2K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1234));
        assert_eq!(info_field(info, "used_memory_rss"), None);
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tx\nVmRSS:\t  2048 kB\nVmSwap:\t0 kB\n";
        assert_eq!(vm_rss(status), Some(2 * 1024 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn node_files_group_by_keyspace() {
        let g = |p: &str| node_group(Path::new(p));
        assert_eq!(g("fjall/keyspaces/2/tables/17"), "keyspace sub");
        assert_eq!(g("fjall/keyspaces/9/tables/1"), "keyspace 9");
        assert_eq!(g("fjall/keyspaces/0/tables/1"), "fjall metadata");
        assert_eq!(g("fjall/0.jnl"), "journal");
        assert_eq!(g("fjall/version"), "other");
    }
}
