//! The business rules every list passes through: only eligible items (listed, in stock, of a merchant
//! allowed to sell), a cap on any one merchant's share of a page, a bounded exploration share for new
//! and small merchants, and the merchant's score and penalties as a weight.

use super::data::{Dataset, UNKNOWN};
use super::topk::contains;
use super::{Reason, Scored};

/// How exposure is shared between merchants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fairness {
    /// The largest share of one page a merchant may take (default 0.25: 5 of 20).
    pub max_merchant_share: f32,
    /// The share of a page kept for new and small merchants (default 0.1: 2 of 20).
    pub explore_share: f32,
}

impl Default for Fairness {
    fn default() -> Self {
        Fairness { max_merchant_share: 0.25, explore_share: 0.1 }
    }
}

impl Fairness {
    /// No caps and no exploration: the model's ranking as it is.
    pub const OFF: Fairness = Fairness { max_merchant_share: 1.0, explore_share: 0.0 };

    /// The most items of one merchant on a page of `k`.
    pub fn merchant_cap(&self, k: usize) -> usize {
        ((self.max_merchant_share * k as f32).floor() as usize).max(1)
    }

    /// The slots of a page of `k` kept for new and small merchants.
    pub fn explore_slots(&self, k: usize) -> usize {
        (self.explore_share * k as f32).round() as usize
    }
}

/// What the rules know of the market now, indexed like the dataset's items and merchants.
#[derive(Debug, Clone, Default)]
pub struct MarketFacts {
    /// Per item: may it be shown (listed, in stock, merchant allowed to sell)? Empty: all may.
    pub eligible: Vec<bool>,
    /// Per merchant: is it new or small (the exploration pool)?
    pub small: Vec<bool>,
    /// Per merchant: a weight from its score and penalties, 1.0 neutral. Empty: all 1.0.
    pub weight: Vec<f32>,
    /// Items of small merchants, best first (by popularity), for exploration slots.
    pub explore_pool: Vec<u32>,
}

impl MarketFacts {
    /// Facts from the data alone: every item eligible, the merchants holding the smallest half of
    /// the popularity (and any with none) small, all weights neutral.
    pub fn from_data(d: &Dataset, popularity: &[f32], ranked: &[u32]) -> MarketFacts {
        let nm = d.merchants.len();
        let mut mass = vec![0f64; nm];
        for (i, &m) in d.item_merchant.iter().enumerate() {
            if m != UNKNOWN {
                mass[m as usize] += popularity.get(i).copied().unwrap_or(0.0) as f64;
            }
        }
        let mut order: Vec<usize> = (0..nm).collect();
        order.sort_by(|&a, &b| mass[a].total_cmp(&mass[b]).then(a.cmp(&b)));
        let mut small = vec![false; nm];
        for &m in order.iter().take(nm / 2) {
            small[m] = true;
        }
        for m in 0..nm {
            if mass[m] == 0.0 {
                small[m] = true;
            }
        }
        let mut facts = MarketFacts { eligible: Vec::new(), small, weight: Vec::new(), explore_pool: Vec::new() };
        facts.refresh_explore_pool(d, ranked);
        facts
    }

    /// Rebuilds the exploration pool after `small` changed: the small merchants' items in `ranked` order.
    pub fn refresh_explore_pool(&mut self, d: &Dataset, ranked: &[u32]) {
        let small = &self.small;
        self.explore_pool = ranked
            .iter()
            .copied()
            .filter(|&i| {
                let m = d.item_merchant[i as usize];
                m != UNKNOWN && small.get(m as usize).copied().unwrap_or(false)
            })
            .collect();
    }

    /// Whether item `i` may be shown.
    pub fn is_eligible(&self, i: u32) -> bool {
        self.eligible.get(i as usize).copied().unwrap_or(self.eligible.is_empty())
    }

    /// Whether merchant `m` is new or small.
    pub fn is_small(&self, m: u32) -> bool {
        m != UNKNOWN && self.small.get(m as usize).copied().unwrap_or(false)
    }

    fn weight(&self, m: u32) -> f32 {
        if m == UNKNOWN { 1.0 } else { self.weight.get(m as usize).copied().unwrap_or(1.0) }
    }
}

/// One page of `k` from `candidates` (best first) under the rules: ineligible and excluded items
/// dropped, scores weighted by merchant, at most [`Fairness::merchant_cap`] per merchant, and at
/// least [`Fairness::explore_slots`] items of small merchants when any are eligible (from the
/// candidates first, else the exploration pool, marked [`Reason::NewShop`]).
pub fn apply(
    d: &Dataset,
    facts: &MarketFacts,
    fair: Fairness,
    candidates: Vec<Scored>,
    exclude: &[u32],
    k: usize,
) -> Vec<Scored> {
    let merchant = |i: u32| d.item_merchant.get(i as usize).copied().unwrap_or(UNKNOWN);
    let mut pool: Vec<Scored> = candidates
        .into_iter()
        .filter(|s| facts.is_eligible(s.item) && !contains(exclude, s.item))
        .map(|mut s| {
            s.score *= facts.weight(merchant(s.item));
            s
        })
        .collect();
    pool.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
    let cap = fair.merchant_cap(k);
    let mut per_merchant: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut out: Vec<Scored> = Vec::with_capacity(k);
    let mut spare: Vec<Scored> = Vec::new();
    let room =
        |m: u32, pm: &std::collections::HashMap<u32, usize>| m == UNKNOWN || pm.get(&m).copied().unwrap_or(0) < cap;
    for s in pool {
        let m = merchant(s.item);
        if out.len() < k && room(m, &per_merchant) && !out.iter().any(|o| o.item == s.item) {
            *per_merchant.entry(m).or_insert(0) += 1;
            out.push(s);
        } else {
            spare.push(s);
        }
    }
    let want = fair.explore_slots(k).min(k);
    let have = out.iter().filter(|s| facts.is_small(merchant(s.item))).count();
    if have < want {
        // Small merchants' items: first those the model ranked but that fell off, then the pool.
        let mut extra: Vec<Scored> = spare
            .iter()
            .filter(|s| facts.is_small(merchant(s.item)))
            .cloned()
            .chain(facts.explore_pool.iter().map(|&i| Scored {
                item: i,
                score: 0.0,
                reason: Reason::NewShop { merchant: merchant(i) },
            }))
            .filter(|s| facts.is_eligible(s.item) && !contains(exclude, s.item))
            .collect::<Vec<_>>();
        extra.dedup_by_key(|s| s.item);
        let mut need = want - have;
        for s in extra {
            if need == 0 {
                break;
            }
            if out.iter().any(|o| o.item == s.item) {
                continue;
            }
            let m = merchant(s.item);
            if !room(m, &per_merchant) {
                continue;
            }
            // Make room by dropping the lowest-ranked item of a merchant that is not small.
            if out.len() >= k {
                let Some(pos) = out.iter().rposition(|o| !facts.is_small(merchant(o.item))) else { break };
                let gone = out.remove(pos);
                if let Some(c) = per_merchant.get_mut(&merchant(gone.item)) {
                    *c -= 1;
                }
            }
            *per_merchant.entry(m).or_insert(0) += 1;
            out.push(s);
            need -= 1;
        }
    }
    out
}
