//! Catalog and stock.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Agg, Change, Market, won};
use crate::market::catalog::{BrowseQuery, Cursor, NewProduct, Page, Product, ProductDetail, ProductStatus, Sku};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::Actor;
use crate::market::inventory::{Movement, MovementKind, ReservationStatus, StockLevel};
use crate::market::money::Money;
use crate::market::service::handles::{Catalog, Inventory};
use crate::market::store::StoreTx;

/// A SKU's stock checked against its ledger and reservations (what a reconciliation job reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReconciliation {
    /// The stored level.
    pub level: StockLevel,
    /// Sum of the ledger's `on_hand` deltas.
    pub ledger_on_hand: i64,
    /// Sum of the ledger's `reserved` deltas.
    pub ledger_reserved: i64,
    /// Units held by Active reservations.
    pub active_reserved: i64,
    /// Units sold (Committed reservations).
    pub committed: i64,
}

impl StockReconciliation {
    /// Level, ledger and reservations agree, and `0 ≤ reserved ≤ on_hand`.
    pub fn is_consistent(&self) -> bool {
        self.level.on_hand == self.ledger_on_hand
            && self.level.reserved == self.ledger_reserved
            && self.level.reserved == self.active_reserved
            && 0 <= self.level.reserved
            && self.level.reserved <= self.level.on_hand
    }
}

fn price_range(skus: &[Sku]) -> (Money, Money) {
    let min = skus.iter().map(|s| s.price).min().unwrap_or(Money::ZERO);
    let max = skus.iter().map(|s| s.price).max().unwrap_or(Money::ZERO);
    (min, max)
}

