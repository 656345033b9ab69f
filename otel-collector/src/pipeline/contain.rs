//! Containing panics where user data is handled: a panic (a bug, or input nobody foresaw) in a
//! receiver's call into the pipelines, a batch processor flush, an exporter's send or writer is
//! caught there, logged, counted in
//! `otelcol_component_panics_total{component_kind, component_id}`, and the data being handled is
//! dropped (and counted as the component's failure) — the component keeps serving. Without this
//! a panic in a spawned task ends the task silently (the batch processor's timer stopped
//! flushing), and one in a request handler resets the client's connection.
//!
//! Tests: `cargo test -p otel-collector pipeline::contain`.

use crate::telemetry::SelfMetrics;
use futures::FutureExt as _;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// A caught panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Panicked {
    /// The panic message.
    pub(crate) message: String,
}

/// Polls `fut` to completion; a panic inside is caught, logged and counted for the component
/// `kind` (`receiver`, `processor`, `exporter`) `id`.
pub(crate) async fn catch<F: Future>(
    kind: &'static str,
    id: &str,
    fut: F,
) -> Result<F::Output, Panicked> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| record(kind, id, payload))
}

/// Runs `f`; a panic inside is caught, logged and counted like [`catch`] does.
pub(crate) fn catch_sync<T>(
    kind: &'static str,
    id: &str,
    f: impl FnOnce() -> T,
) -> Result<T, Panicked> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| record(kind, id, payload))
}

/// Pause before a supervised task that panicked is started again (a panic that repeats at once
/// must not spin a core).
const RESTART_DELAY: Duration = Duration::from_millis(100);

/// Runs the task `make` builds until it returns normally: after a panic (caught and counted) a
/// fresh one is started.
pub(crate) async fn supervise<F, Fut>(kind: &'static str, id: String, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    while catch(kind, &id, make()).await.is_err() {
        tracing::warn!(component_kind = kind, component_id = %id, "restarting the task after a panic");
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

fn record(kind: &'static str, id: &str, payload: Box<dyn Any + Send>) -> Panicked {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into());
    SelfMetrics::global()
        .counter(
            "otelcol_component_panics_total",
            "Panics caught while handling data; the data in hand was dropped, the component kept serving.",
            vec![("component_kind", kind.into()), ("component_id", id.into())],
        )
        .add(1);
    tracing::error!(
        component_kind = kind,
        component_id = id,
        panic = %message,
        "caught a panic while handling data; that data is dropped, the component keeps serving"
    );
    Panicked { message }
}

/// The number of panics caught so far for a component (tests).
#[cfg(test)]
pub(crate) fn panics(kind: &'static str, id: &str) -> u64 {
    SelfMetrics::global()
        .counter(
            "otelcol_component_panics_total",
            "Panics caught while handling data; the data in hand was dropped, the component kept serving.",
            vec![("component_kind", kind.into()), ("component_id", id.into())],
        )
        .get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panic_is_caught_counted_and_named() {
        let before = panics("processor", "contain-test");
        let r = catch("processor", "contain-test", async {
            panic!("bad bucket {}", 7)
        })
        .await;
        assert_eq!(r.unwrap_err().message, "bad bucket 7");
        let r = catch_sync("processor", "contain-test", || -> u8 {
            panic!("static text")
        });
        assert_eq!(r.unwrap_err().message, "static text");
        assert_eq!(panics("processor", "contain-test"), before + 2);
        assert_eq!(catch("processor", "contain-test", async { 5 }).await, Ok(5));
    }

    #[tokio::test]
    async fn a_supervised_task_is_restarted_after_a_panic() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        supervise("processor", "supervise-test".into(), move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("first two runs fail");
                }
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(panics("processor", "supervise-test"), 2);
    }
}
