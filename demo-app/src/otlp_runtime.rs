//! Runs the OTLP exporters' futures inside the Tokio runtime's context.
//!
//! The SDK's batch span processor and periodic metric reader export from their own threads
//! (`futures_executor::block_on`), outside any Tokio runtime. The gRPC exporter copes (tonic's
//! channel works in the runtime's tasks), but the HTTP exporter's async `reqwest` client needs a
//! Tokio reactor in the polling thread and panics ("there is no reactor running"), which kills
//! the span processor and the metric reader: with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`
//! or `http/json` nothing was exported. [`OnRuntime`] wraps an exporter and enters the
//! runtime's context for each poll of its futures, so its sockets and timers register with the
//! runtime's drivers.
//!
//! Tests: `cargo test -p demo-app otlp_runtime` and, through the real collector over
//! OTLP/HTTP, `cargo test -p demo-app --test e2e_collector`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tokio::runtime::Handle;

/// An exporter whose export futures are polled inside `handle`'s runtime context.
#[derive(Debug)]
pub struct OnRuntime<E> {
    inner: E,
    handle: Handle,
}

impl<E> OnRuntime<E> {
    /// Wraps `inner`; its futures will run in the context of `handle`.
    pub fn new(inner: E, handle: Handle) -> Self {
        Self { inner, handle }
    }
}

/// `fut`, polled with `handle` entered.
struct InRuntime<F> {
    fut: Pin<Box<F>>,
    handle: Handle,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.handle.enter();
        this.fut.as_mut().poll(cx)
    }
}

fn in_runtime<F: Future>(handle: &Handle, fut: F) -> InRuntime<F> {
    InRuntime {
        fut: Box::pin(fut),
        handle: handle.clone(),
    }
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        in_runtime(&self.handle, self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        in_runtime(&self.handle, self.inner.export(metrics)).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.handle.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exporter whose export needs a Tokio reactor, as async reqwest does.
    #[derive(Debug)]
    struct NeedsReactor;

    impl SpanExporter for NeedsReactor {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(())
        }
    }

    #[test]
    fn export_polled_outside_the_runtime_uses_its_drivers() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let exporter = OnRuntime::new(NeedsReactor, rt.handle().clone());
        // As the batch span processor does: block_on in a plain thread.
        let result =
            std::thread::spawn(move || futures_executor_block_on(exporter.export(Vec::new())))
                .join()
                .expect("export must not panic outside the runtime");
        assert!(result.is_ok());
    }

    /// A minimal `block_on` for a plain thread (what the SDK's processor threads do).
    fn futures_executor_block_on<F: Future>(fut: F) -> F::Output {
        use std::sync::Arc;
        use std::task::Wake;
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Arc::new(Unpark(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        let mut fut = Box::pin(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
