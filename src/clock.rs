//! The receipt clock: the time a record was received, as the text each record starts with.
//!
//! A busy connection receives many lines a second and every one of them is stamped, so the
//! date is formatted (by the `time` crate) once per second and only the microseconds are
//! patched in between.

use std::time::{SystemTime, UNIX_EPOCH};

/// The receipt time as RFC 3339 UTC text with microseconds, cached for the current second.
pub struct Clock {
    second: i64,
    text: [u8; 27],
    /// Seconds added to the system time: for tests only (see `TEST_OFFSET`), else 0.
    offset: i64,
}

/// In debug builds only (the integration tests run one), this environment variable shifts the
/// receipt clock by a number of seconds, so a test can see midnight pass without waiting for
/// it. Release builds ignore it.
pub const TEST_OFFSET: &str = "LOGSINKD_TEST_CLOCK_OFFSET";

impl Default for Clock {
    fn default() -> Self {
        let offset = if cfg!(debug_assertions) {
            std::env::var(TEST_OFFSET)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        } else {
            0
        };
        Clock {
            second: i64::MIN,
            text: [b'0'; 27],
            offset,
        }
    }
}

impl Clock {
    /// The current time, as `2026-11-23T21:05:01.123456Z`.
    pub fn now(&mut self) -> &[u8] {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.at(
            (since.as_secs() as i64).saturating_add(self.offset),
            since.subsec_micros(),
        )
    }

    /// The text of the last `now`.
    #[inline]
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The Unix second of the last `now`.
    #[inline]
    pub fn second(&self) -> i64 {
        self.second
    }

    fn at(&mut self, second: i64, micros: u32) -> &[u8] {
        if second != self.second {
            let t = time::OffsetDateTime::from_unix_timestamp(second)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let fmt =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            let date = t.format(&fmt).unwrap_or_default();
            self.text[..19].copy_from_slice(&date.as_bytes()[..19]);
            self.text[19] = b'.';
            self.text[26] = b'Z';
            self.second = second;
        }
        let mut m = micros;
        for i in (20..26).rev() {
            self.text[i] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached clock text is right across second changes.
    #[test]
    fn clock_text() {
        let mut c = Clock::default();
        assert_eq!(c.at(1_795_467_901, 123_456), b"2026-11-23T21:05:01.123456Z");
        assert_eq!(c.at(1_795_467_901, 7), b"2026-11-23T21:05:01.000007Z");
        assert_eq!(c.at(1_795_467_902, 999_999), b"2026-11-23T21:05:02.999999Z");
    }
}
