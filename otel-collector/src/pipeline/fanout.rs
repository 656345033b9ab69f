//! [`FanOut`]: one batch to several consumers, cloning for all but the last.
//!
//! Outcome: `Ok` when at least one consumer took the batch — a consumer that refused counts its
//! own drop (exporters count `otelcol_exporter_enqueue_failed_*`), so one slow exporter cannot
//! make clients resend data the others already have. When every consumer refused, the last
//! error is returned so the receiver answers with a retryable status.
//!
//! Exception: a *decisive* consumer (a persistent exporter, or a pipeline feeding one) that
//! refused makes the fan-out refuse even when others took the batch: success would acknowledge
//! data the persistent queue does not hold. The client resends, so the consumers that took the
//! batch get it twice (at-least-once).

use super::{ConsumeError, ConsumeFuture, Consumer, SharedConsumer, Telemetry};
use std::sync::Arc;

/// Sends each batch to every consumer in order.
pub struct FanOut {
    consumers: Vec<SharedConsumer>,
    /// Per consumer: its refusal is the fan-out's answer (see the module doc).
    decisive: Vec<bool>,
}

impl FanOut {
    /// A fan-out over `consumers`, none decisive; with exactly one it returns that consumer.
    pub fn build(consumers: Vec<SharedConsumer>) -> SharedConsumer {
        Self::build_decisive(consumers.into_iter().map(|c| (c, false)).collect())
    }

    /// A fan-out over `(consumer, decisive)` pairs; with exactly one it returns that consumer.
    pub fn build_decisive(mut consumers: Vec<(SharedConsumer, bool)>) -> SharedConsumer {
        if consumers.len() == 1 {
            return consumers.remove(0).0;
        }
        let (consumers, decisive) = consumers.into_iter().unzip();
        Arc::new(FanOut {
            consumers,
            decisive,
        })
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
            let mut decisive_err: Option<ConsumeError> = None;
            let mut outcome = |i: usize, r: Result<(), ConsumeError>| match r {
                Ok(()) => accepted = true,
                Err(e) if self.decisive[i] => decisive_err = Some(e),
                Err(e) => last_err = Some(e),
            };
            for (i, c) in rest.iter().enumerate() {
                outcome(i, c.consume(data.clone()).await);
            }
            outcome(rest.len(), last.consume(data).await);
            if let Some(e) = decisive_err {
                return Err(e);
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
    async fn a_refusing_decisive_consumer_is_the_answer_even_when_others_took_the_batch() {
        let (persistent, memory) = (probe(true), probe(false));
        for order in [
            vec![
                (persistent.clone() as SharedConsumer, true),
                (memory.clone() as SharedConsumer, false),
            ],
            vec![
                (memory.clone() as SharedConsumer, false),
                (persistent.clone() as SharedConsumer, true),
            ],
        ] {
            let e = FanOut::build_decisive(order)
                .consume(Telemetry::Traces(Default::default()))
                .await
                .expect_err("the persistent queue did not take it");
            assert!(e.is_retryable());
        }
        assert_eq!(
            memory.got.load(Ordering::Relaxed),
            2,
            "the others still get the batch"
        );
        let ok = FanOut::build_decisive(vec![(probe(false), true), (probe(true), false)]);
        ok.consume(Telemetry::Traces(Default::default()))
            .await
            .expect("a decisive consumer took it; the other refusal is its own drop");
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
