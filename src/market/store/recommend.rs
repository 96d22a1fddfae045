//! Recommendation events and the catalogue facts the recommender's rules need.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::market::error::Result;
use crate::market::recommend::{BuyerEvent, CatalogueEntry};

/// Storage of behaviour events.
#[async_trait]
pub trait RecEventRepo: Send {
    /// Inserts events, skipping any whose `event_id` is stored; returns how many were new.
    async fn insert_rec_events(&mut self, events: &[BuyerEvent]) -> Result<u64>;
    /// Events at or after `since`, in (`at`, `event_id`) order after the cursor, at most `limit`.
    async fn rec_events_page(
        &mut self,
        since: DateTime<Utc>,
        after: Option<(DateTime<Utc>, &str)>,
        limit: i64,
    ) -> Result<Vec<BuyerEvent>>;
    /// A buyer's latest `limit` events, oldest first.
    async fn rec_events_of(&mut self, buyer: &str, limit: i64) -> Result<Vec<BuyerEvent>>;
    /// Moves a guest's events to the buyer who logged in; returns how many moved.
    async fn merge_rec_buyer(&mut self, from: &str, to: &str) -> Result<u64>;
    /// Deletes events before `before`; returns how many.
    async fn prune_rec_events(&mut self, before: DateTime<Utc>) -> Result<u64>;
    /// Every product that is or was listed, with what eligibility needs.
    async fn rec_catalogue(&mut self) -> Result<Vec<CatalogueEntry>>;
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    event_id: String,
    buyer: String,
    product_id: String,
    merchant_id: String,
    kind: String,
    surface: String,
    at: i64,
}

