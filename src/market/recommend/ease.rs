//! EASE (Steck, 2019): the closed-form item-item model `B = I − P·diag(1/diag P)`, `P = (XᵀX + λI)⁻¹`.
//! One dense inverse of an items × items matrix, so it is fitted on the most popular `max_items`
//! items only (default 4 000: 64 MB of weights, about a second on 2 cores); the rest fall back to the
//! other models.

use faer::Mat;
use faer::linalg::solvers::DenseSolveCore;

use super::data::Dataset;
use super::topk::{contains, top_k};
use super::{Query, Reason, Recommender, Scored};

/// The EASE model.
#[derive(Debug, Clone)]
pub struct Ease {
    /// The L2 penalty λ; `None` picks it from the data (half the mean diagonal of XᵀX, at least 1).
    pub lambda: Option<f64>,
    /// The most items it is fitted on.
    pub max_items: usize,
    /// The fitted items (dataset indexes), and each one's row in `b`.
    pub(crate) items: Vec<u32>,
    pub(crate) slot: Vec<u32>,
    pub(crate) b: Vec<f32>,
}

impl Default for Ease {
    fn default() -> Self {
        Ease { lambda: None, max_items: 4_000, items: Vec::new(), slot: Vec::new(), b: Vec::new() }
    }
}

const NONE: u32 = u32::MAX;

impl Recommender for Ease {
    fn name(&self) -> &'static str {
        "ease"
    }

    fn fit(&mut self, d: &Dataset) {
        // The items with the most buyers.
        let mut by_users: Vec<u32> =
            (0..d.n_items() as u32).filter(|&i| !d.item_users.row(i as usize).0.is_empty()).collect();
        by_users.sort_by(|&a, &b| {
            d.item_users.row(b as usize).0.len().cmp(&d.item_users.row(a as usize).0.len()).then(a.cmp(&b))
        });
        by_users.truncate(self.max_items);
        by_users.sort_unstable();
        let n = by_users.len();
        let mut slot = vec![NONE; d.n_items()];
        for (s, &i) in by_users.iter().enumerate() {
            slot[i as usize] = s as u32;
        }
        // G = XᵀX over binary interactions.
        let mut g = Mat::<f64>::zeros(n, n);
        let mut row: Vec<usize> = Vec::new();
        for u in 0..d.n_users() {
            row.clear();
            row.extend(d.user_items.row(u).0.iter().filter_map(|&i| match slot[i as usize] {
                NONE => None,
                s => Some(s as usize),
            }));
            for &a in &row {
                for &b in &row {
                    g[(a, b)] += 1.0;
                }
            }
        }
        let mean_diag = if n == 0 { 0.0 } else { (0..n).map(|i| g[(i, i)]).sum::<f64>() / n as f64 };
        let lambda = self.lambda.unwrap_or((mean_diag * 0.5).max(1.0));
        for i in 0..n {
            g[(i, i)] += lambda;
        }
        let mut b = vec![0f32; n * n];
        if n > 0 {
            // G + λI is symmetric positive definite, so Cholesky cannot fail; guard anyway.
            let p = match g.llt(faer::Side::Lower) {
                Ok(llt) => llt.inverse(),
                Err(_) => Mat::<f64>::zeros(n, n),
            };
            for r in 0..n {
                for c in 0..n {
                    if r != c && p[(c, c)] != 0.0 {
                        b[r * n + c] = (-p[(r, c)] / p[(c, c)]) as f32;
                    }
                }
            }
        }
        self.items = by_users;
        self.slot = slot;
        self.b = b;
    }

    fn recommend(&self, _d: &Dataset, q: &Query<'_>, k: usize) -> Vec<Scored> {
        let n = self.items.len();
        let mut score = vec![0f32; n];
        let mut hist: Vec<u32> = q.history.iter().map(|s| s.item).chain(q.context_item).collect();
        hist.sort_unstable();
        hist.dedup();
        let mut any = false;
        for &h in &hist {
            let Some(&s) = self.slot.get(h as usize) else { continue };
            if s == NONE {
                continue;
            }
            any = true;
            let row = &self.b[s as usize * n..(s as usize + 1) * n];
            for (x, &w) in score.iter_mut().zip(row) {
                *x += w;
            }
        }
        if !any {
            return Vec::new();
        }
        let items = &self.items;
        top_k(score.iter().enumerate().map(|(s, &x)| (items[s], x)), k, |i| !contains(q.exclude, i))
            .into_iter()
            .filter(|&(_, s)| s > 0.0)
            .map(|(i, s)| Scored { item: i, score: s, reason: Reason::ForYou })
            .collect()
    }
}
