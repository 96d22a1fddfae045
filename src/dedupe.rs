//! Processing each delivery once: the one idempotency store behind pay notifications, message
//! pushes and the market's durable claims.
//!
//! WeChat redelivers what it got no answer to — a push three times within 15 seconds, a pay
//! notification for 24 h 4 min — and an attacker may replay a captured one. Before its handler runs,
//! a delivery *claims* its key for a ttl (how long the key is remembered): [`Claim::Fresh`] the
//! first time, [`Claim::InProgress`] while another delivery holds it, [`Claim::Done`] once that
//! delivery [completed](DedupeStore::complete) it. A failed handler
//! [releases](DedupeStore::release) its claim, so WeChat's next delivery is processed; a key whose
//! ttl ran out may be claimed afresh.
//!
//! The keys: a pay notification's `id` ([`pay::notify`](crate::pay::notify), remembered 48 h by
//! default); a push's [`dedupe_key`](crate::push::Incoming::dedupe_key) — its `MsgId` for user
//! messages, `FromUserName` + `CreateTime` + `Event` for events (WeChat's own advice), refined by
//! the event's `trace_id` or `transaction_id` when it has one (remembered 10 minutes by default).
//!
//! [`MemoryDedupe`] serves one process (bounded, expiring); the market's `StoreClaims`
//! (`market.ops().claims`, feature `market`) is shared by every instance and survives restarts.
//!
//! ```
//! # tokio_test_block_on(async {
//! use std::time::Duration;
//! use wxshop::dedupe::{Claim, DedupeStore, MemoryDedupe};
//! let store = MemoryDedupe::new();
//! let ttl = Duration::from_secs(600);
//! assert_eq!(store.claim("msg:1", ttl).await.unwrap(), Claim::Fresh);
//! assert_eq!(store.claim("msg:1", ttl).await.unwrap(), Claim::InProgress); // a retry, mid-way
//! store.release("msg:1").await.unwrap();                                   // the handler failed
//! assert_eq!(store.claim("msg:1", ttl).await.unwrap(), Claim::Fresh);      // the retry runs it
//! store.complete("msg:1").await.unwrap();                                  // the handler succeeded
//! assert_eq!(store.claim("msg:1", ttl).await.unwrap(), Claim::Done);       // later retries do not
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;

/// What a delivery may do with its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First delivery (or a retry after a release or past the ttl): process it, then complete or
    /// release.
    Fresh,
    /// Already processed: answer success without processing again.
    Done,
    /// Another delivery is processing it right now.
    InProgress,
}

/// Remembers which deliveries were processed. Implement it over a shared store (a database table
/// with a unique key, Redis) when several processes receive the same callbacks.
#[async_trait::async_trait]
pub trait DedupeStore: Send + Sync {
    /// Claims `key` for `ttl`, counted from now: [`Claim::Fresh`] when it was free (never claimed,
    /// released, or past its ttl), otherwise [`Claim::InProgress`] or [`Claim::Done`].
    async fn claim(&self, key: &str, ttl: Duration) -> Result<Claim>;
    /// Marks a claimed `key` processed; it stays remembered until its claim's ttl runs out. A key
    /// no longer held (expired, evicted) stays forgotten.
    async fn complete(&self, key: &str) -> Result<()>;
    /// Gives a claim back (the handler failed), so a redelivery is processed.
    async fn release(&self, key: &str) -> Result<()>;
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    done: bool,
    expires: Instant,
}

/// An in-process [`DedupeStore`] with expiry and a bound on its size. Use a shared store (the
/// market's `StoreClaims`, Redis) when several processes receive the same callbacks.
#[derive(Debug)]
pub struct MemoryDedupe {
    entries: Mutex<HashMap<String, Entry>>,
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

    /// A store of at most `max_entries` keys; past it, expired keys go first, then the one expiring
    /// soonest.
    pub fn with_capacity(max_entries: usize) -> Self {
        MemoryDedupe { entries: Mutex::new(HashMap::new()), max_entries: max_entries.max(1) }
    }

