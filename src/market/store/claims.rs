//! The claim repository: once-only work shared by every instance and kept across restarts (a processed
//! push, say), keyed by scope and key, held until it expires.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::market::error::Result;

/// Storage of claims.
#[async_trait]
pub trait ClaimRepo: Send {
    /// Claims `key` in `scope` until `expires_at`: `true` when it was free (never claimed, or its claim
    /// expired by `now`), `false` while an earlier claim holds.
    async fn claim(&mut self, scope: &str, key: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<bool>;
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
            use $crate::market::error::Result;
            use $crate::market::store::claims::ClaimRepo;
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl ClaimRepo for $tx {
                async fn claim(
                    &mut self,
                    scope: &str,
                    key: &str,
                    expires_at: DateTime<Utc>,
                    now: DateTime<Utc>,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO claims (scope, claim_key, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (scope, claim_key) DO UPDATE SET expires_at = excluded.expires_at \
                         WHERE claims.expires_at <= $4",
                    )
                    .bind(scope)
                    .bind(key)
                    .bind(ms(expires_at))
                    .bind(ms(now))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
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
