//! Promoters: the dense ids referral tokens carry, the share-link clicks buyers make, and the attribution of an
//! order to the promoter whose link led to it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::governance::Versioned;
use crate::market::error::Result;
use crate::market::governance::settlement::{Attribution, Click};

/// Promoter ids, share-link clicks and attributions.
#[async_trait]
pub trait PromoterRepo: Send {
    /// Gives `openid` the next promoter id (`MAX(id) + 1`, the first is 1); `false` (nothing written) if
    /// the openid has one, or if a concurrent transaction took that id (read [`PromoterRepo::promoter_id`]: still
    /// `None` means a lost race, worth retrying as a whole).
    async fn insert_promoter(&mut self, openid: &str, at: DateTime<Utc>) -> Result<bool>;
    /// The promoter id of an openid.
    async fn promoter_id(&mut self, openid: &str) -> Result<Option<i64>>;
    /// The openid of a promoter id.
    async fn promoter_openid(&mut self, id: i64) -> Result<Option<String>>;
    /// Records a share-link click.
    async fn insert_click(&mut self, buyer_openid: &str, c: &Click) -> Result<()>;
    /// A buyer's clicks after `since`.
    async fn clicks_of(&mut self, buyer_openid: &str, since: DateTime<Utc>) -> Result<Vec<Click>>;
    /// Inserts an attribution; `false` if the order has one.
    async fn insert_attribution(&mut self, merchant_id: &str, a: &Attribution) -> Result<bool>;
    /// The attribution of an order.
    async fn attribution_of(&mut self, order_id: &str) -> Result<Option<Versioned<Attribution>>>;
    /// Writes an attribution if still at `expected`.
    async fn update_attribution(&mut self, a: &Attribution, expected: i64) -> Result<bool>;
}

/// Implements [`PromoterRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! promoter_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::governance::settlement::{Attribution, Click};
            use $crate::market::store::governance::{Versioned, doc, get_versioned, update_versioned};
            use $crate::market::store::{from_ms, ms};

            #[async_trait::async_trait]
            impl $crate::market::store::promoters::PromoterRepo for $tx {
                async fn insert_promoter(&mut self, openid: &str, at: DateTime<Utc>) -> Result<bool> {
                    // Dense ids: a sequence (identity, AUTOINCREMENT) would be spent by every insert that
                    // meets an existing openid. Two writers taking the same MAX + 1 meet on the primary key;
                    // ON CONFLICT (no target) lets the loser write nothing. `WHERE TRUE` keeps SQLite from
                    // reading ON CONFLICT as a join constraint.
                    let r = sqlx::query(
                        "INSERT INTO gov_promoters (id, openid, created_at) \
                         SELECT COALESCE(MAX(id), 0) + 1, $1, $2 FROM gov_promoters WHERE TRUE \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(openid)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn promoter_id(&mut self, openid: &str) -> Result<Option<i64>> {
                    Ok(sqlx::query_scalar("SELECT id FROM gov_promoters WHERE openid = $1")
                        .bind(openid)
                        .fetch_optional(&mut *self.0)
                        .await?)
                }

                async fn promoter_openid(&mut self, id: i64) -> Result<Option<String>> {
                    Ok(sqlx::query_scalar("SELECT openid FROM gov_promoters WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?)
                }

                async fn insert_click(&mut self, buyer_openid: &str, c: &Click) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO gov_clicks (buyer_openid, share_token, promoter_id, at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(buyer_openid)
                    .bind(&c.share_token)
                    .bind(&c.promoter_id)
                    .bind(ms(c.at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn clicks_of(&mut self, buyer_openid: &str, since: DateTime<Utc>) -> Result<Vec<Click>> {
                    let rows: Vec<(String, String, i64)> = sqlx::query_as(
                        "SELECT promoter_id, share_token, at FROM gov_clicks WHERE buyer_openid = $1 AND at > $2 \
                         ORDER BY at, share_token",
                    )
                    .bind(buyer_openid)
                    .bind(ms(since))
                    .fetch_all(&mut *self.0)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(promoter_id, share_token, at)| Click { promoter_id, share_token, at: from_ms(at) })
                        .collect())
                }

                async fn insert_attribution(&mut self, merchant_id: &str, a: &Attribution) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO gov_attributions (merchant_id, attribution_id, order_id, promoter_id, state, version, doc) \
                         VALUES ($1, $2, $3, $4, $5, 1, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(merchant_id)
                    .bind(&a.id)
                    .bind(&a.order_id)
                    .bind(&a.promoter_id)
                    .bind(a.state.as_str())
                    .bind(doc(a)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn attribution_of(&mut self, order_id: &str) -> Result<Option<Versioned<Attribution>>> {
                    get_versioned!(
                        &mut *self.0,
                        "attribution",
                        "SELECT doc, version FROM gov_attributions WHERE order_id = $1",
                        order_id,
                    )
                }

                async fn update_attribution(&mut self, a: &Attribution, expected: i64) -> Result<bool> {
                    update_versioned!(
                        &mut *self.0,
                        "UPDATE gov_attributions SET state = $1, version = $2, doc = $3 WHERE attribution_id = $4 \
                         AND version = $5",
                        [a.state.as_str()],
                        [doc(a)?],
                        key = &a.id,
                        expected = expected,
                    )
                }
            }
        };
    };
}
pub(crate) use promoter_repo;
