//! Watches every member's admin status while a test runs and reports whether two members ever
//! served the same hash at once (safety rule 1), and whether any member's epoch went backwards.
//!
//! Statuses are read in two concurrent rounds back to back; only a member whose answer was the
//! same in both rounds counts, because its state then held over the instant between the rounds,
//! which is common to all such members. Ranges a member has fenced are not served (the fence
//! holds reads and writes), so "serves" is owned minus fenced.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use ringshift_node_api::NodeStatus;
use ringshift_node_api::client::AdminClient;

use crate::load::StopFlag;

/// Admin port of a shard node.
pub const ADMIN_PORT: u16 = 8080;

/// What the monitor saw.
#[derive(Debug, Clone, Default)]
pub struct OwnershipReport {
    /// Moments at which at least two members had a stable answer.
    pub samples: usize,
    /// Samples in which some member held a fence (a cutover in progress was seen).
    pub fenced_samples: usize,
    /// Two members serving the same hash, or an epoch going backwards.
    pub violations: Vec<String>,
}

/// One member's state as the check needs it: inclusive hash ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub member: String,
    pub incarnation: String,
    pub epoch: u64,
    pub owned: Vec<(u64, u64)>,
    pub fenced: Vec<(u64, u64)>,
}

impl MemberView {
    pub fn of(s: &NodeStatus) -> MemberView {
        MemberView {
            member: s.member.clone(),
            incarnation: s.incarnation.clone(),
            epoch: s.epoch,
            owned: s.owned_ranges.iter().map(|r| (r.start, r.end)).collect(),
            fenced: s
                .fences
                .iter()
                .flat_map(|f| f.ranges.iter().map(|r| (r.start, r.end)))
                .collect(),
        }
    }

    /// Ranges this member serves: owned and not fenced.
    pub fn serving(&self) -> Vec<(u64, u64)> {
        subtract(&self.owned, &self.fenced)
    }
}

/// `ranges` minus `holes` (all inclusive).
pub fn subtract(ranges: &[(u64, u64)], holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = ranges.to_vec();
    for &(hs, he) in holes {
        let mut next = Vec::with_capacity(out.len() + 1);
        for (s, e) in out {
            if he < s || hs > e {
                next.push((s, e));
                continue;
            }
            if hs > s {
                next.push((s, hs - 1));
            }
            if he < e {
                next.push((he + 1, e));
            }
        }
        out = next;
    }
    out
}

/// The first hash range both lists contain, if any.
pub fn overlap(a: &[(u64, u64)], b: &[(u64, u64)]) -> Option<(u64, u64)> {
    a.iter().find_map(|&(s1, e1)| {
        b.iter().find_map(|&(s2, e2)| {
            let (s, e) = (s1.max(s2), e1.min(e2));
            (s <= e).then_some((s, e))
        })
    })
}

/// Pairs of members that serve a common hash at the same moment.
pub fn double_owners(views: &[MemberView]) -> Vec<String> {
    let serving: Vec<(&MemberView, Vec<(u64, u64)>)> =
        views.iter().map(|v| (v, v.serving())).collect();
    let mut out = Vec::new();
    for (i, (a, sa)) in serving.iter().enumerate() {
        for (b, sb) in &serving[i + 1..] {
            if let Some((s, e)) = overlap(sa, sb) {
                out.push(format!(
                    "{} (epoch {}) and {} (epoch {}) both serve hashes {s}-{e}",
                    a.member, a.epoch, b.member, b.epoch
                ));
            }
        }
    }
    out
}

/// A running monitor; [`OwnershipMonitor::finish`] stops it and reports.
pub struct OwnershipMonitor {
    stop: StopFlag,
    task: tokio::task::JoinHandle<OwnershipReport>,
}

