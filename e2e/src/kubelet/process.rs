//! Container processes: spawning through `nsenter` (the pod's network), `unshare` and the shim, signalling the process group,
//! and pid files ("PID STARTTIME") that `e2e/cluster/down` and a restarted kubelet use to stop
//! exactly these processes.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::stdin_relay::{self, StdinRelay};
use super::tty;

/// A running container process (the leader of its own process group).
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub pid_file: PathBuf,
    /// `<container>.tty` (the terminal's path) when it has one.
    pub tty_file: Option<PathBuf>,
    /// Input for a container with `stdin: true`; dropped with the process.
    pub stdin: Option<StdinRelay>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(tty_file) = &self.tty_file {
            let _ = std::fs::remove_file(tty_file);
        }
    }
}

/// Where a container with `stdin: true` takes input from (see `stdin_relay`).
#[derive(Debug, Clone)]
pub struct StdinSpec {
    pub socket: PathBuf,
    pub once: bool,
    /// `tty: true`: a terminal instead of a pipe and the log file (see `tty`), its path written
    /// to this file.
    pub tty_file: Option<PathBuf>,
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(") ")?.1;
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Starts `self_exe shim plan` in the pod's network namespace `netns` (a path under
/// /run/netns) and a private mount namespace, output appended to `log`, input from a stdin
/// relay when `stdin` is given (else /dev/null).
pub fn spawn(
    self_exe: &Path,
    plan: &Path,
    netns: &str,
    log: &Path,
    pid_file: &Path,
    stdin: Option<&StdinSpec>,
) -> std::io::Result<Proc> {
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let (relay, input, out, err) = match stdin {
        Some(StdinSpec {
            socket,
            once,
            tty_file: Some(tty_file),
        }) => {
            let t = tty::open()?;
            std::fs::write(tty_file, t.name.as_os_str().as_encoded_bytes())?;
            let keys = tokio::fs::File::from_std(std::fs::File::from(t.master.try_clone()?));
            let relay = stdin_relay::start_with(socket, keys, *once)?;
            tty::copy_output(t.master, log);
            let (o, e) = (t.slave.try_clone()?, t.slave.try_clone()?);
            (
                Some(relay),
                Stdio::from(t.slave),
                Stdio::from(o),
                Stdio::from(e),
            )
        }
        Some(spec) => {
            let (relay, read_end) = stdin_relay::start(&spec.socket, spec.once)?;
            (Some(relay), Stdio::from(read_end), out.into(), err.into())
        }
        None => (None, Stdio::null(), out.into(), err.into()),
    };
    let mut child = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg("--")
        .arg("unshare")
        .arg("--mount")
        .arg("--propagation")
        .arg("private")
        .arg("--")
        .arg(self_exe)
        .arg("shim")
        .arg(plan)
        .stdin(input)
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let Some(pid) = child.id() else {
        return Err(std::io::Error::other(
            "process exited before its pid was read",
        ));
    };
    let start = proc_start(pid).unwrap_or(0);
    if let Err(e) = std::fs::write(pid_file, format!("{pid} {start}\n")) {
        let _ = signal_group(pid, Signal::SIGKILL);
        let _ = child.start_kill();
        return Err(e);
    }
    Ok(Proc {
        child,
        pid,
        pid_file: pid_file.to_path_buf(),
        tty_file: stdin.and_then(|s| s.tty_file.clone()),
        stdin: relay,
    })
}

/// Sends `sig` to the process group led by `pid`.
pub fn signal_group(pid: u32, sig: Signal) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::EINVAL)?;
    killpg(Pid::from_raw(pid), sig)
}

/// Appends a line to a container's log (start and exit markers, kubelet errors).
pub fn log_line(log: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(
            f,
            "[kubelet {}] {line}",
            k8s_openapi::jiff::Timestamp::now()
        );
    }
}

/// Kills the process groups of pid files left by a previous kubelet (checking the start time,
/// so a reused pid is left alone) and removes the files.
pub fn kill_stale(pods_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return;
    };
    for dir in entries.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().is_none_or(|e| e != "pid") {
                continue;
            }
            if let Some((pid, start)) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| parse_pid_file(&s))
                && proc_start(pid) == Some(start)
            {
                tracing::info!(pid, file = %path.display(), "killing process left by a previous kubelet");
                let _ = signal_group(pid, Signal::SIGKILL);
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

pub fn parse_pid_file(s: &str) -> Option<(u32, u64)> {
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable() {
        assert!(proc_start(std::process::id()).is_some());
        assert_eq!(proc_start(u32::MAX), None);
    }

    #[test]
    fn pid_files_parse() {
        assert_eq!(parse_pid_file("12 345\n"), Some((12, 345)));
        assert_eq!(parse_pid_file("12"), None);
        assert_eq!(parse_pid_file("x y"), None);
    }
}
