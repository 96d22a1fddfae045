//! Carts: one line per (owner, SKU), keyed by the owner's cart key (a buyer's openid or a guest key).

use async_trait::async_trait;

use super::from_ms;
use crate::market::cart::CartLine;
use crate::market::error::Result;
use crate::market::money::Money;

/// Cart lines.
#[async_trait]
pub trait CartRepo: Send {
    /// Lines of a cart (by owner key), by SKU.
    async fn cart_lines(&mut self, owner: &str) -> Result<Vec<CartLine>>;
    /// Inserts or replaces a line.
    async fn put_cart_line(&mut self, owner: &str, line: &CartLine) -> Result<()>;
    /// Removes a line.
    async fn delete_cart_line(&mut self, owner: &str, sku_id: &str) -> Result<()>;
    /// Removes every line.
    async fn clear_cart(&mut self, owner: &str) -> Result<()>;
}

#[derive(sqlx::FromRow)]
pub(super) struct CartRow {
    pub(super) sku_id: String,
    pub(super) merchant_id: String,
    pub(super) qty: i64,
    pub(super) unit_price_fen: i64,
    pub(super) added_at: i64,
    pub(super) updated_at: i64,
}

impl From<CartRow> for CartLine {
    fn from(r: CartRow) -> Self {
        CartLine {
            sku_id: r.sku_id,
            merchant_id: r.merchant_id,
            qty: r.qty,
            unit_price: Money::fen(r.unit_price_fen),
            added_at: from_ms(r.added_at),
            updated_at: from_ms(r.updated_at),
        }
    }
}

/// Implements [`CartRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! cart_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use $crate::market::cart::CartLine;
            use $crate::market::error::Result;
            use $crate::market::store::carts::CartRow;
            use $crate::market::store::ms;

            #[async_trait::async_trait]
            impl $crate::market::store::carts::CartRepo for $tx {
                async fn cart_lines(&mut self, owner: &str) -> Result<Vec<CartLine>> {
                    let rows = sqlx::query_as::<_, CartRow>(
                        "SELECT sku_id, merchant_id, qty, unit_price_fen, added_at, updated_at FROM cart_lines \
                         WHERE owner = $1 ORDER BY sku_id",
                    )
                    .bind(owner)
                    .fetch_all(&mut *self.0)
                    .await?;
                    Ok(rows.into_iter().map(CartLine::from).collect())
                }

                async fn put_cart_line(&mut self, owner: &str, l: &CartLine) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO cart_lines (owner, sku_id, merchant_id, qty, unit_price_fen, added_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (owner, sku_id) DO UPDATE SET \
                         qty = excluded.qty, unit_price_fen = excluded.unit_price_fen, updated_at = excluded.updated_at",
                    )
                    .bind(owner)
                    .bind(&l.sku_id)
                    .bind(&l.merchant_id)
                    .bind(l.qty)
                    .bind(l.unit_price.as_fen())
                    .bind(ms(l.added_at))
                    .bind(ms(l.updated_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn delete_cart_line(&mut self, owner: &str, sku_id: &str) -> Result<()> {
                    sqlx::query("DELETE FROM cart_lines WHERE owner = $1 AND sku_id = $2")
                        .bind(owner)
                        .bind(sku_id)
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }

                async fn clear_cart(&mut self, owner: &str) -> Result<()> {
                    sqlx::query("DELETE FROM cart_lines WHERE owner = $1").bind(owner).execute(&mut *self.0).await?;
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use cart_repo;
