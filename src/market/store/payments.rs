//! Payments (one per checkout group), the payment notifications already seen (deduplicated by notify id, pruned
//! after the retention period), and refunds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, from_ms};
use crate::market::error::{MarketError, Result};
use crate::market::money::Money;
use crate::market::payment::{Payment, Refund, RefundStatus};

/// Payments, payment notifications and refunds.
#[async_trait]
pub trait PaymentRepo: Send {
    /// Inserts a payment.
    async fn insert_payment(&mut self, p: &Payment) -> Result<()>;
    /// The payment of a group.
    async fn payment(&mut self, group_id: &str) -> Result<Option<Payment>>;
    /// Initiated payments with a prepay order whose group still awaits payment, oldest first.
    async fn awaiting_payments(&mut self, limit: i64) -> Result<Vec<Payment>>;
    /// Writes every mutable field of `p` if the stored version is `expected_version`.
    async fn update_payment(&mut self, p: &Payment, expected_version: i64) -> Result<bool>;
    /// Records a payment notification id; `false` if seen before.
    async fn insert_notice(
        &mut self,
        notify_id: &str,
        out_trade_no: &str,
        transaction_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Deletes the payment-notification dedupe rows received before `before`; how many.
    async fn prune_notices(&mut self, before: DateTime<Utc>) -> Result<u64>;
    /// Inserts a refund.
    async fn insert_refund(&mut self, r: &Refund) -> Result<()>;
    /// A refund by id.
    async fn refund(&mut self, id: &str) -> Result<Option<Refund>>;
    /// Writes `r` (status, wx_refund_id, updated_at) if the stored status is `expected`.
    async fn update_refund(&mut self, r: &Refund, expected: RefundStatus) -> Result<bool>;
    /// Refunds of a group.
    async fn refunds_of_group(&mut self, group_id: &str) -> Result<Vec<Refund>>;
}

#[derive(sqlx::FromRow)]
pub(super) struct PaymentRow {
    pub(super) group_id: String,
    pub(super) buyer_openid: String,
    pub(super) mode: String,
    pub(super) amount_fen: i64,
    pub(super) status: String,
    pub(super) prepay_id: Option<String>,
    pub(super) pay_params: Option<String>,
    pub(super) transaction_id: Option<String>,
    pub(super) paid_at: Option<i64>,
    pub(super) refunded_fen: i64,
    pub(super) version: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = MarketError;
    fn try_from(r: PaymentRow) -> Result<Self> {
        Ok(Payment {
            group_id: r.group_id,
            buyer_openid: r.buyer_openid,
            mode: r.mode.parse().map_err(|e| corrupt("payment", e))?,
            amount: Money::fen(r.amount_fen),
            status: r.status.parse().map_err(|e| corrupt("payment", e))?,
            prepay_id: r.prepay_id,
            pay_params: r
                .pay_params
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| corrupt("payment", e))?,
            transaction_id: r.transaction_id,
            paid_at: r.paid_at.map(from_ms),
            refunded: Money::fen(r.refunded_fen),
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RefundRow {
    pub(super) refund_id: String,
    pub(super) group_id: String,
    pub(super) order_id: Option<String>,
    pub(super) merchant_id: Option<String>,
    pub(super) out_trade_no: String,
    pub(super) transaction_id: Option<String>,
    pub(super) sub_mchid: Option<String>,
    pub(super) amount_fen: i64,
    pub(super) total_fen: i64,
    pub(super) reason: String,
    pub(super) status: String,
    pub(super) wx_refund_id: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<RefundRow> for Refund {
    type Error = MarketError;
    fn try_from(r: RefundRow) -> Result<Self> {
        Ok(Refund {
            id: r.refund_id,
            group_id: r.group_id,
            order_id: r.order_id,
            merchant_id: r.merchant_id,
            out_trade_no: r.out_trade_no,
            transaction_id: r.transaction_id,
            sub_mchid: r.sub_mchid,
            amount: Money::fen(r.amount_fen),
            total: Money::fen(r.total_fen),
            reason: r.reason,
            status: r.status.parse().map_err(|e| corrupt("refund", e))?,
            wx_refund_id: r.wx_refund_id,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

/// Implements [`PaymentRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! payment_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::payment::{Payment, Refund, RefundStatus};
            use $crate::market::store::payments::{PaymentRow, RefundRow};
            use $crate::market::store::{convert, json, ms};

            #[async_trait::async_trait]
            impl $crate::market::store::payments::PaymentRepo for $tx {
                async fn insert_payment(&mut self, p: &Payment) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO payments (group_id, buyer_openid, mode, amount_fen, status, prepay_id, pay_params, \
                         transaction_id, paid_at, refunded_fen, version, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .bind(&p.group_id)
                    .bind(&p.buyer_openid)
                    .bind(p.mode.as_str())
                    .bind(p.amount.as_fen())
                    .bind(p.status.as_str())
                    .bind(&p.prepay_id)
                    .bind(p.pay_params.as_ref().map(json).transpose()?)
                    .bind(&p.transaction_id)
                    .bind(p.paid_at.map(ms))
                    .bind(p.refunded.as_fen())
                    .bind(p.version)
                    .bind(ms(p.created_at))
                    .bind(ms(p.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn payment(&mut self, group_id: &str) -> Result<Option<Payment>> {
                    let row = sqlx::query_as::<_, PaymentRow>(
                        "SELECT group_id, buyer_openid, mode, amount_fen, status, prepay_id, pay_params, transaction_id, \
                         paid_at, refunded_fen, version, created_at, updated_at FROM payments WHERE group_id = $1",
                    )
                    .bind(group_id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    row.map(Payment::try_from).transpose()
                }

                async fn awaiting_payments(&mut self, limit: i64) -> Result<Vec<Payment>> {
                    let rows = sqlx::query_as::<_, PaymentRow>(
                        "SELECT p.group_id, p.buyer_openid, p.mode, p.amount_fen, p.status, p.prepay_id, p.pay_params, \
                         p.transaction_id, p.paid_at, p.refunded_fen, p.version, p.created_at, p.updated_at \
                         FROM payments p JOIN checkout_groups g ON g.group_id = p.group_id \
                         WHERE p.status = $1 AND p.prepay_id IS NOT NULL AND g.status = $2 \
                         ORDER BY p.created_at, p.group_id LIMIT $3",
                    )
                    .bind($crate::market::PaymentStatus::Initiated.as_str())
                    .bind($crate::market::GroupStatus::AwaitingPayment.as_str())
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                    rows.into_iter().map(Payment::try_from).collect()
                }

                async fn update_payment(&mut self, p: &Payment, expected_version: i64) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE payments SET status = $1, prepay_id = $2, pay_params = $3, transaction_id = $4, \
                         paid_at = $5, refunded_fen = $6, version = $7, updated_at = $8 \
                         WHERE group_id = $9 AND version = $10",
                    )
                    .bind(p.status.as_str())
                    .bind(&p.prepay_id)
                    .bind(p.pay_params.as_ref().map(json).transpose()?)
                    .bind(&p.transaction_id)
                    .bind(p.paid_at.map(ms))
                    .bind(p.refunded.as_fen())
                    .bind(p.version)
                    .bind(ms(p.updated_at))
                    .bind(&p.group_id)
                    .bind(expected_version)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn insert_notice(
                    &mut self,
                    notify_id: &str,
                    out_trade_no: &str,
                    transaction_id: &str,
                    at: DateTime<Utc>,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO payment_notices (notify_id, out_trade_no, transaction_id, received_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (notify_id) DO NOTHING",
                    )
                    .bind(notify_id)
                    .bind(out_trade_no)
                    .bind(transaction_id)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn prune_notices(&mut self, before: DateTime<Utc>) -> Result<u64> {
                    let r = sqlx::query("DELETE FROM payment_notices WHERE received_at < $1")
                        .bind(ms(before))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(r.rows_affected())
                }

                async fn insert_refund(&mut self, r: &Refund) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO refunds (refund_id, group_id, order_id, merchant_id, out_trade_no, transaction_id, \
                         sub_mchid, amount_fen, total_fen, reason, status, wx_refund_id, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    )
                    .bind(&r.id)
                    .bind(&r.group_id)
                    .bind(&r.order_id)
                    .bind(&r.merchant_id)
                    .bind(&r.out_trade_no)
                    .bind(&r.transaction_id)
                    .bind(&r.sub_mchid)
                    .bind(r.amount.as_fen())
                    .bind(r.total.as_fen())
                    .bind(&r.reason)
                    .bind(r.status.as_str())
                    .bind(&r.wx_refund_id)
                    .bind(ms(r.created_at))
                    .bind(ms(r.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn refund(&mut self, id: &str) -> Result<Option<Refund>> {
                    let row = sqlx::query_as::<_, RefundRow>(
                        "SELECT refund_id, group_id, order_id, merchant_id, out_trade_no, transaction_id, sub_mchid, \
                         amount_fen, total_fen, reason, status, wx_refund_id, created_at, updated_at FROM refunds \
                         WHERE refund_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    row.map(Refund::try_from).transpose()
                }

                async fn update_refund(&mut self, r: &Refund, expected: RefundStatus) -> Result<bool> {
                    let res = sqlx::query(
                        "UPDATE refunds SET status = $1, wx_refund_id = $2, updated_at = $3 \
                         WHERE refund_id = $4 AND status = $5",
                    )
                    .bind(r.status.as_str())
                    .bind(&r.wx_refund_id)
                    .bind(ms(r.updated_at))
                    .bind(&r.id)
                    .bind(expected.as_str())
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn refunds_of_group(&mut self, group_id: &str) -> Result<Vec<Refund>> {
                    let rows = sqlx::query_as::<_, RefundRow>(
                        "SELECT refund_id, group_id, order_id, merchant_id, out_trade_no, transaction_id, sub_mchid, \
                         amount_fen, total_fen, reason, status, wx_refund_id, created_at, updated_at FROM refunds \
                         WHERE group_id = $1 ORDER BY refund_id",
                    )
                    .bind(group_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }
            }
        };
    };
}
pub(crate) use payment_repo;
