//! A terminal for a container with `tty: true` and `stdin: true` (`kubectl run -it`): the
//! container's stdin, stdout and stderr are the slave side of a new pseudo-terminal; the kubelet
//! copies what the terminal shows into the container's log (where `kubectl logs` and `attach`
//! read it) and the stdin relay writes the client's keys to the master side. The slave's path
//! goes to `<container>.tty`, where the kubelet API server applies the client's window size.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;

pub struct Tty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// `/dev/pts/N`.
    pub name: PathBuf,
}

/// The size a terminal starts with, until the first client sends its own: with none (0x0),
/// line editors such as redis-cli's ask the terminal for the cursor position, and no terminal
/// is attached yet to answer.
const INITIAL_SIZE: nix::pty::Winsize = nix::pty::Winsize {
    ws_row: 24,
    ws_col: 80,
    ws_xpixel: 0,
    ws_ypixel: 0,
};

pub fn open() -> std::io::Result<Tty> {
    let pty = nix::pty::openpty(&INITIAL_SIZE, None).map_err(std::io::Error::from)?;
    let name = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))?;
    Ok(Tty {
        master: pty.master,
        slave: pty.slave,
        name,
    })
}

/// Appends what the terminal shows to `log` until every slave descriptor is closed (the
/// container and its children are gone: reads then fail with EIO).
pub fn copy_output(master: OwnedFd, log: &Path) -> JoinHandle<()> {
    let log = log.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut from = std::fs::File::from(master);
        let Ok(mut to) = OpenOptions::new().create(true).append(true).open(&log) else {
            return;
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_the_terminal_shows_lands_in_the_log() {
        let log = std::env::temp_dir().join(format!("tty-test-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let tty = open().unwrap();
        assert!(tty.name.starts_with("/dev/pts"), "{}", tty.name.display());
        let size = std::process::Command::new("stty")
            .arg("-F")
            .arg(&tty.name)
            .arg("size")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&size.stdout).trim(), "24 80");
        let copier = copy_output(tty.master, &log);
        let mut slave = std::fs::File::from(tty.slave);
        slave.write_all(b"hello\n").unwrap();
        drop(slave); // the last slave descriptor: the copy ends
        copier.await.unwrap();
        // The terminal turns "\n" into "\r\n", as a real one does.
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello\r\n");
        std::fs::remove_file(&log).unwrap();
    }
}
