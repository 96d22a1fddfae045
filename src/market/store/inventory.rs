//! Inventory: stock levels (on hand, reserved) changed only by conditional updates, the movements that explain
//! them, and the reservations a checkout holds until it is paid or expires.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, from_ms};
use crate::market::error::{MarketError, Result};
use crate::market::inventory::{Demand, Movement, Reservation, ReservationStatus, StockLevel};

/// Stock levels, movements and reservations.
#[async_trait]
pub trait InventoryRepo: Send {
    /// Stock levels by SKU id.
    async fn stock_of(&mut self, sku_ids: &[String]) -> Result<BTreeMap<String, StockLevel>>;
    /// `on_hand += delta` if the result stays `>= reserved`; the new level, or `None` if refused.
    async fn add_on_hand(
        &mut self,
        merchant_id: &str,
        sku_id: &str,
        delta: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<StockLevel>>;
    /// Sets `on_hand` to `new` if it is still `expected` and `new >= reserved`; the new level, or `None`.
    async fn set_on_hand(
        &mut self,
        merchant_id: &str,
        sku_id: &str,
        expected: i64,
        new: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<StockLevel>>;
    /// Reserves all of `demand` with ONE conditional statement; returns the SKU ids that had enough.
    /// If fewer than `demand.len()` come back, the caller must roll back.
    async fn reserve(&mut self, demand: &[Demand], at: DateTime<Utc>) -> Result<Vec<String>>;
    /// `reserved -= qty` if `reserved >= qty`.
    async fn release(&mut self, merchant_id: &str, sku_id: &str, qty: i64, at: DateTime<Utc>) -> Result<bool>;
    /// Sells reserved units: `on_hand -= qty, reserved -= qty` if `reserved >= qty`.
    async fn commit_stock(&mut self, merchant_id: &str, sku_id: &str, qty: i64, at: DateTime<Utc>) -> Result<bool>;
    /// Appends a movement.
    async fn insert_movement(&mut self, m: &Movement) -> Result<()>;
    /// Movements of a SKU, oldest first.
    async fn movements(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Movement>>;
    /// Inserts a reservation.
    async fn insert_reservation(&mut self, r: &Reservation) -> Result<()>;
    /// Reservations of a checkout group.
    async fn reservations_of_group(&mut self, group_id: &str) -> Result<Vec<Reservation>>;
    /// Reservations of a SKU.
    async fn reservations_of_sku(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Reservation>>;
    /// Moves a reservation `from → to`.
    async fn set_reservation_status(
        &mut self,
        merchant_id: &str,
        reservation_id: &str,
        from: ReservationStatus,
        to: ReservationStatus,
        at: DateTime<Utc>,
    ) -> Result<bool>;
}

#[derive(sqlx::FromRow)]
pub(super) struct StockRow {
    pub(super) sku_id: String,
    pub(super) on_hand: i64,
    pub(super) reserved: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct MovementRow {
    pub(super) merchant_id: String,
    pub(super) movement_id: String,
    pub(super) sku_id: String,
    pub(super) kind: String,
    pub(super) on_hand_delta: i64,
    pub(super) reserved_delta: i64,
    pub(super) ref_id: Option<String>,
    pub(super) at: i64,
}

impl TryFrom<MovementRow> for Movement {
    type Error = MarketError;
    fn try_from(r: MovementRow) -> Result<Self> {
        Ok(Movement {
            id: r.movement_id,
            merchant_id: r.merchant_id,
            sku_id: r.sku_id,
            kind: r.kind.parse().map_err(|e| corrupt("movement", e))?,
            on_hand_delta: r.on_hand_delta,
            reserved_delta: r.reserved_delta,
            ref_id: r.ref_id,
            at: from_ms(r.at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ReservationRow {
    pub(super) merchant_id: String,
    pub(super) reservation_id: String,
    pub(super) group_id: String,
    pub(super) order_id: String,
    pub(super) sku_id: String,
    pub(super) qty: i64,
    pub(super) status: String,
    pub(super) expires_at: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = MarketError;
    fn try_from(r: ReservationRow) -> Result<Self> {
        Ok(Reservation {
            id: r.reservation_id,
            merchant_id: r.merchant_id,
            group_id: r.group_id,
            order_id: r.order_id,
            sku_id: r.sku_id,
            qty: r.qty,
            status: r.status.parse().map_err(|e| corrupt("reservation", e))?,
            expires_at: from_ms(r.expires_at),
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

/// Implements [`InventoryRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! inventory_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use std::collections::BTreeMap;

            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::inventory::{Demand, Movement, Reservation, ReservationStatus, StockLevel};
            use $crate::market::store::inventory::{MovementRow, ReservationRow, StockRow};
            use $crate::market::store::{convert, ms, push_list};

            #[async_trait::async_trait]
            impl $crate::market::store::inventory::InventoryRepo for $tx {
                async fn stock_of(&mut self, sku_ids: &[String]) -> Result<BTreeMap<String, StockLevel>> {
                    if sku_ids.is_empty() {
                        return Ok(BTreeMap::new());
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT sku_id, on_hand, reserved FROM inventory WHERE sku_id IN (",
                    );
                    push_list(&mut q, sku_ids);
                    let rows = q.build_query_as::<StockRow>().fetch_all(&mut *self.0).await?;
                    Ok(rows
                        .into_iter()
                        .map(|r| (r.sku_id, StockLevel { on_hand: r.on_hand, reserved: r.reserved }))
                        .collect())
                }

                async fn add_on_hand(
                    &mut self,
                    merchant_id: &str,
                    sku_id: &str,
                    delta: i64,
                    at: DateTime<Utc>,
                ) -> Result<Option<StockLevel>> {
                    let row = sqlx::query_as::<_, StockRow>(
                        "UPDATE inventory SET on_hand = on_hand + $1, updated_at = $2 \
                         WHERE merchant_id = $3 AND sku_id = $4 AND on_hand + $1 >= reserved \
                         RETURNING sku_id, on_hand, reserved",
                    )
                    .bind(delta)
                    .bind(ms(at))
                    .bind(merchant_id)
                    .bind(sku_id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    Ok(row.map(|r| StockLevel { on_hand: r.on_hand, reserved: r.reserved }))
                }

                async fn set_on_hand(
                    &mut self,
                    merchant_id: &str,
                    sku_id: &str,
                    expected: i64,
                    new: i64,
                    at: DateTime<Utc>,
                ) -> Result<Option<StockLevel>> {
                    let row = sqlx::query_as::<_, StockRow>(
                        "UPDATE inventory SET on_hand = $1, updated_at = $2 \
                         WHERE merchant_id = $3 AND sku_id = $4 AND on_hand = $5 AND $1 >= reserved \
                         RETURNING sku_id, on_hand, reserved",
                    )
                    .bind(new)
                    .bind(ms(at))
                    .bind(merchant_id)
                    .bind(sku_id)
                    .bind(expected)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    Ok(row.map(|r| StockLevel { on_hand: r.on_hand, reserved: r.reserved }))
                }

                async fn reserve(&mut self, demand: &[Demand], at: DateTime<Utc>) -> Result<Vec<String>> {
                    if demand.is_empty() {
                        return Ok(Vec::new());
                    }
                    // One statement over the demand aggregated per SKU: each row is updated only if it
                    // still has enough, atomically, with no prior read.
                    let mut q = sqlx::QueryBuilder::<$db>::new("WITH d (d_merchant, d_sku, d_qty) AS (");
                    q.push_values(demand, |mut b, d| {
                        b.push_bind(d.merchant_id.clone()).push_bind(d.sku_id.clone()).push_bind(d.qty);
                    });
                    q.push(") UPDATE inventory SET reserved = inventory.reserved + d.d_qty, updated_at = ")
                        .push_bind(ms(at))
                        .push(
                            " FROM d WHERE inventory.merchant_id = d.d_merchant AND inventory.sku_id = d.d_sku \
                             AND inventory.on_hand - inventory.reserved >= d.d_qty RETURNING sku_id",
                        );
                    let ids: Vec<String> = q.build_query_scalar().fetch_all(&mut *self.0).await?;
                    Ok(ids)
                }

                async fn release(&mut self, merchant_id: &str, sku_id: &str, qty: i64, at: DateTime<Utc>) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE inventory SET reserved = reserved - $1, updated_at = $2 \
                         WHERE merchant_id = $3 AND sku_id = $4 AND reserved >= $1",
                    )
                    .bind(qty)
                    .bind(ms(at))
                    .bind(merchant_id)
                    .bind(sku_id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn commit_stock(
                    &mut self,
                    merchant_id: &str,
                    sku_id: &str,
                    qty: i64,
                    at: DateTime<Utc>,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE inventory SET on_hand = on_hand - $1, reserved = reserved - $1, updated_at = $2 \
                         WHERE merchant_id = $3 AND sku_id = $4 AND reserved >= $1",
                    )
                    .bind(qty)
                    .bind(ms(at))
                    .bind(merchant_id)
                    .bind(sku_id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn insert_movement(&mut self, m: &Movement) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO stock_movements (merchant_id, movement_id, sku_id, kind, on_hand_delta, \
                         reserved_delta, ref_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&m.merchant_id)
                    .bind(&m.id)
                    .bind(&m.sku_id)
                    .bind(m.kind.as_str())
                    .bind(m.on_hand_delta)
                    .bind(m.reserved_delta)
                    .bind(&m.ref_id)
                    .bind(ms(m.at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn movements(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Movement>> {
                    let rows = sqlx::query_as::<_, MovementRow>(
                        "SELECT merchant_id, movement_id, sku_id, kind, on_hand_delta, reserved_delta, ref_id, at \
                         FROM stock_movements WHERE merchant_id = $1 AND sku_id = $2 ORDER BY movement_id",
                    )
                    .bind(merchant_id)
                    .bind(sku_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn insert_reservation(&mut self, r: &Reservation) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO reservations (merchant_id, reservation_id, group_id, order_id, sku_id, qty, status, \
                         expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&r.merchant_id)
                    .bind(&r.id)
                    .bind(&r.group_id)
                    .bind(&r.order_id)
                    .bind(&r.sku_id)
                    .bind(r.qty)
                    .bind(r.status.as_str())
                    .bind(ms(r.expires_at))
                    .bind(ms(r.created_at))
                    .bind(ms(r.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn reservations_of_group(&mut self, group_id: &str) -> Result<Vec<Reservation>> {
                    let rows = sqlx::query_as::<_, ReservationRow>(
                        "SELECT merchant_id, reservation_id, group_id, order_id, sku_id, qty, status, expires_at, \
                         created_at, updated_at FROM reservations WHERE group_id = $1 ORDER BY merchant_id, sku_id",
                    )
                    .bind(group_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn reservations_of_sku(&mut self, merchant_id: &str, sku_id: &str) -> Result<Vec<Reservation>> {
                    let rows = sqlx::query_as::<_, ReservationRow>(
                        "SELECT merchant_id, reservation_id, group_id, order_id, sku_id, qty, status, expires_at, \
                         created_at, updated_at FROM reservations WHERE merchant_id = $1 AND sku_id = $2 \
                         ORDER BY reservation_id",
                    )
                    .bind(merchant_id)
                    .bind(sku_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn set_reservation_status(
                    &mut self,
                    merchant_id: &str,
                    reservation_id: &str,
                    from: ReservationStatus,
                    to: ReservationStatus,
                    at: DateTime<Utc>,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE reservations SET status = $1, updated_at = $2 \
                         WHERE merchant_id = $3 AND reservation_id = $4 AND status = $5",
                    )
                    .bind(to.as_str())
                    .bind(ms(at))
                    .bind(merchant_id)
                    .bind(reservation_id)
                    .bind(from.as_str())
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }
            }
        };
    };
}
pub(crate) use inventory_repo;
