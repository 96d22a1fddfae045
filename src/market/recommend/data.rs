//! The interaction data a recommender is fitted on: string ids interned to dense indexes, one
//! aggregated row per (user, item), the raw event sequence per user, and the catalogue's facts.

use std::collections::HashMap;

use super::EventKind;

/// One behaviour event, as recorded or read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// The buyer (openid, unionid or a guest's device id).
    pub user: String,
    /// The item (a product id).
    pub item: String,
    /// When, in Unix seconds.
    pub ts: i64,
    /// What the buyer did.
    pub event: EventKind,
}

impl Interaction {
    /// An interaction.
    pub fn new(user: impl Into<String>, item: impl Into<String>, ts: i64, event: EventKind) -> Self {
        Interaction { user: user.into(), item: item.into(), ts, event }
    }
}

/// What the catalogue says of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
    /// The item (a product id).
    pub item: String,
    /// Its merchant.
    pub merchant: String,
    /// Its category.
    pub category: String,
    /// Its price in fen.
    pub price: i64,
}

/// Strings to dense `u32` indexes and back.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    ids: Vec<String>,
    index: HashMap<String, u32>,
}

impl Interner {
    /// The index of `id`, adding it when new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.index.insert(id.to_string(), i);
        i
    }

    /// The index of `id`, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The id at `i`.
    pub fn id(&self, i: u32) -> &str {
        &self.ids[i as usize]
    }

    /// How many ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Marks an item, merchant or category as unknown.
pub const UNKNOWN: u32 = u32::MAX;

/// A compressed row list: `rows[i]` is `cols[ptr[i]..ptr[i+1]]` with its values.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    pub(crate) ptr: Vec<usize>,
    pub(crate) cols: Vec<u32>,
    pub(crate) vals: Vec<f32>,
}

impl Csr {
    fn from_triplets(rows: usize, mut t: Vec<(u32, u32, f32)>) -> Csr {
        t.sort_unstable_by_key(|&(r, c, _)| (r, c));
        let mut ptr = vec![0usize; rows + 1];
        let mut cols = Vec::with_capacity(t.len());
        let mut vals = Vec::with_capacity(t.len());
        for (r, c, v) in t {
            ptr[r as usize + 1] += 1;
            cols.push(c);
            vals.push(v);
        }
        for i in 0..rows {
            ptr[i + 1] += ptr[i];
        }
        Csr { ptr, cols, vals }
    }

    /// Row `i`: its columns and values.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.ptr[i], self.ptr[i + 1]);
        (&self.cols[a..b], &self.vals[a..b])
    }

    /// How many rows.
    pub fn rows(&self) -> usize {
        self.ptr.len().saturating_sub(1)
    }

    /// How many stored entries.
    pub fn nnz(&self) -> usize {
        self.cols.len()
    }
}

/// One event of a user's sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The item index.
    pub item: u32,
    /// The event.
    pub kind: EventKind,
    /// Unix seconds.
    pub ts: i64,
}

/// The fitted-on data: users and items interned, the user × item matrix of summed event weights
/// (both ways), each user's time-ordered events, and the items' merchant, category and price.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// User ids.
    pub users: Interner,
    /// Item ids (the catalogue's first, then any only seen in events).
    pub items: Interner,
    /// Merchant ids.
    pub merchants: Interner,
    /// Category ids.
    pub categories: Interner,
    /// user → (item, summed event weight).
    pub user_items: Csr,
    /// item → (user, summed event weight).
    pub item_users: Csr,
    /// user → time-ordered events.
    pub(crate) seq_ptr: Vec<usize>,
    pub(crate) seq: Vec<Step>,
    /// Per item: merchant index or [`UNKNOWN`].
    pub item_merchant: Vec<u32>,
    /// Per item: category index or [`UNKNOWN`].
    pub item_category: Vec<u32>,
    /// Per item: price in fen (0 when unknown).
    pub item_price: Vec<i64>,
    /// How many items the catalogue listed: items `0..n_catalogue` (0: no catalogue, items are
    /// only known from events).
    pub n_catalogue: usize,
    /// The latest event time (the "now" of decay).
    pub now: i64,
}

impl Dataset {
    /// Builds the data from events and, optionally, the catalogue.
    pub fn build(events: &[Interaction], catalogue: &[ItemInfo]) -> Dataset {
        let mut d = Dataset::default();
        for it in catalogue {
            let i = d.items.intern(&it.item) as usize;
            let m = d.merchants.intern(&it.merchant);
            let c = d.categories.intern(&it.category);
            if i == d.item_merchant.len() {
                d.item_merchant.push(m);
                d.item_category.push(c);
                d.item_price.push(it.price);
            }
        }
        d.n_catalogue = d.items.len();
        let mut agg: HashMap<(u32, u32), f32> = HashMap::with_capacity(events.len());
        let mut steps: Vec<(u32, Step)> = Vec::with_capacity(events.len());
        let mut now = i64::MIN;
        for e in events {
            let u = d.users.intern(&e.user);
            let i = d.items.intern(&e.item);
            if i as usize == d.item_merchant.len() {
                d.item_merchant.push(UNKNOWN);
                d.item_category.push(UNKNOWN);
                d.item_price.push(0);
            }
            *agg.entry((u, i)).or_insert(0.0) += e.event.weight();
            steps.push((u, Step { item: i, kind: e.event, ts: e.ts }));
            now = now.max(e.ts);
        }
        d.now = if now == i64::MIN { 0 } else { now };
        let nu = d.users.len();
        let ni = d.items.len();
        let trip: Vec<(u32, u32, f32)> = agg.iter().map(|(&(u, i), &w)| (u, i, w)).collect();
        d.item_users = Csr::from_triplets(ni, trip.iter().map(|&(u, i, w)| (i, u, w)).collect());
        d.user_items = Csr::from_triplets(nu, trip);
        // Stable sort keeps the file order for events of the same second.
        steps.sort_by_key(|&(u, s)| (u, s.ts));
        let mut seq_ptr = vec![0usize; nu + 1];
        for &(u, _) in &steps {
            seq_ptr[u as usize + 1] += 1;
        }
        for i in 0..nu {
            seq_ptr[i + 1] += seq_ptr[i];
        }
        d.seq_ptr = seq_ptr;
        d.seq = steps.into_iter().map(|(_, s)| s).collect();
        d
    }

    /// How many items.
    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    /// How many users.
    pub fn n_users(&self) -> usize {
        self.users.len()
    }

    /// User `u`'s events, oldest first.
    pub fn sequence(&self, u: u32) -> &[Step] {
        &self.seq[self.seq_ptr[u as usize]..self.seq_ptr[u as usize + 1]]
    }
}
