//! Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008), fitted by alternating least
//! squares with a few conjugate-gradient steps per row (Takács et al. 2011), on every core. A buyer
//! is always folded in from their history at query time, so one who arrives after the fit is served
//! the same way as one the fit saw.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::data::{Csr, Dataset};
use super::topk::{contains, top_k};
use super::{Query, Reason, Recommender, Scored};

/// The iALS model.
#[derive(Debug, Clone)]
pub struct Ials {
    /// Latent factors (default 64).
    pub factors: usize,
    /// Alternating sweeps (default 12).
    pub iterations: usize,
    /// L2 penalty (default 0.05).
    pub regularization: f32,
    /// Confidence `1 + alpha·ln(1 + w)` of an observed pair of summed event weight `w` (default 8).
    pub alpha: f32,
    /// Conjugate-gradient steps per row and sweep (default 3).
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
    pub(crate) item_f: Vec<f32>,
    pub(crate) gram: Vec<f32>,
}

impl Default for Ials {
    fn default() -> Self {
        Ials {
            factors: 64,
            iterations: 12,
            regularization: 0.05,
            alpha: 8.0,
            cg_steps: 3,
            seed: 42,
            item_f: Vec::new(),
            gram: Vec::new(),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `YᵀY` of row-major `y` (n × f).
fn gram(y: &[f32], f: usize) -> Vec<f32> {
    let mut g = vec![0f32; f * f];
    for row in y.chunks_exact(f) {
        for a in 0..f {
            let ra = row[a];
            if ra == 0.0 {
                continue;
            }
            axpy(ra, row, &mut g[a * f..(a + 1) * f]);
        }
    }
    g
}

struct Solver<'a> {
    f: usize,
    reg: f32,
    alpha: f32,
    gram: &'a [f32],
    other: &'a [f32],
}

impl Solver<'_> {
    /// A·v, A = YᵀY + λI + Σ (c−1)·y·yᵀ over the row's observed items.
    fn apply(&self, cols: &[u32], vals: &[f32], v: &[f32], out: &mut [f32]) {
        let f = self.f;
        for a in 0..f {
            out[a] = dot(&self.gram[a * f..(a + 1) * f], v) + self.reg * v[a];
        }
        for (&j, &w) in cols.iter().zip(vals) {
            let y = &self.other[j as usize * f..(j as usize + 1) * f];
            let c1 = self.alpha * (1.0 + w).ln();
            axpy(c1 * dot(y, v), y, out);
        }
    }

    /// Improves `x` towards A·x = Σ c·y by `steps` conjugate-gradient steps.
    fn solve(&self, cols: &[u32], vals: &[f32], x: &mut [f32], steps: usize) {
        let f = self.f;
        let mut r = vec![0f32; f];
        for (&j, &w) in cols.iter().zip(vals) {
            let y = &self.other[j as usize * f..(j as usize + 1) * f];
            axpy(1.0 + self.alpha * (1.0 + w).ln(), y, &mut r);
        }
        let mut ax = vec![0f32; f];
        self.apply(cols, vals, x, &mut ax);
        for a in 0..f {
            r[a] -= ax[a];
        }
        let mut p = r.clone();
        let mut rs = dot(&r, &r);
        for _ in 0..steps {
            if rs < 1e-12 {
                break;
            }
            self.apply(cols, vals, &p, &mut ax);
            let pap = dot(&p, &ax);
            if pap <= 0.0 {
                break;
            }
            let a = rs / pap;
            axpy(a, &p, x);
            axpy(-a, &ax, &mut r);
            let rs2 = dot(&r, &r);
            for i in 0..f {
                p[i] = r[i] + rs2 / rs * p[i];
            }
            rs = rs2;
        }
    }
}

/// Updates every row of `x` (rows of `m`) given the other side's factors, on every core.
fn sweep(m: &Csr, x: &mut [f32], other: &[f32], model: &Ials) {
    let f = model.factors;
    let g = gram(other, f);
    let s = Solver { f, reg: model.regularization, alpha: model.alpha, gram: &g, other };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1);
    let rows = m.rows();
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (t, chunk) in x.chunks_mut(per * f).enumerate() {
            let s = &s;
            scope.spawn(move || {
                for (k, row) in chunk.chunks_exact_mut(f).enumerate() {
                    let (cols, vals) = m.row(t * per + k);
                    s.solve(cols, vals, row, model.cg_steps);
                }
            });
        }
    });
}

impl Ials {
    /// The buyer's factors folded in from their history (items and summed weights).
    pub fn fold_in(&self, items: &[u32], weights: &[f32]) -> Vec<f32> {
        let f = self.factors;
        let s = Solver { f, reg: self.regularization, alpha: self.alpha, gram: &self.gram, other: &self.item_f };
        let mut x = vec![0f32; f];
        s.solve(items, weights, &mut x, f.min(16));
        x
    }
}

impl Recommender for Ials {
    fn name(&self) -> &'static str {
        "ials"
    }

    fn fit(&mut self, d: &Dataset) {
        let f = self.factors;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let scale = 0.1 / (f as f32).sqrt();
        let mut users: Vec<f32> = (0..d.n_users() * f).map(|_| rng.random_range(-scale..scale)).collect();
        let mut items: Vec<f32> = (0..d.n_items() * f).map(|_| rng.random_range(-scale..scale)).collect();
        for _ in 0..self.iterations {
            sweep(&d.user_items, &mut users, &items, self);
            sweep(&d.item_users, &mut items, &users, self);
        }
        self.gram = gram(&items, f);
        self.item_f = items;
    }

    fn recommend(&self, _d: &Dataset, q: &Query<'_>, k: usize) -> Vec<Scored> {
        let f = self.factors;
        let n = self.item_f.len() / f.max(1);
        let mut agg: Vec<(u32, f32)> = Vec::with_capacity(q.history.len() + 1);
        for s in q.history {
            if (s.item as usize) < n {
                match agg.iter_mut().find(|e| e.0 == s.item) {
                    Some(e) => e.1 += s.kind.weight(),
                    None => agg.push((s.item, s.kind.weight())),
                }
            }
        }
        if let Some(c) = q.context_item.filter(|&c| (c as usize) < n) {
            agg.push((c, 1.0));
        }
        if agg.is_empty() {
            return Vec::new();
        }
        agg.sort_unstable_by_key(|e| e.0);
        let (items, weights): (Vec<u32>, Vec<f32>) = agg.into_iter().unzip();
        let x = self.fold_in(&items, &weights);
        let scores = self.item_f.chunks_exact(f).enumerate().map(|(i, y)| (i as u32, dot(y, &x)));
        top_k(scores, k, |i| !contains(q.exclude, i))
            .into_iter()
            .map(|(i, s)| Scored { item: i, score: s, reason: Reason::ForYou })
            .collect()
    }
}
