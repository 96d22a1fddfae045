//! The clock the marketplace reads, injectable so that tests (and the demo) can jump over a 15-minute
//! payment window or a 10-day auto-confirm period without waiting.
//!
//! ```
//! use std::time::Duration;
//! use wxshop::market::{Clock, ManualClock};
//! let clock = ManualClock::new(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
//! let before = clock.now();
//! clock.advance(Duration::from_secs(600));
//! assert_eq!((clock.now() - before).num_seconds(), 600);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of "now".
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (millisecond resolution, like the store).
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock { ms: AtomicI64::new(at.timestamp_millis()) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, at: DateTime<Utc>) {
        self.ms.store(at.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.ms.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// A new UUIDv7 in its 32-hex-digit form: time-ordered (good for B-trees and cursors, no hot
/// sequence on distributed engines) and short enough for WeChat Pay's `out_trade_no` (6–32 chars).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// `now` truncated to the millisecond, the resolution the store keeps.
pub(crate) fn trunc_ms(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}
