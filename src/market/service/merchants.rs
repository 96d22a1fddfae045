//! Merchants and categories.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Agg, Change, Market, won};
use crate::market::category::{Category, CategoryRule, RuleSpec};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::Actor;
use crate::market::merchant::{Merchant, MerchantStatus, Restrictions};
use crate::market::service::handles::{Categories, Merchants};

/// A merchant application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMerchant {
    /// Display name.
    pub name: String,
    /// WeChat Pay sub-merchant id, when the merchant is paid in partner mode.
    #[serde(default)]
    pub sub_mchid: Option<String>,
}

impl NewMerchant {
    /// A merchant paid to the platform's own merchant id.
    pub fn new(name: impl Into<String>) -> Self {
        NewMerchant { name: name.into(), sub_mchid: None }
    }
    /// Pays the merchant as a WeChat Pay sub-merchant.
    pub fn sub_mchid(mut self, id: impl Into<String>) -> Self {
        self.sub_mchid = Some(id.into());
        self
    }
}

/// What a platform action moves a merchant to, including the holds the platform keeps by hand.
struct Target {
    status: MerchantStatus,
    restrictions: Restrictions,
    manual_restrictions: Restrictions,
    manual_suspension: bool,
}

impl Target {
    /// `status` and `restrictions`, the platform's holds unchanged.
    fn keep_manual(m: &Merchant, status: MerchantStatus, restrictions: Restrictions) -> Target {
        Target {
            status,
            restrictions,
            manual_restrictions: m.manual_restrictions,
            manual_suspension: m.manual_suspension,
        }
    }
}

