//! Buyer compensation: the payouts owed to buyers, and the WeChat Pay merchant transfers (商家转账) that pay them
//! (one per attempt, tracked until a final state).

use async_trait::async_trait;

use crate::market::error::Result;
use crate::market::governance::settlement::{Compensation, CompensationTransfer, PayoutStatus};

/// Compensation payouts and the transfers that pay them.
#[async_trait]
pub trait TransferRepo: Send {
    /// Inserts a compensation payout.
    async fn insert_compensation(&mut self, c: &Compensation) -> Result<bool>;
    /// A compensation payout.
    async fn compensation(&mut self, id: &str) -> Result<Option<Compensation>>;
    /// Moves a compensation payout from `from` to its status.
    async fn update_compensation(&mut self, c: &Compensation, from: PayoutStatus) -> Result<bool>;
    /// A buyer's compensations, newest first.
    async fn compensations_of_buyer(&mut self, buyer_openid: &str, limit: i64) -> Result<Vec<Compensation>>;
    /// Inserts a transfer of a compensation; `false` if its `out_bill_no` exists.
    async fn insert_compensation_transfer(&mut self, t: &CompensationTransfer) -> Result<bool>;
    /// A transfer by `out_bill_no`.
    async fn compensation_transfer(&mut self, out_bill_no: &str) -> Result<Option<CompensationTransfer>>;
    /// The transfers of a compensation, first attempt first.
    async fn compensation_transfers(&mut self, compensation_id: &str) -> Result<Vec<CompensationTransfer>>;
    /// Writes a transfer if its stored state is still `from`.
    async fn update_compensation_transfer(&mut self, t: &CompensationTransfer, from: &str) -> Result<bool>;
    /// Transfers WeChat Pay accepted that have not reached a final state, oldest change first.
    async fn pending_compensation_transfers(&mut self, limit: i64) -> Result<Vec<CompensationTransfer>>;
}

/// Implements [`TransferRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! transfer_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use $crate::market::error::{MarketError, Result};
            use $crate::market::governance::aftersale::Payer;
            use $crate::market::governance::settlement::{Compensation, CompensationTransfer, PayoutStatus};
            use $crate::market::store::governance::{doc, get_doc, get_docs};
            use $crate::market::store::{from_ms, ms};

            #[async_trait::async_trait]
            impl $crate::market::store::transfers::TransferRepo for $tx {
                async fn insert_compensation(&mut self, c: &Compensation) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO gov_payouts (merchant_id, payout_id, buyer_openid, amount_fen, source, reference, \
                         status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                    )
                    .bind(&c.merchant_id)
                    .bind(&c.id)
                    .bind(&c.buyer_id)
                    .bind(c.amount.as_fen())
                    .bind(c.source.as_str())
                    .bind(&c.reference)
                    .bind(c.status.as_str())
                    .bind(ms(c.created_at))
                    .bind(ms(c.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn compensation(&mut self, id: &str) -> Result<Option<Compensation>> {
                    let row: Option<(String, String, String, i64, String, String, String, i64, i64)> = sqlx::query_as(
                        "SELECT merchant_id, payout_id, buyer_openid, amount_fen, source, reference, status, created_at, \
                         updated_at FROM gov_payouts WHERE payout_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    let bad = |what: &str| MarketError::Store { message: format!("corrupt payout {what}"), retryable: false };
                    row.map(|(m, id, b, amount, source, reference, status, created, updated)| {
                        Ok(Compensation {
                            merchant_id: m,
                            id,
                            buyer_id: b,
                            amount: crate::market::Money::fen(amount),
                            source: Payer::parse(&source).ok_or_else(|| bad("source"))?,
                            reference,
                            status: PayoutStatus::parse(&status).ok_or_else(|| bad("status"))?,
                            created_at: from_ms(created),
                            updated_at: from_ms(updated),
                        })
                    })
                    .transpose()
                }

                async fn update_compensation(&mut self, c: &Compensation, from: PayoutStatus) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE gov_payouts SET status = $1, updated_at = $2 WHERE payout_id = $3 AND status = $4",
                    )
                    .bind(c.status.as_str())
                    .bind(ms(c.updated_at))
                    .bind(&c.id)
                    .bind(from.as_str())
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn compensations_of_buyer(&mut self, buyer_openid: &str, limit: i64) -> Result<Vec<Compensation>> {
                    let ids: Vec<String> = sqlx::query_scalar(
                        "SELECT payout_id FROM gov_payouts WHERE buyer_openid = $1 \
                         ORDER BY created_at DESC, payout_id DESC LIMIT $2",
                    )
                    .bind(buyer_openid)
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                    let mut out = Vec::with_capacity(ids.len());
                    for id in ids {
                        if let Some(c) = self.compensation(&id).await? {
                            out.push(c);
                        }
                    }
                    Ok(out)
                }

                async fn insert_compensation_transfer(&mut self, t: &CompensationTransfer) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO gov_compensation_transfers (out_bill_no, payout_id, buyer_openid, attempt, state, \
                         updated_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    )
                    .bind(&t.out_bill_no)
                    .bind(&t.compensation_id)
                    .bind(&t.buyer_id)
                    .bind(t.attempt)
                    .bind(&t.state)
                    .bind(ms(t.updated_at))
                    .bind(doc(t)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn compensation_transfer(&mut self, out_bill_no: &str) -> Result<Option<CompensationTransfer>> {
                    get_doc!(
                        &mut *self.0,
                        "compensation transfer",
                        "SELECT doc FROM gov_compensation_transfers WHERE out_bill_no = $1",
                        out_bill_no,
                    )
                }

                async fn compensation_transfers(&mut self, compensation_id: &str) -> Result<Vec<CompensationTransfer>> {
                    get_docs!(
                        &mut *self.0,
                        "compensation transfer",
                        "SELECT doc FROM gov_compensation_transfers WHERE payout_id = $1 ORDER BY attempt",
                        compensation_id,
                    )
                }

                async fn update_compensation_transfer(&mut self, t: &CompensationTransfer, from: &str) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE gov_compensation_transfers SET state = $1, updated_at = $2, doc = $3 \
                         WHERE out_bill_no = $4 AND state = $5",
                    )
                    .bind(&t.state)
                    .bind(ms(t.updated_at))
                    .bind(doc(t)?)
                    .bind(&t.out_bill_no)
                    .bind(from)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn pending_compensation_transfers(&mut self, limit: i64) -> Result<Vec<CompensationTransfer>> {
                    get_docs!(
                        &mut *self.0,
                        "compensation transfer",
                        "SELECT doc FROM gov_compensation_transfers \
                         WHERE state NOT IN ('NEW', 'SUCCESS', 'FAIL', 'CANCELLED') ORDER BY updated_at, out_bill_no LIMIT $1",
                        limit,
                    )
                }
            }
        };
    };
}
pub(crate) use transfer_repo;
