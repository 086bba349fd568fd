//! Faults a test build can inject into a running host, so that tests can prove what the
//! host does when one of its own parts fails. Release builds compile none of it.
//!
//! `FACTORIO_ISR_TEST_PANIC=<point>:<marker>` makes the part `point` (`parser`, `monitors`)
//! panic on the first input that contains `marker`.

/// Panics if the test asked `point` to panic on input containing what `text` contains.
#[cfg(debug_assertions)]
pub fn panic_if_asked(point: &str, text: &str) {
    static ASKED: std::sync::OnceLock<Option<(String, String)>> = std::sync::OnceLock::new();
    let asked = ASKED.get_or_init(|| {
        let spec = std::env::var("FACTORIO_ISR_TEST_PANIC").ok()?;
        let (point, marker) = spec.split_once(':')?;
        Some((point.to_owned(), marker.to_owned()))
    });
    if let Some((p, marker)) = asked
        && p == point
        && !marker.is_empty()
        && text.contains(marker.as_str())
    {
        panic!("a fault injected by a test ({point})");
    }
}

/// Release builds take no faults.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn panic_if_asked(_point: &str, _text: &str) {}
