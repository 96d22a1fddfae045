//! After-sales: the cases buyers open on order lines (at most one open per line) and the disputes escalated from
//! them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::governance::Versioned;
use crate::market::error::Result;
use crate::market::governance::aftersale::{Case, Dispute};

/// After-sale cases and disputes.
#[async_trait]
pub trait AfterSaleRepo: Send {
    /// Inserts a case of line `line_no`; `false` if the line already has an open case.
    async fn insert_case(&mut self, c: &Case, line_no: i64, refund_id: Option<&str>) -> Result<bool>;
    /// A case.
    async fn case(&mut self, id: &str) -> Result<Option<Versioned<Case>>>;
    /// Writes a case if still at `expected`.
    async fn update_case(&mut self, c: &Case, refund_id: Option<&str>, expected: i64) -> Result<bool>;
    /// The cases of an order line, oldest first.
    async fn cases_of_line(&mut self, order_id: &str, line_no: i64) -> Result<Vec<Case>>;
    /// The cases of an order, oldest first.
    async fn cases_of_order(&mut self, order_id: &str) -> Result<Vec<Case>>;
    /// A merchant's cases opened after `since`, newest first, at most `limit`.
    async fn cases_of_merchant(&mut self, merchant_id: &str, since: DateTime<Utc>, limit: i64) -> Result<Vec<Case>>;
    /// The case a refund pays.
    async fn case_of_refund(&mut self, refund_id: &str) -> Result<Option<Versioned<Case>>>;
    /// Inserts a dispute; `false` if the case already has one.
    async fn insert_dispute(&mut self, d: &Dispute, line_no: i64) -> Result<bool>;
    /// A dispute.
    async fn dispute(&mut self, id: &str) -> Result<Option<Versioned<Dispute>>>;
    /// Writes a dispute if still at `expected`.
    async fn update_dispute(&mut self, d: &Dispute, expected: i64) -> Result<bool>;
    /// A merchant's disputes opened after `since`, newest first.
    async fn disputes_of_merchant(
        &mut self,
        merchant_id: &str,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Dispute>>;
}

/// Implements [`AfterSaleRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! aftersale_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::governance::aftersale::{Case, Dispute};
            use $crate::market::store::governance::{Versioned, doc, get_docs, get_versioned, update_versioned};
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl $crate::market::store::aftersales::AfterSaleRepo for $tx {
                async fn insert_case(&mut self, c: &Case, line_no: i64, refund_id: Option<&str>) -> Result<bool> {
                    let res = sqlx::query(
                        "INSERT INTO gov_cases (merchant_id, case_id, order_id, line_no, buyer_openid, state, is_open, \
                         refund_id, opened_at, version, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&c.merchant_id)
                    .bind(&c.id)
                    .bind(&c.order_id)
                    .bind(line_no)
                    .bind(&c.buyer_id)
                    .bind(c.state.as_str())
                    .bind(c.state.is_open())
                    .bind(refund_id)
                    .bind(ms(c.opened_at))
                    .bind(doc(c)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn case(&mut self, id: &str) -> Result<Option<Versioned<Case>>> {
                    get_versioned!(&mut *self.0, "case", "SELECT doc, version FROM gov_cases WHERE case_id = $1", id)
                }

                async fn update_case(&mut self, c: &Case, refund_id: Option<&str>, expected: i64) -> Result<bool> {
                    update_versioned!(
                        &mut *self.0,
                        "UPDATE gov_cases SET state = $1, is_open = $2, refund_id = COALESCE($3, refund_id), version = $4, \
                         doc = $5 WHERE case_id = $6 AND version = $7",
                        [c.state.as_str(), c.state.is_open(), refund_id],
                        [doc(c)?],
                        key = &c.id,
                        expected = expected,
                    )
                }

                async fn cases_of_line(&mut self, order_id: &str, line_no: i64) -> Result<Vec<Case>> {
                    get_docs!(
                        &mut *self.0,
                        "case",
                        "SELECT doc FROM gov_cases WHERE order_id = $1 AND line_no = $2 ORDER BY opened_at, case_id",
                        order_id,
                        line_no,
                    )
                }

                async fn cases_of_order(&mut self, order_id: &str) -> Result<Vec<Case>> {
                    get_docs!(
                        &mut *self.0,
                        "case",
                        "SELECT doc FROM gov_cases WHERE order_id = $1 ORDER BY opened_at, case_id",
                        order_id,
                    )
                }

                async fn cases_of_merchant(
                    &mut self,
                    merchant_id: &str,
                    since: DateTime<Utc>,
                    limit: i64,
                ) -> Result<Vec<Case>> {
                    get_docs!(
                        &mut *self.0,
                        "case",
                        "SELECT doc FROM gov_cases WHERE merchant_id = $1 AND opened_at > $2 \
                         ORDER BY opened_at DESC, case_id DESC LIMIT $3",
                        merchant_id,
                        ms(since),
                        limit,
                    )
                }

                async fn case_of_refund(&mut self, refund_id: &str) -> Result<Option<Versioned<Case>>> {
                    get_versioned!(
                        &mut *self.0,
                        "case",
                        "SELECT doc, version FROM gov_cases WHERE refund_id = $1",
                        refund_id,
                    )
                }

                async fn insert_dispute(&mut self, d: &Dispute, line_no: i64) -> Result<bool> {
                    let res = sqlx::query(
                        "INSERT INTO gov_disputes (merchant_id, dispute_id, case_id, order_id, line_no, state, opened_at, \
                         decided_at, version, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) ON CONFLICT DO NOTHING",
                    )
                    .bind(&d.merchant_id)
                    .bind(&d.id)
                    .bind(&d.case_id)
                    .bind(&d.order_id)
                    .bind(line_no)
                    .bind(d.state.as_str())
                    .bind(ms(d.opened_at))
                    .bind(d.decided_at.map(ms))
                    .bind(doc(d)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn dispute(&mut self, id: &str) -> Result<Option<Versioned<Dispute>>> {
                    get_versioned!(
                        &mut *self.0,
                        "dispute",
                        "SELECT doc, version FROM gov_disputes WHERE dispute_id = $1",
                        id,
                    )
                }

                async fn update_dispute(&mut self, d: &Dispute, expected: i64) -> Result<bool> {
                    update_versioned!(
                        &mut *self.0,
                        "UPDATE gov_disputes SET state = $1, decided_at = $2, version = $3, doc = $4 \
                         WHERE dispute_id = $5 AND version = $6",
                        [d.state.as_str(), d.decided_at.map(ms)],
                        [doc(d)?],
                        key = &d.id,
                        expected = expected,
                    )
                }

                async fn disputes_of_merchant(
                    &mut self,
                    merchant_id: &str,
                    since: DateTime<Utc>,
                    limit: i64,
                ) -> Result<Vec<Dispute>> {
                    get_docs!(
                        &mut *self.0,
                        "dispute",
                        "SELECT doc FROM gov_disputes WHERE merchant_id = $1 AND opened_at > $2 \
                         ORDER BY opened_at DESC, dispute_id DESC LIMIT $3",
                        merchant_id,
                        ms(since),
                        limit,
                    )
                }
            }
        };
    };
}
pub(crate) use aftersale_repo;
