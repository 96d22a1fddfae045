//! Checkout groups and the merchant orders they split into: order lines, the idempotency keys that make a
//! checkout safe to repeat, and the per-order facts governance reads (paid orders, flags). Parcels are in
//! [`shipments`](super::shipments).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, from_ms};
use crate::market::checkout::CheckoutGroup;
use crate::market::error::{MarketError, Result};
use crate::market::money::Money;
use crate::market::order::{MerchantOrder, OrderLine, OrderStatus};

/// Checkout groups, orders, lines, idempotency keys and order flags.
#[async_trait]
pub trait OrderRepo: Send {
    /// `(request_hash, response)` stored under a key.
    async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>>;
    /// Stores a key; `false` if it exists.
    async fn insert_idempotency(
        &mut self,
        scope: &str,
        key: &str,
        hash: &str,
        response: &str,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Inserts a group.
    async fn insert_group(&mut self, g: &CheckoutGroup) -> Result<()>;
    /// A group by id.
    async fn group(&mut self, id: &str) -> Result<Option<CheckoutGroup>>;
    /// Writes `g` (status, version, updated_at) if the stored version is `expected_version`.
    async fn update_group(&mut self, g: &CheckoutGroup, expected_version: i64) -> Result<bool>;
    /// Inserts an order.
    async fn insert_order(&mut self, o: &MerchantOrder) -> Result<()>;
    /// Inserts an order line.
    async fn insert_order_line(&mut self, l: &OrderLine) -> Result<()>;
    /// An order by id.
    async fn order(&mut self, id: &str) -> Result<Option<MerchantOrder>>;
    /// The lines of an order.
    async fn order_lines(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<OrderLine>>;
    /// The orders of a group, by merchant.
    async fn orders_of_group(&mut self, group_id: &str) -> Result<Vec<MerchantOrder>>;
    /// Writes every mutable field of `o` if the stored version is `expected_version`.
    async fn update_order(&mut self, o: &MerchantOrder, expected_version: i64) -> Result<bool>;
    /// Sets a line's shipped quantity.
    async fn set_line_shipped(&mut self, merchant_id: &str, order_id: &str, line_no: i64, shipped: i64) -> Result<()>;
    /// A buyer's orders, newest first, with ids below `before`.
    async fn orders_of_buyer(&mut self, openid: &str, before: Option<&str>, limit: i64) -> Result<Vec<MerchantOrder>>;
    /// A merchant's orders, newest first, optionally in one status, with ids below `before`.
    async fn orders_of_merchant(
        &mut self,
        merchant_id: &str,
        status: Option<OrderStatus>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MerchantOrder>>;
    /// Orders of a merchant not yet Completed or Cancelled.
    async fn count_open_orders(&mut self, merchant_id: &str) -> Result<i64>;
    /// Orders of a merchant paid after `since`.
    async fn paid_orders_since(&mut self, merchant_id: &str, since: DateTime<Utc>) -> Result<i64>;
    /// Flags an order (fraud, abuse): its reviews stop counting.
    async fn flag_order(&mut self, merchant_id: &str, order_id: &str, reason: &str, at: DateTime<Utc>) -> Result<()>;
    /// The flagged orders of a merchant.
    async fn flagged_orders(&mut self, merchant_id: &str) -> Result<Vec<String>>;
}

#[derive(sqlx::FromRow)]
pub(super) struct GroupRow {
    pub(super) group_id: String,
    pub(super) buyer_openid: String,
    pub(super) status: String,
    pub(super) subtotal_fen: i64,
    pub(super) discount_fen: i64,
    pub(super) total_fen: i64,
    pub(super) merchant_count: i64,
    pub(super) pay_deadline: i64,
    pub(super) version: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<GroupRow> for CheckoutGroup {
    type Error = MarketError;
    fn try_from(r: GroupRow) -> Result<Self> {
        Ok(CheckoutGroup {
            id: r.group_id,
            buyer_openid: r.buyer_openid,
            status: r.status.parse().map_err(|e| corrupt("group", e))?,
            subtotal: Money::fen(r.subtotal_fen),
            discount: Money::fen(r.discount_fen),
            total: Money::fen(r.total_fen),
            merchant_count: r.merchant_count,
            pay_deadline: from_ms(r.pay_deadline),
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct OrderRow {
    pub(super) merchant_id: String,
    pub(super) order_id: String,
    pub(super) group_id: String,
    pub(super) buyer_openid: String,
    pub(super) status: String,
    pub(super) subtotal_fen: i64,
    pub(super) discount_fen: i64,
    pub(super) total_fen: i64,
    pub(super) commission_fen: i64,
    pub(super) ship_sla_hours: i64,
    pub(super) auto_confirm_days: i64,
    pub(super) after_sale_days: i64,
    pub(super) transaction_id: Option<String>,
    pub(super) paid_at: Option<i64>,
    pub(super) ship_deadline: Option<i64>,
    pub(super) shipped_at: Option<i64>,
    pub(super) received_at: Option<i64>,
    pub(super) received_by: Option<String>,
    pub(super) completed_at: Option<i64>,
    pub(super) cancelled_at: Option<i64>,
    pub(super) cancel_reason: Option<String>,
    pub(super) version: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<OrderRow> for MerchantOrder {
    type Error = MarketError;
    fn try_from(r: OrderRow) -> Result<Self> {
        Ok(MerchantOrder {
            id: r.order_id,
            group_id: r.group_id,
            merchant_id: r.merchant_id,
            buyer_openid: r.buyer_openid,
            status: r.status.parse().map_err(|e| corrupt("order", e))?,
            subtotal: Money::fen(r.subtotal_fen),
            discount: Money::fen(r.discount_fen),
            total: Money::fen(r.total_fen),
            commission: Money::fen(r.commission_fen),
            ship_sla_hours: r.ship_sla_hours,
            auto_confirm_days: r.auto_confirm_days,
            after_sale_days: r.after_sale_days,
            transaction_id: r.transaction_id,
            paid_at: r.paid_at.map(from_ms),
            ship_deadline: r.ship_deadline.map(from_ms),
            shipped_at: r.shipped_at.map(from_ms),
            received_at: r.received_at.map(from_ms),
            received_by: r.received_by,
            completed_at: r.completed_at.map(from_ms),
            cancelled_at: r.cancelled_at.map(from_ms),
            cancel_reason: r.cancel_reason,
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct LineRow {
    pub(super) merchant_id: String,
    pub(super) order_id: String,
    pub(super) line_no: i64,
    pub(super) sku_id: String,
    pub(super) product_id: String,
    pub(super) title: String,
    pub(super) attrs: String,
    pub(super) category_id: String,
    pub(super) rule_version: i64,
    pub(super) unit_price_fen: i64,
    pub(super) qty: i64,
    pub(super) line_total_fen: i64,
    pub(super) discount_fen: i64,
    pub(super) commission_bps: i64,
    pub(super) commission_fen: i64,
    pub(super) shipped_qty: i64,
}

impl TryFrom<LineRow> for OrderLine {
    type Error = MarketError;
    fn try_from(r: LineRow) -> Result<Self> {
        Ok(OrderLine {
            order_id: r.order_id,
            merchant_id: r.merchant_id,
            line_no: r.line_no,
            sku_id: r.sku_id,
            product_id: r.product_id,
            title: r.title,
            attrs: serde_json::from_str(&r.attrs).map_err(|e| corrupt("order line", e))?,
            category_id: r.category_id,
            rule_version: r.rule_version,
            unit_price: Money::fen(r.unit_price_fen),
            qty: r.qty,
            line_total: Money::fen(r.line_total_fen),
            discount: Money::fen(r.discount_fen),
            commission_bps: r.commission_bps,
            commission: Money::fen(r.commission_fen),
            shipped_qty: r.shipped_qty,
        })
    }
}

pub(super) const ORDER_COLS: &str = "merchant_id, order_id, group_id, buyer_openid, status, subtotal_fen, discount_fen, \
     total_fen, commission_fen, ship_sla_hours, auto_confirm_days, after_sale_days, transaction_id, paid_at, \
     ship_deadline, shipped_at, received_at, received_by, completed_at, cancelled_at, cancel_reason, version, \
     created_at, updated_at";

/// Implements [`OrderRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! order_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::checkout::CheckoutGroup;
            use $crate::market::error::Result;
            use $crate::market::order::{MerchantOrder, OrderLine, OrderStatus};
            use $crate::market::store::orders::{GroupRow, LineRow, ORDER_COLS, OrderRow};
            use $crate::market::store::{convert, json, ms};

            #[async_trait::async_trait]
            impl $crate::market::store::orders::OrderRepo for $tx {
                async fn idempotency(&mut self, scope: &str, key: &str) -> Result<Option<(String, String)>> {
                    let row: Option<(String, String)> = sqlx::query_as(
                        "SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND idem_key = $2",
                    )
                    .bind(scope)
                    .bind(key)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    Ok(row)
                }

                async fn insert_idempotency(
                    &mut self,
                    scope: &str,
                    key: &str,
                    hash: &str,
                    response: &str,
                    at: DateTime<Utc>,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "INSERT INTO idempotency_keys (scope, idem_key, request_hash, response, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, idem_key) DO NOTHING",
                    )
                    .bind(scope)
                    .bind(key)
                    .bind(hash)
                    .bind(response)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn insert_group(&mut self, g: &CheckoutGroup) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO checkout_groups (group_id, buyer_openid, status, subtotal_fen, discount_fen, \
                         total_fen, merchant_count, pay_deadline, version, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(&g.id)
                    .bind(&g.buyer_openid)
                    .bind(g.status.as_str())
                    .bind(g.subtotal.as_fen())
                    .bind(g.discount.as_fen())
                    .bind(g.total.as_fen())
                    .bind(g.merchant_count)
                    .bind(ms(g.pay_deadline))
                    .bind(g.version)
                    .bind(ms(g.created_at))
                    .bind(ms(g.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn group(&mut self, id: &str) -> Result<Option<CheckoutGroup>> {
                    let row = sqlx::query_as::<_, GroupRow>(
                        "SELECT group_id, buyer_openid, status, subtotal_fen, discount_fen, total_fen, merchant_count, \
                         pay_deadline, version, created_at, updated_at FROM checkout_groups WHERE group_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    row.map(CheckoutGroup::try_from).transpose()
                }

                async fn update_group(&mut self, g: &CheckoutGroup, expected_version: i64) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE checkout_groups SET status = $1, version = $2, updated_at = $3 \
                         WHERE group_id = $4 AND version = $5",
                    )
                    .bind(g.status.as_str())
                    .bind(g.version)
                    .bind(ms(g.updated_at))
                    .bind(&g.id)
                    .bind(expected_version)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn insert_order(&mut self, o: &MerchantOrder) -> Result<()> {
                    let sql = format!(
                        "INSERT INTO merchant_orders ({ORDER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&o.merchant_id)
                        .bind(&o.id)
                        .bind(&o.group_id)
                        .bind(&o.buyer_openid)
                        .bind(o.status.as_str())
                        .bind(o.subtotal.as_fen())
                        .bind(o.discount.as_fen())
                        .bind(o.total.as_fen())
                        .bind(o.commission.as_fen())
                        .bind(o.ship_sla_hours)
                        .bind(o.auto_confirm_days)
                        .bind(o.after_sale_days)
                        .bind(&o.transaction_id)
                        .bind(o.paid_at.map(ms))
                        .bind(o.ship_deadline.map(ms))
                        .bind(o.shipped_at.map(ms))
                        .bind(o.received_at.map(ms))
                        .bind(&o.received_by)
                        .bind(o.completed_at.map(ms))
                        .bind(o.cancelled_at.map(ms))
                        .bind(&o.cancel_reason)
                        .bind(o.version)
                        .bind(ms(o.created_at))
                        .bind(ms(o.updated_at))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }

                async fn insert_order_line(&mut self, l: &OrderLine) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO order_lines (merchant_id, order_id, line_no, sku_id, product_id, title, attrs, \
                         category_id, rule_version, unit_price_fen, qty, line_total_fen, discount_fen, commission_bps, \
                         commission_fen, shipped_qty) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                    )
                    .bind(&l.merchant_id)
                    .bind(&l.order_id)
                    .bind(l.line_no)
                    .bind(&l.sku_id)
                    .bind(&l.product_id)
                    .bind(&l.title)
                    .bind(json(&l.attrs)?)
                    .bind(&l.category_id)
                    .bind(l.rule_version)
                    .bind(l.unit_price.as_fen())
                    .bind(l.qty)
                    .bind(l.line_total.as_fen())
                    .bind(l.discount.as_fen())
                    .bind(l.commission_bps)
                    .bind(l.commission.as_fen())
                    .bind(l.shipped_qty)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn order(&mut self, id: &str) -> Result<Option<MerchantOrder>> {
                    let sql = format!("SELECT {ORDER_COLS} FROM merchant_orders WHERE order_id = $1");
                    let row = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                    row.map(MerchantOrder::try_from).transpose()
                }

                async fn order_lines(&mut self, merchant_id: &str, order_id: &str) -> Result<Vec<OrderLine>> {
                    let rows = sqlx::query_as::<_, LineRow>(
                        "SELECT merchant_id, order_id, line_no, sku_id, product_id, title, attrs, category_id, \
                         rule_version, unit_price_fen, qty, line_total_fen, discount_fen, commission_bps, commission_fen, \
                         shipped_qty FROM order_lines WHERE merchant_id = $1 AND order_id = $2 ORDER BY line_no",
                    )
                    .bind(merchant_id)
                    .bind(order_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn orders_of_group(&mut self, group_id: &str) -> Result<Vec<MerchantOrder>> {
                    let sql = format!("SELECT {ORDER_COLS} FROM merchant_orders WHERE group_id = $1 ORDER BY merchant_id");
                    let rows = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                        .bind(group_id)
                        .fetch_all(&mut *self.0)
                        .await?;
                    convert(rows)
                }

                async fn update_order(&mut self, o: &MerchantOrder, expected_version: i64) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE merchant_orders SET status = $1, transaction_id = $2, paid_at = $3, ship_deadline = $4, \
                         shipped_at = $5, received_at = $6, received_by = $7, completed_at = $8, cancelled_at = $9, \
                         cancel_reason = $10, version = $11, updated_at = $12 \
                         WHERE merchant_id = $13 AND order_id = $14 AND version = $15",
                    )
                    .bind(o.status.as_str())
                    .bind(&o.transaction_id)
                    .bind(o.paid_at.map(ms))
                    .bind(o.ship_deadline.map(ms))
                    .bind(o.shipped_at.map(ms))
                    .bind(o.received_at.map(ms))
                    .bind(&o.received_by)
                    .bind(o.completed_at.map(ms))
                    .bind(o.cancelled_at.map(ms))
                    .bind(&o.cancel_reason)
                    .bind(o.version)
                    .bind(ms(o.updated_at))
                    .bind(&o.merchant_id)
                    .bind(&o.id)
                    .bind(expected_version)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn set_line_shipped(
                    &mut self,
                    merchant_id: &str,
                    order_id: &str,
                    line_no: i64,
                    shipped: i64,
                ) -> Result<()> {
                    sqlx::query(
                        "UPDATE order_lines SET shipped_qty = $1 WHERE merchant_id = $2 AND order_id = $3 AND line_no = $4",
                    )
                    .bind(shipped)
                    .bind(merchant_id)
                    .bind(order_id)
                    .bind(line_no)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn orders_of_buyer(
                    &mut self,
                    openid: &str,
                    before: Option<&str>,
                    limit: i64,
                ) -> Result<Vec<MerchantOrder>> {
                    let sql = format!(
                        "SELECT {ORDER_COLS} FROM merchant_orders WHERE buyer_openid = $1 \
                         AND ($2 IS NULL OR order_id < $2) ORDER BY order_id DESC LIMIT $3"
                    );
                    let rows = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                        .bind(openid)
                        .bind(before)
                        .bind(limit)
                        .fetch_all(&mut *self.0)
                        .await?;
                    convert(rows)
                }

                async fn orders_of_merchant(
                    &mut self,
                    merchant_id: &str,
                    status: Option<OrderStatus>,
                    before: Option<&str>,
                    limit: i64,
                ) -> Result<Vec<MerchantOrder>> {
                    let sql = format!(
                        "SELECT {ORDER_COLS} FROM merchant_orders WHERE merchant_id = $1 \
                         AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR order_id < $3) \
                         ORDER BY order_id DESC LIMIT $4"
                    );
                    let rows = sqlx::query_as::<_, OrderRow>(sqlx::AssertSqlSafe(sql))
                        .bind(merchant_id)
                        .bind(status.map(|s| s.as_str()))
                        .bind(before)
                        .bind(limit)
                        .fetch_all(&mut *self.0)
                        .await?;
                    convert(rows)
                }

                async fn count_open_orders(&mut self, merchant_id: &str) -> Result<i64> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM merchant_orders WHERE merchant_id = $1 \
                         AND status NOT IN ('Completed', 'Cancelled')",
                    )
                    .bind(merchant_id)
                    .fetch_one(&mut *self.0)
                    .await?;
                    Ok(n)
                }

                async fn paid_orders_since(&mut self, merchant_id: &str, since: DateTime<Utc>) -> Result<i64> {
                    Ok(sqlx::query_scalar(
                        "SELECT COUNT(*) FROM merchant_orders WHERE merchant_id = $1 AND paid_at IS NOT NULL AND paid_at > $2",
                    )
                    .bind(merchant_id)
                    .bind(ms(since))
                    .fetch_one(&mut *self.0)
                    .await?)
                }

                async fn flag_order(&mut self, merchant_id: &str, order_id: &str, reason: &str, at: DateTime<Utc>) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO gov_order_flags (merchant_id, order_id, reason, at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(merchant_id)
                    .bind(order_id)
                    .bind(reason)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn flagged_orders(&mut self, merchant_id: &str) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar("SELECT order_id FROM gov_order_flags WHERE merchant_id = $1 ORDER BY order_id")
                        .bind(merchant_id)
                        .fetch_all(&mut *self.0)
                        .await?)
                }
            }
        };
    };
}
pub(crate) use order_repo;
