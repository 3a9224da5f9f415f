//! Inputs of the pre-flight room check, read from the nodes: the target's free and total
//! space (its admin /metrics gauges) and the bytes a move is estimated to carry (the source's
//! stored bytes times the share of its owned hash space that moves).

use ringshift_node_api::client::AdminClient;
use ringshift_planner::eta::estimate_bytes;
use ringshift_planner::room::Room;
use ringshift_ring::HashRange;

use super::nodes::CALL_TIMEOUT;

/// Gauge names the nodes export (see node/src/metrics.rs; they must not be renamed).
pub const FREE_GAUGE: &str = "ringshift_node_data_free_bytes";
pub const TOTAL_GAUGE: &str = "ringshift_node_data_total_bytes";
pub const DATA_GAUGE: &str = "ringshift_node_data_bytes";

/// The value of an unlabelled gauge in Prometheus text format.
pub fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then_some(v.trim())
        })
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v as u64)
}

/// Number of hashes in `ranges` (inclusive, so the full space is 2^64).
pub fn span(ranges: &[HashRange]) -> u128 {
    ranges
        .iter()
        .map(|r| u128::from(r.end.saturating_sub(r.start)) + 1)
        .sum()
}

async fn metrics(node: &AdminClient) -> Option<String> {
    let raw = tokio::time::timeout(CALL_TIMEOUT, node.get_raw("/metrics"))
        .await
        .ok()?
        .ok()?;
    String::from_utf8(raw).ok()
}

/// The target's filesystem room, when its gauges answer.
pub async fn room_of(target: &AdminClient) -> Option<Room> {
    let text = metrics(target).await?;
    Some(Room {
        free_bytes: gauge(&text, FREE_GAUGE)?,
        total_bytes: gauge(&text, TOTAL_GAUGE)?,
    })
}

/// Estimated bytes of `moving` on `source`, when the source answers.
pub async fn estimate_of(source: &AdminClient, moving: &[HashRange]) -> Option<u64> {
    let status = tokio::time::timeout(CALL_TIMEOUT, source.status())
        .await
        .ok()?
        .ok()?;
    let stored = match metrics(source).await.and_then(|t| gauge(&t, DATA_GAUGE)) {
        Some(b) => b,
        None => status.bytes,
    };
    Some(estimate_bytes(
        stored,
        span(moving),
        span(&status.owned_ranges),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP ringshift_node_data_free_bytes Bytes still available\n\
        # TYPE ringshift_node_data_free_bytes gauge\n\
        ringshift_node_data_free_bytes 1073741824\n\
        ringshift_node_data_free_bytes_extra 5\n\
        ringshift_node_data_total_bytes 2.147483648e9\n\
        ringshift_node_ops_total{command=\"get\"} 3\n\
        ringshift_node_data_bytes -1\n";

    #[test]
    fn reads_unlabelled_gauges() {
        assert_eq!(gauge(TEXT, FREE_GAUGE), Some(1 << 30));
        assert_eq!(gauge(TEXT, TOTAL_GAUGE), Some(2 << 30));
        assert_eq!(gauge(TEXT, DATA_GAUGE), None, "negative is not a size");
        assert_eq!(gauge(TEXT, "ringshift_node_missing"), None);
        assert_eq!(gauge("", FREE_GAUGE), None);
    }

    #[test]
    fn spans_are_inclusive_and_cover_the_full_space() {
        let full = [HashRange::new(0, u64::MAX).unwrap()];
        assert_eq!(span(&full), 1u128 << 64);
        let two = [
            HashRange::new(0, 9).unwrap(),
            HashRange::new(20, 29).unwrap(),
        ];
        assert_eq!(span(&two), 20);
        assert_eq!(estimate_bytes(1000, span(&two[..1]), span(&two)), 500);
    }
}
