//! Processing each push once: WeChat retries a push it got no answer to within 5 seconds (three
//! times), so a slow handler sees the same message again.
//!
//! A push's key is its `MsgId` (user messages), or `FromUserName` + `CreateTime` + `Event` for
//! events (WeChat's own advice), refined by the event's `trace_id` or `transaction_id` when it has
//! one. A [`DedupeStore`] *claims* a key before the handler runs and *releases* it when the
//! handler fails, so a failed attempt is retried and a successful one is not repeated.
//!
//! ```
//! # tokio_test_block_on(async {
//! use std::time::Duration;
//! use wxshop::push::dedupe::{DedupeStore, MemoryDedupe};
//! let store = MemoryDedupe::new();
//! assert!(store.claim("msg:1", Duration::from_secs(60)).await.unwrap());
//! assert!(!store.claim("msg:1", Duration::from_secs(60)).await.unwrap()); // a retry
//! store.release("msg:1").await.unwrap();                                  // the handler failed
//! assert!(store.claim("msg:1", Duration::from_secs(60)).await.unwrap());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;

/// Remembers which pushes were processed.
#[async_trait::async_trait]
pub trait DedupeStore: Send + Sync {
    /// Claims `key` for `ttl`: `true` the first time, `false` while an earlier claim holds.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool>;
    /// Gives a claim back (the handler failed; let WeChat's retry through).
    async fn release(&self, key: &str) -> Result<()>;
}

/// An in-process [`DedupeStore`] with expiry and a bound on its size. Use a shared store (Redis,
/// a database table with a unique key) when several processes receive pushes.
#[derive(Debug)]
pub struct MemoryDedupe {
    seen: Mutex<HashMap<String, Instant>>,
    max_entries: usize,
}

impl Default for MemoryDedupe {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDedupe {
    /// A store of at most 100 000 keys.
    pub fn new() -> Self {
        Self::with_capacity(100_000)
    }

    /// A store of at most `max_entries` keys; past it, expired keys go first, then the oldest.
    pub fn with_capacity(max_entries: usize) -> Self {
        MemoryDedupe { seen: Mutex::new(HashMap::new()), max_entries: max_entries.max(1) }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        crate::push::lock(&self.seen).len()
    }

    /// No keys held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl DedupeStore for MemoryDedupe {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut seen = crate::push::lock(&self.seen);
        if let Some(expires) = seen.get(key)
            && *expires > now
        {
            return Ok(false);
        }
        if seen.len() >= self.max_entries {
            seen.retain(|_, expires| *expires > now);
            if seen.len() >= self.max_entries
                && let Some(oldest) = seen.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(key.to_string(), now + ttl);
        Ok(true)
    }

    async fn release(&self, key: &str) -> Result<()> {
        crate::push::lock(&self.seen).remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_expires() {
        let s = MemoryDedupe::new();
        assert!(s.claim("k", Duration::from_millis(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s.claim("k", Duration::from_secs(60)).await.unwrap());
        assert!(!s.claim("k", Duration::from_secs(60)).await.unwrap());
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let s = MemoryDedupe::with_capacity(3);
        for k in ["a", "b", "c", "d", "e"] {
            assert!(s.claim(k, Duration::from_secs(60)).await.unwrap());
        }
        assert_eq!(s.len(), 3);
        // The newest keys are still held.
        assert!(!s.claim("e", Duration::from_secs(60)).await.unwrap());
    }
}
