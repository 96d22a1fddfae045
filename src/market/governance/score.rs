//! The merchant score (商户评分): a deterministic projection over a rolling window.
//!
//! Everything is integer arithmetic with half-up rounding, so the same inputs give the same score on
//! every machine and every recomputation. The score is out of 100.00, kept as hundredths (0–10 000):
//!
//! - **ratings**: the published reviews of the window, refunded and flagged orders excluded, per
//!   dimension smoothed towards the category mean: `(C·prior + Σ stars) / (C + n)` (Bayesian average
//!   with `C` pseudo-reviews), then weighted item 50 % / logistics 20 % / service 30 % and mapped from
//!   1–5 stars onto 0–100;
//! - **on-time shipping**: shipments whose deadline fell in the window, shipped by the deadline;
//! - **after-sale response**: full marks within the target, falling linearly to zero at the limit
//!   (WeChat's 48 h), zero when the merchant never answered;
//! - **disputes**: 100 minus `factor ×` the lost-dispute rate over the window's orders;
//! - minus the `minus_score` of every penalty of the window that still counts (an upheld appeal
//!   stops it counting, which restores the score exactly).
//!
//! ```
//! use wxshop::market::governance::score::{ScoreInputs, ScorePolicy, Stars, compute};
//! let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let inputs = ScoreInputs { prior: Stars { item: 4_500, logistics: 4_500, service: 4_500 }, ..ScoreInputs::default() };
//! let card = compute("m1", &inputs, now, &ScorePolicy::default());
//! // No reviews yet: the category mean (4.5★ = 87.50) for ratings, full marks elsewhere.
//! assert_eq!(card.components.ratings, 8_750);
//! assert_eq!(card.score, 9_250);
//! ```

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::div_round;
use super::review::Ratings;

/// Full marks: 100.00.
pub const FULL: i64 = 10_000;

/// Weights and limits of the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScorePolicy {
    /// The rolling window, in days.
    pub window_days: i64,
    /// Pseudo-reviews at the category mean (Bayesian smoothing strength).
    pub prior_weight: i64,
    /// Dimension weights in basis points (item, logistics, service; sum 10 000).
    pub dimension_bps: [i64; 3],
    /// Component weights in basis points (ratings, on-time, response, disputes; sum 10 000).
    pub component_bps: [i64; 4],
    /// Minutes within which an after-sale answer earns full marks.
    pub response_target_minutes: i64,
    /// Minutes at which an answer earns nothing (the auto-approval deadline).
    pub response_limit_minutes: i64,
    /// Basis points of score lost per basis point of lost-dispute rate.
    pub dispute_factor: i64,
}

impl Default for ScorePolicy {
    fn default() -> Self {
        ScorePolicy {
            window_days: 90,
            prior_weight: 5,
            dimension_bps: [5_000, 2_000, 3_000],
            component_bps: [6_000, 1_500, 1_500, 1_000],
            response_target_minutes: 24 * 60,
            response_limit_minutes: 48 * 60,
            dispute_factor: 10,
        }
    }
}

/// Star averages in thousandths of a star (1 000–5 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stars {
    /// Item.
    pub item: i64,
    /// Logistics.
    pub logistics: i64,
    /// Service.
    pub service: i64,
}

impl Default for Stars {
    /// 4.5 stars: the prior when a category has no reviews yet.
    fn default() -> Self {
        Stars { item: 4_500, logistics: 4_500, service: 4_500 }
    }
}

/// One review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSample {
    /// Written.
    pub at: DateTime<Utc>,
    /// Stars.
    pub ratings: Ratings,
    /// Left out: the review is not published, or its order was refunded or flagged.
    pub excluded: bool,
}

/// One shipment obligation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentSample {
    /// The shipping deadline (paid + SLA).
    pub deadline: DateTime<Utc>,
    /// When it shipped.
    pub shipped_at: Option<DateTime<Utc>>,
}

/// One after-sale case the merchant had to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseSample {
    /// Opened.
    pub opened_at: DateTime<Utc>,
    /// Answered by the merchant (`None`: not answered, possibly auto-approved).
    pub responded_at: Option<DateTime<Utc>>,
}

/// One decided dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeSample {
    /// Decided.
    pub decided_at: DateTime<Utc>,
    /// Against the merchant.
    pub merchant_lost: bool,
}

/// One penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltySample {
    /// Confirmed.
    pub at: DateTime<Utc>,
    /// Points of the 100-point score it takes (WeChat's `minusScore`).
    pub minus_score: i64,
    /// Still counts (false once an appeal is upheld or it was dismissed).
    pub counts: bool,
}

