//! Standard input for containers with `stdin: true` (what `kubectl attach` and `kubectl run -i`
//! write to). The container reads a pipe whose write end the kubelet keeps, so it waits for input
//! instead of seeing end-of-file at once; the kubelet API server (e2e/kubelet-api) connects to
//! `<container>.stdin.sock` in the pod's directory and what it sends goes into the pipe. With
//! `stdinOnce` the pipe is closed after the first client disconnects, as a container runtime does,
//! so the container then sees end-of-file.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

/// A running relay; dropping it stops accepting clients, closes the pipe and removes the socket.
#[derive(Debug)]
pub struct StdinRelay {
    task: JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for StdinRelay {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Creates the pipe and starts serving `socket`; returns the relay and the pipe's read end for
/// the container's stdin.
pub fn start(socket: &Path, once: bool) -> std::io::Result<(StdinRelay, OwnedFd)> {
    let (tx, rx) = pipe::pipe()?;
    let read_end = rx.into_blocking_fd()?;
    Ok((start_with(socket, tx, once)?, read_end))
}

/// Serves `socket`, writing what clients send to `input` (a terminal's master side for `tty`).
pub fn start_with<W>(socket: &Path, input: W, once: bool) -> std::io::Result<StdinRelay>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _ = std::fs::remove_file(socket);
    let listener = bind_long(socket)?;
    let task = tokio::spawn(relay(listener, input, once));
    Ok(StdinRelay {
        task,
        socket: socket.to_path_buf(),
    })
}

/// Binds through the directory's descriptor (`/proc/self/fd/N/name`): socket addresses hold at
/// most 107 bytes, and a pod directory named for a long namespace and pod name exceeds that.
fn bind_long(socket: &Path) -> std::io::Result<UnixListener> {
    let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else {
        return Err(std::io::Error::other(format!(
            "socket path {} has no directory",
            socket.display()
        )));
    };
    let dir = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    UnixListener::bind(short)
}

async fn relay<W: AsyncWrite + Unpin>(listener: UnixListener, mut tx: W, once: bool) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        // A container that exited closes the read end: the copy fails and the relay ends.
        if let Err(e) = tokio::io::copy(&mut conn, &mut tx).await {
            tracing::debug!(error = %e, "stdin relay: container input closed");
            return;
        }
        if tx.flush().await.is_err() || once {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tokio::net::UnixStream;

    /// Deeper than a socket address can name directly, as pod directories may be.
    fn socket_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("stdin-relay-{tag}-{}", std::process::id()))
            .join("n".repeat(120));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("c.stdin.sock")
    }

    async fn connect(socket: &Path) -> UnixStream {
        let dir = std::fs::File::open(socket.parent().unwrap()).unwrap();
        let short = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(socket.file_name().unwrap());
        UnixStream::connect(short).await.unwrap()
    }

    async fn send(socket: &Path, data: &[u8]) {
        let mut c = connect(socket).await;
        c.write_all(data).await.unwrap();
        c.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn once_delivers_the_first_client_then_end_of_file() {
        let socket = socket_path("once");
        let (relay, fd) = start(&socket, true).unwrap();
        send(&socket, b"PING\n").await;
        let out = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            std::fs::File::from(fd).read_to_string(&mut s).unwrap();
            s
        })
        .await
        .unwrap();
        assert_eq!(out, "PING\n");
        drop(relay);
        assert!(!socket.exists());
    }

    #[tokio::test]
    async fn without_once_input_stays_open_for_later_clients() {
        let socket = socket_path("many");
        let (relay, fd) = start(&socket, false).unwrap();
        send(&socket, b"a\n").await;
        send(&socket, b"b\n").await;
        let mut file = std::fs::File::from(fd);
        let got = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 4];
            let mut n = 0;
            while n < 4 {
                n += file.read(&mut buf[n..]).unwrap();
            }
            (buf, file)
        })
        .await
        .unwrap();
        assert_eq!(&got.0, b"a\nb\n");
        // Still open: dropping the relay is what ends the input.
        drop(relay);
        let mut file = got.1;
        let rest = tokio::task::spawn_blocking(move || {
            let mut rest = Vec::new();
            file.read_to_end(&mut rest).unwrap();
            rest
        })
        .await
        .unwrap();
        assert!(rest.is_empty());
    }
}
