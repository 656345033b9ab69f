//! The [`Consumer`] trait: how one stage hands a batch to the next.

use super::Telemetry;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The future a [`Consumer`] returns.
pub type ConsumeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ConsumeError>> + Send + 'a>>;

/// A stage that takes batches: a processor chain, a fan-out, an exporter's queue, a connector.
///
/// Implementations must not block the caller for long: an exporter answers as soon as the batch is
/// queued, and refuses with [`ConsumeError::Refused`] when its queue is full instead of waiting.
pub trait Consumer: Send + Sync + 'static {
    /// Takes responsibility for `data`.
    ///
    /// # Errors
    /// [`ConsumeError::Refused`] when the batch cannot be taken now (memory limit, full queue) and
    /// the sender should retry; [`ConsumeError::Permanent`] when it never will be.
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_>;
}

/// A consumer shared between the stages that feed it.
pub type SharedConsumer = Arc<dyn Consumer>;

/// Why a consumer did not take a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumeError {
    /// Temporarily refused (memory limit, full queue, shutting down); the client should retry after
    /// `retry_after`. Receivers answer gRPC UNAVAILABLE with RetryInfo / HTTP 503 + Retry-After
    /// (`receiver::answer`).
    #[error("data refused, retry later: {reason}")]
    Refused {
        /// What refused it, for logs and error messages.
        reason: String,
        /// How long the client should wait before retrying.
        retry_after: Duration,
    },
    /// The data can never be accepted (malformed, rejected by the backend as invalid). Receivers
    /// answer gRPC INVALID_ARGUMENT / HTTP 400.
    #[error("data rejected: {0}")]
    Permanent(String),
}

impl ConsumeError {
    /// True when the client may retry the same data later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsumeError::Refused { .. })
    }
}

/// The future [`Shutdown::shutdown`] returns.
pub type ShutdownFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A started component that owns tasks or buffered data (exporter queue, batch processor, server).
///
/// The service calls `shutdown` in pipeline order (receivers first, exporters last) so that data
/// in flight is drained downstream before the next stage stops.
pub trait Shutdown: Send + Sync {
    /// Stops taking new work, flushes what is held, and returns by `deadline` at the latest
    /// (logging and counting whatever could not be delivered by then).
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_>;
}
