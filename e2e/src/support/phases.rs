//! Waiting for a migration to reach a point, by watching (every status change is seen, even one
//! that lasts a few milliseconds), so a test can inject a fault right there.

use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt, watcher};

use super::{SupportError, ringshift_api};

/// A ShardMigration as a fault needs it.
#[derive(Debug, Clone)]
pub struct MoveSeen {
    pub name: String,
    pub uid: String,
    pub source: String,
    pub target: String,
    pub phase: String,
    /// When the ShardMigration was created (the plan that made it).
    pub created: Option<k8s_openapi::jiff::Timestamp>,
}

fn move_seen(m: &DynamicObject) -> MoveSeen {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    MoveSeen {
        name: m.metadata.name.clone().unwrap_or_default(),
        uid: m.metadata.uid.clone().unwrap_or_default(),
        source: s(&m.data["spec"]["source"]),
        target: s(&m.data["spec"]["target"]),
        phase: s(&m.data["status"]["phase"]),
        created: m.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

/// The first ShardMigration of `cluster` seen in `phase` (one that already is counts).
pub async fn wait_move_phase(
    client: &Client,
    namespace: &str,
    cluster: &str,
    phase: &str,
    timeout: Duration,
) -> Result<MoveSeen, SupportError> {
    wait_move(
        client,
        namespace,
        cluster,
        &format!("reached {phase}"),
        timeout,
        |m| m.phase == phase,
    )
    .await
}

/// The first ShardMigration of `cluster` seen in a state `pred` accepts (one that already is
/// counts); `what` says what was awaited, for the timeout error.
pub async fn wait_move(
    client: &Client,
    namespace: &str,
    cluster: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&MoveSeen) -> bool,
) -> Result<MoveSeen, SupportError> {
    let api = ringshift_api(client, namespace, "ShardMigration");
    let stream = watcher(api, watcher::Config::default()).touched_objects();
    let found = tokio::time::timeout(timeout, async {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(m) = ev {
                let seen = move_seen(&m);
                if m.data["spec"]["cluster"].as_str() == Some(cluster) && pred(&seen) {
                    return Some(seen);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(SupportError::Other("ShardMigration watch ended".into())),
        Err(_) => Err(SupportError::Other(format!(
            "no ShardMigration of {cluster} {what} within {}s",
            timeout.as_secs()
        ))),
    }
}

/// Every ShardMigration of `cluster` as it is now.
pub async fn list_moves(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Vec<MoveSeen>, SupportError> {
    let list = ringshift_api(client, namespace, "ShardMigration")
        .list(&Default::default())
        .await
        .map_err(|source| SupportError::Api {
            what: "listing ShardMigrations".into(),
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter(|m| m.data["spec"]["cluster"].as_str() == Some(cluster))
        .map(move_seen)
        .collect())
}

/// The first cutover of `cluster` seen recorded as Committing in ShardPlacement status (the
/// operator records it right before it fences the source); returns that migration. Polled every
/// 50 ms. Callers hold the operator at the record with a failpoint pause, so the state lasts
/// long enough to be seen, and must not restart kube-apiserver meanwhile: a restart beside a
/// scenario hid its whole cutover from both a watch and this poll.
pub async fn wait_cutover_started(
    client: &Client,
    namespace: &str,
    cluster: &str,
    timeout: Duration,
) -> Result<MoveSeen, SupportError> {
    let placements = ringshift_api(client, namespace, "ShardPlacement");
    let deadline = tokio::time::Instant::now() + timeout;
    let uid = loop {
        if let Ok(p) = placements.get(cluster).await
            && let Some(uid) = p.data["status"]["cutovers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["state"] == "Committing")
                .and_then(|c| c["migrationUid"].as_str().map(String::from))
        {
            break uid;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SupportError::Other(format!(
                "no cutover of {cluster} started within {}s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let moves = ringshift_api(client, namespace, "ShardMigration")
        .list(&Default::default())
        .await
        .map_err(|source| SupportError::Api {
            what: "listing ShardMigrations".into(),
            source,
        })?;
    moves
        .items
        .iter()
        .find(|m| m.metadata.uid.as_deref() == Some(uid.as_str()))
        .map(move_seen)
        .ok_or_else(|| SupportError::Other(format!("ShardMigration {uid} not found")))
}

/// One cutover record of ShardPlacement status: (attempt, state).
pub type Record = (u64, String);

/// Watches the cutover records of a cluster's ShardPlacement status (every version the watch
/// delivers) and finds any that went backwards: a record replaced by one of a lower attempt,
/// or a Committed record replaced at all (rule 13: records only move forward). A record that
/// disappears (pruned after its move ended) is not a change; if it comes back, it is compared
/// with the last one seen.
pub struct CutoverRecordWatch {
    state: std::sync::Arc<std::sync::Mutex<RecordHistory>>,
    task: tokio::task::JoinHandle<()>,
    api: kube::Api<DynamicObject>,
    cluster: String,
}

/// What a [`CutoverRecordWatch`] saw.
#[derive(Debug, Default, Clone)]
pub struct RecordHistory {
    /// Every distinct record each migration UID had, in order.
    pub by_migration: std::collections::BTreeMap<String, Vec<Record>>,
    /// The records that went backwards, described.
    pub regressions: Vec<String>,
    /// ShardPlacement versions examined.
    pub versions: usize,
}

impl RecordHistory {
    fn observe(&mut self, placement: &DynamicObject) {
        self.versions += 1;
        let rv = placement
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        for c in placement.data["status"]["cutovers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (Some(uid), Some(attempt), Some(state)) = (
                c["migrationUid"].as_str(),
                c["attempt"].as_u64(),
                c["state"].as_str(),
            ) else {
                continue;
            };
            let now: Record = (attempt, state.to_string());
            let seen = self.by_migration.entry(uid.to_string()).or_default();
            if let Some(last) = seen.last() {
                if *last == now {
                    continue;
                }
                if now.0 < last.0 || last.1 == "Committed" {
                    self.regressions.push(format!(
                        "migration {uid}: record (attempt {}, {}) replaced by (attempt {}, {}) \
                         at resourceVersion {rv}",
                        last.0, last.1, now.0, now.1
                    ));
                }
            }
            seen.push(now);
        }
    }

    /// Each migration's records as `uid: 1 Committing -> 1 Aborted -> 2 Committing -> ...`.
    pub fn describe(&self) -> String {
        self.by_migration
            .iter()
            .map(|(uid, rs)| {
                let steps: Vec<String> = rs.iter().map(|(a, s)| format!("{a} {s}")).collect();
                format!("{uid}: {}", steps.join(" -> "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl CutoverRecordWatch {
    pub fn start(client: &Client, namespace: &str, cluster: &str) -> CutoverRecordWatch {
        let api = ringshift_api(client, namespace, "ShardPlacement");
        let state = std::sync::Arc::new(std::sync::Mutex::new(RecordHistory::default()));
        let task = {
            let (api, state) = (api.clone(), state.clone());
            let config = watcher::Config::default().fields(&format!("metadata.name={cluster}"));
            tokio::spawn(async move {
                let stream = watcher(api, config).touched_objects();
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    if let Ok(p) = ev
                        && let Ok(mut s) = state.lock()
                    {
                        s.observe(&p);
                    }
                }
            })
        };
        CutoverRecordWatch {
            state,
            task,
            api,
            cluster: cluster.to_string(),
        }
    }

    /// Stops watching (after one last read of the object) and returns what was seen.
    pub async fn finish(self) -> RecordHistory {
        if let Ok(p) = self.api.get(&self.cluster).await
            && let Ok(mut s) = self.state.lock()
        {
            s.observe(&p);
        }
        self.task.abort();
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(rv: &str, records: &[(&str, u64, &str)]) -> DynamicObject {
        let cutovers: Vec<serde_json::Value> = records
            .iter()
            .map(|(u, a, s)| serde_json::json!({"migrationUid": u, "attempt": a, "state": s}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringshift.dev/v1alpha1",
            "kind": "ShardPlacement",
            "metadata": {"name": "c", "resourceVersion": rv},
            "status": {"cutovers": cutovers},
        }))
        .unwrap()
    }

    #[test]
    fn records_that_move_forward_are_fine() {
        let mut h = RecordHistory::default();
        h.observe(&placement("1", &[("m", 1, "Committing")]));
        h.observe(&placement("2", &[("m", 1, "Aborted")]));
        h.observe(&placement("3", &[("m", 2, "Committing")]));
        h.observe(&placement("4", &[("m", 2, "Committed")]));
        h.observe(&placement("5", &[]));
        h.observe(&placement("6", &[("m", 2, "Committed")]));
        assert!(h.regressions.is_empty(), "{:?}", h.regressions);
        assert_eq!(h.by_migration["m"].len(), 4);
        assert!(
            h.describe()
                .contains("1 Committing -> 1 Aborted -> 2 Committing")
        );
    }

    #[test]
    fn a_lower_attempt_or_a_replaced_commit_is_a_regression() {
        let mut h = RecordHistory::default();
        h.observe(&placement(
            "1",
            &[("m", 2, "Committed"), ("n", 3, "Committing")],
        ));
        h.observe(&placement("2", &[("m", 1, "Aborted"), ("n", 2, "Aborted")]));
        assert_eq!(h.regressions.len(), 2, "{:?}", h.regressions);
        let mut h = RecordHistory::default();
        h.observe(&placement("1", &[("m", 2, "Committed")]));
        h.observe(&placement("2", &[]));
        h.observe(&placement("3", &[("m", 2, "Aborted")]));
        assert_eq!(h.regressions.len(), 1, "a pruned commit came back aborted");
    }
}