impl Merchants<'_> {
    /// Records a merchant application (status Applying).
    pub async fn create_merchant(&self, m: NewMerchant) -> Result<Merchant> {
        if m.name.trim().is_empty() || m.name.chars().count() > 100 {
            return Err(MarketError::invalid("merchant name must be 1..=100 characters"));
        }
        if m.sub_mchid
            .as_deref()
            .is_some_and(|s| s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(MarketError::invalid("sub_mchid must be 1..=32 digits"));
        }
        let at = self.now();
        let merchant = Merchant {
            id: new_id(),
            name: m.name,
            sub_mchid: m.sub_mchid,
            status: MerchantStatus::Applying,
            restrictions: Restrictions::NONE,
            manual_restrictions: Restrictions::NONE,
            manual_suspension: false,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        self.retry(|| async {
            let mut tx = self.begin().await?;
            tx.insert_merchant(&merchant).await?;
            Agg::new("merchant", &merchant.id, Some(&merchant.id))
                .record(
                    &mut *tx,
                    at,
                    &Actor::Platform,
                    Change::new("created")
                        .to(merchant.status)
                        .event("merchant.created", json!({ "merchant_id": merchant.id, "name": merchant.name })),
                )
                .await?;
            tx.commit().await
        })
        .await?;
        Ok(merchant)
    }

    /// A merchant by id.
    pub async fn merchant(&self, id: &str) -> Result<Merchant> {
        let mut tx = self.read().await?;
        tx.merchant(id).await?.ok_or_else(|| MarketError::not_found("merchant", id))
    }

    /// Merchants, by id (at most `limit`).
    pub async fn merchants(&self, limit: i64) -> Result<Vec<Merchant>> {
        self.read().await?.merchants(limit.clamp(1, 1000)).await
    }

    /// Applying → Active.
    pub async fn approve_merchant(&self, id: &str) -> Result<Merchant> {
        self.move_merchant(id, Actor::Platform, None, |m| {
            Ok(Target::keep_manual(m, MerchantStatus::Active, m.restrictions))
        })
        .await
    }

    /// Adds restrictions by hand (Active or Restricted → Restricted). They are the platform's: governance
    /// keeps them when it recomputes the merchant's status (a deposit re-funded, a penalty restriction
    /// expired) until [`lift_restrictions`](crate::market::handles::Merchants::lift_restrictions) or
    /// [`reinstate_merchant`](crate::market::handles::Merchants::reinstate_merchant) removes them
    /// ([`Merchant::manual_restrictions`]).
    pub async fn restrict_merchant(&self, id: &str, add: Restrictions, reason: &str) -> Result<Merchant> {
        self.move_merchant(id, Actor::Platform, Some(reason), |m| {
            let current = if m.status == MerchantStatus::Restricted { m.restrictions } else { Restrictions::NONE };
            Ok(Target {
                status: MerchantStatus::Restricted,
                restrictions: current | add,
                manual_restrictions: m.manual_restrictions | add,
                manual_suspension: m.manual_suspension,
            })
        })
        .await
    }

    /// Lifts restrictions (and the platform's hold on them); with none left the merchant is Active
    /// again. A restriction governance still derives (an active penalty, a restricted deposit) comes
    /// back the next time governance recomputes the status.
    pub async fn lift_restrictions(&self, id: &str, remove: Restrictions, reason: &str) -> Result<Merchant> {
        self.move_merchant(id, Actor::Platform, Some(reason), |m| {
            let manual_restrictions = m.manual_restrictions.without(remove);
            if m.status != MerchantStatus::Restricted {
                return Ok(Target { manual_restrictions, ..Target::keep_manual(m, m.status, m.restrictions) });
            }
            let left = m.restrictions.without(remove);
            let status = if left.is_empty() { MerchantStatus::Active } else { MerchantStatus::Restricted };
            Ok(Target { manual_restrictions, ..Target::keep_manual(m, status, left) })
        })
        .await
    }

    /// → Suspended, by hand: governance never lifts it ([`Merchant::manual_suspension`]); only
    /// [`reinstate_merchant`](crate::market::handles::Merchants::reinstate_merchant) does.
    pub async fn suspend_merchant(&self, id: &str, reason: &str) -> Result<Merchant> {
        self.move_merchant(id, Actor::Platform, Some(reason), |m| {
            Ok(Target {
                manual_suspension: true,
                ..Target::keep_manual(m, MerchantStatus::Suspended, Restrictions::NONE)
            })
        })
        .await
    }

    /// Suspended → Active, clearing every hold the platform set by hand.
    pub async fn reinstate_merchant(&self, id: &str, reason: &str) -> Result<Merchant> {
        self.move_merchant(id, Actor::Platform, Some(reason), |m| {
            if m.status != MerchantStatus::Suspended && m.status != MerchantStatus::Active {
                return Err(MarketError::illegal("merchant", m.status, "reinstate"));
            }
            Ok(Target {
                status: MerchantStatus::Active,
                restrictions: Restrictions::NONE,
                manual_restrictions: Restrictions::NONE,
                manual_suspension: false,
            })
        })
        .await
    }

    /// → Closing: no new listings or orders.
    pub async fn begin_closing(&self, id: &str, reason: &str) -> Result<Merchant> {
        self.move_merchant(id, Actor::Platform, Some(reason), |m| {
            Ok(Target::keep_manual(m, MerchantStatus::Closing, Restrictions::NONE))
        })
        .await
    }

    /// Closing → Closed, once every order is Completed or Cancelled (else
    /// [`MarketError::IllegalTransition`]).
    pub async fn close_merchant(&self, id: &str, reason: &str) -> Result<Merchant> {
        self.retry(|| {
            self.move_merchant_once(id, Actor::Platform, Some(reason), true, &|m| {
                Ok(Target::keep_manual(m, MerchantStatus::Closed, Restrictions::NONE))
            })
        })
        .await
    }

    /// The categories a merchant may sell in (granted with [`grant_category`](crate::market::handles::Merchants::grant_category)),
    /// by category id; an unknown merchant is `NotFound`.
    ///
    /// ```no_run
    /// # async fn demo(market: wxshop::market::Market) -> wxshop::market::Result<()> {
    /// for c in market.merchants().merchant_categories("merchant id").await? {
    ///     println!("{} {}", c.id, c.name);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn merchant_categories(&self, merchant_id: &str) -> Result<Vec<Category>> {
        let mut tx = self.snapshot().await?;
        tx.merchant(merchant_id).await?.ok_or_else(|| MarketError::not_found("merchant", merchant_id))?;
        let ids = tx.merchant_categories(merchant_id).await?;
        let mut categories = Vec::with_capacity(ids.len());
        for id in ids {
            categories.push(tx.category(&id).await?.ok_or_else(|| MarketError::not_found("category", &id))?);
        }
        categories.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(categories)
    }

    /// Lets a merchant sell in a category (idempotent). Deposit checks belong to governance.
    pub async fn grant_category(&self, merchant_id: &str, category_id: &str) -> Result<()> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            tx.merchant(merchant_id).await?.ok_or_else(|| MarketError::not_found("merchant", merchant_id))?;
            tx.category(category_id).await?.ok_or_else(|| MarketError::not_found("category", category_id))?;
            if tx.has_category(merchant_id, category_id).await? {
                return Ok(());
            }
            tx.grant_category(merchant_id, category_id, at).await?;
            Agg::new("merchant", merchant_id, Some(merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &Actor::Platform,
                    Change::new("category_granted").to(category_id).event(
                        "merchant.category_granted",
                        json!({ "merchant_id": merchant_id, "category_id": category_id }),
                    ),
                )
                .await?;
            tx.commit().await
        })
        .await
    }
}

impl Market {
    async fn move_merchant(
        &self,
        id: &str,
        actor: Actor,
        reason: Option<&str>,
        decide: impl Fn(&Merchant) -> Result<Target> + Send + Sync,
    ) -> Result<Merchant> {
        self.retry(|| self.move_merchant_once(id, actor.clone(), reason, false, &decide)).await
    }

