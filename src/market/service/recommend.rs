//! The market's recommendations: behaviour events recorded in batches, the models refitted from the
//! store, and the surfaces (home feed, related, bought together, after purchase, result ranking)
//! served under the business rules.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Market;
use super::handles::Recommend;
use crate::market::error::{MarketError, Result};
use crate::market::recommend::data::UNKNOWN;
use crate::market::recommend::rules::{self, MarketFacts};
use crate::market::recommend::{
    Blend, BuyerEvent, CoVisit, Dataset, EventKind, Interaction, ItemInfo, Query, Reason, Recommender, Scored, Step,
    Surface,
};

/// Events buffered before one write.
pub const EVENT_BATCH: usize = 256;
/// A shop this young is new, and gets exploration.
const NEW_SHOP_DAYS: i64 = 30;
/// Buyers whose recent events are kept in memory for incremental co-visitation.
const RECENT_BUYERS: usize = 50_000;
/// Pages of a feed computed at once (so every page of one feed comes from one ranking).
const FEED_PAGES: usize = 10;

/// A fitted snapshot of the models.
pub(crate) struct Snapshot {
    version: u64,
    data: Dataset,
    blend: Blend,
    together: CoVisit,
    fitted_at: DateTime<Utc>,
}

/// A buyer's ranked feed and the model version it came from.
type CachedFeed = (u64, Arc<Vec<FeedItem>>);

/// The recommender's state inside the market.
#[derive(Default)]
pub(crate) struct RecState {
    buffer: Mutex<Vec<BuyerEvent>>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    recent: Mutex<HashMap<String, VecDeque<Step>>>,
    feeds: Mutex<HashMap<String, CachedFeed>>,
    /// Serialises refits (one at a time per process).
    refit: tokio::sync::Mutex<()>,
}

/// An event to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The client's idempotency key (a redelivered event is stored once); `None`: one is made.
    pub event_id: Option<String>,
    /// The buyer's openid, or a guest's device id prefixed `device:`.
    pub buyer: String,
    /// The product.
    pub product_id: String,
    /// What the buyer did.
    pub kind: EventKind,
    /// Where.
    pub surface: Surface,
}

/// Why an item is shown, in ids a client can render ("because you viewed …").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// Because the buyer viewed this product.
    Viewed {
        /// The product viewed.
        product_id: String,
    },
    /// Often bought with this product.
    BoughtTogether {
        /// The product.
        product_id: String,
    },
    /// Popular in this category.
    PopularIn {
        /// The category.
        category_id: String,
    },
    /// Popular on the platform.
    Popular,
    /// Fits the buyer's tastes.
    ForYou,
    /// A new or small shop.
    NewShop {
        /// The merchant.
        merchant_id: String,
    },
}

/// One recommended product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedItem {
    /// The product.
    pub product_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// Why it is shown.
    pub why: Why,
}

/// One page of a feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedPage {
    /// The products.
    pub items: Vec<FeedItem>,
    /// The next page's cursor, if there is one.
    pub next: Option<String>,
}

fn to_why(d: &Dataset, r: Reason) -> Why {
    let item = |i: u32| d.items.id(i).to_string();
    match r {
        Reason::Viewed { item: i } => Why::Viewed { product_id: item(i) },
        Reason::BoughtTogether { item: i } => Why::BoughtTogether { product_id: item(i) },
        Reason::PopularIn { category } => Why::PopularIn { category_id: d.categories.id(category).to_string() },
        Reason::Popular => Why::Popular,
        Reason::ForYou => Why::ForYou,
        Reason::NewShop { merchant } if merchant != UNKNOWN => {
            Why::NewShop { merchant_id: d.merchants.id(merchant).to_string() }
        }
        Reason::NewShop { .. } => Why::Popular,
    }
}

fn item_of(d: &Dataset, s: &Scored) -> FeedItem {
    let m = d.item_merchant[s.item as usize];
    FeedItem {
        product_id: d.items.id(s.item).to_string(),
        merchant_id: if m == UNKNOWN { String::new() } else { d.merchants.id(m).to_string() },
        why: to_why(d, s.reason),
    }
}

