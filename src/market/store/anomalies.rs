//! The payment-anomaly repository: money events the market did not ask for
//! (`PaymentAnomaly`, see [`crate::market::anomaly`]), one row each, deduplicated by kind and
//! notification id.

use async_trait::async_trait;

use crate::market::anomaly::{AnomalyStatus, PaymentAnomaly};
use crate::market::error::{MarketError, Result};
use crate::market::money::Money;

/// Storage of payment anomalies.
#[async_trait]
pub trait AnomalyRepo: Send {
    /// Inserts an anomaly; `false` (nothing written) when one of its kind was already recorded for the
    /// same notification.
    async fn insert_anomaly(&mut self, a: &PaymentAnomaly) -> Result<bool>;
    /// An anomaly by id.
    async fn anomaly(&mut self, id: &str) -> Result<Option<PaymentAnomaly>>;
    /// The anomaly whose refund is `refund_id`.
    async fn anomaly_of_refund(&mut self, refund_id: &str) -> Result<Option<PaymentAnomaly>>;
    /// Anomalies (of one status, or all), by id ascending after `after`, up to `limit`.
    async fn anomalies(
        &mut self,
        status: Option<AnomalyStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PaymentAnomaly>>;
    /// Writes `a` (status, refund_id, note, version, updated_at) if the stored version is `expected_version`.
    async fn update_anomaly(&mut self, a: &PaymentAnomaly, expected_version: i64) -> Result<bool>;
}

pub(crate) const ANOMALY_COLS: &str = "anomaly_id, kind, status, group_id, order_id, out_trade_no, transaction_id, \
     event_key, amount_fen, expected_fen, refund_id, detail, note, version, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct AnomalyRow {
    anomaly_id: String,
    kind: String,
    status: String,
    group_id: String,
    order_id: Option<String>,
    out_trade_no: String,
    transaction_id: String,
    event_key: String,
    amount_fen: i64,
    expected_fen: Option<i64>,
    refund_id: Option<String>,
    detail: String,
    note: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AnomalyRow> for PaymentAnomaly {
    type Error = MarketError;
    fn try_from(r: AnomalyRow) -> Result<Self> {
        let corrupt =
            |e: MarketError| MarketError::Store { message: format!("corrupt anomaly row: {e}"), retryable: false };
        Ok(PaymentAnomaly {
            id: r.anomaly_id,
            kind: r.kind.parse().map_err(corrupt)?,
            status: r.status.parse().map_err(corrupt)?,
            group_id: r.group_id,
            order_id: r.order_id,
            out_trade_no: r.out_trade_no,
            transaction_id: r.transaction_id,
            event_key: r.event_key,
            amount: Money::fen(r.amount_fen),
            expected: r.expected_fen.map(Money::fen),
            refund_id: r.refund_id,
            detail: r.detail,
            note: r.note,
            version: r.version,
            created_at: super::from_ms(r.created_at),
            updated_at: super::from_ms(r.updated_at),
        })
    }
}

/// Implements [`AnomalyRepo`] for a backend's transaction type.
macro_rules! anomaly_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use $crate::market::anomaly::{AnomalyStatus, PaymentAnomaly};
            use $crate::market::error::Result;
            use $crate::market::store::anomalies::{ANOMALY_COLS, AnomalyRepo, AnomalyRow};
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl AnomalyRepo for $tx {
                async fn insert_anomaly(&mut self, a: &PaymentAnomaly) -> Result<bool> {
                    let sql = format!(
                        "INSERT INTO payment_anomalies ({ANOMALY_COLS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                         ON CONFLICT (kind, event_key) DO NOTHING"
                    );
                    let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&a.id)
                        .bind(a.kind.as_str())
                        .bind(a.status.as_str())
                        .bind(&a.group_id)
                        .bind(&a.order_id)
                        .bind(&a.out_trade_no)
                        .bind(&a.transaction_id)
                        .bind(&a.event_key)
                        .bind(a.amount.as_fen())
                        .bind(a.expected.map(|m| m.as_fen()))
                        .bind(&a.refund_id)
                        .bind(&a.detail)
                        .bind(&a.note)
                        .bind(a.version)
                        .bind(ms(a.created_at))
                        .bind(ms(a.updated_at))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn anomaly(&mut self, id: &str) -> Result<Option<PaymentAnomaly>> {
                    let sql = format!("SELECT {ANOMALY_COLS} FROM payment_anomalies WHERE anomaly_id = $1");
                    let row = sqlx::query_as::<_, AnomalyRow>(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                    row.map(PaymentAnomaly::try_from).transpose()
                }

                async fn anomaly_of_refund(&mut self, refund_id: &str) -> Result<Option<PaymentAnomaly>> {
                    let sql = format!("SELECT {ANOMALY_COLS} FROM payment_anomalies WHERE refund_id = $1");
                    let row = sqlx::query_as::<_, AnomalyRow>(sqlx::AssertSqlSafe(sql))
                        .bind(refund_id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                    row.map(PaymentAnomaly::try_from).transpose()
                }

                async fn anomalies(
                    &mut self,
                    status: Option<AnomalyStatus>,
                    after: Option<&str>,
                    limit: i64,
                ) -> Result<Vec<PaymentAnomaly>> {
                    let sql = format!(
                        "SELECT {ANOMALY_COLS} FROM payment_anomalies \
                         WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR anomaly_id > $2) \
                         ORDER BY anomaly_id LIMIT $3"
                    );
                    let rows = sqlx::query_as::<_, AnomalyRow>(sqlx::AssertSqlSafe(sql))
                        .bind(status.map(|s| s.as_str()))
                        .bind(after)
                        .bind(limit)
                        .fetch_all(&mut *self.0)
                        .await?;
                    rows.into_iter().map(PaymentAnomaly::try_from).collect()
                }

                async fn update_anomaly(&mut self, a: &PaymentAnomaly, expected_version: i64) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE payment_anomalies SET status = $1, refund_id = $2, note = $3, version = $4, \
                         updated_at = $5 WHERE anomaly_id = $6 AND version = $7",
                    )
                    .bind(a.status.as_str())
                    .bind(&a.refund_id)
                    .bind(&a.note)
                    .bind(a.version)
                    .bind(ms(a.updated_at))
                    .bind(&a.id)
                    .bind(expected_version)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }
            }
        };
    };
}
pub(crate) use anomaly_repo;
