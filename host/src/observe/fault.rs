//! Faults a test build can inject into a running host, so that tests can prove what the
//! host does when one of its own parts fails. Release builds compile none of it.
//!
//! `FACTORIO_ISR_TEST_PANIC=<point>:<marker>` makes the part `point` (`parser`, `monitors`)
//! panic on every input that contains `marker`; `<point>:<marker>:<n>` only on the first
//! `n` such inputs (so that a restarted part gets past it). In-process tests call
//! [`inject`] instead.

#[cfg(debug_assertions)]
struct Fault {
    point: String,
    marker: String,
    /// How many more times it fires (none: always).
    left: Option<u64>,
}

#[cfg(debug_assertions)]
fn faults() -> &'static parking_lot::Mutex<Vec<Fault>> {
    static FAULTS: std::sync::OnceLock<parking_lot::Mutex<Vec<Fault>>> = std::sync::OnceLock::new();
    FAULTS.get_or_init(|| {
        let from_env = std::env::var("FACTORIO_ISR_TEST_PANIC")
            .ok()
            .and_then(|spec| {
                let mut parts = spec.splitn(3, ':');
                Some(Fault {
                    point: parts.next()?.to_owned(),
                    marker: parts.next().filter(|m| !m.is_empty())?.to_owned(),
                    left: parts.next().and_then(|n| n.parse().ok()),
                })
            });
        parking_lot::Mutex::new(from_env.into_iter().collect())
    })
}

/// Makes `point` panic on input containing `marker`, `times` times (none: every time).
#[cfg(debug_assertions)]
pub fn inject(point: &str, marker: &str, times: Option<u64>) {
    faults().lock().push(Fault {
        point: point.to_owned(),
        marker: marker.to_owned(),
        left: times,
    });
}

/// Panics if a test asked `point` to panic on input containing what `text` contains.
#[cfg(debug_assertions)]
pub fn panic_if_asked(point: &str, text: &str) {
    let fire = {
        let mut faults = faults().lock();
        faults
            .iter_mut()
            .find(|f| f.point == point && text.contains(f.marker.as_str()))
            .is_some_and(|f| match &mut f.left {
                None => true,
                Some(0) => false,
                Some(n) => {
                    *n -= 1;
                    true
                }
            })
    };
    if fire {
        panic!("a fault injected by a test ({point})");
    }
}

/// Release builds take no faults.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn panic_if_asked(_point: &str, _text: &str) {}
