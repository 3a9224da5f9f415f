//! Polling with a deadline and a message that says what was awaited and what was last seen.

use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[error("timed out after {secs}s waiting for {what}; last seen: {last}")]
pub struct WaitError {
    pub what: String,
    pub secs: u64,
    pub last: String,
}

/// Calls `check` every 250 ms until it returns `Ok(value)`; `Err(observation)` means "not yet"
/// and the last observation goes into the timeout error.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(WaitError {
                what: what.to_string(),
                secs: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_value_once_ready() {
        let mut n = 0;
        let v = wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            let now = n;
            async move {
                if now >= 3 {
                    Ok(now)
                } else {
                    Err(format!("n={now}"))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn times_out_with_last_observation() {
        let err = wait_until::<(), _, _>("never", Duration::from_millis(300), || async {
            Err("still no".to_string())
        })
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("never") && err.to_string().contains("still no"),
            "{err}"
        );
    }
}
