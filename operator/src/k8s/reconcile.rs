//! What every reconcile shares: timing and error metrics, and per-object exponential backoff
//! after failures.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;

use super::context::Context;
use super::error::Reason;
use super::key::ObjectKey;

/// Consecutive failures per controller and object.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<(&'static str, ObjectKey), u32>>);

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, controller: &'static str, key: &ObjectKey) -> Duration {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry((controller, key.clone())).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, controller: &'static str, key: &ObjectKey) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(controller, key.clone()));
    }
}

/// Exponential backoff: 1s, 2s, 4s ... capped at 5 minutes.
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(9);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

/// Runs one reconcile of `key` by `controller`: records its duration and result (with the
/// error's reason) in the reconcile metrics, and forgets the object's failures on success.
pub async fn measured<E: Reason>(
    ctx: &Context,
    controller: &'static str,
    key: &ObjectKey,
    work: impl Future<Output = Result<Action, E>>,
) -> Result<Action, E> {
    let started = Instant::now();
    let result = work.await;
    let reason = result.as_ref().err().map(Reason::reason);
    ctx.metrics.observe(
        controller,
        started.elapsed().as_secs_f64(),
        reason.as_deref(),
    );
    if result.is_ok() {
        ctx.backoff.succeeded(controller, key);
    }
    result
}

/// When to retry a failed reconcile of `key` by `controller`: after `soon` when given (a
/// failure expected to clear at once, such as a lost write race), else after the object's next
/// backoff delay.
pub fn retry_in(
    ctx: &Context,
    controller: &'static str,
    key: &ObjectKey,
    soon: Option<Duration>,
) -> Duration {
    soon.unwrap_or_else(|| ctx.backoff.failed(controller, key))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use http::{Request, Response, StatusCode};
    use kube::client::Body;

    use super::*;
    use crate::cache::Stores;
    use crate::metrics::Metrics;

    /// A context whose client answers every request 500 (the wrapper makes none).
    fn context() -> Context {
        let svc = tower::service_fn(|_req: Request<Body>| async {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, std::convert::Infallible>(r)
        });
        Context::new(
            kube::Client::new(svc, "ns"),
            "test",
            Arc::new(Metrics::new()),
            Stores::empty(),
        )
    }

    #[derive(Debug)]
    struct Refused;

    impl Reason for Refused {
        fn reason(&self) -> Cow<'static, str> {
            "Refused".into()
        }
    }

    #[tokio::test]
    async fn a_reconcile_is_counted_with_its_reason_and_a_success_resets_the_backoff() {
        let ctx = context();
        let key = ObjectKey::new("ns", "demo");
        let failed = measured(&ctx, "test", &key, async { Err::<Action, _>(Refused) }).await;
        assert!(failed.is_err());
        assert_eq!(retry_in(&ctx, "test", &key, None), Duration::from_secs(1));
        assert_eq!(retry_in(&ctx, "test", &key, None), Duration::from_secs(2));
        assert_eq!(
            retry_in(&ctx, "test", &key, Some(Duration::from_millis(200))),
            Duration::from_millis(200),
            "a race lost is retried soon, without counting as a failure"
        );
        let text = ctx.metrics.encode().expect("metrics encode");
        assert!(
            text.contains(r#"reconcile_errors_total{controller="test",reason="Refused"} 1"#),
            "{text}"
        );
        let ok = measured(&ctx, "test", &key, async {
            Ok::<_, Refused>(Action::await_change())
        })
        .await;
        assert!(ok.is_ok());
        assert_eq!(retry_in(&ctx, "test", &key, None), Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_delay(1), Duration::from_secs(1));
        assert_eq!(backoff_delay(2), Duration::from_secs(2));
        assert_eq!(backoff_delay(5), Duration::from_secs(16));
        assert_eq!(backoff_delay(50), Duration::from_secs(300));
    }

    #[test]
    fn a_success_resets_only_its_own_object_and_controller() {
        let b = Backoff::default();
        let a = ObjectKey::new("ns", "a");
        let other = ObjectKey::new("ns", "b");
        assert_eq!(b.failed("c1", &a), Duration::from_secs(1));
        assert_eq!(b.failed("c1", &a), Duration::from_secs(2));
        assert_eq!(b.failed("c2", &a), Duration::from_secs(1), "per controller");
        assert_eq!(b.failed("c1", &other), Duration::from_secs(1), "per object");
        b.succeeded("c1", &a);
        assert_eq!(b.failed("c1", &a), Duration::from_secs(1));
        assert_eq!(b.failed("c2", &a), Duration::from_secs(2));
    }
}