/// Everything the score reads (the store gathers it for one merchant).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreInputs {
    /// Reviews.
    pub reviews: Vec<ReviewSample>,
    /// Shipments.
    pub shipments: Vec<ShipmentSample>,
    /// After-sale answers.
    pub responses: Vec<ResponseSample>,
    /// Disputes.
    pub disputes: Vec<DisputeSample>,
    /// Orders paid in the window (the dispute rate's denominator).
    pub orders: i64,
    /// Penalties.
    pub penalties: Vec<PenaltySample>,
    /// The category mean the ratings are smoothed towards.
    pub prior: Stars,
}

/// The components, each 0–10 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Components {
    /// Smoothed, weighted stars.
    pub ratings: i64,
    /// On-time shipping rate.
    pub on_time: i64,
    /// After-sale response.
    pub response: i64,
    /// Disputes.
    pub disputes: i64,
}

/// How many samples each component saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples {
    /// Reviews counted.
    pub reviews: i64,
    /// Shipments counted (on time / all).
    pub shipments: i64,
    /// Of which on time.
    pub shipped_on_time: i64,
    /// After-sale cases counted.
    pub responses: i64,
    /// Disputes lost.
    pub disputes_lost: i64,
    /// Orders.
    pub orders: i64,
    /// Penalties counted.
    pub penalties: i64,
}

/// A computed score with everything that went into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreCard {
    /// The merchant.
    pub merchant_id: String,
    /// The score, hundredths of a point out of 100 (0–10 000).
    pub score: i64,
    /// Before penalties.
    pub base: i64,
    /// Taken by penalties (hundredths).
    pub penalty_deduction: i64,
    /// The components.
    pub components: Components,
    /// Smoothed stars per dimension.
    pub stars: Stars,
    /// Sample sizes.
    pub samples: Samples,
    /// Window start (exclusive).
    pub window_from: DateTime<Utc>,
    /// Window end and computation time (inclusive).
    pub computed_at: DateTime<Utc>,
}

fn smooth(sum_milli: i128, n: i128, prior: i64, c: i128) -> i64 {
    if n + c == 0 {
        return prior;
    }
    div_round(c * prior as i128 + sum_milli, c + n) as i64
}

