//! The catalog: products, their SKUs (each created with an empty stock level), and the offers (SKU, product and
//! merchant joined) that carts and checkouts are priced from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::merchants::MerchantRow;
use super::{corrupt, from_ms};
use crate::market::catalog::{BrowseQuery, Cursor, Product, Sku, SkuOffer};
use crate::market::error::{MarketError, Result};
use crate::market::money::Money;

/// Products, SKUs and offers.
#[async_trait]
pub trait CatalogRepo: Send {
    /// Inserts a product.
    async fn insert_product(&mut self, p: &Product) -> Result<()>;
    /// Inserts a SKU and its (empty) stock level.
    async fn insert_sku(&mut self, s: &Sku) -> Result<()>;
    /// A product by id.
    async fn product(&mut self, id: &str) -> Result<Option<Product>>;
    /// The SKUs of a product.
    async fn skus_of(&mut self, merchant_id: &str, product_id: &str) -> Result<Vec<Sku>>;
    /// Writes `p` (title, description, status, price range, version, updated_at) if the stored version
    /// is `expected_version`.
    async fn update_product(&mut self, p: &Product, expected_version: i64) -> Result<bool>;
    /// Sets a SKU's price.
    async fn update_sku_price(
        &mut self,
        merchant_id: &str,
        sku_id: &str,
        price: Money,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// SKUs joined with product and merchant, for pricing carts and checkouts.
    async fn offers(&mut self, sku_ids: &[String]) -> Result<Vec<SkuOffer>>;
    /// Listed products of selling merchants matching `q`, after `cursor`, at most `limit`.
    async fn browse(&mut self, q: &BrowseQuery, cursor: Option<&Cursor>, limit: i64) -> Result<Vec<Product>>;
    /// The listed products of a merchant.
    async fn listed_products(&mut self, merchant_id: &str) -> Result<Vec<String>>;
}

#[derive(sqlx::FromRow)]
pub(super) struct ProductRow {
    pub(super) merchant_id: String,
    pub(super) product_id: String,
    pub(super) category_id: String,
    pub(super) title: String,
    pub(super) description: String,
    pub(super) status: String,
    pub(super) min_price_fen: i64,
    pub(super) max_price_fen: i64,
    pub(super) version: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<ProductRow> for Product {
    type Error = MarketError;
    fn try_from(r: ProductRow) -> Result<Self> {
        Ok(Product {
            id: r.product_id,
            merchant_id: r.merchant_id,
            category_id: r.category_id,
            title: r.title,
            description: r.description,
            status: r.status.parse().map_err(|e| corrupt("product", e))?,
            min_price: Money::fen(r.min_price_fen),
            max_price: Money::fen(r.max_price_fen),
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SkuRow {
    pub(super) merchant_id: String,
    pub(super) sku_id: String,
    pub(super) product_id: String,
    pub(super) attrs: String,
    pub(super) price_fen: i64,
    pub(super) purchase_limit: Option<i64>,
    pub(super) created_at: i64,
}

impl TryFrom<SkuRow> for Sku {
    type Error = MarketError;
    fn try_from(r: SkuRow) -> Result<Self> {
        Ok(Sku {
            id: r.sku_id,
            merchant_id: r.merchant_id,
            product_id: r.product_id,
            attrs: serde_json::from_str(&r.attrs).map_err(|e| corrupt("sku", e))?,
            price: Money::fen(r.price_fen),
            purchase_limit: r.purchase_limit,
            created_at: from_ms(r.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct OfferRow {
    pub(super) merchant_id: String,
    pub(super) sku_id: String,
    pub(super) product_id: String,
    pub(super) attrs: String,
    pub(super) price_fen: i64,
    pub(super) purchase_limit: Option<i64>,
    pub(super) created_at: i64,
    pub(super) title: String,
    pub(super) category_id: String,
    pub(super) product_status: String,
    pub(super) m_name: String,
    pub(super) m_sub_mchid: Option<String>,
    pub(super) m_status: String,
    pub(super) m_restrictions: i64,
    pub(super) m_manual_restrictions: i64,
    pub(super) m_manual_suspension: bool,
    pub(super) m_version: i64,
    pub(super) m_created_at: i64,
    pub(super) m_updated_at: i64,
}

impl TryFrom<OfferRow> for SkuOffer {
    type Error = MarketError;
    fn try_from(r: OfferRow) -> Result<Self> {
        let merchant = MerchantRow {
            merchant_id: r.merchant_id.clone(),
            name: r.m_name,
            sub_mchid: r.m_sub_mchid,
            status: r.m_status,
            restrictions: r.m_restrictions,
            manual_restrictions: r.m_manual_restrictions,
            manual_suspension: r.m_manual_suspension,
            version: r.m_version,
            created_at: r.m_created_at,
            updated_at: r.m_updated_at,
        };
        let sku = SkuRow {
            merchant_id: r.merchant_id,
            sku_id: r.sku_id,
            product_id: r.product_id,
            attrs: r.attrs,
            price_fen: r.price_fen,
            purchase_limit: r.purchase_limit,
            created_at: r.created_at,
        };
        Ok(SkuOffer {
            sku: sku.try_into()?,
            title: r.title,
            category_id: r.category_id,
            product_status: r.product_status.parse().map_err(|e| corrupt("product", e))?,
            merchant: merchant.try_into()?,
        })
    }
}

pub(super) const PRODUCT_COLS: &str = "merchant_id, product_id, category_id, title, description, status, min_price_fen, \
     max_price_fen, version, created_at, updated_at";

/// Implements [`CatalogRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! catalog_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::catalog::{BrowseQuery, Cursor, Product, Sku, SkuOffer};
            use $crate::market::error::Result;
            use $crate::market::money::Money;
            use $crate::market::store::catalog::{OfferRow, PRODUCT_COLS, ProductRow, SkuRow};
            use $crate::market::store::{convert, json, ms, push_list};

            #[async_trait::async_trait]
            impl $crate::market::store::catalog::CatalogRepo for $tx {
                async fn insert_product(&mut self, p: &Product) -> Result<()> {
                    let sql = format!(
                        "INSERT INTO products ({PRODUCT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&p.merchant_id)
                        .bind(&p.id)
                        .bind(&p.category_id)
                        .bind(&p.title)
                        .bind(&p.description)
                        .bind(p.status.as_str())
                        .bind(p.min_price.as_fen())
                        .bind(p.max_price.as_fen())
                        .bind(p.version)
                        .bind(ms(p.created_at))
                        .bind(ms(p.updated_at))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }

                async fn insert_sku(&mut self, s: &Sku) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO skus (merchant_id, sku_id, product_id, attrs, price_fen, purchase_limit, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    )
                    .bind(&s.merchant_id)
                    .bind(&s.id)
                    .bind(&s.product_id)
                    .bind(json(&s.attrs)?)
                    .bind(s.price.as_fen())
                    .bind(s.purchase_limit)
                    .bind(ms(s.created_at))
                    .execute(&mut *self.0)
                    .await?;
                    sqlx::query(
                        "INSERT INTO inventory (merchant_id, sku_id, on_hand, reserved, updated_at) VALUES ($1, $2, 0, 0, $3)",
                    )
                    .bind(&s.merchant_id)
                    .bind(&s.id)
                    .bind(ms(s.created_at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn product(&mut self, id: &str) -> Result<Option<Product>> {
                    let sql = format!("SELECT {PRODUCT_COLS} FROM products WHERE product_id = $1");
                    let row = sqlx::query_as::<_, ProductRow>(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                    row.map(Product::try_from).transpose()
                }

                async fn skus_of(&mut self, merchant_id: &str, product_id: &str) -> Result<Vec<Sku>> {
                    let rows = sqlx::query_as::<_, SkuRow>(
                        "SELECT merchant_id, sku_id, product_id, attrs, price_fen, purchase_limit, created_at FROM skus \
                         WHERE merchant_id = $1 AND product_id = $2 ORDER BY sku_id",
                    )
                    .bind(merchant_id)
                    .bind(product_id)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn update_product(&mut self, p: &Product, expected_version: i64) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE products SET title = $1, description = $2, status = $3, min_price_fen = $4, \
                         max_price_fen = $5, version = $6, updated_at = $7 \
                         WHERE merchant_id = $8 AND product_id = $9 AND version = $10",
                    )
                    .bind(&p.title)
                    .bind(&p.description)
                    .bind(p.status.as_str())
                    .bind(p.min_price.as_fen())
                    .bind(p.max_price.as_fen())
                    .bind(p.version)
                    .bind(ms(p.updated_at))
                    .bind(&p.merchant_id)
                    .bind(&p.id)
                    .bind(expected_version)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn update_sku_price(
                    &mut self,
                    merchant_id: &str,
                    sku_id: &str,
                    price: Money,
                    at: DateTime<Utc>,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE skus SET price_fen = $1, updated_at = $2 WHERE merchant_id = $3 AND sku_id = $4",
                    )
                    .bind(price.as_fen())
                    .bind(ms(at))
                    .bind(merchant_id)
                    .bind(sku_id)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn offers(&mut self, sku_ids: &[String]) -> Result<Vec<SkuOffer>> {
                    if sku_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT s.merchant_id, s.sku_id, s.product_id, s.attrs, s.price_fen, s.purchase_limit, \
                         s.created_at, p.title, p.category_id, p.status AS product_status, m.name AS m_name, \
                         m.sub_mchid AS m_sub_mchid, m.status AS m_status, m.restrictions AS m_restrictions, \
                         m.manual_restrictions AS m_manual_restrictions, m.manual_suspension AS m_manual_suspension, \
                         m.version AS m_version, m.created_at AS m_created_at, m.updated_at AS m_updated_at \
                         FROM skus s JOIN products p ON p.merchant_id = s.merchant_id AND p.product_id = s.product_id \
                         JOIN merchants m ON m.merchant_id = s.merchant_id WHERE s.sku_id IN (",
                    );
                    push_list(&mut q, sku_ids);
                    q.push(" ORDER BY s.merchant_id, s.sku_id");
                    let rows = q.build_query_as::<OfferRow>().fetch_all(&mut *self.0).await?;
                    convert(rows)
                }

                async fn browse(&mut self, bq: &BrowseQuery, cursor: Option<&Cursor>, limit: i64) -> Result<Vec<Product>> {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT p.merchant_id, p.product_id, p.category_id, p.title, p.description, p.status, \
                         p.min_price_fen, p.max_price_fen, p.version, p.created_at, p.updated_at \
                         FROM products p JOIN merchants m ON m.merchant_id = p.merchant_id WHERE p.status = ",
                    );
                    q.push_bind("Listed").push(" AND m.sellable = ").push_bind(true);
                    if let Some(c) = &bq.category_id {
                        q.push(" AND p.category_id = ").push_bind(c.clone());
                    }
                    if let Some(m) = &bq.merchant_id {
                        q.push(" AND p.merchant_id = ").push_bind(m.clone());
                    }
                    if let Some(min) = bq.min_price {
                        q.push(" AND p.max_price_fen >= ").push_bind(min.as_fen());
                    }
                    if let Some(max) = bq.max_price {
                        q.push(" AND p.min_price_fen <= ").push_bind(max.as_fen());
                    }
                    if let Some(pat) = bq.like_pattern() {
                        q.push(" AND lower(p.title) LIKE ").push_bind(pat).push(" ESCAPE '\\'");
                    }
                    match cursor {
                        Some(Cursor::Newest { product_id }) => {
                            q.push(" AND p.product_id < ").push_bind(product_id.clone());
                        }
                        Some(Cursor::Price { min_price, product_id }) => {
                            q.push(" AND (p.min_price_fen > ")
                                .push_bind(min_price.as_fen())
                                .push(" OR (p.min_price_fen = ")
                                .push_bind(min_price.as_fen())
                                .push(" AND p.product_id > ")
                                .push_bind(product_id.clone())
                                .push("))");
                        }
                        None => {}
                    }
                    match bq.sort {
                        $crate::market::BrowseSort::Newest => q.push(" ORDER BY p.product_id DESC"),
                        $crate::market::BrowseSort::PriceAsc => q.push(" ORDER BY p.min_price_fen, p.product_id"),
                    };
                    q.push(" LIMIT ").push_bind(limit);
                    let rows = q.build_query_as::<ProductRow>().fetch_all(&mut *self.0).await?;
                    convert(rows)
                }

                async fn listed_products(&mut self, merchant_id: &str) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(
                        "SELECT product_id FROM products WHERE merchant_id = $1 AND status = 'Listed' ORDER BY product_id",
                    )
                    .bind(merchant_id)
                    .fetch_all(&mut *self.0)
                    .await?)
                }
            }
        };
    };
}
pub(crate) use catalog_repo;
