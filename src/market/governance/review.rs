//! Buyer reviews: one per buyer per order line, after receipt.
//!
//! A review rates the item, the logistics and the service from 1 to 5 stars, with text (checked with
//! WeChat's `msg_sec_check`, whose `suggest` is a [`TextVerdict`]) and images. The buyer may add one
//! follow-up (追评), the merchant may reply once, and the platform moderates:
//!
//! ```text
//! submit ─pass──▶ Published ◀──moderate──▶ Hidden / Rejected ──buyer appeal──▶ Restored (Published) | Denied
//!        ─review─▶ Pending ──moderate──▶ Published / Hidden / Rejected
//!        ─risky──▶ Rejected
//! ```
//!
//! ```
//! use wxshop::market::governance::review::{Ratings, ReviewPolicy, ReviewStatus, ReviewableLine, TextVerdict, submit};
//! let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
//! let line = ReviewableLine {
//!     line_id: "l1".into(), order_id: "o1".into(), buyer_id: "b1".into(), merchant_id: "m1".into(),
//!     product_id: "p1".into(), category_id: "c1".into(), received_at: Some(t0),
//! };
//! let r = submit("r1", &line, "b1", Ratings::new(5, 4, 5).unwrap(), "好", vec![], TextVerdict::Pass, false, t0,
//!     &ReviewPolicy::default()).unwrap();
//! assert_eq!(r.status, ReviewStatus::Published);
//! ```

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Actor, Transition};
use crate::market::error::{MarketError, Result};

/// Star ratings, each 1–5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratings {
    /// The goods (描述相符).
    pub item: u8,
    /// Delivery.
    pub logistics: u8,
    /// The merchant's service.
    pub service: u8,
}

impl Ratings {
    /// Ratings, each within 1..=5.
    pub fn new(item: u8, logistics: u8, service: u8) -> Result<Self> {
        let r = Ratings { item, logistics, service };
        r.validate()?;
        Ok(r)
    }

    /// Checks the ranges (input from the network).
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("item", self.item), ("logistics", self.logistics), ("service", self.service)] {
            if !(1..=5).contains(&v) {
                return Err(MarketError::invalid(format!("{name} rating {v} outside 1..=5")));
            }
        }
        Ok(())
    }
}

str_enum! {
    /// Moderation state of a review.
    pub enum ReviewStatus {
        /// Waiting for manual moderation (the content check said "review").
        Pending => "pending",
        /// Visible and counted in the score.
        Published => "published",
        /// Hidden by the platform (abuse, privacy); not counted.
        Hidden => "hidden",
        /// Rejected (failed the content check or moderation); not counted.
        Rejected => "rejected",
    }
}

str_enum! {
    /// WeChat `msg_sec_check` (v2) `result.suggest`.
    pub enum TextVerdict {
        /// No risk.
        Pass => "pass",
        /// Needs a human.
        Review => "review",
        /// Risky content.
        Risky => "risky",
    }
}

str_enum! {
    /// A buyer's appeal against hiding or rejection.
    pub enum AppealStatus {
        /// Waiting for the platform.
        Appealing => "appealing",
        /// The review is published again.
        Restored => "restored",
        /// The moderation stands; final.
        Denied => "denied",
    }
}

/// Review limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewPolicy {
    /// Days after receipt during which a review may be written.
    pub window_days: i64,
    /// Days after the review during which the follow-up may be written.
    pub follow_up_days: i64,
    /// Characters of text.
    pub max_text_chars: usize,
    /// Images per review or follow-up.
    pub max_images: usize,
}

impl Default for ReviewPolicy {
    fn default() -> Self {
        ReviewPolicy { window_days: 30, follow_up_days: 180, max_text_chars: 500, max_images: 9 }
    }
}

/// What a review needs to know about the order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewableLine {
    /// The line.
    pub line_id: String,
    /// Its order.
    pub order_id: String,
    /// Who bought it.
    pub buyer_id: String,
    /// Who sold it.
    pub merchant_id: String,
    /// The product.
    pub product_id: String,
    /// Its category (for the score's prior).
    pub category_id: String,
    /// When the buyer received it (or receipt was confirmed automatically).
    pub received_at: Option<DateTime<Utc>>,
}

/// The buyer's follow-up (追评).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// Text.
    pub text: String,
    /// Image URLs or media ids.
    pub images: Vec<String>,
    /// Published or Pending (a risky follow-up is refused, not stored).
    pub status: ReviewStatus,
    /// When.
    pub at: DateTime<Utc>,
}