/// Computes the score of `merchant_id` at `now`.
pub fn compute(merchant_id: &str, inputs: &ScoreInputs, now: DateTime<Utc>, policy: &ScorePolicy) -> ScoreCard {
    let from = now - Duration::days(policy.window_days);
    let in_window = |t: DateTime<Utc>| t > from && t <= now;
    let c = policy.prior_weight.max(0) as i128;

    // Ratings.
    let counted: Vec<&ReviewSample> = inputs.reviews.iter().filter(|r| !r.excluded && in_window(r.at)).collect();
    let n = counted.len() as i128;
    let sum = |f: fn(&Ratings) -> u8| counted.iter().map(|r| f(&r.ratings) as i128 * 1000).sum::<i128>();
    let stars = Stars {
        item: smooth(sum(|r| r.item), n, inputs.prior.item, c),
        logistics: smooth(sum(|r| r.logistics), n, inputs.prior.logistics, c),
        service: smooth(sum(|r| r.service), n, inputs.prior.service, c),
    };
    let to_points = |milli: i64| -> i128 { ((milli.clamp(1_000, 5_000) - 1_000) as i128 * FULL as i128) / 4_000 };
    let [wi, wl, ws] = policy.dimension_bps;
    let ratings = div_round(
        to_points(stars.item) * wi as i128
            + to_points(stars.logistics) * wl as i128
            + to_points(stars.service) * ws as i128,
        (wi + wl + ws).max(1) as i128,
    ) as i64;

    // On-time shipping: obligations due in the window (or already shipped).
    let mut shipments = 0i64;
    let mut on_time = 0i64;
    for s in &inputs.shipments {
        // Count obligations due in the window, and early shipments of ones due later.
        let due_in_window = in_window(s.deadline);
        let shipped_early = s.deadline > now && s.shipped_at.is_some_and(|t| t > from && t <= now);
        if !due_in_window && !shipped_early {
            continue;
        }
        match s.shipped_at {
            Some(t) if t <= s.deadline => {
                shipments += 1;
                on_time += 1;
            }
            Some(_) => shipments += 1,
            None if s.deadline <= now => shipments += 1,
            None => {}
        }
    }
    let on_time_c =
        if shipments == 0 { FULL } else { div_round(on_time as i128 * FULL as i128, shipments as i128) as i64 };

    // After-sale response.
    let (target, limit) =
        (policy.response_target_minutes, policy.response_limit_minutes.max(policy.response_target_minutes + 1));
    let mut responses = 0i64;
    let mut response_sum: i128 = 0;
    for r in inputs.responses.iter().filter(|r| in_window(r.opened_at)) {
        let minutes = match r.responded_at {
            Some(t) => (t - r.opened_at).num_minutes(),
            None if r.opened_at + Duration::minutes(limit) <= now => limit,
            None => continue,
        };
        responses += 1;
        response_sum += if minutes <= target {
            FULL as i128
        } else if minutes >= limit {
            0
        } else {
            div_round((limit - minutes) as i128 * FULL as i128, (limit - target) as i128)
        };
    }
    let response_c = if responses == 0 { FULL } else { div_round(response_sum, responses as i128) as i64 };

    // Disputes.
    let lost = inputs.disputes.iter().filter(|d| d.merchant_lost && in_window(d.decided_at)).count() as i64;
    let orders = inputs.orders.max(lost).max(1);
    let rate_bps = div_round(lost as i128 * 10_000, orders as i128) as i64;
    let disputes_c = (FULL - rate_bps.saturating_mul(policy.dispute_factor)).max(0);

    let components = Components { ratings, on_time: on_time_c, response: response_c, disputes: disputes_c };
    let [a, b, cc, d] = policy.component_bps;
    let base = div_round(
        ratings as i128 * a as i128
            + on_time_c as i128 * b as i128
            + response_c as i128 * cc as i128
            + disputes_c as i128 * d as i128,
        (a + b + cc + d).max(1) as i128,
    ) as i64;

    let counted_penalties: Vec<&PenaltySample> =
        inputs.penalties.iter().filter(|p| p.counts && in_window(p.at)).collect();
    let penalty_deduction =
        counted_penalties.iter().map(|p| p.minus_score.max(0).saturating_mul(100)).fold(0i64, i64::saturating_add);
    let score = base.saturating_sub(penalty_deduction).clamp(0, FULL);

    ScoreCard {
        merchant_id: merchant_id.to_string(),
        score,
        base,
        penalty_deduction,
        components,
        stars,
        samples: Samples {
            reviews: n as i64,
            shipments,
            shipped_on_time: on_time,
            responses,
            disputes_lost: lost,
            orders: inputs.orders,
            penalties: counted_penalties.len() as i64,
        },
        window_from: from,
        computed_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn review(days_ago: i64, i: u8, l: u8, s: u8, excluded: bool) -> ReviewSample {
        ReviewSample { at: now() - Duration::days(days_ago), ratings: Ratings::new(i, l, s).unwrap(), excluded }
    }

    #[test]
    fn smoothing_pulls_few_reviews_towards_the_category_mean() {
        let p = ScorePolicy::default();
        let inputs = ScoreInputs {
            reviews: vec![review(1, 1, 1, 1, false)],
            prior: Stars { item: 4_000, logistics: 4_000, service: 4_000 },
            ..ScoreInputs::default()
        };
        let card = compute("m1", &inputs, now(), &p);
        // (5·4000 + 1000) / 6 = 3500 exactly.
        assert_eq!(card.stars, Stars { item: 3_500, logistics: 3_500, service: 3_500 });
        // 3.5★ → (3500−1000)·10000/4000 = 6250.
        assert_eq!(card.components.ratings, 6_250);
        // 0.6·6250 + 0.15·10000 + 0.15·10000 + 0.1·10000 = 7750.
        assert_eq!(card.score, 7_750);
        assert_eq!(card.samples.reviews, 1);
    }

    #[test]
    fn excluded_and_out_of_window_reviews_do_not_count() {
        let p = ScorePolicy::default();
        let base = ScoreInputs { prior: Stars::default(), ..ScoreInputs::default() };
        let with = ScoreInputs {
            reviews: vec![review(1, 1, 1, 1, true), review(90, 1, 1, 1, false), review(91, 1, 1, 1, false)],
            ..base.clone()
        };
        assert_eq!(compute("m", &with, now(), &p).score, compute("m", &base, now(), &p).score);
        // Exactly 90 days ago is outside the (now − 90 d, now] window.
        assert_eq!(compute("m", &with, now(), &p).samples.reviews, 0);
        let in_window = ScoreInputs { reviews: vec![review(89, 1, 1, 1, false)], ..base };
        assert_eq!(compute("m", &in_window, now(), &p).samples.reviews, 1);
    }

    #[test]
    fn dimension_weights_are_fifty_twenty_thirty() {
        let p = ScorePolicy { prior_weight: 0, ..ScorePolicy::default() };
        let inputs = ScoreInputs { reviews: vec![review(1, 5, 1, 3, false)], ..ScoreInputs::default() };
        let card = compute("m", &inputs, now(), &p);
        // item 10000·0.5 + logistics 0·0.2 + service 5000·0.3 = 6500.
        assert_eq!(card.components.ratings, 6_500);
    }

    #[test]
    fn objective_metrics_mix_in() {
        let p = ScorePolicy::default();
        let d = |h: i64| now() - Duration::days(10) + Duration::hours(h);
        let inputs = ScoreInputs {
            shipments: vec![
                ShipmentSample { deadline: d(0), shipped_at: Some(d(-1)) },
                ShipmentSample { deadline: d(0), shipped_at: Some(d(0)) },
                ShipmentSample { deadline: d(0), shipped_at: Some(d(1)) },
                ShipmentSample { deadline: d(0), shipped_at: None },
                // Not due yet and not shipped: not counted.
                ShipmentSample { deadline: now() + Duration::hours(5), shipped_at: None },
            ],
            responses: vec![
                ResponseSample { opened_at: d(0), responded_at: Some(d(24)) },
                ResponseSample { opened_at: d(0), responded_at: Some(d(36)) },
                ResponseSample { opened_at: d(0), responded_at: None },
                // Opened an hour ago, unanswered: not counted yet.
                ResponseSample { opened_at: now() - Duration::hours(1), responded_at: None },
            ],
            disputes: vec![
                DisputeSample { decided_at: d(0), merchant_lost: true },
                DisputeSample { decided_at: d(0), merchant_lost: false },
            ],
            orders: 200,
            prior: Stars::default(),
            ..ScoreInputs::default()
        };
        let card = compute("m", &inputs, now(), &p);
        assert_eq!(card.components.on_time, 5_000);
        assert_eq!((card.samples.shipments, card.samples.shipped_on_time), (4, 2));
        // (10000 + 5000 + 0) / 3 = 5000.
        assert_eq!(card.components.response, 5_000);
        assert_eq!(card.samples.responses, 3);
        // 1 lost of 200 = 50 bps → 10000 − 500 = 9500.
        assert_eq!(card.components.disputes, 9_500);
        // 0.6·8750 + 0.15·5000 + 0.15·5000 + 0.1·9500 = 5250 + 750 + 750 + 950 = 7700.
        assert_eq!(card.score, 7_700);
    }

    #[test]
    fn penalties_subtract_and_stop_when_they_no_longer_count() {
        let p = ScorePolicy::default();
        let mut inputs = ScoreInputs {
            penalties: vec![PenaltySample { at: now() - Duration::days(3), minus_score: 2, counts: true }],
            ..ScoreInputs::default()
        };
        let before = compute("m", &inputs, now(), &p);
        assert_eq!((before.base, before.penalty_deduction, before.score), (9_250, 200, 9_050));
        inputs.penalties[0].counts = false;
        assert_eq!(compute("m", &inputs, now(), &p).score, 9_250);
    }

    proptest! {
        #[test]
        fn score_is_deterministic_bounded_and_order_independent(
            rs in prop::collection::vec((1u8..=5, 1u8..=5, 1u8..=5, 0i64..120, any::<bool>()), 0..40),
            pens in prop::collection::vec((0i64..20, 0i64..100), 0..5),
        ) {
            let p = ScorePolicy::default();
            let mut inputs = ScoreInputs {
                reviews: rs.iter().map(|&(i, l, s, d, x)| review(d, i, l, s, x)).collect(),
                penalties: pens.iter().map(|&(m, d)| PenaltySample { at: now() - Duration::days(d), minus_score: m, counts: true }).collect(),
                orders: 10,
                prior: Stars::default(),
                ..ScoreInputs::default()
            };
            let a = compute("m", &inputs, now(), &p);
            inputs.reviews.reverse();
            inputs.penalties.reverse();
            let b = compute("m", &inputs, now(), &p);
            prop_assert_eq!(&a, &b);
            prop_assert!((0..=FULL).contains(&a.score));
            prop_assert!((1_000..=5_000).contains(&a.stars.item));
        }
    }
}
