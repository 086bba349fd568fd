//! UPS from successive tick readings: the rate, its simple moving average over the last
//! [`SMA_SAMPLES`] rates, its exponential moving average, and whether the game is paused.

use std::collections::VecDeque;

use serde::Serialize;

/// How many rates the simple moving average covers.
pub const SMA_SAMPLES: usize = 5;
/// Ticks that do not advance for this long mean the game is paused.
pub const PAUSE_AFTER_MS: u64 = 5_000;
/// Fewer ticks than this over at least [`PAUSE_AFTER_MS`] also mean paused (the game
/// stopped early in the interval): a running game makes 60 a second.
const PAUSE_TICKS: u64 = 60;

/// What the tracker concluded from the latest tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UpsReading {
    pub paused: bool,
    /// The rate over the last interval; none while paused, on the first reading, just after
    /// a resume (that interval straddles the pause) and after the tick went backwards.
    pub ups: Option<f64>,
    pub sma: Option<f64>,
    pub ema: Option<f64>,
}

/// Follows one server's tick.
#[derive(Debug, Clone)]
pub struct UpsTracker {
    alpha: f64,
    last: Option<(u64, u64)>,
    last_advance_ms: u64,
    rates: VecDeque<f64>,
    ema: Option<f64>,
    paused: bool,
}

impl UpsTracker {
    /// A tracker whose EMA weighs each new rate by `alpha` (clamped to (0, 1]).
    pub fn new(alpha: f64) -> Self {
        let alpha = if alpha.is_finite() && alpha > 0.0 {
            alpha.min(1.0)
        } else {
            0.2
        };
        Self {
            alpha,
            last: None,
            last_advance_ms: 0,
            rates: VecDeque::with_capacity(SMA_SAMPLES),
            ema: None,
            paused: false,
        }
    }

    /// Takes the game's `tick` read at `at_ms` (milliseconds on any steady clock).
    pub fn observe(&mut self, at_ms: u64, tick: u64) -> UpsReading {
        let Some((t0, k0)) = self.last else {
            self.last = Some((at_ms, tick));
            self.last_advance_ms = at_ms;
            return self.reading(None);
        };
        if at_ms <= t0 {
            return self.reading(None);
        }
        self.last = Some((at_ms, tick));
        if tick < k0 {
            // Another save was loaded, or the server restarted: start over.
            self.last_advance_ms = at_ms;
            self.paused = false;
            return self.reading(None);
        }
        let elapsed_ms = at_ms - t0;
        let advanced = tick - k0;
        if advanced == 0 {
            if at_ms - self.last_advance_ms >= PAUSE_AFTER_MS {
                self.paused = true;
            }
            return self.reading(None);
        }
        self.last_advance_ms = at_ms;
        if elapsed_ms >= PAUSE_AFTER_MS && advanced < PAUSE_TICKS {
            self.paused = true;
            return self.reading(None);
        }
        if self.paused {
            self.paused = false;
            return self.reading(None);
        }
        let ups = advanced as f64 * 1000.0 / elapsed_ms as f64;
        if self.rates.len() == SMA_SAMPLES {
            self.rates.pop_front();
        }
        self.rates.push_back(ups);
        self.ema = Some(match self.ema {
            Some(e) => self.alpha * ups + (1.0 - self.alpha) * e,
            None => ups,
        });
        self.reading(Some(ups))
    }

    fn reading(&self, ups: Option<f64>) -> UpsReading {
        let sma = (!self.rates.is_empty())
            .then(|| self.rates.iter().sum::<f64>() / self.rates.len() as f64);
        UpsReading {
            paused: self.paused,
            ups,
            sma,
            ema: self.ema,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn ticks_1000_to_1120_over_two_seconds_is_60_ups() {
        let mut t = UpsTracker::new(0.2);
        assert_eq!(t.observe(0, 1000).ups, None);
        let r = t.observe(2000, 1120);
        assert!(close(r.ups, 60.0), "{r:?}");
        assert!(close(r.sma, 60.0) && close(r.ema, 60.0));
        assert!(!r.paused);
    }

    #[test]
    fn sma_covers_five_rates_and_ema_uses_the_configured_alpha() {
        let mut t = UpsTracker::new(0.5);
        let mut tick = 0;
        t.observe(0, tick);
        let mut last = None;
        for (i, ups) in [60u64, 60, 60, 60, 60, 30].iter().enumerate() {
            tick += ups;
            last = Some(t.observe((i as u64 + 1) * 1000, tick));
        }
        let r = last.unwrap();
        assert!(close(r.ups, 30.0));
        assert!(close(r.sma, (60.0 * 4.0 + 30.0) / 5.0), "{r:?}");
        assert!(close(r.ema, 45.0), "{r:?}");
        let mut slow = UpsTracker::new(0.1);
        slow.observe(0, 0);
        slow.observe(1000, 60);
        assert!(close(slow.observe(2000, 90).ema, 0.1 * 30.0 + 0.9 * 60.0));
    }

    #[test]
    fn no_advance_over_six_seconds_is_paused_but_not_over_two() {
        let mut t = UpsTracker::new(0.2);
        t.observe(0, 500);
        t.observe(1000, 560);
        let r = t.observe(3000, 560);
        assert!(!r.paused && r.ups.is_none(), "{r:?}");
        let r = t.observe(7000, 560);
        assert!(r.paused && r.ups.is_none(), "{r:?}");
        assert!(close(r.ema, 60.0), "averages keep their last value: {r:?}");
    }

    #[test]
    fn fewer_than_60_ticks_over_six_seconds_is_paused() {
        let mut t = UpsTracker::new(0.2);
        t.observe(0, 1000);
        let r = t.observe(6000, 1059);
        assert!(r.paused && r.ups.is_none(), "{r:?}");
    }

    #[test]
    fn resume_skips_the_interval_that_straddles_the_pause() {
        let mut t = UpsTracker::new(0.2);
        t.observe(0, 0);
        t.observe(1000, 60);
        assert!(t.observe(7000, 60).paused);
        let r = t.observe(8000, 90);
        assert!(!r.paused && r.ups.is_none(), "{r:?}");
        let r = t.observe(9000, 150);
        assert!(!r.paused && close(r.ups, 60.0), "{r:?}");
    }

    #[test]
    fn a_tick_that_goes_back_starts_over_without_a_rate() {
        let mut t = UpsTracker::new(0.2);
        t.observe(0, 10_000);
        t.observe(1000, 10_060);
        let r = t.observe(2000, 100);
        assert!(r.ups.is_none() && !r.paused);
        assert!(close(t.observe(3000, 160).ups, 60.0));
        assert_eq!(t.observe(3000, 220).ups, None, "same instant: no rate");
    }
}
