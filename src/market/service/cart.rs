//! Carts.

use std::collections::{BTreeMap, HashMap};

use super::{Checkout, Market};
use crate::market::cart::{CartChange, CartItem, CartLine, CartOwner, CartView, MerchantCart, merge_lines};
use crate::market::catalog::SkuOffer;
use crate::market::checkout::{CheckoutLine, CheckoutRequest};
use crate::market::error::{MarketError, Result};
use crate::market::inventory::StockLevel;
use crate::market::money::Money;
use crate::market::service::handles::Carts;
use crate::market::store::StoreTx;

/// Most distinct SKUs in one cart.
const MAX_CART_LINES: usize = 100;

fn cap_for(offer: Option<&SkuOffer>, stock: Option<&StockLevel>) -> i64 {
    match (offer, stock) {
        (Some(o), Some(s)) if o.is_buyable() => s.available().min(o.sku.purchase_limit.unwrap_or(i64::MAX)).max(0),
        _ => 0,
    }
}

impl Carts<'_> {
    /// Adds units of a SKU (summed with what is there, capped by stock and the purchase limit).
    pub async fn cart_add(&self, owner: &CartOwner, sku_id: &str, qty: i64) -> Result<CartView> {
        if qty <= 0 {
            return Err(MarketError::invalid("quantity must be > 0"));
        }
        self.cart_update(owner, sku_id, |cur| cur.saturating_add(qty)).await
    }

    /// Sets the units of a SKU (0 removes the line).
    pub async fn cart_set(&self, owner: &CartOwner, sku_id: &str, qty: i64) -> Result<CartView> {
        if qty < 0 {
            return Err(MarketError::invalid("quantity must be >= 0"));
        }
        self.cart_update(owner, sku_id, |_| qty).await
    }

    /// The cart, re-priced: prices that moved are updated and reported, quantities above stock or the
    /// purchase limit are lowered and reported, SKUs no longer for sale are reported and not counted.
    pub async fn cart(&self, owner: &CartOwner) -> Result<CartView> {
        owner.validate()?;
        let key = owner.key();
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let view = reprice(&mut *tx, &key, at).await?;
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// Merges a guest cart into the buyer's cart at login: quantities summed and capped by stock and
    /// purchase limits, the newer price kept; the guest cart is emptied.
    pub async fn merge_carts(&self, guest_token: &str, buyer_openid: &str) -> Result<CartView> {
        let guest = CartOwner::guest(guest_token);
        let buyer = CartOwner::buyer(buyer_openid);
        guest.validate()?;
        buyer.validate()?;
        let (gk, bk) = (guest.key(), buyer.key());
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let g = tx.cart_lines(&gk).await?;
            let b = tx.cart_lines(&bk).await?;
            let ids: Vec<String> = g.iter().chain(&b).map(|l| l.sku_id.clone()).collect();
            let offers: HashMap<String, SkuOffer> =
                tx.offers(&ids).await?.into_iter().map(|o| (o.sku.id.clone(), o)).collect();
            let stock = tx.stock_of(&ids).await?;
            let (merged, mut changes) = merge_lines(&b, &g, |sku| cap_for(offers.get(sku), stock.get(sku)));
            if merged.len() > MAX_CART_LINES {
                return Err(MarketError::invalid(format!("a cart holds at most {MAX_CART_LINES} skus")));
            }
            tx.clear_cart(&gk).await?;
            tx.clear_cart(&bk).await?;
            for l in &merged {
                tx.put_cart_line(&bk, l).await?;
            }
            let mut view = reprice(&mut *tx, &bk, at).await?;
            changes.append(&mut view.changes);
            view.changes = changes;
            tx.commit().await?;
            Ok(view)
        })
        .await
    }

    /// Checks out the available lines of a buyer's cart (at the total the buyer was last shown) and
    /// removes them from the cart.
    pub async fn checkout_cart(&self, buyer_openid: &str, idempotency_key: &str) -> Result<Checkout> {
        let owner = CartOwner::buyer(buyer_openid);
        // A repeated call (a retry after a lost response) finds its checkout even though the cart is
        // now empty.
        if let Some(group_id) = self.checkout_for_key(buyer_openid, idempotency_key).await? {
            return self.checkout_replay(&group_id).await;
        }
        let view = self.cart(&owner).await?;
        let lines: Vec<CheckoutLine> = view
            .merchants
            .iter()
            .flat_map(|m| m.items.iter().filter(|i| i.available).map(|i| CheckoutLine::new(&i.sku_id, i.qty)))
            .collect();
        if lines.is_empty() {
            return Err(MarketError::invalid("nothing in the cart can be checked out"));
        }
        let mut req = CheckoutRequest::new(buyer_openid, idempotency_key, lines.clone());
        req.expected_total = Some(view.total);
        let co = self.orders().checkout(req).await?;
        let key = owner.key();
        self.retry(|| async {
            let mut tx = self.begin().await?;
            for l in &lines {
                tx.delete_cart_line(&key, &l.sku_id).await?;
            }
            tx.commit().await
        })
        .await?;
        Ok(co)
    }
}

