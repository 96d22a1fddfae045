//! Item-to-item co-visitation: two items one buyer touched close together in time are related,
//! weighted by what the buyer did and how recently. Updated incrementally as events arrive; each
//! item keeps its strongest neighbours only, so memory stays bounded.

use std::collections::HashMap;

use super::data::{Dataset, Step};
use super::topk::{contains, top_k};
use super::{EventKind, Query, Reason, Recommender, Scored};

/// Co-visitation counts with bounded neighbour lists.
#[derive(Debug, Clone)]
pub struct CoVisit {
    /// Two events further apart than this are not paired (default 1 day).
    pub window_secs: i64,
    /// At most this many earlier events of the buyer pair with a new one (default 10).
    pub span: usize,
    /// Neighbours kept per item (default 100).
    pub neighbours: usize,
    /// Only pair events of these kinds (`None`: all). Purchases only gives "bought together".
    pub kinds: Option<&'static [EventKind]>,
    /// The decay's half-life in seconds (default 30 days).
    pub half_life_secs: f64,
    pub(crate) nb: Vec<Vec<(u32, f32)>>,
    pub(crate) norm: Vec<f32>,
    now: i64,
}

impl Default for CoVisit {
    fn default() -> Self {
        CoVisit {
            window_secs: 86_400,
            span: 10,
            neighbours: 100,
            kinds: None,
            half_life_secs: 30.0 * 86_400.0,
            nb: Vec::new(),
            norm: Vec::new(),
            now: 0,
        }
    }
}

impl CoVisit {
    /// Pairs only purchases, within 30 days: "bought together".
    pub fn bought_together() -> Self {
        CoVisit { kinds: Some(&[EventKind::Buy]), window_secs: 30 * 86_400, ..CoVisit::default() }
    }

    fn wants(&self, k: EventKind) -> bool {
        self.kinds.is_none_or(|ks| ks.contains(&k))
    }

    fn ensure(&mut self, n: usize) {
        if self.nb.len() < n {
            self.nb.resize_with(n, Vec::new);
            self.norm.resize(n, 0.0);
        }
    }

    fn add(&mut self, a: u32, b: u32, w: f32) {
        let cap = self.neighbours;
        let list = &mut self.nb[a as usize];
        if let Some(e) = list.iter_mut().find(|e| e.0 == b) {
            e.1 += w;
        } else {
            list.push((b, w));
            // Amortised pruning: let the list grow to twice its cap, then keep the strongest.
            if list.len() > 2 * cap {
                list.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                list.truncate(cap);
            }
        }
    }

    /// Records one new event, pairing it with the buyer's `recent` events (oldest first, the new one
    /// not among them). `n_items` bounds the item indexes seen so far.
    pub fn observe(&mut self, recent: &[Step], new: Step, n_items: usize) {
        self.ensure(n_items.max(new.item as usize + 1));
        self.now = self.now.max(new.ts);
        if !self.wants(new.kind) {
            return;
        }
        self.norm[new.item as usize] += new.kind.weight();
        let decay = (0.5f64.powf((self.now - new.ts).max(0) as f64 / self.half_life_secs)) as f32;
        let mut paired = 0;
        for (gap, s) in recent.iter().rev().enumerate() {
            if paired == self.span || new.ts - s.ts > self.window_secs {
                break;
            }
            if s.item == new.item || !self.wants(s.kind) {
                continue;
            }
            paired += 1;
            let w = decay * (s.kind.weight() * new.kind.weight()).sqrt() / (1.0 + gap as f32 * 0.25);
            self.add(s.item, new.item, w);
            self.add(new.item, s.item, w);
        }
    }

    /// The neighbours of `item`, strongest first, normalised like a cosine.
    pub fn related(&self, item: u32, k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
        let Some(list) = self.nb.get(item as usize) else { return Vec::new() };
        let ni = self.norm[item as usize].max(1.0);
        top_k(list.iter().map(|&(j, w)| (j, w / (ni * self.norm[j as usize].max(1.0)).sqrt())), k, |j| {
            j != item && !contains(exclude, j)
        })
    }
}

impl Recommender for CoVisit {
    fn name(&self) -> &'static str {
        "covisit"
    }

    fn fit(&mut self, d: &Dataset) {
        // Keep the settings, forget what was learnt.
        self.nb.clear();
        self.norm.clear();
        self.now = d.now;
        self.ensure(d.n_items());
        for u in 0..d.n_users() as u32 {
            let seq = d.sequence(u);
            for i in 0..seq.len() {
                let from = i.saturating_sub(self.span * 3);
                self.observe(&seq[from..i], seq[i], d.n_items());
            }
        }
    }

    fn recommend(&self, _d: &Dataset, q: &Query<'_>, k: usize) -> Vec<Scored> {
        // The last 20 distinct items of the history, the newest weighing most.
        let mut seen: Vec<u32> = Vec::new();
        let mut acc: HashMap<u32, (f32, u32, f32)> = HashMap::new();
        let anchors = q.context_item.into_iter().map(|i| (i, 2.0f32));
        let hist = q.history.iter().rev().filter_map(|s| {
            if seen.contains(&s.item) || seen.len() >= 20 {
                return None;
            }
            seen.push(s.item);
            Some((s.item, s.kind.weight().sqrt() / (1.0 + seen.len() as f32 * 0.1)))
        });
        let anchors: Vec<(u32, f32)> = anchors.chain(hist).collect();
        for (h, wh) in anchors {
            for (j, s) in self.related(h, self.neighbours, q.exclude) {
                let e = acc.entry(j).or_insert((0.0, h, 0.0));
                e.0 += wh * s;
                if wh * s > e.2 {
                    e.1 = h;
                    e.2 = wh * s;
                }
            }
        }
        let best = top_k(acc.iter().map(|(&j, e)| (j, e.0)), k, |_| true);
        best.into_iter()
            .map(|(j, s)| {
                let because = acc[&j].1;
                let reason = if self.kinds.is_some() {
                    Reason::BoughtTogether { item: because }
                } else {
                    Reason::Viewed { item: because }
                };
                Scored { item: j, score: s, reason }
            })
            .collect()
    }
}
