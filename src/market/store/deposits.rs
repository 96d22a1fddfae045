//! Deposits (保证金): each merchant's deposit account, the pay-ins made through WeChat Pay, and the exit refunds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::governance::Versioned;
use crate::market::error::Result;
use crate::market::governance::deposit::{DepositAccount, DepositPayment, DepositRefund, DepositRefundStatus};

/// Deposit accounts, deposit payments and deposit refunds.
#[async_trait]
pub trait DepositRepo: Send {
    /// A merchant's deposit account.
    async fn deposit(&mut self, merchant_id: &str) -> Result<Option<Versioned<DepositAccount>>>;
    /// Inserts a deposit account (version 1); `false` if it exists.
    async fn insert_deposit(&mut self, d: &DepositAccount) -> Result<bool>;
    /// Writes a deposit account if still at `expected`.
    async fn update_deposit(&mut self, d: &DepositAccount, expected: i64) -> Result<bool>;
    /// Deposit accounts in Insufficient whose grace ended by `now` (for repair sweeps).
    async fn deposits_in(&mut self, status: &str, limit: i64) -> Result<Vec<DepositAccount>>;
    /// Inserts a pending deposit payment; `false` if its id or `(merchant, key)` exists.
    async fn insert_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool>;
    /// A deposit payment by `out_trade_no`.
    async fn deposit_payment(&mut self, id: &str) -> Result<Option<DepositPayment>>;
    /// A merchant's deposit payment by idempotency key.
    async fn deposit_payment_by_key(&mut self, merchant_id: &str, key: &str) -> Result<Option<DepositPayment>>;
    /// Marks a pending (or closed: the money arrived anyway) deposit payment paid; `false` if it was
    /// already paid.
    async fn mark_deposit_payment_paid(&mut self, p: &DepositPayment) -> Result<bool>;
    /// Marks a pending deposit payment closed (unpaid); `false` if it was not pending.
    async fn close_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool>;
    /// A merchant's deposit payments (every status), oldest first.
    async fn deposit_payments_of(&mut self, merchant_id: &str) -> Result<Vec<DepositPayment>>;
    /// Pending deposit payments created at or before `before`, oldest first, at most `limit`.
    async fn pending_deposit_payments(&mut self, before: DateTime<Utc>, limit: i64) -> Result<Vec<DepositPayment>>;
    /// Inserts a deposit refund; `false` if its id exists.
    async fn insert_deposit_refund(&mut self, r: &DepositRefund) -> Result<bool>;
    /// A deposit refund by `out_refund_no`.
    async fn deposit_refund(&mut self, id: &str) -> Result<Option<DepositRefund>>;
    /// Writes a deposit refund if its status is still `expected`.
    async fn update_deposit_refund(&mut self, r: &DepositRefund, expected: DepositRefundStatus) -> Result<bool>;
    /// A merchant's deposit refunds, oldest first.
    async fn deposit_refunds_of(&mut self, merchant_id: &str) -> Result<Vec<DepositRefund>>;
    /// Deposit refunds in `status` last changed at or before `before`, oldest first, at most `limit`.
    async fn deposit_refunds_in(
        &mut self,
        status: DepositRefundStatus,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DepositRefund>>;
}

/// Implements [`DepositRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! deposit_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::governance::deposit::{
                DepositAccount, DepositPayment, DepositRefund, DepositRefundStatus,
            };
            use $crate::market::store::governance::{
                Versioned, doc, docs, get_doc, get_docs, get_versioned, update_versioned,
            };
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl $crate::market::store::deposits::DepositRepo for $tx {
                async fn deposit(&mut self, merchant_id: &str) -> Result<Option<Versioned<DepositAccount>>> {
                    get_versioned!(
                        &mut *self.0,
                        "deposit",
                        "SELECT doc, version FROM gov_deposits WHERE merchant_id = $1",
                        merchant_id,
                    )
                }

                async fn insert_deposit(&mut self, d: &DepositAccount) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO gov_deposits (merchant_id, required_fen, status, grace_until, version, updated_at, doc) \
                         VALUES ($1, $2, $3, $4, 1, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&d.merchant_id)
                    .bind(d.required.as_fen())
                    .bind(d.status.as_str())
                    .bind(d.grace_until.map(ms))
                    .bind(ms(d.updated_at))
                    .bind(doc(d)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn update_deposit(&mut self, d: &DepositAccount, expected: i64) -> Result<bool> {
                    update_versioned!(
                        &mut *self.0,
                        "UPDATE gov_deposits SET required_fen = $1, status = $2, grace_until = $3, version = $4, \
                         updated_at = $5, doc = $6 WHERE merchant_id = $7 AND version = $8",
                        [d.required.as_fen(), d.status.as_str(), d.grace_until.map(ms)],
                        [ms(d.updated_at), doc(d)?],
                        key = &d.merchant_id,
                        expected = expected,
                    )
                }

                async fn deposits_in(&mut self, status: &str, limit: i64) -> Result<Vec<DepositAccount>> {
                    get_docs!(
                        &mut *self.0,
                        "deposit",
                        "SELECT doc FROM gov_deposits WHERE status = $1 ORDER BY merchant_id LIMIT $2",
                        status,
                        limit,
                    )
                }

                async fn insert_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO gov_deposit_payments (id, merchant_id, idem_key, amount_fen, status, created_at, doc) \
                         VALUES ($1, $2, $3, $4, 'pending', $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&p.id)
                    .bind(&p.merchant_id)
                    .bind(&p.idempotency_key)
                    .bind(p.amount.as_fen())
                    .bind(ms(p.created_at))
                    .bind(doc(p)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn deposit_payment(&mut self, id: &str) -> Result<Option<DepositPayment>> {
                    get_doc!(&mut *self.0, "deposit payment", "SELECT doc FROM gov_deposit_payments WHERE id = $1", id)
                }

                async fn deposit_payment_by_key(
                    &mut self,
                    merchant_id: &str,
                    key: &str,
                ) -> Result<Option<DepositPayment>> {
                    let row: Option<(String,)> = sqlx::query_as(
                        "SELECT doc FROM gov_deposit_payments WHERE merchant_id = $1 AND idem_key = $2",
                    )
                    .bind(merchant_id)
                    .bind(key)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    Ok(docs("deposit payment", row.into_iter().collect())?.pop())
                }

                async fn mark_deposit_payment_paid(&mut self, p: &DepositPayment) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE gov_deposit_payments SET status = 'paid', doc = $1 WHERE id = $2 AND status <> 'paid'",
                    )
                    .bind(doc(p)?)
                    .bind(&p.id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn close_deposit_payment(&mut self, p: &DepositPayment) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE gov_deposit_payments SET status = 'closed', doc = $1 WHERE id = $2 AND status = 'pending'",
                    )
                    .bind(doc(p)?)
                    .bind(&p.id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn deposit_payments_of(&mut self, merchant_id: &str) -> Result<Vec<DepositPayment>> {
                    get_docs!(
                        &mut *self.0,
                        "deposit payment",
                        "SELECT doc FROM gov_deposit_payments WHERE merchant_id = $1 ORDER BY created_at, id",
                        merchant_id,
                    )
                }

                async fn pending_deposit_payments(
                    &mut self,
                    before: DateTime<Utc>,
                    limit: i64,
                ) -> Result<Vec<DepositPayment>> {
                    get_docs!(
                        &mut *self.0,
                        "deposit payment",
                        "SELECT doc FROM gov_deposit_payments WHERE status = 'pending' AND created_at <= $1 \
                         ORDER BY created_at, id LIMIT $2",
                        ms(before),
                        limit,
                    )
                }

                async fn insert_deposit_refund(&mut self, r: &DepositRefund) -> Result<bool> {
                    let res = sqlx::query(
                        "INSERT INTO gov_deposit_refunds (id, merchant_id, payment_id, amount_fen, status, created_at, \
                         updated_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    )
                    .bind(&r.id)
                    .bind(&r.merchant_id)
                    .bind(r.payment_id.as_deref())
                    .bind(r.amount.as_fen())
                    .bind(r.status.as_str())
                    .bind(ms(r.created_at))
                    .bind(ms(r.updated_at))
                    .bind(doc(r)?)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn deposit_refund(&mut self, id: &str) -> Result<Option<DepositRefund>> {
                    get_doc!(&mut *self.0, "deposit refund", "SELECT doc FROM gov_deposit_refunds WHERE id = $1", id)
                }

                async fn update_deposit_refund(
                    &mut self,
                    r: &DepositRefund,
                    expected: DepositRefundStatus,
                ) -> Result<bool> {
                    let res = sqlx::query(
                        "UPDATE gov_deposit_refunds SET status = $1, updated_at = $2, doc = $3 \
                         WHERE id = $4 AND status = $5",
                    )
                    .bind(r.status.as_str())
                    .bind(ms(r.updated_at))
                    .bind(doc(r)?)
                    .bind(&r.id)
                    .bind(expected.as_str())
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn deposit_refunds_of(&mut self, merchant_id: &str) -> Result<Vec<DepositRefund>> {
                    get_docs!(
                        &mut *self.0,
                        "deposit refund",
                        "SELECT doc FROM gov_deposit_refunds WHERE merchant_id = $1 ORDER BY created_at, id",
                        merchant_id,
                    )
                }

                async fn deposit_refunds_in(
                    &mut self,
                    status: DepositRefundStatus,
                    before: DateTime<Utc>,
                    limit: i64,
                ) -> Result<Vec<DepositRefund>> {
                    get_docs!(
                        &mut *self.0,
                        "deposit refund",
                        "SELECT doc FROM gov_deposit_refunds WHERE status = $1 AND updated_at <= $2 \
                         ORDER BY updated_at, id LIMIT $3",
                        status.as_str(),
                        ms(before),
                        limit,
                    )
                }
            }
        };
    };
}
pub(crate) use deposit_repo;
