//! Command line (with RINGSHIFT_* environment fallbacks).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// Group commit with fsync before acknowledging (acknowledged writes survive kill -9).
    Durable,
    /// No fsync before acknowledging (a crash may lose acknowledged writes; the node then starts
    /// with a new incarnation, so offsets are never reused and an owner is reported Degraded).
    None,
}

/// How the node writes its log lines to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours only on a terminal).
    Text,
    /// One JSON object a line, the operator's shape: `timestamp`, `level`, `fields` (with
    /// `message`), `target`, and the enclosing `span`/`spans`.
    Json,
}

#[derive(Debug, Parser)]
#[command(name = "ringshift-node", version, about = "ringshift shard node")]
pub struct Cli {
    /// Data directory (created if missing).
    #[arg(long, env = "RINGSHIFT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// RESP data port address; binds exactly this IP.
    #[arg(long, env = "RINGSHIFT_LISTEN")]
    pub listen: SocketAddr,
    /// Admin API address; binds exactly this IP.
    #[arg(long, env = "RINGSHIFT_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// This member's name in the placement.
    #[arg(long, env = "RINGSHIFT_MEMBER_NAME")]
    pub member_name: String,
    /// Refuse placements and calls of any other cluster.
    #[arg(long, env = "RINGSHIFT_CLUSTER_UID")]
    pub cluster_uid: Option<String>,
    /// File holding the admin API bearer token.
    #[arg(long, env = "RINGSHIFT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the data port password (AUTH required when set).
    #[arg(long, env = "RINGSHIFT_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Largest request frame accepted on the data port, in bytes.
    #[arg(long, env = "RINGSHIFT_MAX_FRAME_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_frame_bytes: usize,
    #[arg(long, env = "RINGSHIFT_DURABILITY", value_enum, default_value_t = Durability::Durable)]
    pub durability: Durability,
    /// Change log retention by size (bytes).
    #[arg(long, env = "RINGSHIFT_LOG_RETENTION_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub log_retention_bytes: u64,
    /// Change log retention by age (seconds).
    #[arg(long, env = "RINGSHIFT_LOG_RETENTION_SECS", default_value_t = 3600)]
    pub log_retention_secs: u64,
    /// How large registered readers (pulls in progress) may let the log grow (bytes).
    #[arg(long, env = "RINGSHIFT_LOG_PIN_CAP_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub log_pin_cap_bytes: u64,
    /// Read cache size in bytes (0 disables it).
    #[arg(long, env = "RINGSHIFT_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_bytes: usize,
    /// Memtable size of the data keyspace in bytes.
    #[arg(long, env = "RINGSHIFT_MEMTABLE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub memtable_bytes: u64,
    /// Log format on stderr (`RUST_LOG` sets the filter).
    #[arg(long, env = "RINGSHIFT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Fault injection for tests (`name=value,...`; see node/README.md, "Failpoints"). Off
    /// unless given.
    #[arg(long, env = "RINGSHIFT_NODE_FAILPOINTS")]
    pub failpoints: Option<String>,
}

/// Why a secret file (admin token, password) is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is empty")]
    Empty { path: String },
}

/// Reads a secret file, trimming a trailing newline.
pub fn read_secret(path: &std::path::Path) -> Result<String, SecretError> {
    let s = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(SecretError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(s)
}
