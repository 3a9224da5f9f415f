//! Test harness: real `ringshift-node` processes on 127.0.1.x addresses, admin client, placement
//! builders.

#![allow(dead_code)]

pub mod calls;
pub mod moves;
pub mod resp;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ringshift_node_api::client::AdminClient;
use ringshift_node_api::{MemberEndpoint, Placement, PlacementInstall, PullStatus};
use ringshift_ring::{Member, RingSpec};

pub mod script;

pub const TOKEN: &str = "test-admin-token";
pub const UID: &str = "cluster-uid-1";

pub struct NodeProc {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub extra: Vec<String>,
}

/// `ip` moved into this checkout's test block: RINGSHIFT_TEST_NET=K (0-7) turns 127.0.x.y into
/// 127.K.x.y, so test runs of several checkouts on one machine never bind the same addresses.
/// (127.8-15 hold the local cluster's pods.)
pub fn ip(ip: &str) -> String {
    let net = std::env::var("RINGSHIFT_TEST_NET")
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|k| *k < 8)
        .unwrap_or(0);
    match ip.strip_prefix("127.0.") {
        Some(rest) => format!("127.{net}.{rest}"),
        None => ip.to_string(),
    }
}

/// A fresh temporary directory under the target dir (removed at the start of each use).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl NodeProc {
    pub fn start(test: &str, name: &str, ip: &str) -> NodeProc {
        Self::start_with(test, name, ip, &[])
    }

    pub fn start_with(test: &str, name: &str, ip: &str, extra: &[&str]) -> NodeProc {
        let dir = temp_dir(&format!("{test}-{name}"));
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        let mut n = NodeProc {
            name: name.to_string(),
            ip: self::ip(ip),
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        n.spawn();
        n
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ringshift-node"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen")
            .arg(self.data_addr())
            .arg("--admin-listen")
            .arg(self.admin_addr())
            .arg("--member-name")
            .arg(&self.name)
            .arg("--admin-token-file")
            .arg(self.dir.join("token"))
            .args(&self.extra)
            // stdout into the log too: a line printed outside the logger shows up there.
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn data_addr(&self) -> String {
        format!("{}:6379", self.ip)
    }

    pub fn admin_addr(&self) -> String {
        format!("{}:8080", self.ip)
    }

    pub fn endpoint(&self) -> MemberEndpoint {
        MemberEndpoint {
            name: self.name.clone(),
            data_addr: self.data_addr(),
            admin_addr: self.admin_addr(),
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.data_addr()).is_ok()
                && std::net::TcpStream::connect(self.admin_addr()).is_ok()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("node {} exited: {status}; log:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {} did not start; log:\n{}", self.name, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn admin(&self) -> AdminClient {
        AdminClient::new(reqwest::Client::new(), &self.admin_addr(), TOKEN)
    }

    pub fn redis(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.data_addr())).unwrap();
        client.get_connection().unwrap()
    }

    pub async fn redis_async(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://{}/", self.data_addr())).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn spec(members: &[&str]) -> RingSpec {
    let ms: Vec<Member> = members.iter().map(|m| Member::new(*m, 1)).collect();
    RingSpec::with_members(16, &ms).unwrap()
}

/// The ring of `p` evolved to `members` (tokens of kept members stay).
pub fn evolve(p: &Placement, members: &[&str]) -> RingSpec {
    let ms: Vec<Member> = members.iter().map(|m| Member::new(*m, 1)).collect();
    p.base().evolve(&ms).unwrap()
}

/// Commits every pending transfer, one epoch each.
pub fn commit_all(p: &Placement) -> Placement {
    let mut p = p.clone();
    for t in p.pending_transfers().unwrap() {
        p = p.commit(&t.source, &t.target).unwrap();
    }
    p
}

/// Epoch-1 placement of `members` (balanced).
pub fn placement(members: &[&str]) -> Placement {
    Placement::new(UID, spec(members)).unwrap()
}

pub fn install_body(p: &Placement, nodes: &[&NodeProc]) -> PlacementInstall {
    PlacementInstall {
        placement: p.clone(),
        members: nodes.iter().map(|n| n.endpoint()).collect(),
        write_pause_budget_ms: 1500,
        incarnations: Default::default(),
        owners_digest: None,
    }
}

/// Installs `p` on every node.
pub async fn install(p: &Placement, nodes: &[&NodeProc]) {
    let body = install_body(p, nodes);
    for n in nodes {
        n.admin().put_placement(&body).await.unwrap();
    }
}

pub fn redis_cli(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.split_once(':').unwrap();
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn caller(epoch: u64, migration: &str, attempt: u64) -> ringshift_node_api::Caller {
    ringshift_node_api::Caller {
        cluster_uid: UID.to_string(),
        epoch,
        migration_uid: migration.to_string(),
        attempt,
    }
}

/// Polls the pull `uid` on `node` every 50 ms until `done` holds (at most 60 s); fails if it
/// fails.
pub async fn wait_pull(
    node: &NodeProc,
    uid: &str,
    done: impl Fn(&PullStatus) -> bool,
) -> PullStatus {
    moves::wait_pull_every(node, uid, Duration::from_millis(50), done).await
}
