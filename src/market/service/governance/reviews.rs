//! Reviews and the merchant score.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{config, line_key, record, won};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::Actor;
use crate::market::governance::Transition;
use crate::market::governance::review::{Ratings, Review, ReviewStatus, ReviewableLine, TextVerdict, submit};
use crate::market::governance::score::{
    DisputeSample, PenaltySample, ResponseSample, ReviewSample, ScoreCard, ScoreInputs, ShipmentSample, Stars, compute,
};
use crate::market::service::Market;
use crate::market::service::handles::Reviews;
use crate::market::store::StoreTx;
use crate::market::store::governance::Versioned;

/// A buyer's review of one order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRequest {
    /// The merchant order.
    pub order_id: String,
    /// The line (1-based).
    pub line_no: i64,
    /// Stars.
    pub ratings: Ratings,
    /// Text.
    #[serde(default)]
    pub text: String,
    /// Images.
    #[serde(default)]
    pub images: Vec<String>,
}

impl Reviews<'_> {
    /// The buyer reviews a received line. `verdict` is WeChat `msg_sec_check`'s suggestion for the text
    /// (the caller runs the check; [`TextVerdict::Pass`] for an empty text).
    pub async fn submit_review(&self, buyer_openid: &str, req: &ReviewRequest, verdict: TextVerdict) -> Result<Review> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let o = tx
                .order(&req.order_id)
                .await?
                .filter(|o| o.buyer_openid == buyer_openid)
                .ok_or_else(|| MarketError::NotFound { entity: "order", id: req.order_id.clone() })?;
            let lines = tx.order_lines(&o.merchant_id, &o.id).await?;
            let l = lines
                .iter()
                .find(|l| l.line_no == req.line_no)
                .ok_or_else(|| MarketError::NotFound { entity: "order line", id: line_key(&o.id, req.line_no) })?;
            let line = ReviewableLine {
                line_id: line_key(&o.id, l.line_no),
                order_id: o.id.clone(),
                buyer_id: o.buyer_openid.clone(),
                merchant_id: o.merchant_id.clone(),
                product_id: l.product_id.clone(),
                category_id: l.category_id.clone(),
                received_at: o.received_at,
            };
            let r = submit(
                new_id(),
                &line,
                buyer_openid,
                req.ratings,
                req.text.clone(),
                req.images.clone(),
                verdict,
                false,
                at,
                &cfg.review,
            )?;
            if !tx.insert_review(&r, req.line_no).await? {
                return Err(MarketError::AlreadyDone("review"));
            }
            let tr = Transition {
                from: None,
                to: r.status.to_string(),
                actor: crate::market::governance::Actor::Buyer,
                at,
                note: "submitted".into(),
            };
            record_review(&mut *tx, &r, &Actor::Buyer(buyer_openid.into()), &tr).await?;
            tx.commit().await?;
            Ok(r)
        })
        .await
    }

    /// The buyer's one follow-up.
    pub async fn follow_up_review(
        &self,
        buyer_openid: &str,
        review_id: &str,
        text: &str,
        images: Vec<String>,
        verdict: TextVerdict,
    ) -> Result<Review> {
        self.review_op(review_id, &Actor::Buyer(buyer_openid.into()), |r, cfg, at| {
            r.add_follow_up(buyer_openid, text, images.clone(), verdict, at, &cfg.review)?;
            Ok(note(r, "follow_up", at))
        })
        .await
    }

    /// The merchant's one reply.
    pub async fn reply_review(&self, merchant_id: &str, review_id: &str, text: &str) -> Result<Review> {
        self.review_op(review_id, &Actor::Merchant(merchant_id.into()), |r, _, at| {
            r.add_reply(merchant_id, text, at)?;
            Ok(note(r, "replied", at))
        })
        .await
    }

    /// The platform moderates a review.
    pub async fn moderate_review(&self, review_id: &str, to: ReviewStatus, why: &str) -> Result<Review> {
        self.review_op(review_id, &Actor::Platform, |r, _, at| r.moderate(to, why, at)).await
    }

    /// The author appeals a hidden or rejected review.
    pub async fn appeal_review(&self, buyer_openid: &str, review_id: &str, reason: &str) -> Result<Review> {
        self.review_op(review_id, &Actor::Buyer(buyer_openid.into()), |r, _, at| {
            r.appeal(buyer_openid, reason, at)?;
            Ok(note(r, "appealed", at))
        })
        .await
    }

    /// The platform decides a review appeal (restore publishes it again; deny is final).
    pub async fn decide_review_appeal(&self, review_id: &str, restore: bool) -> Result<Review> {
        self.review_op(review_id, &Actor::Platform, |r, _, at| {
            Ok(r.decide_appeal(restore, at)?.unwrap_or_else(|| note(r, "appeal_denied", at)))
        })
        .await
    }

    /// A review.
    pub async fn review(&self, review_id: &str) -> Result<Review> {
        let v = self.read().await?.review(review_id).await?;
        Ok(v.ok_or_else(|| MarketError::NotFound { entity: "review", id: review_id.into() })?.value)
    }

    /// A merchant's reviews, newest first (published only unless `all`).
    pub async fn merchant_reviews(&self, merchant_id: &str, all: bool, limit: i64) -> Result<Vec<Review>> {
        let list = self
            .read()
            .await?
            .reviews_of_merchant(merchant_id, DateTime::<Utc>::UNIX_EPOCH, limit.clamp(1, 500))
            .await?;
        Ok(list.into_iter().filter(|r| all || r.status == ReviewStatus::Published).collect())
    }

    /// The merchant score now, with its components.
    pub async fn merchant_score(&self, merchant_id: &str) -> Result<ScoreCard> {
        let now = self.now();
        let mut tx = self.read().await?;
        let cfg = config(&mut *tx).await?;
        let inputs = score_inputs(&mut *tx, merchant_id, now, cfg.score.window_days).await?;
        Ok(compute(merchant_id, &inputs, now, &cfg.score))
    }
}

