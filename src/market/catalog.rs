//! Catalog: products (SPU) and their SKUs, listing status, browsing with stable cursors.
//!
//! `Draft → Listed ⇄ Delisted`; `ForceDelisted` is the platform's penalty and only the platform lifts it
//! (back to Delisted). A product is listed only while its merchant may list and holds its category.
//!
//! ```
//! use wxshop::market::{BrowseQuery, Cursor, ProductStatus};
//! assert!(ProductStatus::Draft.can_become(ProductStatus::Listed));
//! assert!(!ProductStatus::ForceDelisted.can_become(ProductStatus::Listed));
//! let c = Cursor::Newest { product_id: "0190aa".into() };
//! assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
//! let q = BrowseQuery::default().text("tea").limit(10);
//! assert_eq!(q.limit, 10);
//! ```

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{MarketError, Result};
use super::money::Money;

str_enum! {
    /// Listing status of a product.
    pub enum ProductStatus {
        /// Being prepared, not visible.
        Draft,
        /// On sale.
        Listed,
        /// Taken off sale by the merchant.
        Delisted,
        /// Taken off sale by the platform (a penalty); the merchant cannot re-list it.
        ForceDelisted,
    }
}

impl ProductStatus {
    /// Whether `self → to` is an edge of the listing graph.
    pub fn can_become(self, to: ProductStatus) -> bool {
        use ProductStatus::*;
        matches!(
            (self, to),
            (Draft, Listed)
                | (Listed, Delisted)
                | (Delisted, Listed)
                | (Draft, ForceDelisted)
                | (Listed, ForceDelisted)
                | (Delisted, ForceDelisted)
                | (ForceDelisted, Delisted)
        )
    }
}

/// A product (SPU).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Id.
    pub id: String,
    /// Owner.
    pub merchant_id: String,
    /// Category.
    pub category_id: String,
    /// Title (searched by browse).
    pub title: String,
    /// Description.
    pub description: String,
    /// Listing status.
    pub status: ProductStatus,
    /// Cheapest SKU price.
    pub min_price: Money,
    /// Dearest SKU price.
    pub max_price: Money,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A SKU: one buyable variant of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    /// Id.
    pub id: String,
    /// Owner.
    pub merchant_id: String,
    /// Product.
    pub product_id: String,
    /// Attributes (颜色 → 红, 尺码 → L).
    pub attrs: BTreeMap<String, String>,
    /// Unit price.
    pub price: Money,
    /// Most units of this SKU per order (and per cart).
    pub purchase_limit: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A new product with its SKUs (created as Draft).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewProduct {
    /// Category.
    pub category_id: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// At least one SKU.
    pub skus: Vec<NewSku>,
}

/// A new SKU.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewSku {
    /// Attributes.
    #[serde(default)]
    pub attrs: BTreeMap<String, String>,
    /// Unit price (> 0).
    pub price: Money,
    /// Per-order limit.
    #[serde(default)]
    pub purchase_limit: Option<i64>,
}

impl NewProduct {
    /// Checks titles, prices and limits.
    pub fn validate(&self) -> Result<()> {
        if self.title.trim().is_empty() || self.title.chars().count() > 200 {
            return Err(MarketError::invalid("title must be 1..=200 characters"));
        }
        if self.skus.is_empty() || self.skus.len() > 100 {
            return Err(MarketError::invalid("a product needs 1..=100 skus"));
        }
        for s in &self.skus {
            if !s.price.is_positive() {
                return Err(MarketError::invalid("a sku price must be > 0"));
            }
            if s.purchase_limit.is_some_and(|l| l <= 0) {
                return Err(MarketError::invalid("a purchase limit must be > 0"));
            }
        }
        Ok(())
    }
}

/// A product with its SKUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetail {
    /// The product.
    pub product: Product,
    /// Its SKUs.
    pub skus: Vec<Sku>,
}

