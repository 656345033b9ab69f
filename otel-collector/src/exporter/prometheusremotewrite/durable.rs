//! The remote-write protocol behind the shared (persistent) sending queue.
//!
//! A stored batch is one OTLP metrics request. When the queue takes it off the disk,
//! [`DurableRemoteWrite::prepare`] translates it and splits it into remote-write requests;
//! [`DurableRemoteWrite::send`] sends them in order. A retry of the batch resumes after the
//! requests the endpoint already accepted, so a failure halfway through resends nothing twice
//! (within one run: after a crash the whole batch is sent again, at-least-once).

use super::proto::EncodedRequest;
use super::{Attempt, RemoteWriteExporter};
use crate::exporter::queue::Export;
use crate::exporter::retry::ExportError;
use crate::pipeline::Telemetry;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A [`RemoteWriteExporter`] (started without its own queue) as an [`Export`] of the shared queue.
#[derive(Debug, Clone)]
pub struct DurableRemoteWrite(pub Arc<RemoteWriteExporter>);

impl Export for DurableRemoteWrite {
    type Prepared = Batch;

    fn prepare(&self, data: Telemetry) -> Result<Batch, ExportError> {
        match data {
            Telemetry::Metrics(req) => Ok(Batch::new(self.0.encode(&req))),
            other => Err(ExportError::permanent(format!(
                "the prometheusremotewrite exporter takes metrics only, got {}",
                other.signal()
            ))),
        }
    }

    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let sender = &self.0.sender;
            while let Some(req) = batch.next() {
                match sender.attempt(req).await {
                    Attempt::Ok => {
                        sender.metrics.sent_samples.add(req.samples as u64);
                        batch.accepted.fetch_add(1, Ordering::AcqRel);
                    }
                    Attempt::Retry(msg, retry_after) => {
                        sender.metrics.retries.add(1);
                        return Err(ExportError::retryable(msg, retry_after));
                    }
                    Attempt::Permanent(msg) => {
                        // One rejected request must not hold back the rest of the batch.
                        sender.rejected(req, &msg);
                        batch.accepted.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
            Ok(())
        })
    }
}

/// One stored batch as remote-write requests, and how many of them are done with.
#[derive(Debug)]
pub struct Batch {
    requests: Vec<EncodedRequest>,
    /// Requests accepted (or permanently rejected) so far; a retry starts here.
    accepted: AtomicUsize,
}

impl Batch {
    fn new(requests: Vec<EncodedRequest>) -> Self {
        Batch {
            requests,
            accepted: AtomicUsize::new(0),
        }
    }

    /// The first request not yet done with.
    fn next(&self) -> Option<&EncodedRequest> {
        self.requests.get(self.accepted.load(Ordering::Acquire))
    }

    /// Requests in the batch.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// True when the batch translated to no request at all.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}
