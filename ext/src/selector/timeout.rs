//! `select`'s duration argument.

use std::time::Duration;

/// Waits longer than this (about 3,000 years) are waits until woken: no
/// kernel timespec or millisecond count overflows, and `Float::INFINITY` or
/// `1e30` never turn into "return at once".
pub const FOREVER_SECONDS: u64 = 1 << 36;

/// A duration in seconds as given to `select`: `None` waits until woken.
/// Negative and NaN durations mean "do not block".
pub fn from_seconds(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds <= 0.0 {
        Some(Duration::ZERO)
    } else if seconds >= FOREVER_SECONDS as f64 {
        None
    } else {
        Some(Duration::from_secs_f64(seconds))
    }
}

/// Whole seconds, as `from_seconds`.
pub fn from_whole_seconds(seconds: i64) -> Option<Duration> {
    match u64::try_from(seconds) {
        Err(_) => Some(Duration::ZERO),
        Ok(seconds) if seconds >= FOREVER_SECONDS => None,
        Ok(seconds) => Some(Duration::from_secs(seconds)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_seconds() {
        assert_eq!(from_seconds(0.0), Some(Duration::ZERO));
        assert_eq!(from_seconds(-1.0), Some(Duration::ZERO));
        assert_eq!(from_seconds(f64::NAN), Some(Duration::ZERO));
        assert_eq!(from_seconds(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(from_seconds(f64::INFINITY), None);
        assert_eq!(from_seconds(1e30), None);
        assert_eq!(from_whole_seconds(-5), Some(Duration::ZERO));
        assert_eq!(from_whole_seconds(3), Some(Duration::from_secs(3)));
        assert_eq!(from_whole_seconds(i64::MAX), None);
    }
}
