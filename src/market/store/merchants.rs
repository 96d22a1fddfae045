//! Merchants, categories, the categories each merchant may sell in, and the versioned rules of each category.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{corrupt, from_ms};
use crate::market::category::{Category, CategoryRule, RuleSpec};
use crate::market::error::{MarketError, Result};
use crate::market::merchant::{Merchant, Restrictions};
use crate::market::money::Money;

/// Merchants, categories and category rules.
#[async_trait]
pub trait MerchantRepo: Send {
    /// Inserts a merchant.
    async fn insert_merchant(&mut self, m: &Merchant) -> Result<()>;
    /// A merchant by id.
    async fn merchant(&mut self, id: &str) -> Result<Option<Merchant>>;
    /// Merchants by id, up to `limit`.
    async fn merchants(&mut self, limit: i64) -> Result<Vec<Merchant>>;
    /// Writes `m` (status, restrictions, name, sub_mchid, version, updated_at) if the stored version is
    /// `expected_version`.
    async fn update_merchant(&mut self, m: &Merchant, expected_version: i64) -> Result<bool>;
    /// Allows a merchant to sell in a category (idempotent).
    async fn grant_category(&mut self, merchant_id: &str, category_id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Whether the merchant may sell in the category.
    async fn has_category(&mut self, merchant_id: &str, category_id: &str) -> Result<bool>;
    /// Inserts a category.
    async fn insert_category(&mut self, c: &Category) -> Result<()>;
    /// A category by id.
    async fn category(&mut self, id: &str) -> Result<Option<Category>>;
    /// Inserts a rule version; `false` when that version already exists.
    async fn insert_rule(&mut self, r: &CategoryRule) -> Result<bool>;
    /// One rule version.
    async fn rule(&mut self, category_id: &str, version: i64) -> Result<Option<CategoryRule>>;
    /// The latest rule version of each category.
    async fn current_rules(&mut self, category_ids: &[String]) -> Result<Vec<CategoryRule>>;
    /// The categories a merchant may sell in.
    async fn merchant_categories(&mut self, merchant_id: &str) -> Result<Vec<String>>;
}

#[derive(sqlx::FromRow)]
pub(super) struct MerchantRow {
    pub(super) merchant_id: String,
    pub(super) name: String,
    pub(super) sub_mchid: Option<String>,
    pub(super) status: String,
    pub(super) restrictions: i64,
    pub(super) manual_restrictions: i64,
    pub(super) manual_suspension: bool,
    pub(super) version: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl TryFrom<MerchantRow> for Merchant {
    type Error = MarketError;
    fn try_from(r: MerchantRow) -> Result<Self> {
        Ok(Merchant {
            id: r.merchant_id,
            name: r.name,
            sub_mchid: r.sub_mchid,
            status: r.status.parse().map_err(|e| corrupt("merchant", e))?,
            restrictions: Restrictions::from_bits(r.restrictions as u32).map_err(|e| corrupt("merchant", e))?,
            manual_restrictions: Restrictions::from_bits(r.manual_restrictions as u32)
                .map_err(|e| corrupt("merchant", e))?,
            manual_suspension: r.manual_suspension,
            version: r.version,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CategoryRow {
    pub(super) category_id: String,
    pub(super) parent_id: Option<String>,
    pub(super) name: String,
    pub(super) created_at: i64,
}

impl From<CategoryRow> for Category {
    fn from(r: CategoryRow) -> Self {
        Category { id: r.category_id, parent_id: r.parent_id, name: r.name, created_at: from_ms(r.created_at) }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RuleRow {
    pub(super) category_id: String,
    pub(super) version: i64,
    pub(super) deposit_fen: i64,
    pub(super) ship_sla_hours: i64,
    pub(super) auto_confirm_days: i64,
    pub(super) after_sale_days: i64,
    pub(super) seven_day_return: String,
    pub(super) commission_bps: i64,
    pub(super) effective_from: i64,
}

impl TryFrom<RuleRow> for CategoryRule {
    type Error = MarketError;
    fn try_from(r: RuleRow) -> Result<Self> {
        Ok(CategoryRule {
            category_id: r.category_id,
            version: r.version,
            spec: RuleSpec {
                deposit_required: Money::fen(r.deposit_fen),
                ship_sla_hours: r.ship_sla_hours,
                auto_confirm_days: r.auto_confirm_days,
                after_sale_days: r.after_sale_days,
                seven_day_return: r.seven_day_return.parse().map_err(|e| corrupt("rule", e))?,
                commission_bps: r.commission_bps,
            },
            effective_from: from_ms(r.effective_from),
        })
    }
}

pub(super) const MERCHANT_COLS: &str = "merchant_id, name, sub_mchid, status, restrictions, manual_restrictions, \
     manual_suspension, version, created_at, updated_at";

/// Implements [`MerchantRepo`] for a backend's transaction newtype (`struct XTx(Handle<DB>)`), with the same
/// statements on every backend; `$db` only picks the placeholder style of dynamically built ones.
macro_rules! merchant_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::category::{Category, CategoryRule};
            use $crate::market::error::Result;
            use $crate::market::merchant::Merchant;
            use $crate::market::store::merchants::{CategoryRow, MERCHANT_COLS, MerchantRow, RuleRow};
            use $crate::market::store::{convert, ms, push_list};

            #[async_trait::async_trait]
            impl $crate::market::store::merchants::MerchantRepo for $tx {
                async fn insert_merchant(&mut self, m: &Merchant) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO merchants (merchant_id, name, sub_mchid, status, restrictions, sellable, version, \
                         created_at, updated_at, manual_restrictions, manual_suspension) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(&m.id)
                    .bind(&m.name)
                    .bind(&m.sub_mchid)
                    .bind(m.status.as_str())
                    .bind(m.restrictions.bits() as i64)
                    .bind(m.can_sell())
                    .bind(m.version)
                    .bind(ms(m.created_at))
                    .bind(ms(m.updated_at))
                    .bind(m.manual_restrictions.bits() as i64)
                    .bind(m.manual_suspension)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn merchant(&mut self, id: &str) -> Result<Option<Merchant>> {
                    let sql = format!("SELECT {MERCHANT_COLS} FROM merchants WHERE merchant_id = $1");
                    let row = sqlx::query_as::<_, MerchantRow>(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&mut *self.0)
                        .await?;
                    row.map(Merchant::try_from).transpose()
                }

                async fn merchants(&mut self, limit: i64) -> Result<Vec<Merchant>> {
                    let sql = format!("SELECT {MERCHANT_COLS} FROM merchants ORDER BY merchant_id LIMIT $1");
                    let rows = sqlx::query_as::<_, MerchantRow>(sqlx::AssertSqlSafe(sql))
                        .bind(limit)
                        .fetch_all(&mut *self.0)
                        .await?;
                    convert(rows)
                }

                async fn update_merchant(&mut self, m: &Merchant, expected_version: i64) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE merchants SET name = $1, sub_mchid = $2, status = $3, restrictions = $4, sellable = $5, \
                         version = $6, updated_at = $7, manual_restrictions = $8, manual_suspension = $9 \
                         WHERE merchant_id = $10 AND version = $11",
                    )
                    .bind(&m.name)
                    .bind(&m.sub_mchid)
                    .bind(m.status.as_str())
                    .bind(m.restrictions.bits() as i64)
                    .bind(m.can_sell())
                    .bind(m.version)
                    .bind(ms(m.updated_at))
                    .bind(m.manual_restrictions.bits() as i64)
                    .bind(m.manual_suspension)
                    .bind(&m.id)
                    .bind(expected_version)
                    .execute(&mut *self.0)
                    .await?;
                    Ok(r.rows_affected() == 1)
                }

                async fn grant_category(&mut self, merchant_id: &str, category_id: &str, at: DateTime<Utc>) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO merchant_categories (merchant_id, category_id, granted_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (merchant_id, category_id) DO NOTHING",
                    )
                    .bind(merchant_id)
                    .bind(category_id)
                    .bind(ms(at))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(())
                }

                async fn has_category(&mut self, merchant_id: &str, category_id: &str) -> Result<bool> {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM merchant_categories WHERE merchant_id = $1 AND category_id = $2",
                    )
                    .bind(merchant_id)
                    .bind(category_id)
                    .fetch_one(&mut *self.0)
                    .await?;
                    Ok(n > 0)
                }

                async fn insert_category(&mut self, c: &Category) -> Result<()> {
                    sqlx::query("INSERT INTO categories (category_id, parent_id, name, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(&c.id)
                        .bind(&c.parent_id)
                        .bind(&c.name)
                        .bind(ms(c.created_at))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(())
                }

                async fn category(&mut self, id: &str) -> Result<Option<Category>> {
                    let row = sqlx::query_as::<_, CategoryRow>(
                        "SELECT category_id, parent_id, name, created_at FROM categories WHERE category_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    Ok(row.map(Category::from))
                }

                async fn insert_rule(&mut self, r: &CategoryRule) -> Result<bool> {
                    let res = sqlx::query(
                        "INSERT INTO category_rules (category_id, version, deposit_fen, ship_sla_hours, auto_confirm_days, \
                         after_sale_days, seven_day_return, commission_bps, effective_from) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (category_id, version) DO NOTHING",
                    )
                    .bind(&r.category_id)
                    .bind(r.version)
                    .bind(r.spec.deposit_required.as_fen())
                    .bind(r.spec.ship_sla_hours)
                    .bind(r.spec.auto_confirm_days)
                    .bind(r.spec.after_sale_days)
                    .bind(r.spec.seven_day_return.as_str())
                    .bind(r.spec.commission_bps)
                    .bind(ms(r.effective_from))
                    .execute(&mut *self.0)
                    .await?;
                    Ok(res.rows_affected() == 1)
                }

                async fn rule(&mut self, category_id: &str, version: i64) -> Result<Option<CategoryRule>> {
                    let row = sqlx::query_as::<_, RuleRow>(
                        "SELECT category_id, version, deposit_fen, ship_sla_hours, auto_confirm_days, after_sale_days, \
                         seven_day_return, commission_bps, effective_from FROM category_rules \
                         WHERE category_id = $1 AND version = $2",
                    )
                    .bind(category_id)
                    .bind(version)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    row.map(CategoryRule::try_from).transpose()
                }

                async fn current_rules(&mut self, category_ids: &[String]) -> Result<Vec<CategoryRule>> {
                    if category_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT r.category_id, r.version, r.deposit_fen, r.ship_sla_hours, r.auto_confirm_days, \
                         r.after_sale_days, r.seven_day_return, r.commission_bps, r.effective_from \
                         FROM category_rules r WHERE r.version = (SELECT MAX(r2.version) FROM category_rules r2 \
                         WHERE r2.category_id = r.category_id) AND r.category_id IN (",
                    );
                    push_list(&mut q, category_ids);
                    let rows = q.build_query_as::<RuleRow>().fetch_all(&mut *self.0).await?;
                    convert(rows)
                }

                async fn merchant_categories(&mut self, merchant_id: &str) -> Result<Vec<String>> {
                    Ok(sqlx::query_scalar(
                        "SELECT category_id FROM merchant_categories WHERE merchant_id = $1 ORDER BY category_id",
                    )
                    .bind(merchant_id)
                    .fetch_all(&mut *self.0)
                    .await?)
                }
            }
        };
    };
}
pub(crate) use merchant_repo;