/// The merchant's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Text.
    pub text: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The buyer's appeal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appeal {
    /// Why.
    pub reason: String,
    /// State.
    pub status: AppealStatus,
    /// Filed.
    pub at: DateTime<Utc>,
    /// Decided.
    pub decided_at: Option<DateTime<Utc>>,
}

/// A review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Id.
    pub id: String,
    /// The order line (one review per line).
    pub line_id: String,
    /// The order.
    pub order_id: String,
    /// The author.
    pub buyer_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The product.
    pub product_id: String,
    /// The category.
    pub category_id: String,
    /// Stars.
    pub ratings: Ratings,
    /// Text.
    pub text: String,
    /// Images.
    pub images: Vec<String>,
    /// Moderation state.
    pub status: ReviewStatus,
    /// The platform's note on the last moderation.
    pub moderation_note: Option<String>,
    /// The follow-up.
    pub follow_up: Option<FollowUp>,
    /// The merchant's reply.
    pub reply: Option<Reply>,
    /// The buyer's appeal.
    pub appeal: Option<Appeal>,
    /// Written.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn check_content(text: &str, images: &[String], policy: &ReviewPolicy) -> Result<()> {
    let n = text.chars().count();
    if n > policy.max_text_chars {
        return Err(MarketError::invalid(format!("text of {n} characters exceeds {}", policy.max_text_chars)));
    }
    if images.len() > policy.max_images {
        return Err(MarketError::invalid(format!("{} images exceed {}", images.len(), policy.max_images)));
    }
    if images.iter().any(|i| i.is_empty() || i.len() > 1024) {
        return Err(MarketError::invalid("empty or oversized image reference"));
    }
    Ok(())
}

/// Writes a review. `already_reviewed` says whether the line already has one (the store also enforces
/// it with a unique key).
#[allow(clippy::too_many_arguments)]
pub fn submit(
    id: impl Into<String>,
    line: &ReviewableLine,
    buyer_id: &str,
    ratings: Ratings,
    text: impl Into<String>,
    images: Vec<String>,
    verdict: TextVerdict,
    already_reviewed: bool,
    now: DateTime<Utc>,
    policy: &ReviewPolicy,
) -> Result<Review> {
    if line.buyer_id != buyer_id {
        return Err(MarketError::Forbidden(format!("line {} was not bought by this buyer", line.line_id)));
    }
    let received = line.received_at.ok_or_else(|| MarketError::NotEligible("the line has not been received".into()))?;
    let closes = received + Duration::days(policy.window_days);
    if now >= closes {
        return Err(MarketError::Window { what: "review", at: closes });
    }
    if already_reviewed {
        return Err(MarketError::AlreadyDone("review"));
    }
    ratings.validate()?;
    let text = text.into();
    check_content(&text, &images, policy)?;
    let status = match verdict {
        TextVerdict::Pass => ReviewStatus::Published,
        TextVerdict::Review => ReviewStatus::Pending,
        TextVerdict::Risky => ReviewStatus::Rejected,
    };
    Ok(Review {
        id: id.into(),
        line_id: line.line_id.clone(),
        order_id: line.order_id.clone(),
        buyer_id: buyer_id.to_string(),
        merchant_id: line.merchant_id.clone(),
        product_id: line.product_id.clone(),
        category_id: line.category_id.clone(),
        ratings,
        text,
        images,
        status,
        moderation_note: (verdict == TextVerdict::Risky).then(|| "msg_sec_check: risky".to_string()),
        follow_up: None,
        reply: None,
        appeal: None,
        created_at: now,
        updated_at: now,
    })
}

impl Review {
    /// Whether it counts in the merchant score.
    pub fn counts_for_score(&self) -> bool {
        self.status == ReviewStatus::Published
    }

    fn go(&mut self, to: ReviewStatus, actor: Actor, now: DateTime<Utc>, note: &str) -> Transition {
        let from = self.status;
        self.status = to;
        self.updated_at = now;
        Transition { from: Some(from.to_string()), to: to.to_string(), actor, at: now, note: note.into() }
    }

    /// The buyer's one follow-up, on a published review, within the follow-up window.
    pub fn add_follow_up(
        &mut self,
        buyer_id: &str,
        text: impl Into<String>,
        images: Vec<String>,
        verdict: TextVerdict,
        now: DateTime<Utc>,
        policy: &ReviewPolicy,
    ) -> Result<()> {
        if self.buyer_id != buyer_id {
            return Err(MarketError::Forbidden("only the author may follow up".into()));
        }
        if self.follow_up.is_some() {
            return Err(MarketError::AlreadyDone("follow-up"));
        }
        if self.status != ReviewStatus::Published {
            return Err(MarketError::NotEligible(format!("the review is {}", self.status)));
        }
        let closes = self.created_at + Duration::days(policy.follow_up_days);
        if now >= closes {
            return Err(MarketError::Window { what: "follow-up", at: closes });
        }
        let text = text.into();
        check_content(&text, &images, policy)?;
        let status = match verdict {
            TextVerdict::Pass => ReviewStatus::Published,
            TextVerdict::Review => ReviewStatus::Pending,
            TextVerdict::Risky => return Err(MarketError::invalid("the follow-up text failed the content check")),
        };
        self.follow_up = Some(FollowUp { text, images, status, at: now });
        self.updated_at = now;
        Ok(())
    }

