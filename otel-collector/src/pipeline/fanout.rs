//! [`FanOut`]: one batch to several consumers, cloning for all but the last.
//!
//! Outcome: `Ok` when at least one consumer took the batch — a consumer that refused counts its
//! own drop (exporters count `otelcol_exporter_enqueue_failed_*`), so one slow exporter cannot
//! make clients resend data the others already have. When every consumer refused, the last
//! error is returned so the receiver answers with a retryable status.

use super::{ConsumeError, ConsumeFuture, Consumer, SharedConsumer, Telemetry};
use std::sync::Arc;

/// Sends each batch to every consumer in order.
pub struct FanOut {
    consumers: Vec<SharedConsumer>,
}

impl FanOut {
    /// A fan-out over `consumers`; with exactly one it returns that consumer unchanged.
    pub fn build(mut consumers: Vec<SharedConsumer>) -> SharedConsumer {
        if consumers.len() == 1 {
            return consumers.remove(0);
        }
        Arc::new(FanOut { consumers })
    }
}

impl Consumer for FanOut {
    fn consume(&self, data: Telemetry) -> ConsumeFuture<'_> {
        Box::pin(async move {
            let Some((last, rest)) = self.consumers.split_last() else {
                return Ok(());
            };
            let mut accepted = false;
            let mut last_err: Option<ConsumeError> = None;
            for c in rest {
                match c.consume(data.clone()).await {
                    Ok(()) => accepted = true,
                    Err(e) => last_err = Some(e),
                }
            }
            match last.consume(data).await {
                Ok(()) => accepted = true,
                Err(e) => last_err = Some(e),
            }
            match (accepted, last_err) {
                (true, _) | (false, None) => Ok(()),
                (false, Some(e)) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Probe {
        got: AtomicUsize,
        refuse: bool,
    }
    impl Consumer for Probe {
        fn consume(&self, _d: Telemetry) -> ConsumeFuture<'_> {
            self.got.fetch_add(1, Ordering::Relaxed);
            let refuse = self.refuse;
            Box::pin(async move {
                if refuse {
                    Err(ConsumeError::Refused {
                        reason: "full".into(),
                        retry_after: Duration::from_secs(1),
                    })
                } else {
                    Ok(())
                }
            })
        }
    }

    fn probe(refuse: bool) -> Arc<Probe> {
        Arc::new(Probe {
            got: AtomicUsize::new(0),
            refuse,
        })
    }

    #[tokio::test]
    async fn one_refusing_consumer_does_not_fail_the_others() {
        let (a, b) = (probe(true), probe(false));
        let f = FanOut::build(vec![a.clone(), b.clone()]);
        f.consume(Telemetry::Traces(Default::default()))
            .await
            .unwrap();
        assert_eq!(a.got.load(Ordering::Relaxed), 1);
        assert_eq!(b.got.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn all_refusing_returns_retryable_error() {
        let f = FanOut::build(vec![probe(true), probe(true)]);
        let e = f
            .consume(Telemetry::Traces(Default::default()))
            .await
            .unwrap_err();
        assert!(e.is_retryable());
    }
}