/// A SKU as offered for sale: the SKU joined with its product and merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuOffer {
    /// The SKU.
    pub sku: Sku,
    /// Product title.
    pub title: String,
    /// Product category.
    pub category_id: String,
    /// Product status.
    pub product_status: ProductStatus,
    /// Merchant status, restrictions and payment identity.
    pub merchant: super::merchant::Merchant,
}

impl SkuOffer {
    /// Buyable now: product listed and merchant selling.
    pub fn is_buyable(&self) -> bool {
        self.product_status == ProductStatus::Listed && self.merchant.can_sell()
    }
}

/// Sort order of a browse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BrowseSort {
    /// Newest first (UUIDv7 ids are creation-ordered).
    #[default]
    Newest,
    /// Cheapest first (by the cheapest SKU), ties by id.
    PriceAsc,
}

/// A browse/filter request over listed products of selling merchants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowseQuery {
    /// Only this category.
    pub category_id: Option<String>,
    /// Only this merchant.
    pub merchant_id: Option<String>,
    /// Some SKU costs at least this.
    pub min_price: Option<Money>,
    /// Some SKU costs at most this.
    pub max_price: Option<Money>,
    /// Title contains this (case-insensitive for ASCII).
    pub text: Option<String>,
    /// Order.
    pub sort: BrowseSort,
    /// Page size (1..=100).
    pub limit: i64,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
}

impl Default for BrowseQuery {
    fn default() -> Self {
        BrowseQuery {
            category_id: None,
            merchant_id: None,
            min_price: None,
            max_price: None,
            text: None,
            sort: BrowseSort::Newest,
            limit: 20,
            cursor: None,
        }
    }
}

impl BrowseQuery {
    /// Filters by category.
    pub fn category(mut self, id: impl Into<String>) -> Self {
        self.category_id = Some(id.into());
        self
    }
    /// Filters by merchant.
    pub fn merchant(mut self, id: impl Into<String>) -> Self {
        self.merchant_id = Some(id.into());
        self
    }
    /// Filters by price range (inclusive).
    pub fn price(mut self, min: Option<Money>, max: Option<Money>) -> Self {
        self.min_price = min;
        self.max_price = max;
        self
    }
    /// Filters by title text.
    pub fn text(mut self, t: impl Into<String>) -> Self {
        self.text = Some(t.into());
        self
    }
    /// Sets the order.
    pub fn sort(mut self, s: BrowseSort) -> Self {
        self.sort = s;
        self
    }
    /// Sets the page size.
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = n;
        self
    }
    /// Continues after a page.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// The decoded cursor, checked against the sort order.
    pub fn decoded_cursor(&self) -> Result<Option<Cursor>> {
        if !(1..=100).contains(&self.limit) {
            return Err(MarketError::invalid("limit must be within 1..=100"));
        }
        let Some(raw) = &self.cursor else { return Ok(None) };
        let c = Cursor::decode(raw)?;
        match (&c, self.sort) {
            (Cursor::Newest { .. }, BrowseSort::Newest) | (Cursor::Price { .. }, BrowseSort::PriceAsc) => Ok(Some(c)),
            _ => Err(MarketError::invalid("cursor does not match the sort order")),
        }
    }

    /// The `LIKE` pattern for the text filter, with `%`, `_` and `\` escaped (escape char `\`).
    pub fn like_pattern(&self) -> Option<String> {
        let t = self.text.as_deref()?.trim();
        if t.is_empty() {
            return None;
        }
        let mut p = String::from("%");
        for ch in t.to_lowercase().chars() {
            if matches!(ch, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(ch);
        }
        p.push('%');
        Some(p)
    }
}

/// A position in a browse: the sort key of the last item of a page. Keyset pagination on a total order
/// (the id breaks ties), so pages never skip or repeat items while the catalog changes around them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// After this product in newest-first order.
    Newest {
        /// Last product id of the page.
        product_id: String,
    },
    /// After this (price, product) in cheapest-first order.
    Price {
        /// Its min price.
        min_price: Money,
        /// Its id.
        product_id: String,
    },
}