impl Market {
    async fn review_op(
        &self,
        review_id: &str,
        actor: &Actor,
        op: impl Fn(&mut Review, &crate::market::governance::GovernanceConfig, DateTime<Utc>) -> Result<Transition>,
    ) -> Result<Review> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let mut v: Versioned<Review> = tx
                .review(review_id)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "review", id: review_id.into() })?;
            let tr = op(&mut v.value, &cfg, at)?;
            won(tx.update_review(&v.value, v.version).await?, "review")?;
            record_review(&mut *tx, &v.value, actor, &tr).await?;
            tx.commit().await?;
            Ok(v.value)
        })
        .await
    }
}

fn note(r: &Review, what: &str, at: DateTime<Utc>) -> Transition {
    Transition {
        from: Some(r.status.to_string()),
        to: r.status.to_string(),
        actor: crate::market::governance::Actor::Platform,
        at,
        note: what.into(),
    }
}

async fn record_review(tx: &mut dyn StoreTx, r: &Review, actor: &Actor, tr: &Transition) -> Result<()> {
    record(
        tx,
        "review",
        &r.id,
        &r.merchant_id,
        actor,
        tr,
        &format!("review.{}", tr.note),
        json!({ "review_id": r.id, "order_id": r.order_id, "line_id": r.line_id, "status": r.status,
                "ratings": r.ratings, "bad": r.ratings.item <= 2 || r.ratings.service <= 2 }),
    )
    .await
}

/// Gathers what the score reads for one merchant: the window's reviews (unpublished, refunded and
/// flagged orders excluded), shipments, after-sale answers, disputes, orders and penalties, and the
/// mean of its categories as the prior.
pub(super) async fn score_inputs(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    now: DateTime<Utc>,
    window_days: i64,
) -> Result<ScoreInputs> {
    let since = now - Duration::days(window_days);
    let flagged: BTreeSet<String> = tx.flagged_orders(merchant_id).await?.into_iter().collect();
    let refunded: BTreeSet<String> = tx
        .settlements_of(merchant_id, 100_000)
        .await?
        .into_iter()
        .filter(|s| s.lines.iter().any(|l| l.refunded.is_positive() || l.compensated.is_positive()))
        .map(|s| s.order_id)
        .collect();
    let reviews = tx
        .reviews_of_merchant(merchant_id, since, 100_000)
        .await?
        .into_iter()
        .map(|r| ReviewSample {
            at: r.created_at,
            ratings: r.ratings,
            excluded: !r.counts_for_score() || flagged.contains(&r.order_id) || refunded.contains(&r.order_id),
        })
        .collect();
    let shipments = tx
        .ship_facts(merchant_id, since)
        .await?
        .into_iter()
        .map(|(deadline, shipped_at)| ShipmentSample { deadline, shipped_at })
        .collect();
    let responses = tx
        .cases_of_merchant(merchant_id, since, 100_000)
        .await?
        .into_iter()
        .map(|c| ResponseSample { opened_at: c.opened_at, responded_at: c.merchant_responded_at })
        .collect();
    let disputes = tx
        .disputes_of_merchant(merchant_id, since - Duration::days(window_days), 100_000)
        .await?
        .into_iter()
        .filter_map(|d| d.decided_at.map(|at| DisputeSample { decided_at: at, merchant_lost: d.merchant_lost() }))
        .collect();
    let penalties = tx
        .penalties_of_merchant(merchant_id, since - Duration::days(1), 100_000)
        .await?
        .into_iter()
        .filter_map(|p| {
            p.confirmed_at.map(|at| PenaltySample { at, minus_score: p.minus_score, counts: p.status.counts() })
        })
        .collect();
    let orders = tx.paid_orders_since(merchant_id, since).await?;
    let cats = tx.merchant_categories(merchant_id).await?;
    let (n, item, logistics, service) = tx.category_stars(&cats, since).await?;
    let prior = if n == 0 {
        Stars::default()
    } else {
        let mean = |sum: i64| crate::market::governance::div_round(sum as i128 * 1000, n as i128) as i64;
        Stars { item: mean(item), logistics: mean(logistics), service: mean(service) }
    };
    Ok(ScoreInputs { reviews, shipments, responses, disputes, orders, penalties, prior })
}
