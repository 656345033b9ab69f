//! Multi-window multi-burn-rate alert windows: Sloth's built-in catalog (Google SRE workbook,
//! "Alerting on SLOs", recommended parameters), for 30-day and 28-day SLO periods.
//!
//! Each alert pairs a long window (is the budget really burning?) with a short one (is it still
//! burning now?). The burn-rate factor is the speed at which `error_budget_percent` of the whole
//! period's budget is spent within the long window: `percent × period_hours / 100 / long_hours`,
//! computed in the same order as Sloth so the factors print identically (30 d: 14.4, 6, 3, 1).
//!
//! Tests: `cargo test -p slo-rules windows::`.

use crate::format::PromDuration;

/// One burn-rate condition: alert when the error ratio over both windows exceeds
/// `factor × error budget`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Share of the whole period's error budget (per cent) spent within `long` at this speed.
    pub error_budget_percent: f64,
    /// The short window: stops the alert soon after the problem is gone.
    pub short: PromDuration,
    /// The long window: how long the burn must have lasted.
    pub long: PromDuration,
}

/// The four conditions of one SLO period: page (quick, slow) and ticket (quick, slow).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Windows {
    /// The SLO period (compliance window), e.g. 30 days.
    pub period: PromDuration,
    /// Page, quick: 2 % of the budget in 1 h (5 m short window).
    pub page_quick: Window,
    /// Page, slow: 5 % of the budget in 6 h (30 m short window).
    pub page_slow: Window,
    /// Ticket, quick: 10 % of the budget in 1 d (2 h short window).
    pub ticket_quick: Window,
    /// Ticket, slow: 10 % of the budget in 3 d (6 h short window).
    pub ticket_slow: Window,
}

impl Windows {
    /// Sloth's built-in windows for `period` (30 d or 28 d), or `None` for any other period.
    pub fn builtin(period: PromDuration) -> Option<Self> {
        let supported = [PromDuration::days(30), PromDuration::days(28)];
        if !supported.contains(&period) {
            return None;
        }
        let window = |error_budget_percent, short, long| Window {
            error_budget_percent,
            short,
            long,
        };
        Some(Windows {
            period,
            page_quick: window(2.0, PromDuration::minutes(5), PromDuration::hours(1)),
            page_slow: window(5.0, PromDuration::minutes(30), PromDuration::hours(6)),
            ticket_quick: window(10.0, PromDuration::hours(2), PromDuration::days(1)),
            ticket_slow: window(10.0, PromDuration::hours(6), PromDuration::days(3)),
        })
    }

    /// The periods [`Windows::builtin`] knows, for error messages.
    pub fn builtin_periods() -> &'static str {
        "30d, 28d"
    }

    /// The burn-rate factor of `w`: how many times faster than "exactly the budget over the
    /// period" the budget is spent when `w.error_budget_percent` goes in `w.long`.
    pub fn burn_rate_factor(&self, w: &Window) -> f64 {
        let hours_required = w.error_budget_percent * self.period.go_hours() / 100.0;
        hours_required / w.long.go_hours()
    }

    /// Every distinct alert window, shortest first (the SLI is recorded over each of them).
    pub fn alert_windows(&self) -> Vec<PromDuration> {
        let mut all: Vec<PromDuration> = [
            self.page_quick,
            self.page_slow,
            self.ticket_quick,
            self.ticket_slow,
        ]
        .iter()
        .flat_map(|w| [w.short, w.long])
        .collect();
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_give_the_workbook_factors() {
        let w = Windows::builtin(PromDuration::days(30)).unwrap();
        assert_eq!(w.burn_rate_factor(&w.page_quick), 14.4);
        assert_eq!(w.burn_rate_factor(&w.page_slow), 6.0);
        assert_eq!(w.burn_rate_factor(&w.ticket_quick), 3.0);
        assert_eq!(w.burn_rate_factor(&w.ticket_slow), 1.0);
    }

    #[test]
    fn twenty_eight_days_scale_the_factors() {
        let w = Windows::builtin(PromDuration::days(28)).unwrap();
        assert_eq!(w.burn_rate_factor(&w.page_quick), 13.44);
        assert!((w.burn_rate_factor(&w.page_slow) - 5.6).abs() < 1e-12);
        assert!((w.burn_rate_factor(&w.ticket_slow) - 0.9333333333333333).abs() < 1e-12);
    }

    #[test]
    fn alert_windows_are_sorted_and_distinct() {
        let w = Windows::builtin(PromDuration::days(30)).unwrap();
        let names: Vec<String> = w.alert_windows().iter().map(|d| d.to_string()).collect();
        assert_eq!(names, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
    }

    #[test]
    fn other_periods_are_not_in_the_catalog() {
        assert!(Windows::builtin(PromDuration::days(7)).is_none());
    }
}
