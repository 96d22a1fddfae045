//! Penalties (one per violation key), the restrictions they impose on a merchant, and the products they hold
//! delisted.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::governance::Versioned;
use crate::market::error::Result;
use crate::market::governance::penalty::{Penalty, Restriction};

/// Penalties, restrictions and delistings.
#[async_trait]
pub trait PenaltyRepo: Send {
    /// Inserts a penalty; `false` if its violation key already has one.
    async fn insert_penalty(&mut self, p: &Penalty) -> Result<bool>;
    /// A penalty.
    async fn penalty(&mut self, id: &str) -> Result<Option<Versioned<Penalty>>>;
    /// Writes a penalty if still at `expected`.
    async fn update_penalty(&mut self, p: &Penalty, expected: i64) -> Result<bool>;
    /// A merchant's penalties created after `since`, newest first.
    async fn penalties_of_merchant(
        &mut self,
        merchant_id: &str,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Penalty>>;
    /// Inserts a restriction.
    async fn insert_restriction(&mut self, r: &Restriction) -> Result<()>;
    /// A merchant's restrictions not lifted.
    async fn restrictions_of(&mut self, merchant_id: &str) -> Result<Vec<Restriction>>;
    /// Lifts a restriction; `false` if unknown or already lifted.
    async fn lift_restriction(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Records that a penalty delisted a product.
    async fn insert_delisting(
        &mut self,
        merchant_id: &str,
        product_id: &str,
        penalty_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Forgets a penalty's delistings.
    async fn delete_delistings(&mut self, penalty_id: &str) -> Result<()>;
    /// How many penalties still hold a product delisted.
    async fn delisting_holds(&mut self, merchant_id: &str, product_id: &str) -> Result<i64>;
}

/// Implements [`PenaltyRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! penalty_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::{MarketError, Result};
            use $crate::market::governance::penalty::{Penalty, Restriction, RestrictionKind};
            use $crate::market::store::governance::{Versioned, doc, get_docs, get_versioned, update_versioned};
            use $crate::market::store::{from_ms, ms};

            #[async_trait::async_trait]
            impl $crate::market::store::penalties::PenaltyRepo for $tx {
                async fn insert_penalty(&mut self, p: &Penalty) -> Result<bool> {
                    let res = sqlx::query(
                        "INSERT INTO gov_penalties (merchant_id, penalty_id, violation_key, status, created_at, version, doc) \
                         VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&p.merchant_id)
                    .bind(&p.id)
                    .bind(&p.violation.key)
                    .bind(p.status.as_str())
                    .bind(ms(p.created_at))
                    .bind(doc(p)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn penalty(&mut self, id: &str) -> Result<Option<Versioned<Penalty>>> {
                    get_versioned!(
                        &mut *self.0,
                        "penalty",
                        "SELECT doc, version FROM gov_penalties WHERE penalty_id = $1",
                        id,
                    )
                }

                async fn update_penalty(&mut self, p: &Penalty, expected: i64) -> Result<bool> {
                    update_versioned!(
                        &mut *self.0,
                        "UPDATE gov_penalties SET status = $1, version = $2, doc = $3 WHERE penalty_id = $4 AND version = $5",
                        [p.status.as_str()],
                        [doc(p)?],
                        key = &p.id,
                        expected = expected,
                    )
                }

                async fn penalties_of_merchant(
                    &mut self,
                    merchant_id: &str,
                    since: DateTime<Utc>,
                    limit: i64,
                ) -> Result<Vec<Penalty>> {
                    get_docs!(
                        &mut *self.0,
                        "penalty",
                        "SELECT doc FROM gov_penalties WHERE merchant_id = $1 AND created_at > $2 \
                         ORDER BY created_at DESC, penalty_id DESC LIMIT $3",
                        merchant_id,
                        ms(since),
                        limit,
                    )
                }

                async fn insert_restriction(&mut self, r: &Restriction) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO gov_restrictions (merchant_id, restriction_id, kind, source, from_at, until_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.merchant_id)
                    .bind(&r.id)
                    .bind(r.kind.as_str())
                    .bind(&r.source)
                    .bind(ms(r.from))
                    .bind(r.until.map(ms))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn restrictions_of(&mut self, merchant_id: &str) -> Result<Vec<Restriction>> {
                    let rows: Vec<(String, String, String, String, i64, Option<i64>)> = sqlx::query_as(
                        "SELECT merchant_id, restriction_id, kind, source, from_at, until_at FROM gov_restrictions \
                         WHERE merchant_id = $1 AND lifted_at IS NULL ORDER BY from_at, restriction_id",
                    )
                    .bind(merchant_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    rows.into_iter()
                        .map(|(m, id, kind, source, from, until)| {
                            Ok(Restriction {
                                merchant_id: m,
                                id,
                                kind: RestrictionKind::parse(&kind).ok_or_else(|| MarketError::Store {
                                    message: format!("corrupt restriction kind {kind}"),
                                    retryable: false,
                                })?,
                                source,
                                from: from_ms(from),
                                until: until.map(from_ms),
                            })
                        })
                        .collect()
                }

                async fn lift_restriction(&mut self, id: &str, at: DateTime<Utc>) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE gov_restrictions SET lifted_at = $1 WHERE restriction_id = $2 AND lifted_at IS NULL",
                    )
                    .bind(ms(at))
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn insert_delisting(
                    &mut self,
                    merchant_id: &str,
                    product_id: &str,
                    penalty_id: &str,
                    at: DateTime<Utc>,
                ) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO gov_delistings (merchant_id, product_id, penalty_id, at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(merchant_id)
                    .bind(product_id)
                    .bind(penalty_id)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn delete_delistings(&mut self, penalty_id: &str) -> Result<()> {
                    sqlx::query("DELETE FROM gov_delistings WHERE penalty_id = $1")
                        .bind(penalty_id)
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }

                async fn delisting_holds(&mut self, merchant_id: &str, product_id: &str) -> Result<i64> {
                    Ok(sqlx::query_scalar(
                        "SELECT COUNT(*) FROM gov_delistings WHERE merchant_id = $1 AND product_id = $2",
                    )
                    .bind(merchant_id)
                    .bind(product_id)
                    .fetch_one(&mut *self.0)
                    .await?)
                }
            }
        };
    };
}
pub(crate) use penalty_repo;
