//! The credential repository: API keys of merchant staff and platform operators
//! ([`crate::market::access::ApiKey`]), kept as digests only.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::market::access::ApiKey;
use crate::market::error::{MarketError, Result};

/// Storage of API keys.
#[async_trait]
pub trait CredentialRepo: Send {
    /// Inserts a key with the digest of its secret.
    async fn insert_key(&mut self, k: &ApiKey, digest: &str) -> Result<()>;
    /// A key and its digest, by id.
    async fn key_with_digest(&mut self, id: &str) -> Result<Option<(ApiKey, String)>>;
    /// The keys of a merchant (`None`: the platform's), by id.
    async fn keys_of(&mut self, merchant_id: Option<&str>) -> Result<Vec<ApiKey>>;
    /// Revokes a key at `at` (once: `false` when it is missing or already revoked).
    async fn revoke_key(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Sets when a key stops working by itself, if it is not revoked; `false` otherwise.
    async fn expire_key(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Notes a key's use at `at` when its last noted use is before `stale_before` (so that at most one
    /// write an hour is made per key).
    async fn touch_key(&mut self, id: &str, at: DateTime<Utc>, stale_before: DateTime<Utc>) -> Result<()>;
}

pub(crate) const KEY_COLS: &str =
    "key_id, digest, role, merchant_id, label, created_at, expires_at, revoked_at, last_used_at";

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    key_id: String,
    digest: String,
    role: String,
    merchant_id: Option<String>,
    label: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl KeyRow {
    pub(crate) fn split(self) -> Result<(ApiKey, String)> {
        let key = ApiKey {
            id: self.key_id,
            role: self
                .role
                .parse()
                .map_err(|e| MarketError::Store { message: format!("corrupt api key row: {e}"), retryable: false })?,
            merchant_id: self.merchant_id,
            label: self.label,
            created_at: super::from_ms(self.created_at),
            expires_at: self.expires_at.map(super::from_ms),
            revoked_at: self.revoked_at.map(super::from_ms),
            last_used_at: self.last_used_at.map(super::from_ms),
        };
        Ok((key, self.digest))
    }
}

/// Implements [`CredentialRepo`] for a backend's transaction type.
macro_rules! credential_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::access::ApiKey;
            use $crate::market::error::Result;
            use $crate::market::store::credentials::{CredentialRepo, KEY_COLS, KeyRow};
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl CredentialRepo for $tx {
                async fn insert_key(&mut self, k: &ApiKey, digest: &str) -> Result<()> {
                    let sql = format!("INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&k.id)
                        .bind(digest)
                        .bind(k.role.as_str())
                        .bind(&k.merchant_id)
                        .bind(&k.label)
                        .bind(ms(k.created_at))
                        .bind(k.expires_at.map(ms))
                        .bind(k.revoked_at.map(ms))
                        .bind(k.last_used_at.map(ms))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }

                async fn key_with_digest(&mut self, id: &str) -> Result<Option<(ApiKey, String)>> {
                    let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE key_id = $1");
                    let row = sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                    row.map(KeyRow::split).transpose()
                }

                async fn keys_of(&mut self, merchant_id: Option<&str>) -> Result<Vec<ApiKey>> {
                    let rows = match merchant_id {
                        Some(m) => {
                            let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE merchant_id = $1 ORDER BY key_id");
                            sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(sql))
                                .bind(m)
                                .fetch_all(&mut *self.0)
                                .await?
                        }
                        None => {
                            let sql =
                                format!("SELECT {KEY_COLS} FROM api_keys WHERE merchant_id IS NULL ORDER BY key_id");
                            sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *self.0).await?
                        }
                    };
                    rows.into_iter().map(|r| r.split().map(|(k, _)| k)).collect()
                }

                async fn revoke_key(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool> {
                    let r = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL")
                        .bind(ms(at))
                        .bind(id)
                        .execute(&mut *self.0)
                        .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn expire_key(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE api_keys SET expires_at = $1 WHERE key_id = $2 AND revoked_at IS NULL \
                         AND (expires_at IS NULL OR expires_at > $1)",
                    )
                    .bind(ms(at))
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn touch_key(&mut self, id: &str, at: DateTime<Utc>, stale_before: DateTime<Utc>) -> Result<()> {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $1 WHERE key_id = $2 \
                         AND (last_used_at IS NULL OR last_used_at < $3)",
                    )
                    .bind(ms(at))
                    .bind(id)
                    .bind(ms(stale_before))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use credential_repo;
