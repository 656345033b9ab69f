//! Delta → cumulative accumulation for sums and histograms.
//!
//! Per series (metric name + labels) the state holds the running total and the end time of the
//! last point added. For a new delta point with start `s` and time `t`:
//! - first point of a series: the total starts at its value;
//! - `t <= last` (a repeat or an older point) or `s < last` (its interval overlaps what was
//!   already added): dropped with reason `out_of_order` — adding it would count twice;
//! - `s == last` (contiguous, what SDKs send), `s == 0` (unknown start) or `s > last` (a gap:
//!   the points in between were lost): added; the total stays monotonic and the lost interval is
//!   simply missing from it;
//! - histogram bounds differ from the held ones: the state restarts from this point (a counter
//!   reset for Prometheus, which `rate()` handles).
//!
//! The state is bounded ([`DeltaState::new`] `max_series`); entries not updated for `expiry` are
//! forgotten, and when the state is full new series are dropped with reason `delta_state_full`.
//!
//! Tests: `cargo test -p otel-collector translate::delta`.

use super::model::Labels;
use super::DropReason;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Result of adding a delta point.
#[derive(Debug, PartialEq)]
pub enum DeltaOutcome {
    /// The cumulative value of a sum.
    Value(f64),
    /// The cumulative state of a histogram.
    Histogram {
        /// Cumulative count.
        count: u64,
        /// Cumulative sum.
        sum: f64,
        /// Cumulative per-bucket (not yet prefix-summed) counts.
        buckets: Vec<u64>,
    },
    /// Not added.
    Dropped(DropReason),
}

#[derive(Debug)]
enum Acc {
    Number(f64),
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

#[derive(Debug)]
struct Entry {
    last_ns: u64,
    acc: Acc,
    touched: Instant,
}

/// Bounded per-series accumulation state.
#[derive(Debug)]
pub struct DeltaState {
    series: HashMap<(String, Labels), Entry>,
    max_series: usize,
    expiry: Duration,
    last_sweep: Instant,
}

impl DeltaState {
    /// State for at most `max_series` series, forgetting those idle for `expiry`.
    pub fn new(max_series: usize, expiry: Duration) -> Self {
        DeltaState {
            series: HashMap::new(),
            max_series,
            expiry,
            last_sweep: Instant::now(),
        }
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Forgets expired series (at most every `expiry / 10`).
    pub fn sweep(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) < self.expiry / 10 {
            return;
        }
        self.last_sweep = now;
        let expiry = self.expiry;
        self.series
            .retain(|_, e| now.duration_since(e.touched) < expiry);
    }

    fn check(&mut self, name: &str, labels: &Labels) -> Result<(), DropReason> {
        if self.series.len() < self.max_series {
            return Ok(());
        }
        if self
            .series
            .contains_key(&(name.to_string(), labels.clone()))
        {
            return Ok(());
        }
        // Full: make room from expired entries before refusing.
        let now = Instant::now();
        let expiry = self.expiry;
        self.series
            .retain(|_, e| now.duration_since(e.touched) < expiry);
        if self.series.len() < self.max_series {
            Ok(())
        } else {
            Err(DropReason::DeltaStateFull)
        }
    }

    fn order(entry: &Entry, start_ns: u64, time_ns: u64) -> Result<(), DropReason> {
        if time_ns <= entry.last_ns || (start_ns != 0 && start_ns < entry.last_ns) {
            Err(DropReason::OutOfOrder)
        } else {
            Ok(())
        }
    }

    /// Adds a delta sum point; returns the cumulative total.
    pub fn add_number(
        &mut self,
        name: &str,
        labels: &Labels,
        start_ns: u64,
        time_ns: u64,
        value: f64,
    ) -> DeltaOutcome {
        if let Err(r) = self.check(name, labels) {
            return DeltaOutcome::Dropped(r);
        }
        let now = Instant::now();
        let key = (name.to_string(), labels.clone());
        match self.series.get_mut(&key) {
            Some(e) => {
                if let Err(r) = Self::order(e, start_ns, time_ns) {
                    return DeltaOutcome::Dropped(r);
                }
                let total = match &mut e.acc {
                    Acc::Number(t) => {
                        *t += value;
                        *t
                    }
                    acc => {
                        *acc = Acc::Number(value);
                        value
                    }
                };
                e.last_ns = time_ns;
                e.touched = now;
                DeltaOutcome::Value(total)
            }
            None => {
                self.series.insert(
                    key,
                    Entry {
                        last_ns: time_ns,
                        acc: Acc::Number(value),
                        touched: now,
                    },
                );
                DeltaOutcome::Value(value)
            }
        }
    }