impl Market {
    async fn cart_update(
        &self,
        owner: &CartOwner,
        sku_id: &str,
        f: impl Fn(i64) -> i64 + Send + Sync,
    ) -> Result<CartView> {
        owner.validate()?;
        let key = owner.key();
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let lines = tx.cart_lines(&key).await?;
            let cur = lines.iter().find(|l| l.sku_id == sku_id);
            let want = f(cur.map_or(0, |l| l.qty));
            if want == 0 {
                tx.delete_cart_line(&key, sku_id).await?;
            } else {
                if cur.is_none() && lines.len() >= MAX_CART_LINES {
                    return Err(MarketError::invalid(format!("a cart holds at most {MAX_CART_LINES} skus")));
                }
                let offer = tx
                    .offers(&[sku_id.to_string()])
                    .await?
                    .pop()
                    .ok_or_else(|| MarketError::not_found("sku", sku_id))?;
                if !offer.is_buyable() {
                    return Err(MarketError::Unavailable { sku_id: sku_id.into() });
                }
                let line = CartLine {
                    sku_id: sku_id.into(),
                    merchant_id: offer.sku.merchant_id.clone(),
                    qty: want,
                    unit_price: offer.sku.price,
                    added_at: cur.map_or(at, |l| l.added_at),
                    updated_at: at,
                };
                tx.put_cart_line(&key, &line).await?;
            }
            let view = reprice(&mut *tx, &key, at).await?;
            tx.commit().await?;
            Ok(view)
        })
        .await
    }
}

/// Re-prices a cart inside a transaction, persisting the new snapshots so each change is reported once.
async fn reprice(tx: &mut dyn StoreTx, key: &str, at: chrono::DateTime<chrono::Utc>) -> Result<CartView> {
    let lines = tx.cart_lines(key).await?;
    let ids: Vec<String> = lines.iter().map(|l| l.sku_id.clone()).collect();
    let offers: HashMap<String, SkuOffer> = tx.offers(&ids).await?.into_iter().map(|o| (o.sku.id.clone(), o)).collect();
    let stock = tx.stock_of(&ids).await?;
    let mut changes = Vec::new();
    let mut groups: BTreeMap<String, MerchantCart> = BTreeMap::new();
    for mut l in lines {
        let offer = offers.get(&l.sku_id);
        let cap = cap_for(offer, stock.get(&l.sku_id));
        let mut dirty = false;
        if let Some(o) = offer
            && o.sku.price != l.unit_price
        {
            changes.push(CartChange::PriceChanged { sku_id: l.sku_id.clone(), old: l.unit_price, new: o.sku.price });
            l.unit_price = o.sku.price;
            dirty = true;
        }
        let available = cap > 0;
        if !available {
            changes.push(CartChange::Unavailable { sku_id: l.sku_id.clone() });
        } else if l.qty > cap {
            changes.push(CartChange::QuantityCapped { sku_id: l.sku_id.clone(), requested: l.qty, capped_to: cap });
            l.qty = cap;
            dirty = true;
        }
        if dirty {
            l.updated_at = at;
            tx.put_cart_line(key, &l).await?;
        }
        let line_total = l.unit_price.checked_mul(l.qty)?;
        let g = groups.entry(l.merchant_id.clone()).or_insert_with(|| MerchantCart {
            merchant_id: l.merchant_id.clone(),
            merchant_name: offer.map(|o| o.merchant.name.clone()).unwrap_or_default(),
            items: Vec::new(),
            subtotal: Money::ZERO,
        });
        if available {
            g.subtotal = g.subtotal.checked_add(line_total)?;
        }
        g.items.push(CartItem {
            sku_id: l.sku_id.clone(),
            product_id: offer.map(|o| o.sku.product_id.clone()).unwrap_or_default(),
            title: offer.map(|o| o.title.clone()).unwrap_or_default(),
            attrs: offer.map(|o| o.sku.attrs.clone()).unwrap_or_default(),
            unit_price: l.unit_price,
            qty: l.qty,
            line_total,
            available,
        });
    }
    let merchants: Vec<MerchantCart> = groups.into_values().collect();
    let total = Money::sum(merchants.iter().map(|m| m.subtotal))?;
    Ok(CartView { merchants, total, changes })
}