impl Catalog<'_> {
    /// Creates a product (Draft) with its SKUs; the merchant must be allowed to list in the category.
    pub async fn create_product(&self, merchant_id: &str, p: NewProduct) -> Result<ProductDetail> {
        p.validate()?;
        let at = self.now();
        let product_id = new_id();
        let skus: Vec<Sku> = p
            .skus
            .iter()
            .map(|s| Sku {
                id: new_id(),
                merchant_id: merchant_id.into(),
                product_id: product_id.clone(),
                attrs: s.attrs.clone(),
                price: s.price,
                purchase_limit: s.purchase_limit,
                created_at: at,
            })
            .collect();
        let (min_price, max_price) = price_range(&skus);
        let product = Product {
            id: product_id,
            merchant_id: merchant_id.into(),
            category_id: p.category_id.clone(),
            title: p.title.trim().into(),
            description: p.description.clone(),
            status: ProductStatus::Draft,
            min_price,
            max_price,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        self.retry(|| async {
            let mut tx = self.begin().await?;
            let m = tx.merchant(merchant_id).await?.ok_or_else(|| MarketError::not_found("merchant", merchant_id))?;
            m.require("list")?;
            tx.category(&product.category_id)
                .await?
                .ok_or_else(|| MarketError::not_found("category", &product.category_id))?;
            if !tx.has_category(merchant_id, &product.category_id).await? {
                return Err(MarketError::CategoryNotAllowed {
                    merchant_id: merchant_id.into(),
                    category_id: product.category_id.clone(),
                });
            }
            tx.insert_product(&product).await?;
            for s in &skus {
                tx.insert_sku(s).await?;
            }
            Agg::new("product", &product.id, Some(merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &Actor::Merchant(merchant_id.into()),
                    Change::new("created").to(product.status).event(
                        "product.created",
                        json!({ "product_id": product.id, "skus": skus.iter().map(|s| &s.id).collect::<Vec<_>>() }),
                    ),
                )
                .await?;
            tx.commit().await
        })
        .await?;
        Ok(ProductDetail { product, skus })
    }

    /// A product with its SKUs.
    pub async fn product(&self, product_id: &str) -> Result<ProductDetail> {
        let mut tx = self.snapshot().await?;
        let product = tx.product(product_id).await?.ok_or_else(|| MarketError::not_found("product", product_id))?;
        let skus = tx.skus_of(&product.merchant_id, product_id).await?;
        Ok(ProductDetail { product, skus })
    }

    /// Draft or Delisted → Listed; the merchant must be allowed to list and hold the category.
    pub async fn list_product(&self, merchant_id: &str, product_id: &str) -> Result<Product> {
        self.move_product(merchant_id, product_id, ProductStatus::Listed, Actor::Merchant(merchant_id.into()), None)
            .await
    }

    /// Listed → Delisted.
    pub async fn delist_product(&self, merchant_id: &str, product_id: &str) -> Result<Product> {
        self.move_product(merchant_id, product_id, ProductStatus::Delisted, Actor::Merchant(merchant_id.into()), None)
            .await
    }

    /// The platform takes a product off sale (a penalty); the merchant cannot re-list it.
    pub async fn force_delist(&self, product_id: &str, reason: &str) -> Result<Product> {
        let merchant_id = self.product(product_id).await?.product.merchant_id;
        self.move_product(&merchant_id, product_id, ProductStatus::ForceDelisted, Actor::Platform, Some(reason)).await
    }

    /// The platform lifts a forced delisting (back to Delisted).
    pub async fn lift_force_delist(&self, product_id: &str, reason: &str) -> Result<Product> {
        let merchant_id = self.product(product_id).await?.product.merchant_id;
        self.move_product(&merchant_id, product_id, ProductStatus::Delisted, Actor::Platform, Some(reason)).await
    }

    /// Changes a SKU's price (carts report it at their next view).
    pub async fn set_sku_price(&self, merchant_id: &str, sku_id: &str, price: Money) -> Result<()> {
        if !price.is_positive() {
            return Err(MarketError::invalid("a sku price must be > 0"));
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let offer = tx
                .offers(&[sku_id.to_string()])
                .await?
                .pop()
                .filter(|o| o.sku.merchant_id == merchant_id)
                .ok_or_else(|| MarketError::not_found("sku", sku_id))?;
            if offer.sku.price == price {
                return Ok(());
            }
            tx.update_sku_price(merchant_id, sku_id, price, at).await?;
            let product_id = offer.sku.product_id.clone();
            let cur = tx.product(&product_id).await?.ok_or_else(|| MarketError::not_found("product", &product_id))?;
            let skus = tx.skus_of(merchant_id, &product_id).await?;
            let mut next = cur.clone();
            (next.min_price, next.max_price) = price_range(&skus);
            next.version = cur.version + 1;
            next.updated_at = at;
            won(tx.update_product(&next, cur.version).await?, "product")?;
            Agg::new("sku", sku_id, Some(merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &Actor::Merchant(merchant_id.into()),
                    Change::new("price")
                        .states(offer.sku.price.as_fen(), price.as_fen())
                        .event("sku.price_changed", json!({ "sku_id": sku_id, "old": offer.sku.price, "new": price })),
                )
                .await?;
            tx.commit().await
        })
        .await
    }

    /// Listed products of selling merchants, filtered, one page at a time (keyset cursor: pages stay
    /// stable while products are added or removed).
    pub async fn browse(&self, q: &BrowseQuery) -> Result<Page<Product>> {
        let cursor = q.decoded_cursor()?;
        let mut tx = self.read().await?;
        let items = tx.browse(q, cursor.as_ref(), q.limit + 1).await?;
        Ok(Page::from_overfetch(items, q.limit, |p| Cursor::after(p, q.sort).encode()))
    }
}

impl Market {
    async fn move_product(
        &self,
        merchant_id: &str,
        product_id: &str,
        to: ProductStatus,
        actor: Actor,
        reason: Option<&str>,
    ) -> Result<Product> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cur = tx
                .product(product_id)
                .await?
                .filter(|p| p.merchant_id == merchant_id)
                .ok_or_else(|| MarketError::not_found("product", product_id))?;
            if cur.status == to {
                return Ok(cur);
            }
            let by_merchant = matches!(actor, Actor::Merchant(_));
            if !cur.status.can_become(to) || (by_merchant && cur.status == ProductStatus::ForceDelisted) {
                return Err(MarketError::illegal("product", cur.status, to));
            }
            if to == ProductStatus::Listed {
                let m =
                    tx.merchant(merchant_id).await?.ok_or_else(|| MarketError::not_found("merchant", merchant_id))?;
                m.require("list")?;
                if !tx.has_category(merchant_id, &cur.category_id).await? {
                    return Err(MarketError::CategoryNotAllowed {
                        merchant_id: merchant_id.into(),
                        category_id: cur.category_id.clone(),
                    });
                }
            }
            let mut next = cur.clone();
            next.status = to;
            next.version = cur.version + 1;
            next.updated_at = at;
            won(tx.update_product(&next, cur.version).await?, "product")?;
            let event_type = match to {
                ProductStatus::Listed => "product.listed",
                ProductStatus::Delisted => "product.delisted",
                ProductStatus::ForceDelisted => "product.force_delisted",
                ProductStatus::Draft => "product.draft",
            };
            Agg::new("product", product_id, Some(merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &actor,
                    Change::new("status").states(cur.status, to).reason(reason).event(
                        event_type,
                        json!({ "product_id": product_id, "from": cur.status, "to": to, "reason": reason }),
                    ),
                )
                .await?;
            tx.commit().await?;
            Ok(next)
        })
        .await
    }

    async fn set_stock_inner(
        &self,
        merchant_id: &str,
        sku_id: &str,
        expected: Option<i64>,
        on_hand: i64,
    ) -> Result<StockLevel> {
        if on_hand < 0 {
            return Err(MarketError::invalid("stock must not be negative"));
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cur = owned_level(&mut *tx, merchant_id, sku_id).await?;
            if let Some(expected) = expected
                && expected != cur.on_hand
            {
                return Err(MarketError::VersionMismatch {
                    entity: "stock",
                    expected: expected.to_string(),
                    actual: cur.on_hand.to_string(),
                });
            }
            if cur.on_hand == on_hand {
                return Ok(cur);
            }
            if on_hand < cur.reserved {
                return Err(MarketError::invalid(format!("{on_hand} is below the {} units reserved", cur.reserved)));
            }
            let level = tx.set_on_hand(merchant_id, sku_id, cur.on_hand, on_hand, at).await?;
            let level = level.ok_or_else(|| MarketError::Conflict("stock".into()))?;
            stock_moved(&mut *tx, merchant_id, sku_id, on_hand - cur.on_hand, at).await?;
            tx.commit().await?;
            Ok(level)
        })
        .await
    }
}

