//! Reviews of order lines, and the star sums the scores of a category are computed from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::governance::Versioned;
use crate::market::error::Result;
use crate::market::governance::review::Review;

/// Reviews.
#[async_trait]
pub trait ReviewRepo: Send {
    /// Inserts a review of line `line_no`; `false` if the line already has one.
    async fn insert_review(&mut self, r: &Review, line_no: i64) -> Result<bool>;
    /// A review.
    async fn review(&mut self, id: &str) -> Result<Option<Versioned<Review>>>;
    /// Writes a review if still at `expected`.
    async fn update_review(&mut self, r: &Review, expected: i64) -> Result<bool>;
    /// A merchant's reviews written after `since`, newest first, at most `limit`.
    async fn reviews_of_merchant(&mut self, merchant_id: &str, since: DateTime<Utc>, limit: i64)
    -> Result<Vec<Review>>;
    /// Published reviews in these categories after `since`: `(count, Σ item, Σ logistics, Σ service)`.
    async fn category_stars(&mut self, category_ids: &[String], since: DateTime<Utc>) -> Result<(i64, i64, i64, i64)>;
}

/// Implements [`ReviewRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! review_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::governance::review::Review;
            use $crate::market::store::governance::{Versioned, doc, docs, get_docs, get_versioned, update_versioned};
            use $crate::market::store::{ms, push_list};

            #[async_trait::async_trait]
            impl $crate::market::store::reviews::ReviewRepo for $tx {
                async fn insert_review(&mut self, r: &Review, line_no: i64) -> Result<bool> {
                    let res = sqlx::query(
                        "INSERT INTO gov_reviews (merchant_id, review_id, order_id, line_no, buyer_openid, category_id, \
                         status, created_at, version, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.merchant_id)
                    .bind(&r.id)
                    .bind(&r.order_id)
                    .bind(line_no)
                    .bind(&r.buyer_id)
                    .bind(&r.category_id)
                    .bind(r.status.as_str())
                    .bind(ms(r.created_at))
                    .bind(doc(r)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn review(&mut self, id: &str) -> Result<Option<Versioned<Review>>> {
                    get_versioned!(
                        &mut *self.0,
                        "review",
                        "SELECT doc, version FROM gov_reviews WHERE review_id = $1",
                        id,
                    )
                }

                async fn update_review(&mut self, r: &Review, expected: i64) -> Result<bool> {
                    update_versioned!(
                        &mut *self.0,
                        "UPDATE gov_reviews SET status = $1, version = $2, doc = $3 WHERE review_id = $4 AND version = $5",
                        [r.status.as_str()],
                        [doc(r)?],
                        key = &r.id,
                        expected = expected,
                    )
                }

                async fn reviews_of_merchant(
                    &mut self,
                    merchant_id: &str,
                    since: DateTime<Utc>,
                    limit: i64,
                ) -> Result<Vec<Review>> {
                    get_docs!(
                        &mut *self.0,
                        "review",
                        "SELECT doc FROM gov_reviews WHERE merchant_id = $1 AND created_at > $2 \
                         ORDER BY created_at DESC, review_id DESC LIMIT $3",
                        merchant_id,
                        ms(since),
                        limit,
                    )
                }

                async fn category_stars(
                    &mut self,
                    category_ids: &[String],
                    since: DateTime<Utc>,
                ) -> Result<(i64, i64, i64, i64)> {
                    if category_ids.is_empty() {
                        return Ok((0, 0, 0, 0));
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT doc FROM gov_reviews WHERE status = 'published' AND created_at > ",
                    );
                    q.push_bind(ms(since));
                    q.push(" AND category_id IN (");
                    push_list(&mut q, category_ids);
                    let rows: Vec<(String,)> = q.build_query_as().fetch_all(&mut *self.0).await?;
                    let reviews: Vec<Review> = docs("review", rows)?;
                    let mut acc = (0i64, 0i64, 0i64, 0i64);
                    for r in reviews {
                        acc.0 += 1;
                        acc.1 += r.ratings.item as i64;
                        acc.2 += r.ratings.logistics as i64;
                        acc.3 += r.ratings.service as i64;
                    }
                    Ok(acc)
                }
            }
        };
    };
}
pub(crate) use review_repo;