    /// The merchant's one reply, on a published review.
    pub fn add_reply(&mut self, merchant_id: &str, text: impl Into<String>, now: DateTime<Utc>) -> Result<()> {
        if self.merchant_id != merchant_id {
            return Err(MarketError::Forbidden("only the merchant who sold the line may reply".into()));
        }
        if self.reply.is_some() {
            return Err(MarketError::AlreadyDone("reply"));
        }
        if self.status != ReviewStatus::Published {
            return Err(MarketError::NotEligible(format!("the review is {}", self.status)));
        }
        let text = text.into();
        if text.trim().is_empty() || text.chars().count() > 500 {
            return Err(MarketError::invalid("a reply has 1 to 500 characters"));
        }
        self.reply = Some(Reply { text, at: now });
        self.updated_at = now;
        Ok(())
    }

    /// The platform moderates (publishes, hides or rejects). Not while an appeal is waiting.
    pub fn moderate(&mut self, to: ReviewStatus, note: impl Into<String>, now: DateTime<Utc>) -> Result<Transition> {
        if to == ReviewStatus::Pending || to == self.status {
            return Err(MarketError::illegal("review", self.status, to));
        }
        if matches!(&self.appeal, Some(a) if a.status == AppealStatus::Appealing) {
            return Err(MarketError::illegal("review", "appealing", to));
        }
        self.moderation_note = Some(note.into());
        Ok(self.go(to, Actor::Platform, now, "moderated"))
    }

    /// The author appeals a hidden or rejected review (once).
    pub fn appeal(&mut self, buyer_id: &str, reason: impl Into<String>, now: DateTime<Utc>) -> Result<()> {
        if self.buyer_id != buyer_id {
            return Err(MarketError::Forbidden("only the author may appeal".into()));
        }
        if !matches!(self.status, ReviewStatus::Hidden | ReviewStatus::Rejected) {
            return Err(MarketError::illegal("review", self.status, "appeal"));
        }
        if self.appeal.is_some() {
            return Err(MarketError::AlreadyDone("appeal"));
        }
        self.appeal =
            Some(Appeal { reason: reason.into(), status: AppealStatus::Appealing, at: now, decided_at: None });
        self.updated_at = now;
        Ok(())
    }