    /// Keys currently held (expired ones included until they are evicted or claimed again).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No keys held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl DedupeStore for MemoryDedupe {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<Claim> {
        let now = Instant::now();
        let mut entries = self.lock();
        if let Some(e) = entries.get(key)
            && e.expires > now
        {
            return Ok(if e.done { Claim::Done } else { Claim::InProgress });
        }
        if entries.len() >= self.max_entries && !entries.contains_key(key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.max_entries
                && let Some(first) = entries.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| k.clone())
            {
                entries.remove(&first);
            }
        }
        entries.insert(key.to_string(), Entry { done: false, expires: now + ttl });
        Ok(Claim::Fresh)
    }

    async fn complete(&self, key: &str) -> Result<()> {
        if let Some(e) = self.lock().get_mut(key) {
            e.done = true;
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<()> {
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_key_is_fresh_then_in_progress_then_done() {
        let s = MemoryDedupe::new();
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Fresh);
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::InProgress);
        s.complete("a").await.unwrap();
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Done);
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Done);
        assert_eq!(s.len(), 1);
    }

    #[tokio::test]
    async fn a_released_claim_is_fresh_again() {
        let s = MemoryDedupe::new();
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Fresh);
        s.release("a").await.unwrap();
        assert!(s.is_empty());
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Fresh);
        s.complete("a").await.unwrap();
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Done);
    }

    #[tokio::test]
    async fn keys_are_apart() {
        let s = MemoryDedupe::new();
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Fresh);
        s.complete("a").await.unwrap();
        assert_eq!(s.claim("b", MINUTE).await.unwrap(), Claim::Fresh);
        assert_eq!(s.claim("b", MINUTE).await.unwrap(), Claim::InProgress);
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Done);
    }

    #[tokio::test]
    async fn a_claim_expires() {
        let s = MemoryDedupe::new();
        assert_eq!(s.claim("k", Duration::from_millis(1)).await.unwrap(), Claim::Fresh);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.claim("k", MINUTE).await.unwrap(), Claim::Fresh);
        assert_eq!(s.claim("k", MINUTE).await.unwrap(), Claim::InProgress);
    }

    #[tokio::test]
    async fn a_completed_claim_expires_too() {
        let s = MemoryDedupe::new();
        assert_eq!(s.claim("k", Duration::from_millis(1)).await.unwrap(), Claim::Fresh);
        s.complete("k").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.claim("k", MINUTE).await.unwrap(), Claim::Fresh);
    }

    #[tokio::test]
    async fn completing_a_key_not_held_does_not_claim_it() {
        let s = MemoryDedupe::new();
        s.complete("never").await.unwrap();
        assert!(s.is_empty());
        assert_eq!(s.claim("never", MINUTE).await.unwrap(), Claim::Fresh);
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let s = MemoryDedupe::with_capacity(3);
        for k in ["a", "b", "c", "d", "e"] {
            assert_eq!(s.claim(k, MINUTE).await.unwrap(), Claim::Fresh);
        }
        assert_eq!(s.len(), 3);
        // The newest keys are still held, the oldest went.
        assert_eq!(s.claim("e", MINUTE).await.unwrap(), Claim::InProgress);
        assert_eq!(s.claim("c", MINUTE).await.unwrap(), Claim::InProgress);
        assert_eq!(s.len(), 3);
        assert_eq!(s.claim("a", MINUTE).await.unwrap(), Claim::Fresh);
        assert_eq!(s.len(), 3);
    }

    #[tokio::test]
    async fn expired_keys_are_evicted_before_live_ones() {
        let s = MemoryDedupe::with_capacity(2);
        assert_eq!(s.claim("short", Duration::from_millis(1)).await.unwrap(), Claim::Fresh);
        assert_eq!(s.claim("long", MINUTE).await.unwrap(), Claim::Fresh);
        s.complete("long").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.claim("new", MINUTE).await.unwrap(), Claim::Fresh);
        assert_eq!(s.len(), 2);
        assert_eq!(s.claim("long", MINUTE).await.unwrap(), Claim::Done);
    }
}