impl TryFrom<EventRow> for BuyerEvent {
    type Error = crate::market::MarketError;
    fn try_from(r: EventRow) -> Result<Self> {
        use crate::market::recommend::{EventKind, Surface};
        let bad = |what: &str, v: &str| crate::market::MarketError::Store {
            message: format!("stored {what} {v:?} is unknown"),
            retryable: false,
        };
        Ok(BuyerEvent {
            kind: EventKind::parse(&r.kind).ok_or_else(|| bad("event kind", &r.kind))?,
            surface: Surface::parse(&r.surface).ok_or_else(|| bad("surface", &r.surface))?,
            event_id: r.event_id,
            buyer: r.buyer,
            product_id: r.product_id,
            merchant_id: r.merchant_id,
            at: super::from_ms(r.at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CatalogueRow {
    product_id: String,
    merchant_id: String,
    category_id: String,
    min_price_fen: i64,
    product_status: String,
    merchant_status: String,
    restrictions: i64,
    available: i64,
    merchant_since: i64,
}

impl From<CatalogueRow> for CatalogueEntry {
    fn from(r: CatalogueRow) -> Self {
        use crate::market::{MerchantStatus, ProductStatus, Restrictions};
        let merchant_ok = matches!(r.merchant_status.as_str(), s if s == MerchantStatus::Active.as_str() || s == MerchantStatus::Restricted.as_str())
            && (r.restrictions as u32 & Restrictions::CHECKOUT.bits()) == 0;
        CatalogueEntry {
            eligible: r.product_status == ProductStatus::Listed.as_str() && merchant_ok && r.available > 0,
            product_id: r.product_id,
            merchant_id: r.merchant_id,
            category_id: r.category_id,
            min_price_fen: r.min_price_fen,
            merchant_since: super::from_ms(r.merchant_since),
        }
    }
}

/// Implements [`RecEventRepo`] for a backend's transaction type.
macro_rules! rec_event_repo {
    ($tx:ty, $db:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::market::error::Result;
            use $crate::market::recommend::{BuyerEvent, CatalogueEntry};
            use $crate::market::store::recommend::{CatalogueRow, EventRow, RecEventRepo};
            use $crate::market::store::{convert, ms};

            #[async_trait::async_trait]
            impl RecEventRepo for $tx {
                async fn insert_rec_events(&mut self, events: &[BuyerEvent]) -> Result<u64> {
                    let mut n = 0;
                    for e in events {
                        let r = sqlx::query(
                            "INSERT INTO rec_events (event_id, buyer, product_id, merchant_id, kind, surface, at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
                        )
                        .bind(&e.event_id)
                        .bind(&e.buyer)
                        .bind(&e.product_id)
                        .bind(&e.merchant_id)
                        .bind(e.kind.as_str())
                        .bind(e.surface.as_str())
                        .bind(ms(e.at))
                        .execute(&mut *self.0)
                        .await?;
                        n += r.rows_affected();
                    }
                    Ok(n)
                }

                async fn rec_events_page(
                    &mut self,
                    since: DateTime<Utc>,
                    after: Option<(DateTime<Utc>, &str)>,
                    limit: i64,
                ) -> Result<Vec<BuyerEvent>> {
                    let (at, id) = after.map(|(a, i)| (ms(a), i)).unwrap_or((i64::MIN, ""));
                    let rows: Vec<EventRow> = sqlx::query_as(
                        "SELECT event_id, buyer, product_id, merchant_id, kind, surface, at FROM rec_events \
                         WHERE at >= $1 AND (at > $2 OR (at = $2 AND event_id > $3)) ORDER BY at, event_id LIMIT $4",
                    )
                    .bind(ms(since))
                    .bind(at)
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                    convert(rows)
                }

                async fn rec_events_of(&mut self, buyer: &str, limit: i64) -> Result<Vec<BuyerEvent>> {
                    let rows: Vec<EventRow> = sqlx::query_as(
                        "SELECT event_id, buyer, product_id, merchant_id, kind, surface, at FROM rec_events \
                         WHERE buyer = $1 ORDER BY at DESC, event_id DESC LIMIT $2",
                    )
                    .bind(buyer)
                    .bind(limit)
                    .fetch_all(&mut *self.0)
                    .await?;
                    let mut v: Vec<BuyerEvent> = convert(rows)?;
                    v.reverse();
                    Ok(v)
                }

                async fn merge_rec_buyer(&mut self, from: &str, to: &str) -> Result<u64> {
                    let r = sqlx::query("UPDATE rec_events SET buyer = $2 WHERE buyer = $1")
                        .bind(from)
                        .bind(to)
                        .execute(&mut *self.0)
                        .await?;
                    Ok(r.rows_affected())
                }

                async fn prune_rec_events(&mut self, before: DateTime<Utc>) -> Result<u64> {
                    let r = sqlx::query("DELETE FROM rec_events WHERE at < $1")
                        .bind(ms(before))
                        .execute(&mut *self.0)
                        .await?;
                    Ok(r.rows_affected())
                }

                async fn rec_catalogue(&mut self) -> Result<Vec<CatalogueEntry>> {
                    // Available stock summed over the product's SKUs (no inventory row: none in stock).
                    let rows: Vec<CatalogueRow> = sqlx::query_as(
                        "SELECT p.product_id, p.merchant_id, p.category_id, p.min_price_fen, \
                         p.status AS product_status, m.status AS merchant_status, \
                         (m.restrictions | m.manual_restrictions) AS restrictions, \
                         COALESCE((SELECT CAST(SUM(i.on_hand - i.reserved) AS BIGINT) FROM skus s JOIN inventory i \
                           ON i.merchant_id = s.merchant_id AND i.sku_id = s.sku_id \
                           WHERE s.merchant_id = p.merchant_id AND s.product_id = p.product_id), 0) AS available, \
                         m.created_at AS merchant_since \
                         FROM products p JOIN merchants m ON m.merchant_id = p.merchant_id \
                         WHERE p.status <> 'Draft' ORDER BY p.product_id",
                    )
                    .fetch_all(&mut *self.0)
                    .await?;
                    Ok(rows.into_iter().map(CatalogueEntry::from).collect())
                }
            }
        };
    };
}
pub(crate) use rec_event_repo;