    /// The platform decides the appeal: restore publishes the review; deny is final.
    pub fn decide_appeal(&mut self, restore: bool, now: DateTime<Utc>) -> Result<Option<Transition>> {
        let appeal = match &mut self.appeal {
            Some(a) if a.status == AppealStatus::Appealing => a,
            _ => {
                return Err(MarketError::illegal("review appeal", "none", if restore { "restored" } else { "denied" }));
            }
        };
        appeal.decided_at = Some(now);
        if restore {
            appeal.status = AppealStatus::Restored;
            Ok(Some(self.go(ReviewStatus::Published, Actor::Platform, now, "appeal_restored")))
        } else {
            appeal.status = AppealStatus::Denied;
            self.updated_at = now;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn line(received: Option<DateTime<Utc>>) -> ReviewableLine {
        ReviewableLine {
            line_id: "l1".into(),
            order_id: "o1".into(),
            buyer_id: "b1".into(),
            merchant_id: "m1".into(),
            product_id: "p1".into(),
            category_id: "c1".into(),
            received_at: received,
        }
    }

    fn write(l: &ReviewableLine, v: TextVerdict, existing: bool, now: DateTime<Utc>) -> Result<Review> {
        submit(
            "r1",
            l,
            "b1",
            Ratings::new(4, 5, 3).unwrap(),
            "不错",
            vec!["img1".into()],
            v,
            existing,
            now,
            &ReviewPolicy::default(),
        )
    }

    #[test]
    fn one_review_per_line_only_after_receipt_and_within_the_window() {
        assert!(matches!(write(&line(None), TextVerdict::Pass, false, t0()), Err(MarketError::NotEligible(_))));
        let l = line(Some(t0()));
        let close = t0() + Duration::days(30);
        assert!(write(&l, TextVerdict::Pass, false, close - Duration::minutes(1)).is_ok());
        assert!(matches!(write(&l, TextVerdict::Pass, false, close), Err(MarketError::Window { what: "review", .. })));
        assert!(matches!(write(&l, TextVerdict::Pass, true, t0()), Err(MarketError::AlreadyDone("review"))));
        let other = submit(
            "r",
            &l,
            "b2",
            Ratings::new(5, 5, 5).unwrap(),
            "",
            vec![],
            TextVerdict::Pass,
            false,
            t0(),
            &ReviewPolicy::default(),
        );
        assert!(matches!(other, Err(MarketError::Forbidden(_))));
        assert!(Ratings::new(0, 5, 5).is_err());
        assert!(Ratings::new(5, 6, 5).is_err());
        let long = "字".repeat(501);
        assert!(
            submit(
                "r",
                &l,
                "b1",
                Ratings::new(5, 5, 5).unwrap(),
                long,
                vec![],
                TextVerdict::Pass,
                false,
                t0(),
                &ReviewPolicy::default()
            )
            .is_err()
        );
    }

    #[test]
    fn the_content_check_decides_the_first_status() {
        let l = line(Some(t0()));
        assert_eq!(write(&l, TextVerdict::Pass, false, t0()).unwrap().status, ReviewStatus::Published);
        assert_eq!(write(&l, TextVerdict::Review, false, t0()).unwrap().status, ReviewStatus::Pending);
        let r = write(&l, TextVerdict::Risky, false, t0()).unwrap();
        assert_eq!(r.status, ReviewStatus::Rejected);
        assert!(!r.counts_for_score());
    }

    #[test]
    fn one_follow_up_and_one_reply() {
        let p = ReviewPolicy::default();
        let mut r = write(&line(Some(t0())), TextVerdict::Pass, false, t0()).unwrap();
        assert!(r.add_follow_up("b1", "bad", vec![], TextVerdict::Risky, t0(), &p).is_err());
        assert!(r.follow_up.is_none());
        r.add_follow_up("b1", "用了一个月还好", vec![], TextVerdict::Pass, t0() + Duration::days(30), &p).unwrap();
        assert!(matches!(
            r.add_follow_up("b1", "again", vec![], TextVerdict::Pass, t0(), &p),
            Err(MarketError::AlreadyDone("follow-up"))
        ));
        assert!(matches!(r.add_reply("m2", "谢谢", t0()), Err(MarketError::Forbidden(_))));
        r.add_reply("m1", "谢谢", t0()).unwrap();
        assert!(matches!(r.add_reply("m1", "再谢", t0()), Err(MarketError::AlreadyDone("reply"))));
        let mut late = write(&line(Some(t0())), TextVerdict::Pass, false, t0()).unwrap();
        let e = late.add_follow_up("b1", "x", vec![], TextVerdict::Pass, t0() + Duration::days(180), &p).unwrap_err();
        assert!(matches!(e, MarketError::Window { what: "follow-up", .. }));
    }

    #[test]
    fn hidden_review_appealed_and_restored_counts_again() {
        let mut r = write(&line(Some(t0())), TextVerdict::Pass, false, t0()).unwrap();
        assert!(r.appeal("b1", "why", t0()).is_err());
        let tr = r.moderate(ReviewStatus::Hidden, "privacy", t0()).unwrap();
        assert_eq!((tr.from.as_deref(), tr.to.as_str(), tr.actor), (Some("published"), "hidden", Actor::Platform));
        assert!(!r.counts_for_score());
        r.appeal("b1", "no private data", t0()).unwrap();
        assert!(r.moderate(ReviewStatus::Rejected, "x", t0()).is_err());
        let tr = r.decide_appeal(true, t0()).unwrap().unwrap();
        assert_eq!(tr.to, "published");
        assert_eq!(r.appeal.as_ref().unwrap().status, AppealStatus::Restored);
        assert!(r.counts_for_score());
        assert!(r.decide_appeal(false, t0()).is_err());
        r.moderate(ReviewStatus::Rejected, "spam", t0()).unwrap();
        assert!(matches!(r.appeal("b1", "again", t0()), Err(MarketError::AlreadyDone("appeal"))));
    }

    #[test]
    fn denied_appeal_is_final() {
        let mut r = write(&line(Some(t0())), TextVerdict::Risky, false, t0()).unwrap();
        r.appeal("b1", "not risky", t0()).unwrap();
        assert_eq!(r.decide_appeal(false, t0()).unwrap(), None);
        assert_eq!(r.status, ReviewStatus::Rejected);
        assert_eq!(r.appeal.as_ref().unwrap().status, AppealStatus::Denied);
        assert!(r.decide_appeal(true, t0()).is_err());
    }
}
