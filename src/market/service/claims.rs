//! Durable claims: the market's store as a [`DedupeStore`] for pushes and pay notifications (and
//! anything else processed once), shared by every instance and kept across restarts.

use std::time::Duration;

use super::{Market, chrono_dur};
use crate::dedupe::{Claim, DedupeStore};
use crate::market::error::MarketError;
use crate::market::service::handles::Ops;

/// A [`DedupeStore`] in the market's database: a claim is a row keyed by scope and key, so a replay
/// of a push is refused after a restart and on every instance. A claim in progress is held for at
/// most [`CLAIM_LEASE`], so work whose process died before completing or releasing it is taken up by
/// a later delivery; a completed claim is remembered for its whole ttl. Build one with
/// [`Ops::claims`](crate::market::handles::Ops::claims); expired rows are deleted by [`Ops::prune`](crate::market::handles::Ops::prune).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> wxshop::Result<()> {
/// use std::time::Duration;
/// use wxshop::market::*;
/// use wxshop::dedupe::{Claim, DedupeStore};
/// let gw = std::sync::Arc::new(RecordingGateway::default());
/// let market = Market::builder(store::open("sqlite::memory:").await?).payments(gw.clone()).shipping(gw).build()?;
/// let claims = market.ops().claims("push");
/// assert_eq!(claims.claim("msg:1", Duration::from_secs(600)).await?, Claim::Fresh);
/// claims.complete("msg:1").await?;
/// assert_eq!(claims.claim("msg:1", Duration::from_secs(600)).await?, Claim::Done); // a replay
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StoreClaims {
    market: Market,
    scope: String,
}

impl Ops<'_> {
    /// The store's claims under `scope` (`"push"`, `"open-push"`…), as a [`DedupeStore`].
    pub fn claims(&self, scope: &str) -> StoreClaims {
        StoreClaims { market: Market::clone(self), scope: scope.to_string() }
    }
}

/// How long a [`StoreClaims`] claim in progress is held (or its ttl, when shorter): longer than any
/// callback handler may run (WeChat waits 5 s for an answer), short enough that a delivery after a
/// crash mid-handler is processed instead of refused for the whole ttl (48 h for pay notifications).
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

fn store_error(e: MarketError) -> crate::Error {
    crate::Error::Store(e.to_string())
}

#[async_trait::async_trait]
impl DedupeStore for StoreClaims {
    async fn claim(&self, key: &str, ttl: Duration) -> crate::Result<Claim> {
        let m = &self.market;
        m.retry(|| async {
            let now = m.now();
            let mut tx = m.begin().await?;
            let (held, retained) = (now + chrono_dur(ttl.min(CLAIM_LEASE)), now + chrono_dur(ttl));
            let won = tx.claim(&self.scope, key, held, retained, now).await?;
            tx.commit().await?;
            Ok(won)
        })
        .await
        .map_err(store_error)
    }

    async fn complete(&self, key: &str) -> crate::Result<()> {
        let m = &self.market;
        m.retry(|| async {
            let mut tx = m.begin().await?;
            tx.complete_claim(&self.scope, key).await?;
            tx.commit().await
        })
        .await
        .map_err(store_error)
    }

    async fn release(&self, key: &str) -> crate::Result<()> {
        let m = &self.market;
        m.retry(|| async {
            let mut tx = m.begin().await?;
            tx.release_claim(&self.scope, key).await?;
            tx.commit().await
        })
        .await
        .map_err(store_error)
    }
}
