//! The one way the host waits before trying something again: exponential, doubling from a
//! minimum up to a maximum, optionally with jitter (backon's `ExponentialBuilder`). RCON's
//! reconnects, a sink's delivery resumed after it gave up, and the supervisor's restarts
//! all wait by it; Discord's retry policy builds the same backoff.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Waits that double from `min` up to `max`.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    max: Duration,
    waits: ExponentialBackoff,
}

impl Backoff {
    /// Waits of `min`, twice that, … up to `max`, for ever.
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .without_max_times();
        Self::of(builder, max)
    }

    /// The same with a random part added to each wait (up to as much again), so that many
    /// clients failing together do not retry together.
    pub fn jittered(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Self::of(builder, max)
    }

    fn of(builder: ExponentialBuilder, max: Duration) -> Self {
        Self {
            waits: builder.build(),
            builder,
            max,
        }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        self.waits.next().unwrap_or(self.max)
    }

    /// Starts again from the minimum (what worked for long enough).
    pub fn reset(&mut self) {
        self.waits = self.builder.build();
    }

    /// The wait after `n` waits already taken, without taking them.
    pub fn after(min: Duration, max: Duration, n: usize) -> Duration {
        let mut b = Self::new(min, max);
        // Past 64 doublings every wait is the maximum.
        (0..n.min(64)).for_each(|_| {
            b.next_wait();
        });
        b.next_wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_start_again_after_a_reset() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(5));
        let waits: Vec<Duration> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [s(1), s(2), s(4), s(5), s(5)]);
        b.reset();
        assert_eq!(b.next_wait(), s(1));
        assert_eq!(Backoff::after(s(1), s(60), 3), s(8));
        assert_eq!(Backoff::after(s(1), s(60), 40), s(60));
        assert_eq!(Backoff::after(s(1), s(60), usize::MAX), s(60));
    }

    #[test]
    fn jitter_adds_at_most_as_much_again() {
        let s = Duration::from_secs;
        for _ in 0..200 {
            let mut b = Backoff::jittered(s(2), s(60));
            let w = b.next_wait();
            assert!(w >= s(2) && w <= s(4), "{w:?}");
        }
    }
}
