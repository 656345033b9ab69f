//! Which runs of anomalous points alert. A run alerts only if it holds an event onset (a point
//! with a non-zero `onset_score`: a new high of the score, see `model::score`) and, within
//! `suppress_points` after an alert, only with a surprise `onset_ratio` times that alert's
//! largest: otherwise it repeats an event already seen (the same incident flapping, or its
//! aftershocks). The NAB scorer counts such repeats outside a label window as false positives,
//! and whoever is paged counts them as noise.
//!
//! Run its unit tests with `cargo test -p anomaly-detector model::repeat`.

/// One point as the alert rule sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunPoint {
    /// The point is in a run of scores at or above `score_threshold` (started beyond the band).
    pub(crate) over: bool,
    /// The run has lasted `consecutive` points: anomalous unless it is a repeat.
    pub(crate) candidate: bool,
    /// The point is an event onset (`onset_score` > 0).
    pub(crate) onset: bool,
    /// The point's surprise.
    pub(crate) z: f64,
}

/// Alert-repeat state of one series.
#[derive(Debug, Clone, Default)]
pub(crate) struct RepeatGate {
    /// Points seen: the time base of the window.
    t: u64,
    /// Latest alerting point and the largest surprise of its alert.
    last: Option<(u64, f64)>,
    /// Whether the current run alerts (`None`: not decided or no run).
    run: Option<bool>,
    /// Whether the current run holds an onset.
    run_onset: bool,
}

impl RepeatGate {
    /// Feeds one point; returns whether it alerts. A run that starts as a repeat alerts from
    /// the point where it holds an onset and its surprise exceeds `ratio` times the earlier
    /// alert's; once alerting it alerts to its end.
    pub(crate) fn push(&mut self, p: RunPoint, window: usize, ratio: f64) -> bool {
        let t = self.t;
        self.t += 1;
        if !p.over {
            self.run_onset = false;
        }
        self.run_onset |= p.onset;
        if !p.candidate {
            self.run = None;
            return false;
        }
        let repeat = match self.last {
            Some((t0, z0)) if t0 + window as u64 >= t => p.z <= ratio * z0,
            _ => false,
        };
        let alerting = self.run == Some(true) || (self.run_onset && !repeat);
        if alerting {
            let peak = match (self.run, self.last) {
                (Some(true), Some((_, z0))) => z0.max(p.z),
                _ => p.z,
            };
            self.last = Some((t, peak));
        }
        self.run = Some(alerting);
        alerting
    }

    /// A point that was not scored (gap, warm-up): ends any run, keeps the time base.
    pub(crate) fn skip(&mut self) {
        self.t += 1;
        self.run = None;
        self.run_onset = false;
    }

    /// Forgets earlier alerts: the next run with an onset alerts.
    pub(crate) fn forget(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (anomalous, onset, z) triples (every anomalous point also `over`); returns the
    /// alerting indices.
    fn alerts(points: &[(bool, bool, f64)], window: usize) -> Vec<usize> {
        let mut g = RepeatGate::default();
        points
            .iter()
            .enumerate()
            .filter(|(_, &(a, onset, z))| {
                let p = RunPoint {
                    over: a,
                    candidate: a,
                    onset,
                    z,
                };
                g.push(p, window, 2.0)
            })
            .map(|(i, _)| i)
            .collect()
    }

    const QUIET: (bool, bool, f64) = (false, false, 0.0);

    #[test]
    fn a_run_without_an_onset_does_not_alert() {
        let mut p = vec![QUIET; 50];
        p[10] = (true, false, 8.0);
        p[11] = (true, false, 9.0);
        p[30] = (true, true, 6.0);
        p[31] = (true, false, 5.0);
        assert_eq!(alerts(&p, 20), vec![30, 31]);
    }

    #[test]
    fn a_smaller_run_soon_after_an_alert_is_a_repeat() {
        let mut p = vec![QUIET; 100];
        p[10] = (true, true, 8.0);
        p[11] = (true, false, 9.0);
        p[40] = (true, true, 6.0); // repeat: 6 <= 2 * 9
        p[55] = (true, true, 19.0); // clearly larger (19 > 2 * 9): alerts
        assert_eq!(alerts(&p, 50), vec![10, 11, 55]);
    }

    #[test]
    fn the_window_counts_from_the_last_alerting_point() {
        let mut p = vec![QUIET; 200];
        p[10] = (true, true, 8.0);
        p[100] = (true, true, 5.0);
        assert_eq!(alerts(&p, 50), vec![10, 100]);
        let mut p = vec![QUIET; 200];
        p[10] = (true, true, 8.0);
        for x in p.iter_mut().take(80).skip(11) {
            *x = (true, false, 8.0);
        }
        p[100] = (true, true, 5.0);
        assert!(!alerts(&p, 50).contains(&100));
    }

    #[test]
    fn a_repeat_run_alerts_once_it_grows_past_the_ratio() {
        let mut p = vec![QUIET; 60];
        p[5] = (true, true, 4.0);
        p[20] = (true, true, 5.0);
        p[21] = (true, false, 9.0);
        p[22] = (true, false, 3.0); // same run, already alerting
        assert_eq!(alerts(&p, 50), vec![5, 21, 22]);
    }

    #[test]
    fn forget_lets_the_next_run_alert() {
        let p = |candidate, z| RunPoint {
            over: candidate,
            candidate,
            onset: candidate,
            z,
        };
        let mut g = RepeatGate::default();
        assert!(g.push(p(true, 10.0), 50, 2.0));
        assert!(!g.push(p(false, 0.0), 50, 2.0));
        assert!(!g.push(p(true, 3.0), 50, 2.0));
        assert!(!g.push(p(false, 0.0), 50, 2.0));
        g.forget();
        assert!(g.push(p(true, 3.0), 50, 2.0));
    }
}
