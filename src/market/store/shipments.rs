//! Shipments: the parcels of an order (one per waybill, correctable), the carrier's first scan of an order, and
//! the shipping deadlines governance scores merchants on.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, from_ms};
use crate::market::error::{MarketError, Result};
use crate::market::order::Shipment;

/// Parcels, carrier scans and shipping facts.
#[async_trait]
pub trait ShipmentRepo: Send {
    /// Records a parcel; `false` if this waybill was already recorded for the order.
    async fn insert_shipment(&mut self, s: &Shipment) -> Result<bool>;
    /// Parcels of an order.
    async fn shipments(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<Shipment>>;
    /// Replaces a parcel's waybill (a shipping-info correction); `false` if the parcel no longer has
    /// `old_tracking_no` or the new waybill is already another parcel's of the order.
    async fn correct_shipment(
        &mut self,
        merchant_id: &str,
        shipment_id: &str,
        old_tracking_no: &str,
        tracking_no: &str,
        express_company: &str,
    ) -> Result<bool>;
    /// Records the carrier's first scan of an order (keeps the earliest).
    async fn put_carrier_event(&mut self, merchant_id: &str, order_id: &str, at: DateTime<Utc>) -> Result<()>;
    /// The carrier's first scan of an order.
    async fn carrier_event(&mut self, order_id: &str) -> Result<Option<DateTime<Utc>>>;
    /// `(ship_deadline, shipped_at)` of a merchant's orders whose deadline is after `since`.
    async fn ship_facts(
        &mut self,
        merchant_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>>;
}

#[derive(sqlx::FromRow)]
pub(super) struct ShipmentRow {
    pub(super) merchant_id: String,
    pub(super) shipment_id: String,
    pub(super) order_id: String,
    pub(super) tracking_no: String,
    pub(super) express_company: String,
    pub(super) items: String,
    pub(super) shipped_at: i64,
}

impl TryFrom<ShipmentRow> for Shipment {
    type Error = MarketError;
    fn try_from(r: ShipmentRow) -> Result<Self> {
        Ok(Shipment {
            id: r.shipment_id,
            merchant_id: r.merchant_id,
            order_id: r.order_id,
            tracking_no: r.tracking_no,
            express_company: r.express_company,
            items: serde_json::from_str(&r.items).map_err(|e| corrupt("shipment", e))?,
            shipped_at: from_ms(r.shipped_at),
        })
    }
}

/// Implements [`ShipmentRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend.
macro_rules! shipment_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::order::Shipment;
            use $crate::market::store::shipments::ShipmentRow;
            use $crate::market::store::{convert, from_ms, json, ms};

            #[async_trait::async_trait]
            impl $crate::market::store::shipments::ShipmentRepo for $tx {
                async fn insert_shipment(&mut self, s: &Shipment) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO shipments (merchant_id, shipment_id, order_id, tracking_no, express_company, items, \
                         shipped_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (merchant_id, order_id, tracking_no) DO NOTHING",
                    )
                    .bind(&s.merchant_id)
                    .bind(&s.id)
                    .bind(&s.order_id)
                    .bind(&s.tracking_no)
                    .bind(&s.express_company)
                    .bind(json(&s.items)?)
                    .bind(ms(s.shipped_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn shipments(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<Shipment>> {
                    let rows = sqlx::query_as::<_, ShipmentRow>(
                        "SELECT merchant_id, shipment_id, order_id, tracking_no, express_company, items, shipped_at \
                         FROM shipments WHERE merchant_id = $1 AND order_id = $2 ORDER BY shipment_id",
                    )
                    .bind(merchant_id)
                    .bind(order_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn correct_shipment(
                    &mut self,
                    merchant_id: &str,
                    shipment_id: &str,
                    old_tracking_no: &str,
                    tracking_no: &str,
                    express_company: &str,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE shipments SET tracking_no = $4, express_company = $5 \
                         WHERE merchant_id = $1 AND shipment_id = $2 AND tracking_no = $3 \
                         AND NOT EXISTS (SELECT 1 FROM shipments o WHERE o.merchant_id = $1 \
                         AND o.order_id = shipments.order_id AND o.shipment_id <> $2 AND o.tracking_no = $4)",
                    )
                    .bind(merchant_id)
                    .bind(shipment_id)
                    .bind(old_tracking_no)
                    .bind(tracking_no)
                    .bind(express_company)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn put_carrier_event(&mut self, merchant_id: &str, order_id: &str, at: DateTime<Utc>) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO gov_carrier_events (merchant_id, order_id, first_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (order_id) DO UPDATE SET first_at = excluded.first_at \
                         WHERE excluded.first_at < gov_carrier_events.first_at",
                    )
                    .bind(merchant_id)
                    .bind(order_id)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn carrier_event(&mut self, order_id: &str) -> Result<Option<DateTime<Utc>>> {
                    let v: Option<i64> = sqlx::query_scalar("SELECT first_at FROM gov_carrier_events WHERE order_id = $1")
                        .bind(order_id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                    Ok(v.map(from_ms))
                }

                async fn ship_facts(
                    &mut self,
                    merchant_id: &str,
                    since: DateTime<Utc>,
                ) -> Result<Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>> {
                    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
                        "SELECT ship_deadline, shipped_at FROM merchant_orders WHERE merchant_id = $1 AND ship_deadline IS NOT NULL \
                         AND ship_deadline > $2 AND status <> 'Cancelled'",
                    )
                    .bind(merchant_id)
                    .bind(ms(since))
                    .fetch_all(&mut *self.0)
                    .await?;
                    Ok(rows.into_iter().map(|(d, s)| (from_ms(d), s.map(from_ms))).collect())
                }
            }
        };
    };
}
pub(crate) use shipment_repo;
