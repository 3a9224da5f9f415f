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
}

fn move_seen(m: &DynamicObject) -> MoveSeen {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    MoveSeen {
        name: m.metadata.name.clone().unwrap_or_default(),
        uid: m.metadata.uid.clone().unwrap_or_default(),
        source: s(&m.data["spec"]["source"]),
        target: s(&m.data["spec"]["target"]),
        phase: s(&m.data["status"]["phase"]),
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
    let api = ringshift_api(client, namespace, "ShardMigration");
    let stream = watcher(api, watcher::Config::default()).touched_objects();
    let found = tokio::time::timeout(timeout, async {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(m) = ev {
                let seen = move_seen(&m);
                if seen.phase == phase && m.data["spec"]["cluster"].as_str() == Some(cluster) {
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
            "no ShardMigration of {cluster} reached {phase} within {}s",
            timeout.as_secs()
        ))),
    }
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
