//! The claim repository: once-only work shared by every instance and kept across restarts (a processed
//! push, say), keyed by scope and key, held until it expires; in progress until completed, then done.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::dedupe::Claim;
use crate::market::error::Result;

/// Storage of claims.
#[async_trait]
pub trait ClaimRepo: Send {
    /// Claims `key` in `scope`, held until `held_until` while in progress and, once completed, kept until
    /// `retain_until`: [`Claim::Fresh`] when it was free (never claimed, or its claim expired by `now`),
    /// else [`Claim::InProgress`] or [`Claim::Done`] for the earlier claim.
    async fn claim(
        &mut self,
        scope: &str,
        key: &str,
        held_until: DateTime<Utc>,
        retain_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim>;
    /// Marks a held claim done, kept until the `retain_until` it was claimed with.
    async fn complete_claim(&mut self, scope: &str, key: &str) -> Result<()>;
    /// Gives a claim back.
    async fn release_claim(&mut self, scope: &str, key: &str) -> Result<()>;
    /// Deletes claims that expired before `before`; returns how many.
    async fn prune_claims(&mut self, before: DateTime<Utc>) -> Result<u64>;
}

/// Implements [`ClaimRepo`] for a backend's transaction type.
macro_rules! claim_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::dedupe::Claim;
            use $crate::market::error::Result;
            use $crate::market::store::claims::ClaimRepo;
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl ClaimRepo for $tx {
                async fn claim(
                    &mut self,
                    scope: &str,
                    key: &str,
                    held_until: DateTime<Utc>,
                    retain_until: DateTime<Utc>,
                    now: DateTime<Utc>,
                ) -> Result<Claim> {
                    let r = sqlx::query(
                        "INSERT INTO claims (scope, claim_key, expires_at, done, retain_until) \
                         VALUES ($1, $2, $3, $5, $6) \
                         ON CONFLICT (scope, claim_key) DO UPDATE SET expires_at = excluded.expires_at, \
                         done = excluded.done, retain_until = excluded.retain_until \
                         WHERE claims.expires_at <= $4",
                    )
                    .bind(scope)
                    .bind(key)
                    .bind(ms(held_until))
                    .bind(ms(now))
                    .bind(false)
                    .bind(ms(retain_until))
                    .execute(&mut *self.0)
                    .await?;
                    if r.rows_affected() == 1 {
                        return Ok(Claim::Fresh);
                    }
                    // The conflicting row is locked by the upsert until this transaction ends.
                    let done: Option<bool> =
                        sqlx::query_scalar("SELECT done FROM claims WHERE scope = $1 AND claim_key = $2")
                            .bind(scope)
                            .bind(key)
                            .fetch_optional(&mut *self.0)
                            .await?;
                    Ok(if done == Some(true) { Claim::Done } else { Claim::InProgress })
                }

                async fn complete_claim(&mut self, scope: &str, key: &str) -> Result<()> {
                    sqlx::query(
                        "UPDATE claims SET done = $3, expires_at = CASE WHEN retain_until > expires_at \
                         THEN retain_until ELSE expires_at END WHERE scope = $1 AND claim_key = $2",
                    )
                    .bind(scope)
                    .bind(key)
                    .bind(true)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn release_claim(&mut self, scope: &str, key: &str) -> Result<()> {
                    sqlx::query("DELETE FROM claims WHERE scope = $1 AND claim_key = $2")
                        .bind(scope)
                        .bind(key)
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }

                async fn prune_claims(&mut self, before: DateTime<Utc>) -> Result<u64> {
                    let r = sqlx::query("DELETE FROM claims WHERE expires_at < $1")
                        .bind(ms(before))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(r.rows_affected())
                }
            }
        };
    };
}
pub(crate) use claim_repo;
