//! Pooled RESP connections to peer nodes, used to forward commands to their owner.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::reply;

/// How long a call waits for its reply once connected (a forwarded command's deadline).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_IDLE_PER_PEER: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Nothing was sent: the command was certainly not applied.
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    /// The command may or may not have been applied.
    #[error("connection to {addr} failed after sending: {detail}")]
    Ambiguous { addr: String, detail: String },
}

pub struct Pool {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
    password: Option<String>,
}

impl Pool {
    pub fn new(password: Option<String>) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            password,
        }
    }

    async fn connect(&self, addr: &str) -> Result<TcpStream, PeerError> {
        let connect_err = |detail: String| PeerError::Connect {
            addr: addr.to_string(),
            detail,
        };
        let mut s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err("timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = s.set_nodelay(true);
        if let Some(pw) = &self.password {
            let mut frame = Vec::new();
            reply::command(&mut frame, &[b"AUTH", pw.as_bytes()]);
            let answer = exchange(&mut s, &frame).await.map_err(connect_err)?;
            if !answer.starts_with(b"+OK") {
                return Err(connect_err(
                    String::from_utf8_lossy(&answer).trim().to_string(),
                ));
            }
        }
        Ok(s)
    }

    /// Sends one request frame and returns the raw reply.
    pub async fn call(&self, addr: &str, frame: &[u8]) -> Result<Vec<u8>, PeerError> {
        let pooled = self.idle.lock().ok().and_then(|mut m| {
            let idle = m.get_mut(addr)?;
            // An idle connection the peer closed (it restarted or died) would fail after the
            // command is sent, which reads as "maybe applied": skip it while nothing is sent.
            while let Some(s) = idle.pop() {
                if still_open(&s) {
                    return Some(s);
                }
            }
            None
        });
        let mut stream = match pooled {
            Some(s) => s,
            None => self.connect(addr).await?,
        };
        let answer = exchange(&mut stream, frame)
            .await
            .map_err(|detail| PeerError::Ambiguous {
                addr: addr.to_string(),
                detail,
            })?;
        if let Ok(mut m) = self.idle.lock() {
            let v = m.entry(addr.to_string()).or_default();
            if v.len() < MAX_IDLE_PER_PEER {
                v.push(stream);
            }
        }
        Ok(answer)
    }
}

/// An idle connection is usable if reading it would block: no end of stream, no stray bytes.
fn still_open(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

async fn exchange(s: &mut TcpStream, frame: &[u8]) -> Result<Vec<u8>, String> {
    let io = async {
        s.write_all(frame).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 8192];
        let mut scanner = reply::ReplyScanner::default();
        loop {
            if let Some(n) = scanner.scan(&buf).map_err(|e| e.to_string())? {
                if n != buf.len() {
                    return Err("peer sent more than one reply".to_string());
                }
                return Ok(buf);
            }
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("peer closed the connection".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(IO_TIMEOUT, io)
        .await
        .map_err(|_| "timed out waiting for the reply".to_string())?
}