impl Cursor {
    /// The opaque text form.
    pub fn encode(&self) -> String {
        let raw = match self {
            Cursor::Newest { product_id } => format!("n|{product_id}"),
            Cursor::Price { min_price, product_id } => format!("p|{}|{product_id}", min_price.as_fen()),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses the text form; anything else is [`MarketError::Invalid`].
    pub fn decode(s: &str) -> Result<Cursor> {
        let bad = || MarketError::invalid("bad cursor");
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let parts: Vec<&str> = raw.split('|').collect();
        let id_ok = |id: &str| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        match parts.as_slice() {
            ["n", id] if id_ok(id) => Ok(Cursor::Newest { product_id: id.to_string() }),
            ["p", price, id] if id_ok(id) => Ok(Cursor::Price {
                min_price: Money::fen(price.parse().map_err(|_| bad())?),
                product_id: id.to_string(),
            }),
            _ => Err(bad()),
        }
    }

    /// The cursor pointing after `p`.
    pub fn after(p: &Product, sort: BrowseSort) -> Cursor {
        match sort {
            BrowseSort::Newest => Cursor::Newest { product_id: p.id.clone() },
            BrowseSort::PriceAsc => Cursor::Price { min_price: p.min_price, product_id: p.id.clone() },
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass to [`BrowseQuery::after`] for the next page; `None` on the last page.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page from `limit + 1` rows fetched: the extra row, if there, only says there is a next page,
    /// whose cursor is the key of the page's last item.
    pub(crate) fn from_overfetch(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Page<T> {
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(key)
        } else {
            None
        };
        Page { items, next }
    }
}

/// Checks a page request over ids (orders, anomalies): `limit` in 1..=100 and `after` (the previous
/// page's `next`) shaped like an id, so a malformed cursor is [`MarketError::Invalid`] everywhere rather
/// than an empty page.
pub(crate) fn check_id_page(after: Option<&str>, limit: i64) -> Result<()> {
    if !(1..=100).contains(&limit) {
        return Err(MarketError::invalid(format!("limit {limit} is outside 1..=100")));
    }
    if let Some(a) = after
        && !(a.len() == 32 && a.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(MarketError::invalid(format!("cursor {a:?} is not a page cursor (use the previous page's next)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn id_pages_refuse_bad_limits_and_malformed_cursors() {
        use super::check_id_page;
        assert!(check_id_page(None, 1).is_ok() && check_id_page(Some(&"0a".repeat(16)), 100).is_ok());
        for (after, limit) in [(None, 0), (None, 101), (Some("x"), 10), (Some(&*"0A".repeat(16)), 10)] {
            assert!(matches!(check_id_page(after, limit), Err(super::MarketError::Invalid(_))), "{after:?} {limit}");
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn like_pattern_escapes_wildcards() {
        let q = BrowseQuery::default().text("50%_Off\\");
        assert_eq!(q.like_pattern().unwrap(), "%50\\%\\_off\\\\%");
        assert_eq!(BrowseQuery::default().text("  ").like_pattern(), None);
    }

    #[test]
    fn cursor_must_match_sort() {
        let q = BrowseQuery::default()
            .sort(BrowseSort::PriceAsc)
            .after(Cursor::Newest { product_id: "a1".into() }.encode());
        assert!(matches!(q.decoded_cursor(), Err(MarketError::Invalid(_))));
        assert!(BrowseQuery::default().limit(0).decoded_cursor().is_err());
        assert!(BrowseQuery::default().limit(101).decoded_cursor().is_err());
    }

    proptest! {
        #[test]
        fn cursor_decode_never_panics(s in ".{0,80}") {
            let _ = Cursor::decode(&s);
        }

        #[test]
        fn cursor_round_trips(price in 0i64..i64::MAX, id in "[0-9a-f]{32}") {
            let c = Cursor::Price { min_price: Money::fen(price), product_id: id };
            prop_assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
    }
}