    /// Adds a delta histogram point (`counts` per bucket, `bounds.len() + 1` of them).
    #[allow(clippy::too_many_arguments)]
    pub fn add_histogram(
        &mut self,
        name: &str,
        labels: &Labels,
        start_ns: u64,
        time_ns: u64,
        bounds: &[f64],
        counts: &[u64],
        count: u64,
        sum: f64,
    ) -> DeltaOutcome {
        if let Err(r) = self.check(name, labels) {
            return DeltaOutcome::Dropped(r);
        }
        let now = Instant::now();
        let key = (name.to_string(), labels.clone());
        let fresh = || Acc::Histogram {
            bounds: bounds.to_vec(),
            counts: counts.to_vec(),
            count,
            sum,
        };
        let entry = match self.series.get_mut(&key) {
            Some(e) => {
                if let Err(r) = Self::order(e, start_ns, time_ns) {
                    return DeltaOutcome::Dropped(r);
                }
                match &mut e.acc {
                    Acc::Histogram {
                        bounds: b,
                        counts: c,
                        count: n,
                        sum: s,
                    } if b.as_slice() == bounds && c.len() == counts.len() => {
                        // Saturating: malformed deltas may add up past u64.
                        for (acc, add) in c.iter_mut().zip(counts) {
                            *acc = acc.saturating_add(*add);
                        }
                        *n = n.saturating_add(count);
                        *s += sum;
                    }
                    acc => *acc = fresh(),
                }
                e.last_ns = time_ns;
                e.touched = now;
                e
            }
            None => self.series.entry(key).or_insert(Entry {
                last_ns: time_ns,
                acc: fresh(),
                touched: now,
            }),
        };
        match &entry.acc {
            Acc::Histogram {
                counts, count, sum, ..
            } => DeltaOutcome::Histogram {
                count: *count,
                sum: *sum,
                buckets: counts.clone(),
            },
            Acc::Number(v) => DeltaOutcome::Value(*v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l() -> Labels {
        vec![("a".into(), "1".into())]
    }

    #[test]
    fn contiguous_deltas_accumulate() {
        let mut s = DeltaState::new(10, Duration::from_secs(60));
        assert_eq!(
            s.add_number("m", &l(), 0, 10, 2.0),
            DeltaOutcome::Value(2.0)
        );
        assert_eq!(
            s.add_number("m", &l(), 10, 20, 3.0),
            DeltaOutcome::Value(5.0)
        );
        // A gap (20..30 lost) is still added.
        assert_eq!(
            s.add_number("m", &l(), 30, 40, 1.0),
            DeltaOutcome::Value(6.0)
        );
    }

    #[test]
    fn repeated_and_overlapping_points_are_dropped() {
        let mut s = DeltaState::new(10, Duration::from_secs(60));
        s.add_number("m", &l(), 0, 10, 2.0);
        s.add_number("m", &l(), 10, 20, 3.0);
        assert_eq!(
            s.add_number("m", &l(), 10, 20, 3.0),
            DeltaOutcome::Dropped(DropReason::OutOfOrder)
        );
        assert_eq!(
            s.add_number("m", &l(), 0, 5, 3.0),
            DeltaOutcome::Dropped(DropReason::OutOfOrder)
        );
        assert_eq!(
            s.add_number("m", &l(), 15, 25, 3.0),
            DeltaOutcome::Dropped(DropReason::OutOfOrder)
        );
        assert_eq!(
            s.add_number("m", &l(), 20, 30, 1.0),
            DeltaOutcome::Value(6.0)
        );
    }

    #[test]
    fn state_is_bounded() {
        let mut s = DeltaState::new(1, Duration::from_secs(60));
        s.add_number("m", &l(), 0, 10, 2.0);
        assert_eq!(
            s.add_number("m2", &l(), 0, 10, 2.0),
            DeltaOutcome::Dropped(DropReason::DeltaStateFull)
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn expired_series_make_room() {
        let mut s = DeltaState::new(1, Duration::from_millis(1));
        s.add_number("m", &l(), 0, 10, 2.0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            s.add_number("m2", &l(), 0, 10, 2.0),
            DeltaOutcome::Value(2.0)
        );
    }

    #[test]
    fn histograms_accumulate_and_reset_on_new_bounds() {
        let mut s = DeltaState::new(10, Duration::from_secs(60));
        s.add_histogram("h", &l(), 0, 10, &[1.0], &[1, 1], 2, 3.0);
        assert_eq!(
            s.add_histogram("h", &l(), 10, 20, &[1.0], &[2, 0], 2, 1.0),
            DeltaOutcome::Histogram {
                count: 4,
                sum: 4.0,
                buckets: vec![3, 1]
            }
        );
        assert_eq!(
            s.add_histogram("h", &l(), 20, 30, &[2.0], &[1, 0], 1, 1.0),
            DeltaOutcome::Histogram {
                count: 1,
                sum: 1.0,
                buckets: vec![1, 0]
            }
        );
    }
}
