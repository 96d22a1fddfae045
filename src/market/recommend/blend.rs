//! The blend the market serves: the models' lists fused by weighted reciprocal rank, then the
//! business rules ([`rules::apply`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::covisit::CoVisit;
use super::data::Dataset;
use super::ease::Ease;
use super::ials::Ials;
use super::popular::Popular;
use super::rules::{self, Fairness, MarketFacts};
use super::{Query, Recommender, Scored};

/// The fused recommender: popularity, co-visitation, EASE and iALS, each weighted.
#[derive(Debug, Clone)]
pub struct Blend {
    /// The baseline and fallback.
    pub popular: Arc<Popular>,
    /// Item-to-item co-visitation, shared with whoever updates it as events arrive.
    pub covisit: Arc<RwLock<CoVisit>>,
    /// EASE over the head of the catalogue.
    pub ease: Arc<Ease>,
    /// iALS over everything.
    pub ials: Arc<Ials>,
    /// Fusion weights in the order popular, co-visitation, EASE, iALS.
    pub weights: [f32; 4],
    /// How exposure is shared.
    pub fairness: Fairness,
    /// What the rules know of the market.
    pub facts: Arc<MarketFacts>,
}

/// The rank-fusion constant (Cormack et al. 2009).
const RRF_K: f32 = 60.0;

impl Default for Blend {
    fn default() -> Self {
        Blend {
            popular: Arc::default(),
            covisit: Arc::default(),
            ease: Arc::default(),
            ials: Arc::default(),
            weights: [0.3, 0.8, 1.0, 1.0],
            fairness: Fairness::default(),
            facts: Arc::default(),
        }
    }
}

impl Blend {
    /// A blend of models already fitted; its facts are derived from the data.
    pub fn of(
        d: &Dataset,
        popular: Arc<Popular>,
        covisit: Arc<RwLock<CoVisit>>,
        ease: Arc<Ease>,
        ials: Arc<Ials>,
    ) -> Blend {
        let facts = Arc::new(MarketFacts::from_data(d, popular.scores(), &popular.ranked));
        Blend { popular, covisit, ease, ials, facts, ..Blend::default() }
    }
}

impl Recommender for Blend {
    fn name(&self) -> &'static str {
        "blend"
    }

    fn fit(&mut self, d: &Dataset) {
        let mut p = Popular::default();
        p.fit(d);
        let mut c = CoVisit::default();
        c.fit(d);
        let mut e = Ease::default();
        e.fit(d);
        let mut i = Ials::default();
        i.fit(d);
        let fresh = Blend::of(d, Arc::new(p), Arc::new(RwLock::new(c)), Arc::new(e), Arc::new(i));
        *self = Blend { weights: self.weights, fairness: self.fairness, ..fresh };
    }

    fn recommend(&self, d: &Dataset, q: &Query<'_>, k: usize) -> Vec<Scored> {
        let cands = self.recommend_candidates(d, q, k);
        rules::apply(d, &self.facts, self.fairness, cands, q.exclude, k)
    }
}

impl Blend {
    /// The fused candidates for a list of `k`, best first, before the rules (deeper than `k`, so
    /// the rules have room to work).
    pub fn recommend_candidates(&self, d: &Dataset, q: &Query<'_>, k: usize) -> Vec<Scored> {
        let depth = (k * 5).max(50);
        let lists: [Vec<Scored>; 4] = [
            self.popular.recommend(d, q, depth),
            self.covisit.read().unwrap_or_else(|p| p.into_inner()).recommend(d, q, depth),
            self.ease.recommend(d, q, depth),
            self.ials.recommend(d, q, depth),
        ];
        let mut fused: HashMap<u32, (f32, usize, f32)> = HashMap::new();
        let mut reasons: HashMap<u32, Scored> = HashMap::new();
        for (m, list) in lists.iter().enumerate() {
            for (rank, s) in list.iter().enumerate() {
                let w = self.weights[m] / (RRF_K + rank as f32 + 1.0);
                let e = fused.entry(s.item).or_insert((0.0, m, 0.0));
                e.0 += w;
                // The reason comes from the model that contributed most.
                if w > e.2 {
                    e.1 = m;
                    e.2 = w;
                    reasons.insert(s.item, s.clone());
                }
            }
        }
        let mut cands: Vec<Scored> = fused
            .into_iter()
            .map(|(item, (score, _, _))| Scored { item, score, reason: reasons[&item].reason })
            .collect();
        cands.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
        cands
    }
}