impl Recommend<'_> {
    fn state(&self) -> &RecState {
        self.rec_state()
    }

    /// Records a behaviour event: buffered, and written with its batch (every [`EVENT_BATCH`]
    /// events, or on [`flush`](Self::flush)); co-visitation learns from it at once. Never touches
    /// an order.
    pub async fn record(&self, e: NewEvent) -> Result<()> {
        if e.buyer.is_empty() || e.buyer.len() > 128 || e.product_id.is_empty() || e.product_id.len() > 64 {
            return Err(MarketError::invalid("an event needs a buyer (≤ 128 bytes) and a product id (≤ 64 bytes)"));
        }
        let at = self.now();
        let merchant_id = {
            let snap = self.state().snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
            match snap.as_ref().and_then(|s| s.data.items.get(&e.product_id).map(|i| (s.clone(), i))) {
                Some((s, i)) => {
                    let m = s.data.item_merchant[i as usize];
                    self.learn(&s, &e.buyer, Step { item: i, kind: e.kind, ts: at.timestamp() });
                    if m == UNKNOWN { String::new() } else { s.data.merchants.id(m).to_string() }
                }
                None => {
                    let p = self.store().read().await?.product(&e.product_id).await?;
                    p.ok_or_else(|| MarketError::not_found("product", &e.product_id))?.merchant_id
                }
            }
        };
        let event = BuyerEvent {
            event_id: e.event_id.unwrap_or_else(crate::market::new_id),
            buyer: e.buyer,
            product_id: e.product_id,
            merchant_id,
            kind: e.kind,
            surface: e.surface,
            at,
        };
        let full = {
            let mut b = self.state().buffer.lock().unwrap_or_else(|p| p.into_inner());
            b.push(event);
            if b.len() >= EVENT_BATCH { Some(std::mem::take(&mut *b)) } else { None }
        };
        if let Some(batch) = full {
            self.write_batch(batch).await?;
        }
        Ok(())
    }

    fn learn(&self, s: &Snapshot, buyer: &str, step: Step) {
        let mut recent = self.state().recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_BUYERS && !recent.contains_key(buyer) {
            recent.clear();
        }
        let q = recent.entry(buyer.to_string()).or_default();
        let mut cv = s.blend.covisit.write().unwrap_or_else(|p| p.into_inner());
        cv.observe(q.make_contiguous(), step, s.data.n_items());
        q.push_back(step);
        if q.len() > 30 {
            q.pop_front();
        }
        drop(cv);
        drop(recent);
        // The buyer's cached feed is stale now.
        self.state().feeds.lock().unwrap_or_else(|p| p.into_inner()).remove(buyer);
    }

    async fn write_batch(&self, batch: Vec<BuyerEvent>) -> Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store().begin().await?;
        let n = tx.insert_rec_events(&batch).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Writes the buffered events; returns how many were new.
    pub async fn flush(&self) -> Result<u64> {
        let batch = std::mem::take(&mut *self.state().buffer.lock().unwrap_or_else(|p| p.into_inner()));
        self.write_batch(batch).await
    }

    /// A guest's events become the buyer's who logged in (one history across the login).
    pub async fn merge_guest(&self, device_buyer: &str, openid: &str) -> Result<u64> {
        self.flush().await?;
        let mut tx = self.store().begin().await?;
        let n = tx.merge_rec_buyer(device_buyer, openid).await?;
        tx.commit().await?;
        self.state().feeds.lock().unwrap_or_else(|p| p.into_inner()).remove(openid);
        Ok(n)
    }

    /// Deletes events older than `days`.
    pub async fn prune_events(&self, days: i64) -> Result<u64> {
        let mut tx = self.store().begin().await?;
        let n = tx.prune_rec_events(self.now() - chrono::Duration::days(days.max(1))).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Refits every model from the stored events (the last 180 days) and the catalogue, and swaps
    /// the snapshot in; serving goes on from the old one meanwhile. Returns the new version.
    pub async fn refit(&self) -> Result<u64> {
        let _one = self.state().refit.lock().await;
        self.flush().await?;
        let since = self.now() - chrono::Duration::days(180);
        let mut events: Vec<Interaction> = Vec::new();
        let mut after: Option<(DateTime<Utc>, String)> = None;
        loop {
            let page = {
                let mut tx = self.store().read().await?;
                tx.rec_events_page(since, after.as_ref().map(|(a, i)| (*a, i.as_str())), 5_000).await?
            };
            let Some(last) = page.last() else { break };
            after = Some((last.at, last.event_id.clone()));
            let done = page.len() < 5_000;
            events.extend(page.into_iter().map(|e| Interaction::new(e.buyer, e.product_id, e.at.timestamp(), e.kind)));
            if done {
                break;
            }
        }
        let catalogue = self.store().read().await?.rec_catalogue().await?;
        let items: Vec<ItemInfo> = catalogue
            .iter()
            .map(|c| ItemInfo {
                item: c.product_id.clone(),
                merchant: c.merchant_id.clone(),
                category: c.category_id.clone(),
                price: c.min_price_fen,
            })
            .collect();
        let mut weights: HashMap<String, f32> = HashMap::new();
        for c in &catalogue {
            if !weights.contains_key(&c.merchant_id) {
                let w = match self.governance().reviews().merchant_score(&c.merchant_id).await {
                    // 80 points is neutral; a poor or penalised shop sinks, a fine one rises a little.
                    Ok(card) => (0.5 + 0.5 * card.score as f32 / 8_000.0).clamp(0.5, 1.2),
                    Err(_) => 1.0,
                };
                weights.insert(c.merchant_id.clone(), w);
            }
        }
        let now = self.now();
        let version = {
            let v = self.state().snapshot.read().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |s| s.version);
            v + 1
        };
        let snap = tokio::task::spawn_blocking(move || {
            let data = Dataset::build(&events, &items);
            let mut blend = Blend::default();
            blend.fit(&data);
            let mut facts: MarketFacts = (*blend.facts).clone();
            facts.eligible = (0..data.n_items()).map(|i| catalogue.get(i).is_some_and(|c| c.eligible)).collect();
            facts.weight = (0..data.merchants.len() as u32)
                .map(|m| weights.get(data.merchants.id(m)).copied().unwrap_or(1.0))
                .collect();
            for (i, c) in catalogue.iter().enumerate() {
                if (now - c.merchant_since).num_days() < NEW_SHOP_DAYS {
                    facts.small[data.item_merchant[i] as usize] = true;
                }
            }
            facts.refresh_explore_pool(&data, &blend.popular.ranked);
            blend.facts = Arc::new(facts);
            let mut together = CoVisit::bought_together();
            together.fit(&data);
            Snapshot { version, data, blend, together, fitted_at: now }
        })
        .await
        .map_err(|e| MarketError::Store { message: format!("refit failed: {e}"), retryable: false })?;
        *self.state().snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snap));
        self.state().feeds.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.state().recent.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(version)
    }

    async fn snapshot_now(&self) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.state().snapshot.read().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(s);
        }
        self.refit().await?;
        self.state()
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| MarketError::Store { message: "no model".into(), retryable: true })
    }

    /// The buyer's history as the snapshot's steps (stored plus buffered), oldest first.
    async fn history(&self, s: &Snapshot, buyer: &str) -> Result<Vec<Step>> {
        let stored = self.store().read().await?.rec_events_of(buyer, 100).await?;
        let buffered: Vec<BuyerEvent> = self
            .state()
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|e| e.buyer == buyer)
            .cloned()
            .collect();
        Ok(stored
            .iter()
            .chain(&buffered)
            .filter_map(|e| {
                s.data.items.get(&e.product_id).map(|i| Step { item: i, kind: e.kind, ts: e.at.timestamp() })
            })
            .collect())
    }

    /// One page of the buyer's home feed (`page_size` 1–50). Every page of one feed comes from one
    /// ranking, so paging never repeats or skips an item; a cursor from an older model starts over.
    /// A new buyer (no history) gets the popular items of the share link's `context_product`'s
    /// category, else of the platform, and exploration slots for new and small shops.
    pub async fn home_feed(
        &self,
        buyer: &str,
        cursor: Option<&str>,
        page_size: usize,
        context_product: Option<&str>,
    ) -> Result<FeedPage> {
        let size = page_size.clamp(1, 50);
        let s = self.snapshot_now().await?;
        let (version, page) = match cursor {
            None => (s.version, 0usize),
            Some(c) => c
                .split_once('.')
                .and_then(|(v, p)| Some((v.parse::<u64>().ok()?, p.parse::<usize>().ok()?)))
                .ok_or_else(|| MarketError::invalid("a malformed feed cursor"))?,
        };
        let page = if version == s.version { page } else { 0 };
        let key = format!("{buyer}\u{0}{size}");
        let cached = self.state().feeds.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let list = match cached {
            Some((v, l)) if v == s.version && cursor.is_some() => l,
            _ => {
                let hist = self.history(&s, buyer).await?;
                let mut exclude: Vec<u32> = hist.iter().map(|h| h.item).collect();
                exclude.sort_unstable();
                exclude.dedup();
                let ctx = context_product.and_then(|p| s.data.items.get(p));
                let q = Query { history: &hist, exclude: &exclude, context_item: ctx };
                let cands = s.blend.recommend_candidates(&s.data, &q, size * FEED_PAGES);
                let mut shown = exclude.clone();
                let mut all = Vec::new();
                for _ in 0..FEED_PAGES {
                    let pg = rules::apply(&s.data, &s.blend.facts, s.blend.fairness, cands.clone(), &shown, size);
                    if pg.is_empty() {
                        break;
                    }
                    for x in &pg {
                        shown.push(x.item);
                    }
                    shown.sort_unstable();
                    all.extend(pg.iter().map(|x| item_of(&s.data, x)));
                }
                let l = Arc::new(all);
                self.state().feeds.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (s.version, l.clone()));
                l
            }
        };
        let from = (page * size).min(list.len());
        let to = (from + size).min(list.len());
        let next = (to < list.len()).then(|| format!("{}.{}", s.version, page + 1));
        Ok(FeedPage { items: list[from..to].to_vec(), next })
    }

    /// Products related to `product_id` (viewed together), under the rules.
    pub async fn related(&self, product_id: &str, k: usize) -> Result<Vec<FeedItem>> {
        self.item_list(product_id, k, false).await
    }

    /// Products bought together with `product_id`, under the rules.
    pub async fn bought_together(&self, product_id: &str, k: usize) -> Result<Vec<FeedItem>> {
        self.item_list(product_id, k, true).await
    }

    async fn item_list(&self, product_id: &str, k: usize, bought: bool) -> Result<Vec<FeedItem>> {
        let k = k.clamp(1, 50);
        let s = self.snapshot_now().await?;
        let Some(i) = s.data.items.get(product_id) else {
            return Err(MarketError::not_found("product", product_id));
        };
        let exclude = [i];
        let q = Query { history: &[], exclude: &exclude, context_item: Some(i) };
        let cands: Vec<Scored> = if bought {
            let mut c = s.together.recommend(&s.data, &q, k * 3);
            c.extend(s.blend.covisit.read().unwrap_or_else(|p| p.into_inner()).recommend(&s.data, &q, k * 3));
            c
        } else {
            let mut c = s.blend.covisit.read().unwrap_or_else(|p| p.into_inner()).recommend(&s.data, &q, k * 3);
            c.extend(s.blend.popular.recommend(&s.data, &q, k * 2).into_iter().map(|mut x| {
                x.score *= 1e-6; // fallback behind every co-visited item
                x
            }));
            c
        };
        let mut seen = std::collections::HashSet::new();
        let cands: Vec<Scored> = cands.into_iter().filter(|c| seen.insert(c.item)).collect();
        let page = rules::apply(
            &s.data,
            &s.blend.facts,
            rules::Fairness { explore_share: 0.0, ..s.blend.fairness },
            cands,
            &exclude,
            k,
        );
        Ok(page.iter().map(|x| item_of(&s.data, x)).collect())
    }

    /// Suggestions after an order of `product_ids`: bought together with them first, then the feed.
    pub async fn after_purchase(&self, buyer: &str, product_ids: &[String], k: usize) -> Result<Vec<FeedItem>> {
        let mut out: Vec<FeedItem> = Vec::new();
        for p in product_ids {
            if let Ok(list) = self.bought_together(p, k).await {
                out.extend(list.into_iter().filter(|x| !product_ids.contains(&x.product_id)));
            }
        }
        let feed = self.home_feed(buyer, None, k.clamp(1, 50), None).await?;
        out.extend(feed.items);
        let mut seen = std::collections::HashSet::new();
        out.retain(|x| seen.insert(x.product_id.clone()));
        out.truncate(k);
        Ok(out)
    }

    /// Orders `product_ids` (a category page or search results) for this buyer: their tastes first,
    /// then popularity; ineligible products go last, in their given order.
    pub async fn rank(&self, buyer: &str, product_ids: &[String]) -> Result<Vec<String>> {
        let s = self.snapshot_now().await?;
        let hist = self.history(&s, buyer).await?;
        let q = Query { history: &hist, exclude: &[], context_item: None };
        let personal: HashMap<u32, f32> =
            s.blend.recommend_candidates(&s.data, &q, 500).into_iter().map(|x| (x.item, x.score)).collect();
        let pop = s.blend.popular.scores();
        let mut keyed: Vec<(usize, u8, f32, f32, String)> = product_ids
            .iter()
            .enumerate()
            .map(|(n, p)| match s.data.items.get(p) {
                Some(i) if s.blend.facts.is_eligible(i) => {
                    (n, 0, -personal.get(&i).copied().unwrap_or(0.0), -pop[i as usize], p.clone())
                }
                _ => (n, 1, 0.0, 0.0, p.clone()),
            })
            .collect();
        keyed.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)).then(a.3.total_cmp(&b.3)).then(a.0.cmp(&b.0)));
        Ok(keyed.into_iter().map(|k| k.4).collect())
    }

    /// The model version and when it was fitted, if any.
    pub fn model_version(&self) -> Option<(u64, DateTime<Utc>)> {
        self.state().snapshot.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|s| (s.version, s.fitted_at))
    }
}

impl Market {
    pub(crate) fn rec_state(&self) -> &RecState {
        &self.inner.rec
    }
}
