//! Most popular, time-decayed, overall and per category: the baseline every other model must beat,
//! and the fallback that fills a list when a model runs out of candidates.

use super::data::{Dataset, UNKNOWN};
use super::topk::contains;
use super::{Query, Reason, Recommender, Scored};

/// Popularity with exponential time decay: an event counts `weight × 0.5^(age / half_life)`.
#[derive(Debug, Clone)]
pub struct Popular {
    /// The decay's half-life in seconds (default 14 days).
    pub half_life_secs: f64,
    pub(crate) score: Vec<f32>,
    /// Items by score, best first.
    pub ranked: Vec<u32>,
    /// Per category, its items by score.
    pub(crate) by_category: Vec<Vec<u32>>,
}

impl Popular {
    /// Popularity with the default 14-day half-life.
    pub fn new() -> Self {
        Popular { half_life_secs: 14.0 * 86_400.0, score: Vec::new(), ranked: Vec::new(), by_category: Vec::new() }
    }
}

impl Default for Popular {
    fn default() -> Self {
        Popular::new()
    }
}

impl Popular {
    /// Each item's decayed popularity.
    pub fn scores(&self) -> &[f32] {
        &self.score
    }

    /// The items of a category, most popular first.
    pub fn in_category(&self, category: u32) -> &[u32] {
        self.by_category.get(category as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The first `k` items by popularity that pass `keep`, walking `list` (already ranked).
    pub(crate) fn take(list: &[u32], score: &[f32], k: usize, mut keep: impl FnMut(u32) -> bool) -> Vec<(u32, f32)> {
        list.iter().copied().filter(|&i| keep(i)).take(k).map(|i| (i, score[i as usize])).collect()
    }
}

impl Recommender for Popular {
    fn name(&self) -> &'static str {
        "popular"
    }

    fn fit(&mut self, d: &Dataset) {
        let mut score = vec![0f32; d.n_items()];
        for u in 0..d.n_users() as u32 {
            for s in d.sequence(u) {
                let age = (d.now - s.ts).max(0) as f64;
                score[s.item as usize] += (s.kind.weight() as f64 * 0.5f64.powf(age / self.half_life_secs)) as f32;
            }
        }
        let mut ranked: Vec<u32> = (0..d.n_items() as u32).collect();
        ranked.sort_by(|&a, &b| score[b as usize].total_cmp(&score[a as usize]).then(a.cmp(&b)));
        let mut by_category = vec![Vec::new(); d.categories.len()];
        for &i in &ranked {
            let c = d.item_category[i as usize];
            if c != UNKNOWN {
                by_category[c as usize].push(i);
            }
        }
        self.score = score;
        self.ranked = ranked;
        self.by_category = by_category;
    }

    fn recommend(&self, d: &Dataset, q: &Query<'_>, k: usize) -> Vec<Scored> {
        // In a category context (the page's item, else the buyer's last event), that category first.
        let ctx = q.context_item.or_else(|| q.history.last().map(|s| s.item));
        let cat = ctx.map(|i| d.item_category.get(i as usize).copied().unwrap_or(UNKNOWN)).unwrap_or(UNKNOWN);
        let mut out: Vec<Scored> = Vec::with_capacity(k);
        if cat != UNKNOWN {
            for (i, s) in Popular::take(self.in_category(cat), &self.score, k, |i| !contains(q.exclude, i)) {
                out.push(Scored { item: i, score: s, reason: Reason::PopularIn { category: cat } });
            }
        }
        if out.len() < k {
            let have: Vec<u32> = out.iter().map(|s| s.item).collect();
            let rest = Popular::take(&self.ranked, &self.score, k - out.len(), |i| {
                !contains(q.exclude, i) && !have.contains(&i)
            });
            out.extend(rest.into_iter().map(|(i, s)| Scored { item: i, score: s, reason: Reason::Popular }));
        }
        out
    }
}
