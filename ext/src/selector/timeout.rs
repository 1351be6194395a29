//! `select`'s duration argument.

use std::time::Duration;

/// A duration in seconds as given to `select`: `None` waits forever.
/// Negative and NaN durations mean "do not block".
pub fn from_seconds(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_seconds() {
        assert_eq!(from_seconds(0.0), Duration::ZERO);
        assert_eq!(from_seconds(-1.0), Duration::ZERO);
        assert_eq!(from_seconds(f64::NAN), Duration::ZERO);
        assert_eq!(from_seconds(1.5), Duration::from_millis(1500));
        assert_eq!(from_seconds(f64::INFINITY), Duration::MAX);
    }
}