    async fn move_merchant_once(
        &self,
        id: &str,
        actor: Actor,
        reason: Option<&str>,
        require_no_open_orders: bool,
        decide: &(dyn Fn(&Merchant) -> Result<Target> + Send + Sync),
    ) -> Result<Merchant> {
        let at = self.now();
        let mut tx = self.begin().await?;
        let cur = tx.merchant(id).await?.ok_or_else(|| MarketError::not_found("merchant", id))?;
        let target = decide(&cur)?;
        let to = target.status;
        let manual_changed =
            (target.manual_restrictions, target.manual_suspension) != (cur.manual_restrictions, cur.manual_suspension);
        let mut next = match cur.moved(to, target.restrictions, at)? {
            Some(next) => next,
            // Same status and restrictions, but the platform now holds (or let go of) some of them.
            None if manual_changed => Merchant { updated_at: at, ..cur.clone() },
            None => return Ok(cur),
        };
        next.manual_restrictions = target.manual_restrictions;
        next.manual_suspension = target.manual_suspension;
        if require_no_open_orders {
            let open = tx.count_open_orders(id).await?;
            if open > 0 {
                return Err(MarketError::IllegalTransition {
                    entity: "merchant",
                    from: format!("{} with {open} open orders", cur.status),
                    to: to.to_string(),
                });
            }
        }
        next.version = cur.version + 1;
        won(tx.update_merchant(&next, cur.version).await?, "merchant")?;
        let event_type = match next.status {
            MerchantStatus::Active => "merchant.activated",
            MerchantStatus::Restricted => "merchant.restricted",
            MerchantStatus::Suspended => "merchant.suspended",
            MerchantStatus::Closing => "merchant.closing",
            MerchantStatus::Closed => "merchant.closed",
            MerchantStatus::Applying => "merchant.applying",
        };
        Agg::new("merchant", id, Some(id))
            .record(
                &mut *tx,
                at,
                &actor,
                Change::new("status").states(cur.status, next.status).reason(reason).event(
                    event_type,
                    json!({ "merchant_id": id, "from": cur.status, "to": next.status,
                            "restrictions": next.restrictions.bits(),
                            "manual_restrictions": next.manual_restrictions.bits(),
                            "manual_suspension": next.manual_suspension, "reason": reason }),
                ),
            )
            .await?;
        tx.commit().await?;
        Ok(next)
    }
}

impl Categories<'_> {
    /// Creates a category with its first rule version.
    pub async fn create_category(
        &self,
        name: &str,
        parent_id: Option<&str>,
        spec: RuleSpec,
    ) -> Result<(Category, CategoryRule)> {
        if name.trim().is_empty() || name.chars().count() > 100 {
            return Err(MarketError::invalid("category name must be 1..=100 characters"));
        }
        spec.validate()?;
        let at = self.now();
        let category =
            Category { id: new_id(), parent_id: parent_id.map(str::to_string), name: name.into(), created_at: at };
        let rule = CategoryRule { category_id: category.id.clone(), version: 1, spec, effective_from: at };
        self.retry(|| async {
            let mut tx = self.begin().await?;
            if let Some(p) = &category.parent_id
                && tx.category(p).await?.is_none()
            {
                return Err(MarketError::not_found("category", p));
            }
            tx.insert_category(&category).await?;
            tx.insert_rule(&rule).await?;
            Agg::new("category", &category.id, None)
                .record(
                    &mut *tx,
                    at,
                    &Actor::Platform,
                    Change::new("created").to("v1").event("category.rule_published", json!({ "rule": rule })),
                )
                .await?;
            tx.commit().await
        })
        .await?;
        Ok((category, rule))
    }

    /// Publishes a new rule version; orders already placed keep theirs.
    pub async fn publish_rule(&self, category_id: &str, spec: RuleSpec) -> Result<CategoryRule> {
        spec.validate()?;
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cur = tx
                .current_rules(&[category_id.to_string()])
                .await?
                .pop()
                .ok_or_else(|| MarketError::not_found("category", category_id))?;
            let rule = CategoryRule {
                category_id: category_id.into(),
                version: cur.version + 1,
                spec: spec.clone(),
                effective_from: at,
            };
            won(tx.insert_rule(&rule).await?, "category rule")?;
            Agg::new("category", category_id, None)
                .record(
                    &mut *tx,
                    at,
                    &Actor::Platform,
                    Change::new("rule_published")
                        .states(format!("v{}", cur.version), format!("v{}", rule.version))
                        .event("category.rule_published", json!({ "rule": rule })),
                )
                .await?;
            tx.commit().await?;
            Ok(rule)
        })
        .await
    }

    /// The current rule of a category.
    pub async fn current_rule(&self, category_id: &str) -> Result<CategoryRule> {
        let mut tx = self.read().await?;
        tx.current_rules(&[category_id.to_string()])
            .await?
            .pop()
            .ok_or_else(|| MarketError::not_found("category", category_id))
    }

    /// One rule version (what an order line was sold under).
    pub async fn rule(&self, category_id: &str, version: i64) -> Result<CategoryRule> {
        let mut tx = self.read().await?;
        tx.rule(category_id, version)
            .await?
            .ok_or_else(|| MarketError::not_found("category rule", format!("{category_id} v{version}")))
    }
}
