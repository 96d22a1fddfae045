//! Top-k selection over dense or sparse scores.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A heap entry ordered so the heap's top is the *worst* kept entry (score, then the larger index,
/// so ties go to the smaller index and every ranking is deterministic).
#[derive(Clone, Copy, PartialEq)]
struct Worst(f32, u32);

impl Eq for Worst {}

impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// The best `k` of `(item, score)` pairs that pass `keep`, best first; ties by the smaller item.
/// Non-finite scores are dropped.
pub fn top_k(
    scores: impl IntoIterator<Item = (u32, f32)>,
    k: usize,
    mut keep: impl FnMut(u32) -> bool,
) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
    for (i, s) in scores {
        if !s.is_finite() {
            continue;
        }
        if heap.len() == k {
            let w = heap.peek().expect("k > 0");
            if s < w.0 || (s == w.0 && i > w.1) {
                continue;
            }
        }
        if !keep(i) {
            continue;
        }
        heap.push(Worst(s, i));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut out: Vec<(u32, f32)> = heap.into_iter().map(|w| (w.1, w.0)).collect();
    out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Whether `x` is in the sorted slice `set`.
pub fn contains(set: &[u32], x: u32) -> bool {
    set.binary_search(&x).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_and_breaks_ties_by_index() {
        let s = vec![(0, 1.0), (1, 3.0), (2, 3.0), (3, f32::NAN), (4, 2.0), (5, 0.5)];
        assert_eq!(top_k(s.clone(), 3, |_| true), vec![(1, 3.0), (2, 3.0), (4, 2.0)]);
        assert_eq!(top_k(s.clone(), 2, |i| i != 1), vec![(2, 3.0), (4, 2.0)]);
        assert_eq!(top_k(s, 0, |_| true), vec![]);
    }
}
