//! Personalised recommendation (千人千面) with fair exposure for small merchants.
//!
//! - [`data`]: behaviour events ([`Interaction`]) and the catalogue's facts ([`ItemInfo`]) interned
//!   into a [`Dataset`];
//! - the models, each a [`Recommender`] so they can be compared: [`Popular`] (time-decayed, per
//!   category; the baseline), [`CoVisit`] (item-to-item co-visitation, incremental), [`Ease`]
//!   (closed-form item-item), [`Ials`] (implicit matrix factorisation with fold-in), and [`Blend`]
//!   (their rank fusion under the business rules);
//! - [`rules`]: eligibility, a cap per merchant per page, exploration slots for new and small
//!   merchants, the merchant's score as a weight;
//! - [`eval`]: full-ranking offline evaluation (never sampled negatives), the engine of
//!   `wxshop recommend eval`.
//!
//! The market's own feed ([`Market::recommend`](crate::market::Market::recommend), the
//! [`Recommend`](crate::market::handles::Recommend) handle) records events in
//! the store and serves the blend; this module is pure and knows nothing of storage.
//!
//! ```
//! use wxshop::market::recommend::*;
//!
//! let ev = |u: &str, i: &str, ts| Interaction::new(u, i, ts, EventKind::View);
//! let events = vec![ev("a", "tea", 1), ev("a", "cup", 2), ev("b", "tea", 3), ev("b", "cup", 4), ev("c", "tea", 5)];
//! let data = Dataset::build(&events, &[]);
//! let mut model = CoVisit::default();
//! model.fit(&data);
//! // c viewed tea; buyers who viewed tea viewed the cup next.
//! let history = data.sequence(data.users.get("c").unwrap());
//! let exclude = [data.items.get("tea").unwrap()];
//! let q = Query { history, exclude: &exclude, context_item: None };
//! let top = model.recommend(&data, &q, 5);
//! assert_eq!(data.items.id(top[0].item), "cup");
//! assert_eq!(top[0].reason, Reason::Viewed { item: exclude[0] });
//! ```

pub mod blend;
pub mod covisit;
pub mod data;
pub mod ease;
pub mod eval;
pub mod ials;
pub mod popular;
pub mod rules;
pub mod topk;

pub use blend::Blend;
pub use covisit::CoVisit;
pub use data::{Dataset, Interaction, ItemInfo, Step};
pub use ease::Ease;
pub use eval::{EvalReport, ModelReport, evaluate};
pub use ials::Ials;
pub use popular::Popular;
pub use rules::{Fairness, MarketFacts};

// The market's side: what its handle takes and answers.
pub use crate::market::service::{EVENT_BATCH, FeedItem, FeedPage, NewEvent, Why};

str_enum! {
    /// What a buyer did with an item.
    pub enum EventKind {
        /// Saw it (a product page, an impression clicked through).
        View => "view",
        /// Clicked it in a list.
        Click => "click",
        /// Added it to the cart.
        Cart => "cart",
        /// Bought it.
        Buy => "buy",
        /// Shared it.
        Share => "share",
    }
}

impl EventKind {
    /// How much the event says about the buyer's taste.
    pub fn weight(self) -> f32 {
        match self {
            EventKind::View => 1.0,
            EventKind::Click => 2.0,
            EventKind::Share => 3.0,
            EventKind::Cart => 4.0,
            EventKind::Buy => 8.0,
        }
    }
}

str_enum! {
    /// Where an event came from.
    pub enum Surface {
        /// The personalised home feed.
        Home => "home",
        /// A product page (related, bought together).
        Product => "product",
        /// Category browsing.
        Category => "category",
        /// Search results.
        Search => "search",
        /// A share link or code.
        ShareLink => "share_link",
        /// A subscribe or service message.
        Message => "message",
        /// After an order (post-purchase suggestions).
        Order => "order",
    }
}

/// Why an item was recommended (indexes into the [`Dataset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Because the buyer viewed this item.
    Viewed {
        /// The item viewed.
        item: u32,
    },
    /// Bought together with this item.
    BoughtTogether {
        /// The item bought.
        item: u32,
    },
    /// Popular in this category.
    PopularIn {
        /// The category.
        category: u32,
    },
    /// Popular overall.
    Popular,
    /// Fits the buyer's tastes (a latent-factor or item-item model).
    ForYou,
    /// A new or small shop given exposure.
    NewShop {
        /// The merchant.
        merchant: u32,
    },
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The item index.
    pub item: u32,
    /// The model's score (comparable only within one list).
    pub score: f32,
    /// Why.
    pub reason: Reason,
}

/// What a model is asked.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The buyer's events, oldest first (empty for a new buyer).
    pub history: &'a [Step],
    /// Items never to return, sorted ascending.
    pub exclude: &'a [u32],
    /// The item on the page or the share link's item, if any.
    pub context_item: Option<u32>,
}

/// A recommendation model: fitted on a [`Dataset`], asked for a buyer's top `k`.
pub trait Recommender: Send + Sync {
    /// Its name in reports.
    fn name(&self) -> &'static str;
    /// A full fit on `data`.
    fn fit(&mut self, data: &Dataset);
    /// Up to `k` items, best first; never an excluded item. Fewer when the model has no more.
    fn recommend(&self, data: &Dataset, q: &Query<'_>, k: usize) -> Vec<Scored>;
}

/// A behaviour event as the market stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuyerEvent {
    /// The idempotency key: the same event sent twice is stored once.
    pub event_id: String,
    /// The buyer: an openid or unionid, or a guest's `device:…` id until login merges it.
    pub buyer: String,
    /// The product.
    pub product_id: String,
    /// The product's merchant.
    pub merchant_id: String,
    /// What the buyer did.
    pub kind: EventKind,
    /// Where.
    pub surface: Surface,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A product as the recommender's rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    /// The product.
    pub product_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// Its category.
    pub category_id: String,
    /// Its lowest SKU price in fen.
    pub min_price_fen: i64,
    /// Listed, in stock, and its merchant may take orders.
    pub eligible: bool,
    /// When its merchant joined (new shops get exploration).
    pub merchant_since: chrono::DateTime<chrono::Utc>,
}