impl Inventory<'_> {
    /// The stock of a SKU.
    pub async fn stock(&self, sku_id: &str) -> Result<StockLevel> {
        let mut tx = self.read().await?;
        tx.stock_of(&[sku_id.to_string()]).await?.remove(sku_id).ok_or_else(|| MarketError::not_found("sku", sku_id))
    }

    /// The stock of one of the merchant's SKUs: on hand, reserved by unpaid orders, and
    /// [`available`](StockLevel::available). Another merchant's SKU is `NotFound`, like a missing one.
    ///
    /// ```no_run
    /// # async fn demo(market: wxshop::market::Market) -> wxshop::market::Result<()> {
    /// let level = market.inventory().merchant_stock("merchant id", "sku id").await?;
    /// println!("{} on hand, {} reserved, {} available", level.on_hand, level.reserved, level.available());
    /// # Ok(()) }
    /// ```
    pub async fn merchant_stock(&self, merchant_id: &str, sku_id: &str) -> Result<StockLevel> {
        let mut tx = self.snapshot().await?;
        owned_level(&mut *tx, merchant_id, sku_id).await
    }

    /// Sets `on_hand` (what the merchant counted); refused below what unpaid orders hold. Prefer
    /// [`set_stock_if`](crate::market::handles::Inventory::set_stock_if) or [`adjust_stock`](crate::market::handles::Inventory::adjust_stock) where sales may run
    /// meanwhile: a blind absolute set overwrites the units they took.
    pub async fn set_stock(&self, merchant_id: &str, sku_id: &str, on_hand: i64) -> Result<StockLevel> {
        self.set_stock_inner(merchant_id, sku_id, None, on_hand).await
    }

    /// Sets `on_hand` only while it is still `expected` (the figure the merchant read, an HTTP
    /// `If-Match`): a sale or an adjustment since is [`MarketError::VersionMismatch`], never overwritten.
    pub async fn set_stock_if(
        &self,
        merchant_id: &str,
        sku_id: &str,
        expected: i64,
        on_hand: i64,
    ) -> Result<StockLevel> {
        self.set_stock_inner(merchant_id, sku_id, Some(expected), on_hand).await
    }

    /// Adds (or with a negative delta, removes) units; refused below what unpaid orders hold.
    pub async fn adjust_stock(&self, merchant_id: &str, sku_id: &str, delta: i64) -> Result<StockLevel> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cur = owned_level(&mut *tx, merchant_id, sku_id).await?;
            if delta == 0 {
                return Ok(cur);
            }
            let level = tx.add_on_hand(merchant_id, sku_id, delta, at).await?.ok_or_else(|| {
                MarketError::invalid(format!("removing {} would go below the units reserved", -delta))
            })?;
            stock_moved(&mut *tx, merchant_id, sku_id, delta, at).await?;
            tx.commit().await?;
            Ok(level)
        })
        .await
    }

    /// The movement ledger of a SKU.
    pub async fn movements(&self, merchant_id: &str, sku_id: &str) -> Result<Vec<Movement>> {
        self.read().await?.movements(merchant_id, sku_id).await
    }

    /// Checks a SKU's level against its ledger and reservations, in one read transaction.
    pub async fn reconcile_sku(&self, merchant_id: &str, sku_id: &str) -> Result<StockReconciliation> {
        let mut tx = self.snapshot().await?;
        let level = owned_level(&mut *tx, merchant_id, sku_id).await?;
        let movements = tx.movements(merchant_id, sku_id).await?;
        let reservations = tx.reservations_of_sku(merchant_id, sku_id).await?;
        let sum = |st: ReservationStatus| reservations.iter().filter(|r| r.status == st).map(|r| r.qty).sum();
        Ok(StockReconciliation {
            level,
            ledger_on_hand: movements.iter().map(|m| m.on_hand_delta).sum(),
            ledger_reserved: movements.iter().map(|m| m.reserved_delta).sum(),
            active_reserved: sum(ReservationStatus::Active),
            committed: sum(ReservationStatus::Committed),
        })
    }
}

async fn owned_level(tx: &mut dyn StoreTx, merchant_id: &str, sku_id: &str) -> Result<StockLevel> {
    let offer = tx.offers(&[sku_id.to_string()]).await?.pop();
    if offer.is_none_or(|o| o.sku.merchant_id != merchant_id) {
        return Err(MarketError::not_found("sku", sku_id));
    }
    tx.stock_of(&[sku_id.to_string()]).await?.remove(sku_id).ok_or_else(|| MarketError::not_found("sku", sku_id))
}

async fn stock_moved(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    sku_id: &str,
    delta: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    tx.insert_movement(&Movement {
        id: new_id(),
        merchant_id: merchant_id.into(),
        sku_id: sku_id.into(),
        kind: MovementKind::Adjust,
        on_hand_delta: delta,
        reserved_delta: 0,
        ref_id: None,
        at,
    })
    .await?;
    Agg::new("sku", sku_id, Some(merchant_id))
        .record(
            tx,
            at,
            &Actor::Merchant(merchant_id.into()),
            Change::new("stock_adjusted").event("stock.adjusted", json!({ "sku_id": sku_id, "delta": delta })),
        )
        .await
}
