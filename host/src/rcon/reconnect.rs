//! How long the RCON link waits before it connects again.

use std::time::Duration;

/// Waits between attempts: doubled after each failure, up to the maximum, and back to the
/// minimum only once a connection has stayed up for as long as the maximum wait. A peer
/// that connects and fails soon after therefore keeps waiting longer, however often its
/// connections "succeed".
#[derive(Debug)]
pub(super) struct Backoff {
    waits: crate::backoff::Backoff,
    max: Duration,
    /// Attempts in a row that did not give a lasting connection.
    pub(super) failures: u32,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Self {
            waits: crate::backoff::Backoff::new(min, max),
            max: max.max(min),
            failures: 0,
        }
    }

    /// The wait before the next attempt, after one that failed (`up_for` is how long its
    /// connection worked, if it ever did).
    pub(super) fn after(&mut self, up_for: Option<Duration>) -> Duration {
        if up_for.is_some_and(|d| d >= self.max) {
            self.waits.reset();
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.waits.next_wait()
    }
}

/// `d` scaled by a random factor in [0.8, 1.2), so many hosts do not retry in step.
pub(super) fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + fastrand::f64() * 0.4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_keeps_growing_across_connections_that_do_not_last() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(b.after(None), Duration::from_secs(1));
        assert_eq!(b.after(None), Duration::from_secs(2));
        // Connected, worked for 5 s, failed: not a lasting connection, no reset.
        assert_eq!(
            b.after(Some(Duration::from_secs(5))),
            Duration::from_secs(4)
        );
        for _ in 0..10 {
            b.after(Some(Duration::from_secs(1)));
        }
        assert_eq!(b.after(Some(Duration::ZERO)), Duration::from_secs(60));
        assert_eq!(b.failures, 14);
        // A connection that held for the longest wait starts over.
        assert_eq!(
            b.after(Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert_eq!(b.failures, 1);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(8) && j < Duration::from_secs(12),
                "{j:?}"
            );
        }
    }
}
