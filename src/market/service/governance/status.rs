//! The merchant's status as governance derives it, from its active restrictions and its deposit: the
//! one place both penalties and deposits recompute it, so neither has to reach into the other.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::won;
use crate::market::error::Result;
use crate::market::events::Actor;
use crate::market::governance::GovernanceConfig;
use crate::market::governance::penalty::RestrictionKind;
use crate::market::merchant::{MerchantStatus, Restrictions};
use crate::market::service::{Agg, Change};
use crate::market::store::StoreTx;

/// Derives the merchant's status from governance: any active suspension (or one the platform set by
/// hand) → Suspended; any active restriction, a restricted deposit or a restriction the platform set by
/// hand → Restricted; else Active. What the platform set by hand ([`Merchant::manual_restrictions`],
/// [`Merchant::manual_suspension`]) is never lifted here, only by the platform. Only merchants that are
/// Active, Restricted or Suspended are moved.
///
/// [`Merchant::manual_restrictions`]: crate::market::Merchant::manual_restrictions
/// [`Merchant::manual_suspension`]: crate::market::Merchant::manual_suspension
pub(super) async fn sync_merchant_status(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    _cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<()> {
    let Some(cur) = tx.merchant(merchant_id).await? else { return Ok(()) };
    if !matches!(cur.status, MerchantStatus::Active | MerchantStatus::Restricted | MerchantStatus::Suspended) {
        return Ok(());
    }
    let active: Vec<_> = tx.restrictions_of(merchant_id).await?.into_iter().filter(|r| r.active(at)).collect();
    let deposit_restricted = tx.deposit(merchant_id).await?.is_some_and(|d| d.value.restricts_merchant());
    let mut bits = cur.manual_restrictions;
    if active.iter().any(|r| r.kind == RestrictionKind::Restricted) {
        bits = bits | Restrictions::LISTING | Restrictions::PAYOUT;
    }
    if deposit_restricted {
        bits = bits | Restrictions::LISTING | Restrictions::CHECKOUT;
    }
    let to = if cur.manual_suspension || active.iter().any(|r| r.kind == RestrictionKind::Suspended) {
        MerchantStatus::Suspended
    } else if !bits.is_empty() {
        MerchantStatus::Restricted
    } else {
        MerchantStatus::Active
    };
    let Some(mut next) = cur.moved(to, bits, at)? else { return Ok(()) };
    next.version = cur.version + 1;
    won(tx.update_merchant(&next, cur.version).await?, "merchant")?;
    let event_type = match next.status {
        MerchantStatus::Restricted => "merchant.restricted",
        MerchantStatus::Suspended => "merchant.suspended",
        _ => "merchant.activated",
    };
    Agg::new("merchant", merchant_id, Some(merchant_id))
        .record(
            tx,
            at,
            &Actor::Platform,
            Change::new("status").states(cur.status, next.status).reason(Some("governance")).event(
                event_type,
                json!({ "merchant_id": merchant_id, "from": cur.status, "to": next.status,
                        "restrictions": next.restrictions.bits(), "reason": "governance" }),
            ),
        )
        .await?;
    Ok(())
}