impl OwnershipMonitor {
    /// Starts watching the members of `cluster` in `namespace` every `interval`.
    pub fn start(
        client: &kube::Client,
        namespace: &str,
        cluster: &str,
        interval: Duration,
    ) -> OwnershipMonitor {
        let stop = StopFlag::default();
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let selector = format!("ringshift.dev/cluster={cluster}");
        let secret = format!("{cluster}-admin-token");
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut report = OwnershipReport::default();
                let mut last_epoch: BTreeMap<(String, String), u64> = BTreeMap::new();
                let mut clients: Vec<AdminClient> = Vec::new();
                let mut refreshed = std::time::Instant::now() - Duration::from_secs(10);
                while !stop.is_stopped() {
                    if refreshed.elapsed() >= Duration::from_secs(1) {
                        refreshed = std::time::Instant::now();
                        if let Some(c) =
                            member_clients(&http, &pods, &secrets, &selector, &secret).await
                        {
                            clients = c;
                        }
                    }
                    let first = read_all(&clients).await;
                    let second = read_all(&clients).await;
                    let stable: Vec<MemberView> = first
                        .into_iter()
                        .zip(second)
                        .filter_map(|(a, b)| match (a, b) {
                            (Some(a), Some(b)) if a == b => Some(a),
                            _ => None,
                        })
                        .collect();
                    for v in &stable {
                        let key = (v.member.clone(), v.incarnation.clone());
                        let prev = last_epoch.insert(key, v.epoch).unwrap_or(0);
                        if v.epoch < prev {
                            report.violations.push(format!(
                                "{} went back from epoch {prev} to {}",
                                v.member, v.epoch
                            ));
                        }
                    }
                    if stable.len() >= 2 {
                        report.samples += 1;
                        if stable.iter().any(|v| !v.fenced.is_empty()) {
                            report.fenced_samples += 1;
                        }
                        report.violations.extend(double_owners(&stable));
                    }
                    tokio::time::sleep(interval).await;
                }
                report
            })
        };
        OwnershipMonitor { stop, task }
    }

    pub async fn finish(self) -> OwnershipReport {
        self.stop.stop();
        self.task.await.unwrap_or_else(|e| OwnershipReport {
            violations: vec![format!("monitor task failed: {e}")],
            ..OwnershipReport::default()
        })
    }
}

async fn member_clients(
    http: &reqwest::Client,
    pods: &Api<Pod>,
    secrets: &Api<Secret>,
    selector: &str,
    secret: &str,
) -> Option<Vec<AdminClient>> {
    let token = secrets
        .get_opt(secret)
        .await
        .ok()??
        .data?
        .get("token")
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())?;
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .ok()?;
    Some(
        list.items
            .iter()
            .filter_map(super::pod_ip)
            .map(|ip| AdminClient::new(http.clone(), &format!("{ip}:{ADMIN_PORT}"), &token))
            .collect(),
    )
}

async fn read_all(clients: &[AdminClient]) -> Vec<Option<MemberView>> {
    let calls = clients.iter().map(|c| async move {
        match tokio::time::timeout(Duration::from_secs(1), c.status()).await {
            Ok(Ok(s)) => Some(MemberView::of(&s)),
            _ => None,
        }
    });
    futures::future::join_all(calls).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(member: &str, owned: &[(u64, u64)], fenced: &[(u64, u64)]) -> MemberView {
        MemberView {
            member: member.into(),
            incarnation: "i".into(),
            epoch: 1,
            owned: owned.to_vec(),
            fenced: fenced.to_vec(),
        }
    }

    #[test]
    fn subtract_cuts_holes_at_the_edges_of_u64() {
        assert_eq!(subtract(&[(0, u64::MAX)], &[(0, 9)]), vec![(10, u64::MAX)]);
        assert_eq!(subtract(&[(0, u64::MAX)], &[(5, u64::MAX)]), vec![(0, 4)]);
        assert_eq!(
            subtract(&[(0, 20)], &[(5, 9), (12, 12)]),
            vec![(0, 4), (10, 11), (13, 20)]
        );
        assert!(subtract(&[(3, 4)], &[(0, 10)]).is_empty());
    }

    #[test]
    fn fenced_sources_do_not_count_as_owners() {
        let source = view("a", &[(0, 99)], &[(50, 99)]);
        let target = view("b", &[(50, 99)], &[]);
        assert!(double_owners(&[source.clone(), target.clone()]).is_empty());
        let unfenced = view("a", &[(0, 99)], &[]);
        let found = double_owners(&[unfenced, target]);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("50-99"), "{found:?}");
    }
}
