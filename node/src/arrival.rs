//! When a request reached this host: the kernel's receive timestamp of the bytes a read
//! returned (`SO_TIMESTAMPNS` on the data socket, delivered with `recvmsg`). Connections run
//! in parallel tasks, and the scheduler runs the last task woken first, so two requests that
//! arrive microseconds apart on two connections are often handled in the reverse order;
//! blocked clients are queued by this stamp instead (`engine::ready`), as Redis, reading its
//! sockets in arrival order, queues them.

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Asks the kernel to stamp what `stream` receives (best effort: without it, reads carry no
/// stamp and blocked clients queue in the order they are handled).
pub fn enable(stream: &impl std::os::fd::AsFd) {
    let _ = setsockopt(stream, sockopt::ReceiveTimestampns, &true);
}

/// Reads into `buf` like `AsyncRead::read`; also returns the receive time of the last bytes
/// read (ns since the epoch), when the kernel gave one.
pub async fn read(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || recv(stream, buf)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn recv(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(ts) => stamp_ns(ts.tv_sec(), ts.tv_nsec()),
            _ => None,
        })
    });
    Ok((msg.bytes, stamp))
}

/// The wall clock in ns since the epoch (the clock the kernel stamps with; 0 if before it).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How late reads are handled: the largest gap between a read's kernel stamp and the moment
/// it was handled, seen within the last `LAG_WINDOW_MS` (ns). A blocking command waits at
/// least this long after its arrival before acting on a wake-up (`command::blocking`), so a
/// command that arrived before it but is handled later on a busy machine still queues ahead.
static PEAK_LAG_NS: AtomicU64 = AtomicU64::new(0);
/// When `PEAK_LAG_NS` was set (ms since the epoch).
static PEAK_AT_MS: AtomicU64 = AtomicU64::new(0);
const LAG_WINDOW_MS: u64 = 1_000;

/// Notes that a read stamped `stamp` is being handled at `now` (`now_ns`).
pub fn note_handled(stamp: u64, now: u64) {
    let lag = now.saturating_sub(stamp);
    let now_ms = now / 1_000_000;
    let stale = now_ms.saturating_sub(PEAK_AT_MS.load(Ordering::Relaxed)) > LAG_WINDOW_MS;
    if stale || lag > PEAK_LAG_NS.load(Ordering::Relaxed) {
        PEAK_LAG_NS.store(lag, Ordering::Relaxed);
        PEAK_AT_MS.store(now_ms, Ordering::Relaxed);
    }
}

/// The largest handling lag seen recently (zero when none was noted in the window).
pub fn recent_lag() -> Duration {
    let now_ms = now_ns() / 1_000_000;
    if now_ms.saturating_sub(PEAK_AT_MS.load(Ordering::Relaxed)) > LAG_WINDOW_MS {
        return Duration::ZERO;
    }
    Duration::from_nanos(PEAK_LAG_NS.load(Ordering::Relaxed))
}

/// A kernel timestamp as ns; None for the zero the kernel reports when it has none.
fn stamp_ns(sec: i64, nsec: i64) -> Option<u64> {
    let ns = i128::from(sec) * 1_000_000_000 + i128::from(nsec);
    u64::try_from(ns).ok().filter(|ns| *ns > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn zero_or_negative_stamps_are_no_stamp() {
        assert_eq!(stamp_ns(0, 0), None);
        assert_eq!(stamp_ns(-1, 5), None);
        assert_eq!(stamp_ns(2, 5), Some(2_000_000_005));
    }

    #[tokio::test]
    async fn bytes_sent_earlier_on_another_connection_carry_an_earlier_stamp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut first = TcpStream::connect(addr).await.unwrap();
        let (a, _) = listener.accept().await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let (b, _) = listener.accept().await.unwrap();
        enable(&a);
        enable(&b);
        // Stamping starts host-wide a moment after the first socket asks for it.
        let mut buf = [0u8; 16];
        let mut warm = false;
        for _ in 0..200 {
            first.write_all(b"w").await.unwrap();
            if read(&a, &mut buf).await.unwrap().1.is_some() {
                warm = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(warm, "the kernel never stamped a received packet");
        first.write_all(b"one").await.unwrap();
        second.write_all(b"two").await.unwrap();
        // Read in the reverse order, as a scheduler may.
        let (n, late) = read(&b, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two");
        let (n, early) = read(&a, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        let (early, late) = (early.expect("stamped"), late.expect("stamped"));
        assert!(early <= late, "{early} > {late}");
    }
}
