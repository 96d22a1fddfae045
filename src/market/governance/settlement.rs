//! Settlement per merchant order, profit sharing (分账) and promoter commission.
//!
//! ```text
//! paid ─▶ Frozen ─received + after-sale window closed + no open case (or the 180-day backstop)─▶ Releasable
//!        Releasable ─release: commission, promoter fees and net split; 分账 requested─▶ Released ─payout─▶ PaidOut
//! ```
//!
//! `net = gross − refunds − commission − promoter fee`, to the fen. Commission and promoter fees are what
//! profit sharing sends to receivers other than the merchant, so together they stay within WeChat's cap
//! (30 % of the order by default, and never more than the funds left after refunds); promoter fees give
//! way first. WeChat unfreezes unshared funds to the merchant 180 days after payment, so a settlement
//! becomes releasable a margin before that whatever else is pending. Promoter commission comes only from
//! the settled amount of attributed lines and is void when they were fully refunded.
//!
//! ```
//! use chrono::Duration;
//! use wxshop::market::Money;
//! use wxshop::market::governance::commission::{CommissionSnapshot, Rate};
//! use wxshop::market::governance::settlement::{PromoterShare, SettlementLine, SettlementPolicy, compute_amounts};
//! let line = SettlementLine {
//!     line_id: "l1".into(), amount: Money::fen(10_000), quantity: 1, refunded: Money::fen(2_000), compensated: Money::ZERO,
//!     commission: CommissionSnapshot { rate: Rate::Bps(500), ..CommissionSnapshot::none() },
//!     promoter: Some(PromoterShare { promoter_id: "p1".into(), bps: 1_000 }),
//! };
//! let a = compute_amounts(&[line], &SettlementPolicy::default()).unwrap();
//! assert_eq!((a.gross, a.refunds, a.commission, a.promoter_fee, a.net),
//!     (Money::fen(10_000), Money::fen(2_000), Money::fen(400), Money::fen(800), Money::fen(6_800)));
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::commission::CommissionSnapshot;
use super::ledger::{Account, TxnBuilder, TxnKind};
use super::{Actor, Transition};
use crate::market::Money;
use crate::market::error::{MarketError, Result};

/// Settlement and profit-sharing limits (WeChat Pay's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementPolicy {
    /// The most receivers other than the merchant may get, in basis points of the order (3 000).
    pub share_cap_bps: i64,
    /// Days after payment when WeChat unfreezes unshared funds to the merchant (180).
    pub backstop_days: i64,
    /// Hours before the backstop at which a settlement is released whatever is pending (24).
    pub backstop_margin_hours: i64,
    /// Profit-sharing requests per order (50).
    pub max_splits: u32,
    /// Receivers per request (50).
    pub max_receivers: usize,
    /// The platform's own WeChat Pay merchant id, the receiver of commission.
    #[serde(default)]
    pub platform_mchid: String,
}

impl Default for SettlementPolicy {
    fn default() -> Self {
        SettlementPolicy {
            share_cap_bps: 3_000,
            backstop_days: 180,
            backstop_margin_hours: 24,
            max_splits: 50,
            max_receivers: 50,
            platform_mchid: String::new(),
        }
    }
}

/// How promoters are paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoterPolicy {
    /// Basis points of an attributed line's settled amount.
    pub bps: i64,
    /// Days a click counts before payment.
    pub window_days: i64,
    /// Which click wins.
    pub touch: Touch,
}

impl Default for PromoterPolicy {
    fn default() -> Self {
        PromoterPolicy { bps: 500, window_days: 7, touch: Touch::Last }
    }
}

/// A promoter's share of a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoterShare {
    /// The promoter.
    pub promoter_id: String,
    /// Basis points of the line's settled amount.
    pub bps: i64,
}

/// One order line as settlement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementLine {
    /// The line.
    pub line_id: String,
    /// Paid for it.
    pub amount: Money,
    /// Units.
    pub quantity: i64,
    /// Refunded so far (decided refunds of the original payment, including those in flight).
    pub refunded: Money,
    /// Compensation paid to the buyer for this line by someone else (deposit, platform): it does not
    /// reduce the merchant's settlement, but it counts against what is still refundable.
    #[serde(default)]
    pub compensated: Money,
    /// The commission rule it was sold under.
    pub commission: CommissionSnapshot,
    /// The promoter it is attributed to.
    pub promoter: Option<PromoterShare>,
}

/// The split of a merchant order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    /// Paid.
    pub gross: Money,
    /// Refunded.
    pub refunds: Money,
    /// Platform commission.
    pub commission: Money,
    /// Promoter commission, all promoters.
    pub promoter_fee: Money,
    /// To the merchant: gross − refunds − commission − promoter fee.
    pub net: Money,
    /// Taken off commission and promoter fees to respect the profit-sharing cap.
    pub capped: Money,
    /// Promoter fee per promoter.
    pub promoters: BTreeMap<String, Money>,
}

/// The profit-sharing cap of an order of `gross` with `refunds` refunded.
pub fn share_cap(gross: Money, refunds: Money, policy: &SettlementPolicy) -> Money {
    let pct = (gross.as_fen().max(0) as i128 * policy.share_cap_bps as i128 / 10_000) as i64;
    Money::fen(pct.min((gross.as_fen() - refunds.as_fen()).max(0)))
}

/// Splits a merchant order: commission and promoter fees on what remains of each line after refunds,
/// both within the profit-sharing cap.
pub fn compute_amounts(lines: &[SettlementLine], policy: &SettlementPolicy) -> Result<Amounts> {
    let mut a = Amounts::default();
    for l in lines {
        if l.amount.is_negative() || l.refunded.is_negative() || l.refunded > l.amount {
            return Err(MarketError::invalid(format!("line {}: refunded {} of {}", l.line_id, l.refunded, l.amount)));
        }
        a.gross = a.gross.checked_add(l.amount)?;
        a.refunds = a.refunds.checked_add(l.refunded)?;
        a.commission =
            a.commission.checked_add(l.commission.commission_after_refunds(l.amount, l.quantity, l.refunded)?)?;
        if let Some(p) = &l.promoter {
            if !(0..=10_000).contains(&p.bps) {
                return Err(MarketError::invalid(format!("promoter bps {} outside 0..=10000", p.bps)));
            }
            let fee = l.amount.checked_sub(l.refunded)?.bps(p.bps)?;
            let e = a.promoters.entry(p.promoter_id.clone()).or_insert(Money::ZERO);
            *e = e.checked_add(fee)?;
        }
    }
    a.promoters.retain(|_, f| f.is_positive());
    let asked_fee = Money::sum(a.promoters.values().copied())?;
    let cap = share_cap(a.gross, a.refunds, policy);
    let asked = a.commission.checked_add(asked_fee)?;
    if asked > cap {
        a.capped = asked.checked_sub(cap)?;
        if a.commission > cap {
            a.commission = cap;
            a.promoters.clear();
        } else {
            // The promoters share what the commission leaves, in proportion to their fees.
            let room = cap.checked_sub(a.commission)?;
            let ids: Vec<String> = a.promoters.keys().cloned().collect();
            let weights: Vec<i64> = a.promoters.values().map(|m| m.as_fen()).collect();
            let parts = room.split(&weights)?;
            a.promoters = ids.into_iter().zip(parts).filter(|(_, m)| m.is_positive()).collect();
        }
    }
    a.promoter_fee = Money::sum(a.promoters.values().copied())?;
    a.net = a.gross.checked_sub(a.refunds)?.checked_sub(a.commission)?.checked_sub(a.promoter_fee)?;
    Ok(a)
}

str_enum! {
    /// Where a settlement stands.
    pub enum SettlementState {
        /// Funds frozen (not received, window open, or a case open).
        Frozen => "frozen",
        /// May be released.
        Releasable => "releasable",
        /// Split: commission and fees booked, net available to the merchant.
        Released => "released",
        /// The merchant withdrew the net.
        PaidOut => "paid_out",
    }
}

str_enum! {
    /// The durable timers of a settlement.
    pub enum SettlementTimer {
        /// The after-sale window closed.
        Window => "settlement.window",
        /// The 180-day backstop is near.
        Backstop => "settlement.backstop",
    }
}

str_enum! {
    /// Who receives a share.
    pub enum ReceiverKind {
        /// The platform (commission).
        Platform => "platform",
        /// A promoter.
        Promoter => "promoter",
    }
}

/// One receiver of a profit-sharing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareReceiver {
    /// Kind.
    pub kind: ReceiverKind,
    /// Our id of the receiver (the promoter id; empty for the platform).
    pub id: String,
    /// Amount.
    pub amount: Money,
    /// WeChat's `description`.
    pub description: String,
}

/// A profit-sharing request (WeChat `POST /v3/profitsharing/orders`), validated against the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRequest {
    /// `out_order_no`: idempotent at WeChat.
    pub out_order_no: String,
    /// The WeChat Pay transaction.
    pub transaction_id: String,
    /// Receivers.
    pub receivers: Vec<ShareReceiver>,
    /// `unfreeze_unsplit`: release the rest to the merchant.
    pub unfreeze_unsplit: bool,
}

/// Checks one profit-sharing request of `request` fen against the cap, the funds left, the 180-day
/// backstop and the 50 × 50 limits.
#[allow(clippy::too_many_arguments)]
pub fn check_share(
    paid: Money,
    refunded: Money,
    already_shared: Money,
    splits_so_far: u32,
    receivers: usize,
    request: Money,
    paid_at: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: &SettlementPolicy,
) -> Result<()> {
    if now >= paid_at + Duration::days(policy.backstop_days) {
        return Err(MarketError::NotEligible(format!(
            "the {}-day profit-sharing period ended; WeChat unfroze the funds to the merchant",
            policy.backstop_days
        )));
    }
    if splits_so_far >= policy.max_splits {
        return Err(MarketError::NotEligible(format!(
            "at most {} profit-sharing requests per order",
            policy.max_splits
        )));
    }
    if receivers > policy.max_receivers {
        return Err(MarketError::invalid(format!("at most {} receivers per request", policy.max_receivers)));
    }
    let total = already_shared.checked_add(request)?;
    let cap = Money::fen((paid.as_fen().max(0) as i128 * policy.share_cap_bps as i128 / 10_000) as i64);
    if total > cap {
        return Err(MarketError::ShareCap { requested: total.as_fen(), limit: cap.as_fen(), why: "share cap" });
    }
    let left = paid.checked_sub(refunded)?;
    if total > left {
        return Err(MarketError::ShareCap {
            requested: total.as_fen(),
            limit: left.as_fen(),
            why: "funds left after refunds",
        });
    }
    Ok(())
}

/// What releasing a settlement produces.
#[derive(Debug, Clone)]
pub struct Release {
    /// The ledger transaction.
    pub txn: TxnBuilder,
    /// The profit-sharing request (none when nothing goes to other receivers; the store then asks
    /// WeChat to unfreeze everything to the merchant).
    pub share: Option<ShareRequest>,
    /// The split.
    pub amounts: Amounts,
    /// The transition.
    pub transition: Transition,
}

/// The settlement of one merchant order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Id.
    pub id: String,
    /// The merchant order.
    pub order_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The buyer (refunds go to them).
    pub buyer_id: String,
    /// The WeChat Pay transaction.
    pub transaction_id: String,
    /// Paid.
    pub paid_at: DateTime<Utc>,
    /// Received (buyer or auto-confirm).
    pub received_at: Option<DateTime<Utc>>,
    /// The after-sale window closes.
    pub window_closes_at: Option<DateTime<Utc>>,
    /// WeChat's 180-day unfreeze.
    pub backstop_at: DateTime<Utc>,
    /// State.
    pub state: SettlementState,
    /// Lines.
    pub lines: Vec<SettlementLine>,
    /// The split, once released.
    pub amounts: Option<Amounts>,
    /// Profit shared so far.
    pub shared: Money,
    /// Profit-sharing requests so far.
    pub splits: u32,
    /// Released.
    pub released_at: Option<DateTime<Utc>>,
    /// Paid out.
    pub paid_out_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Settlement {
    /// A new, frozen settlement and its sale posting (clearing → merchant pending, the gross).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: impl Into<String>,
        order_id: impl Into<String>,
        merchant_id: impl Into<String>,
        buyer_id: impl Into<String>,
        transaction_id: impl Into<String>,
        paid_at: DateTime<Utc>,
        lines: Vec<SettlementLine>,
        policy: &SettlementPolicy,
    ) -> Result<(Settlement, TxnBuilder)> {
        let gross = Money::sum(lines.iter().map(|l| l.amount))?;
        if lines.iter().any(|l| l.amount.is_negative() || l.refunded.is_negative() || l.refunded > l.amount) {
            return Err(MarketError::invalid("line amounts must be ≥ 0 and refunds within them"));
        }
        let s = Settlement {
            id: id.into(),
            order_id: order_id.into(),
            merchant_id: merchant_id.into(),
            buyer_id: buyer_id.into(),
            transaction_id: transaction_id.into(),
            paid_at,
            received_at: None,
            window_closes_at: None,
            backstop_at: paid_at + Duration::days(policy.backstop_days),
            state: SettlementState::Frozen,
            lines,
            amounts: None,
            shared: Money::ZERO,
            splits: 0,
            released_at: None,
            paid_out_at: None,
            updated_at: paid_at,
        };
        let txn = TxnBuilder::new(TxnKind::Sale, format!("order:{}", s.order_id)).transfer(
            Account::Clearing,
            Account::MerchantPending(s.merchant_id.clone()),
            gross,
        );
        Ok((s, txn))
    }

    /// The backstop timer's instant (schedule it at creation).
    pub fn backstop_timer_at(&self, policy: &SettlementPolicy) -> DateTime<Utc> {
        self.backstop_at - Duration::hours(policy.backstop_margin_hours)
    }

    /// Gross.
    pub fn gross(&self) -> Money {
        Money::fen(self.lines.iter().map(|l| l.amount.as_fen()).sum())
    }

    /// Refunded so far.
    pub fn refunded(&self) -> Money {
        Money::fen(self.lines.iter().map(|l| l.refunded.as_fen()).sum())
    }

    /// The order was received; the after-sale window closes `after_sale_days` later (schedule the
    /// window timer then).
    pub fn received(&mut self, at: DateTime<Utc>, after_sale_days: i64) -> DateTime<Utc> {
        let closes = at + Duration::days(after_sale_days);
        self.received_at = Some(at);
        self.window_closes_at = Some(closes);
        self.updated_at = at;
        closes
    }

    /// A refund of `amount` on `line_id`: out of pending before release, out of available after.
    pub fn refund(&mut self, line_id: &str, amount: Money, now: DateTime<Utc>) -> Result<TxnBuilder> {
        let from = match self.state {
            SettlementState::Frozen | SettlementState::Releasable => Account::MerchantPending(self.merchant_id.clone()),
            SettlementState::Released | SettlementState::PaidOut => {
                Account::MerchantAvailable(self.merchant_id.clone())
            }
        };
        let line = self
            .lines
            .iter_mut()
            .find(|l| l.line_id == line_id)
            .ok_or_else(|| MarketError::NotFound { entity: "order line", id: line_id.into() })?;
        let refundable = line.amount.checked_sub(line.refunded)?;
        if !amount.is_positive() || amount > refundable {
            return Err(MarketError::RefundExceeds { requested: amount.as_fen(), refundable: refundable.as_fen() });
        }
        line.refunded = line.refunded.checked_add(amount)?;
        self.updated_at = now;
        Ok(TxnBuilder::new(TxnKind::Refund, format!("order:{}", self.order_id)).transfer(
            from,
            Account::BuyerRefundPayable(self.buyer_id.clone()),
            amount,
        ))
    }

    /// Frozen → Releasable once received, the window closed and no case is open; or, whatever is
    /// pending, once the backstop margin is reached. Early or repeated calls change nothing.
    pub fn evaluate(&mut self, now: DateTime<Utc>, open_cases: usize, policy: &SettlementPolicy) -> Option<Transition> {
        if self.state != SettlementState::Frozen {
            return None;
        }
        let normal = self.window_closes_at.is_some_and(|w| now >= w) && open_cases == 0;
        let backstop = now >= self.backstop_timer_at(policy);
        if !normal && !backstop {
            return None;
        }
        self.state = SettlementState::Releasable;
        self.updated_at = now;
        Some(Transition {
            from: Some(SettlementState::Frozen.to_string()),
            to: SettlementState::Releasable.to_string(),
            actor: Actor::Timer,
            at: now,
            note: if normal { "window_closed".into() } else { "backstop".into() },
        })
    }

    /// Releases: books commission, promoter fees and the net, and prepares the profit-sharing request.
    pub fn release(
        &mut self,
        out_order_no: impl Into<String>,
        now: DateTime<Utc>,
        policy: &SettlementPolicy,
    ) -> Result<Release> {
        if self.state != SettlementState::Releasable {
            return Err(MarketError::illegal("settlement", self.state, SettlementState::Released));
        }
        let a = compute_amounts(&self.lines, policy)?;
        let mut receivers = Vec::new();
        if a.commission.is_positive() {
            receivers.push(ShareReceiver {
                kind: ReceiverKind::Platform,
                id: String::new(),
                amount: a.commission,
                description: "平台佣金".into(),
            });
        }
        for (p, fee) in &a.promoters {
            receivers.push(ShareReceiver {
                kind: ReceiverKind::Promoter,
                id: p.clone(),
                amount: *fee,
                description: "推广佣金".into(),
            });
        }
        let shared = a.commission.checked_add(a.promoter_fee)?;
        let share = if receivers.is_empty() {
            None
        } else {
            check_share(
                self.gross(),
                self.refunded(),
                self.shared,
                self.splits,
                receivers.len(),
                shared,
                self.paid_at,
                now,
                policy,
            )?;
            Some(ShareRequest {
                out_order_no: out_order_no.into(),
                transaction_id: self.transaction_id.clone(),
                receivers,
                unfreeze_unsplit: true,
            })
        };
        let pending = Account::MerchantPending(self.merchant_id.clone());
        let mut txn = TxnBuilder::new(TxnKind::Release, format!("order:{}", self.order_id)).transfer(
            pending.clone(),
            Account::PlatformCommission,
            a.commission,
        );
        for (p, fee) in &a.promoters {
            txn = txn.transfer(pending.clone(), Account::PromoterCommission(p.clone()), *fee);
        }
        txn = txn.transfer(pending, Account::MerchantAvailable(self.merchant_id.clone()), a.net);
        if share.is_some() {
            self.shared = shared;
            self.splits += 1;
        }
        self.state = SettlementState::Released;
        self.released_at = Some(now);
        self.updated_at = now;
        self.amounts = Some(a.clone());
        let transition = Transition {
            from: Some(SettlementState::Releasable.to_string()),
            to: SettlementState::Released.to_string(),
            actor: Actor::Platform,
            at: now,
            note: "released".into(),
        };
        Ok(Release { txn, share, amounts: a, transition })
    }

    /// Pays the net out to the merchant (blocked while the merchant is restricted).
    pub fn payout(&mut self, merchant_restricted: bool, now: DateTime<Utc>) -> Result<(TxnBuilder, Transition)> {
        if self.state != SettlementState::Released {
            return Err(MarketError::illegal("settlement", self.state, SettlementState::PaidOut));
        }
        if merchant_restricted {
            return Err(MarketError::NotEligible("the merchant is restricted: no payouts".into()));
        }
        let net = self.amounts.as_ref().map(|a| a.net).unwrap_or(Money::ZERO);
        let txn = TxnBuilder::new(TxnKind::Payout, format!("order:{}", self.order_id)).transfer(
            Account::MerchantAvailable(self.merchant_id.clone()),
            Account::Clearing,
            net,
        );
        self.state = SettlementState::PaidOut;
        self.paid_out_at = Some(now);
        self.updated_at = now;
        Ok((
            txn,
            Transition {
                from: Some(SettlementState::Released.to_string()),
                to: SettlementState::PaidOut.to_string(),
                actor: Actor::Platform,
                at: now,
                note: "paid_out".into(),
            },
        ))
    }
}

str_enum! {
    /// Where a profit-sharing request stands at WeChat Pay.
    pub enum ShareStatus {
        /// Recorded; the gateway call is scheduled.
        Requested => "requested",
        /// Accepted, still processing at WeChat Pay.
        Processing => "processing",
        /// Done.
        Finished => "finished",
        /// Refused for good (needs a person).
        Failed => "failed",
    }
}

/// A profit-sharing request as recorded (one per release).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfitShare {
    /// The merchant.
    pub merchant_id: String,
    /// The merchant order.
    pub order_id: String,
    /// The request.
    pub request: ShareRequest,
    /// Status.
    pub status: ShareStatus,
    /// WeChat Pay's profit-sharing order id.
    pub wx_order_id: Option<String>,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl ProfitShare {
    /// The amount shared to receivers.
    pub fn amount(&self) -> Money {
        Money::fen(self.request.receivers.iter().map(|r| r.amount.as_fen()).sum())
    }
}

str_enum! {
    /// Where a compensation payout stands.
    pub enum PayoutStatus {
        /// Recorded; the gateway call is scheduled.
        Requested => "requested",
        /// Paid to the buyer.
        Succeeded => "succeeded",
        /// Refused for good (needs a person).
        Failed => "failed",
    }
}

/// Money paid to a buyer outside a refund of their payment: compensation out of a deposit, or an
/// amount the platform advances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    /// Id (the gateway's `out_no`).
    pub id: String,
    /// The merchant concerned.
    pub merchant_id: String,
    /// The buyer.
    pub buyer_id: String,
    /// Amount.
    pub amount: Money,
    /// Who pays.
    pub source: super::aftersale::Payer,
    /// What it is for (`"penalty:…"`, `"dispute:…"`).
    pub reference: String,
    /// Status.
    pub status: PayoutStatus,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One WeChat Pay merchant transfer (商家转账) of a [`Compensation`]: the first attempt's `out_bill_no` is
/// the compensation id; a re-issue after a failure is a new attempt with a new `out_bill_no`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationTransfer {
    /// WeChat Pay's `out_bill_no` (32 characters of `[0-9a-f]`).
    pub out_bill_no: String,
    /// The compensation paid.
    pub compensation_id: String,
    /// The merchant concerned.
    pub merchant_id: String,
    /// The buyer (the payee's openid).
    pub buyer_id: String,
    /// 1 for the first transfer, 2 for the first re-issue…
    pub attempt: i64,
    /// WeChat Pay's bill state (`WAIT_USER_CONFIRM`, `SUCCESS`, `FAIL`, `CANCELLED`…), or
    /// [`CompensationTransfer::NEW`] before WeChat Pay accepted it.
    pub state: String,
    /// WeChat Pay's `transfer_bill_no`.
    pub transfer_bill_no: Option<String>,
    /// With `WAIT_USER_CONFIRM`: the `package` of `wx.requestMerchantTransfer`.
    pub package_info: Option<String>,
    /// Why it failed (with `FAIL`, `CANCELLED`).
    pub fail_reason: Option<String>,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl CompensationTransfer {
    /// The state of a transfer not yet accepted by WeChat Pay.
    pub const NEW: &'static str = "NEW";

    /// `SUCCESS`, `FAIL` or `CANCELLED`.
    pub fn is_final(&self) -> bool {
        matches!(self.state.as_str(), "SUCCESS" | "FAIL" | "CANCELLED")
    }

    /// Waiting for the buyer to confirm it in the mini program.
    pub fn awaits_buyer(&self) -> bool {
        self.state == "WAIT_USER_CONFIRM" && self.package_info.is_some()
    }
}

/// A click on a promoter's share link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    /// The promoter.
    pub promoter_id: String,
    /// The share token of the link.
    pub share_token: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Which click wins an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Touch {
    /// The first click in the window.
    First,
    /// The last click before payment.
    Last,
}

/// The click an order paid at `paid_at` is attributed to: clicks in `(paid_at − window_days, paid_at]`.
pub fn attribute(clicks: &[Click], paid_at: DateTime<Utc>, window_days: i64, touch: Touch) -> Option<&Click> {
    let from = paid_at - Duration::days(window_days);
    let c = clicks.iter().filter(|c| c.at > from && c.at <= paid_at);
    match touch {
        Touch::First => c.min_by(|a, b| a.at.cmp(&b.at).then(a.share_token.cmp(&b.share_token))),
        Touch::Last => c.max_by(|a, b| a.at.cmp(&b.at).then(b.share_token.cmp(&a.share_token))),
    }
}

str_enum! {
    /// A promoter's claim on an order.
    pub enum AttributionState {
        /// The order is attributed; nothing is owed until settlement.
        Attributed => "attributed",
        /// Settled: the fee is owed.
        Payable => "payable",
        /// Fully refunded (or capped to nothing): nothing is owed.
        Voided => "voided",
        /// Paid out.
        Paid => "paid",
    }
}

/// A promoter's attribution of one merchant order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// Id.
    pub id: String,
    /// The promoter.
    pub promoter_id: String,
    /// The share token clicked.
    pub share_token: String,
    /// The merchant order.
    pub order_id: String,
    /// Basis points of the settled amount.
    pub bps: i64,
    /// State.
    pub state: AttributionState,
    /// The fee, once settled.
    pub amount: Money,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Attribution {
    /// The settlement was released with `amounts`: payable if the promoter earned anything, else void.
    pub fn settle(&mut self, amounts: &Amounts, now: DateTime<Utc>) -> Result<Transition> {
        if self.state != AttributionState::Attributed {
            return Err(MarketError::illegal("attribution", self.state, "settle"));
        }
        let fee = amounts.promoters.get(&self.promoter_id).copied().unwrap_or(Money::ZERO);
        let to = if fee.is_positive() { AttributionState::Payable } else { AttributionState::Voided };
        self.amount = fee;
        self.state = to;
        self.updated_at = now;
        Ok(Transition {
            from: Some(AttributionState::Attributed.to_string()),
            to: to.to_string(),
            actor: Actor::Platform,
            at: now,
            note: if fee.is_positive() { "settled".into() } else { "voided_by_refund".into() },
        })
    }

    /// Paid out to the promoter (promoter commission → clearing).
    pub fn pay(&mut self, now: DateTime<Utc>) -> Result<TxnBuilder> {
        if self.state != AttributionState::Payable {
            return Err(MarketError::illegal("attribution", self.state, AttributionState::Paid));
        }
        self.state = AttributionState::Paid;
        self.updated_at = now;
        Ok(TxnBuilder::new(TxnKind::PromoterPayout, format!("attribution:{}", self.id)).transfer(
            Account::PromoterCommission(self.promoter_id.clone()),
            Account::Clearing,
            self.amount,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::commission::Rate;
    use super::super::ledger::Ledger;
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn line(id: &str, fen: i64, refunded: i64, bps: i64, promoter: Option<(&str, i64)>) -> SettlementLine {
        SettlementLine {
            line_id: id.into(),
            amount: Money::fen(fen),
            quantity: 1,
            refunded: Money::fen(refunded),
            compensated: Money::ZERO,
            commission: CommissionSnapshot { rate: Rate::Bps(bps), ..CommissionSnapshot::none() },
            promoter: promoter.map(|(p, b)| PromoterShare { promoter_id: p.into(), bps: b }),
        }
    }

    #[test]
    fn settlement_to_the_fen_with_commission_promoter_fee_and_partial_refunds() {
        let lines = vec![
            line("l1", 12_345, 0, 500, Some(("p1", 800))),
            line("l2", 9_999, 3_333, 600, Some(("p1", 800))),
            line("l3", 5_000, 5_000, 500, Some(("p2", 1_000))),
        ];
        let a = compute_amounts(&lines, &SettlementPolicy::default()).unwrap();
        // l1: commission 617.25 → 617, promoter 987.6 → 988.
        // l2: commission 599.94 → 600 on the full line, × 6 666 / 9 999 = 400; promoter 533.28 → 533.
        // l3: fully refunded: no commission, promoter fee void.
        assert_eq!(a.gross, Money::fen(27_344));
        assert_eq!(a.refunds, Money::fen(8_333));
        assert_eq!(a.commission, Money::fen(1_017));
        assert_eq!(a.promoter_fee, Money::fen(1_521));
        assert_eq!(a.promoters.get("p1"), Some(&Money::fen(1_521)));
        assert_eq!(a.promoters.get("p2"), None);
        assert_eq!(a.net, Money::fen(27_344 - 8_333 - 1_017 - 1_521));
        assert_eq!(a.capped, Money::ZERO);
    }

    #[test]
    fn the_profit_sharing_cap_cuts_promoter_fees_first() {
        // 30 % of 10 000 = 3 000: commission 2 000 leaves 1 000 for promoters asking 1 500 + 500.
        let lines =
            vec![line("l1", 5_000, 0, 2_000, Some(("a", 3_000))), line("l2", 5_000, 0, 2_000, Some(("b", 1_000)))];
        let a = compute_amounts(&lines, &SettlementPolicy::default()).unwrap();
        assert_eq!((a.commission, a.promoter_fee, a.capped), (Money::fen(2_000), Money::fen(1_000), Money::fen(1_000)));
        assert_eq!(a.promoters["a"], Money::fen(750));
        assert_eq!(a.promoters["b"], Money::fen(250));
        assert_eq!(a.net, Money::fen(7_000));
        // After a 9 000 refund only 1 000 is left: the cap is the funds left.
        let lines = vec![line("l1", 10_000, 9_000, 3_000, Some(("a", 1_000)))];
        let a = compute_amounts(&lines, &SettlementPolicy::default()).unwrap();
        assert_eq!((a.commission, a.promoter_fee, a.net), (Money::fen(300), Money::fen(100), Money::fen(600)));
    }

    #[test]
    fn check_share_enforces_cap_funds_backstop_and_limits() {
        let p = SettlementPolicy::default();
        let ok = |shared, req, now| {
            check_share(Money::fen(10_000), Money::fen(1_000), Money::fen(shared), 0, 1, Money::fen(req), t0(), now, &p)
        };
        assert!(ok(0, 3_000, t0()).is_ok());
        assert!(matches!(
            ok(0, 3_001, t0()),
            Err(MarketError::ShareCap { requested: 3_001, limit: 3_000, why: "share cap" })
        ));
        assert!(matches!(ok(2_000, 1_001, t0()), Err(MarketError::ShareCap { .. })));
        assert!(ok(0, 1, t0() + Duration::days(180) - Duration::minutes(1)).is_ok());
        assert!(matches!(ok(0, 1, t0() + Duration::days(180)), Err(MarketError::NotEligible(_))));
        let funds =
            check_share(Money::fen(10_000), Money::fen(9_500), Money::ZERO, 0, 1, Money::fen(501), t0(), t0(), &p);
        assert!(matches!(funds, Err(MarketError::ShareCap { limit: 500, .. })));
        assert!(
            check_share(Money::fen(10_000), Money::ZERO, Money::ZERO, 50, 1, Money::fen(1), t0(), t0(), &p).is_err()
        );
        assert!(
            check_share(Money::fen(10_000), Money::ZERO, Money::ZERO, 0, 51, Money::fen(1), t0(), t0(), &p).is_err()
        );
    }

    #[test]
    fn frozen_until_received_window_closed_and_no_open_case_then_released_and_paid_out() {
        let p = SettlementPolicy::default();
        let lines = vec![line("l1", 10_000, 0, 500, Some(("p1", 1_000))), line("l2", 4_000, 0, 500, None)];
        let (mut s, sale) = Settlement::new("s1", "o1", "m1", "b1", "wx1", t0(), lines, &p).unwrap();
        let mut ledger = Ledger::default();
        ledger.post(sale.build("t1", t0()).unwrap()).unwrap();
        ledger.post(s.refund("l2", Money::fen(1_500), t0()).unwrap().build("t2", t0()).unwrap()).unwrap();
        assert!(s.refund("l2", Money::fen(2_501), t0()).is_err());
        assert_eq!(s.evaluate(t0() + Duration::days(20), 0, &p), None, "not received");
        let closes = s.received(t0() + Duration::days(3), 7);
        assert_eq!(s.evaluate(closes - Duration::minutes(1), 0, &p), None);
        assert_eq!(s.evaluate(closes, 1, &p), None, "a case is open");
        assert!(s.release("ps1", closes, &p).is_err());
        assert_eq!(s.evaluate(closes, 0, &p).unwrap().note, "window_closed");
        let r = s.release("ps1", closes, &p).unwrap();
        // gross 14 000, refunds 1 500; commission 500 + 125 (5 % of 2 500); promoter 1 000; net 10 875.
        assert_eq!(
            (r.amounts.commission, r.amounts.promoter_fee, r.amounts.net),
            (Money::fen(625), Money::fen(1_000), Money::fen(10_875))
        );
        let share = r.share.unwrap();
        assert_eq!(share.receivers.iter().map(|r| r.amount.as_fen()).collect::<Vec<_>>(), vec![625, 1_000]);
        assert_eq!((s.shared, s.splits), (Money::fen(1_625), 1));
        ledger.post(r.txn.build("t3", closes).unwrap()).unwrap();
        assert_eq!(ledger.balance(&Account::MerchantPending("m1".into())), Money::ZERO);
        assert_eq!(ledger.balance(&Account::MerchantAvailable("m1".into())), Money::fen(10_875));
        assert_eq!(ledger.balance(&Account::PlatformCommission), Money::fen(625));
        assert_eq!(ledger.balance(&Account::PromoterCommission("p1".into())), Money::fen(1_000));
        assert_eq!(ledger.balance(&Account::BuyerRefundPayable("b1".into())), Money::fen(1_500));
        assert!(s.payout(true, closes).is_err());
        let (t, tr) = s.payout(false, closes).unwrap();
        ledger.post(t.build("t4", closes).unwrap()).unwrap();
        assert_eq!(tr.to, "paid_out");
        assert_eq!(ledger.balance(&Account::MerchantAvailable("m1".into())), Money::ZERO);
        assert_eq!(ledger.total(), Money::ZERO);
    }

    #[test]
    fn the_backstop_releases_whatever_is_pending() {
        let p = SettlementPolicy::default();
        let (mut s, _) = Settlement::new("s", "o", "m", "b", "wx", t0(), vec![line("l", 100, 0, 0, None)], &p).unwrap();
        let at = s.backstop_timer_at(&p);
        assert_eq!(at, t0() + Duration::days(180) - Duration::hours(24));
        assert_eq!(s.evaluate(at - Duration::minutes(1), 3, &p), None);
        assert_eq!(s.evaluate(at, 3, &p).unwrap().note, "backstop");
        let r = s.release("ps", at, &p).unwrap();
        assert!(r.share.is_none());
        assert_eq!(r.amounts.net, Money::fen(100));
    }

    #[test]
    fn promoter_attribution_first_or_last_touch_and_void_on_full_refund() {
        let c = |p: &str, h: i64| Click {
            promoter_id: p.into(),
            share_token: format!("t{p}"),
            at: t0() - Duration::hours(h),
        };
        let clicks = vec![c("old", 24 * 8), c("a", 48), c("b", 2), c("future", -1)];
        assert_eq!(attribute(&clicks, t0(), 7, Touch::First).unwrap().promoter_id, "a");
        assert_eq!(attribute(&clicks, t0(), 7, Touch::Last).unwrap().promoter_id, "b");
        assert_eq!(attribute(&clicks[..1], t0(), 7, Touch::Last), None);
        let mut at = Attribution {
            id: "a1".into(),
            promoter_id: "p1".into(),
            share_token: "t".into(),
            order_id: "o1".into(),
            bps: 1_000,
            state: AttributionState::Attributed,
            amount: Money::ZERO,
            updated_at: t0(),
        };
        let refunded =
            compute_amounts(&[line("l", 1_000, 1_000, 0, Some(("p1", 1_000)))], &SettlementPolicy::default()).unwrap();
        assert_eq!(at.clone().settle(&refunded, t0()).unwrap().note, "voided_by_refund");
        let partly =
            compute_amounts(&[line("l", 1_000, 400, 0, Some(("p1", 1_000)))], &SettlementPolicy::default()).unwrap();
        at.settle(&partly, t0()).unwrap();
        assert_eq!((at.state, at.amount), (AttributionState::Payable, Money::fen(60)));
        let t = at.pay(t0()).unwrap().build("x", t0()).unwrap();
        assert_eq!(t.deltas()[&Account::Clearing], 60);
        assert!(at.pay(t0()).is_err());
    }

    proptest! {
        #[test]
        fn amounts_add_up_and_stay_within_the_cap(
            ls in prop::collection::vec((1i64..1_000_000, 0i64..=100, 0i64..=3_000, 0i64..=5_000, 0usize..3), 1..8),
        ) {
            let lines: Vec<SettlementLine> = ls.iter().enumerate().map(|(i, &(fen, pct, bps, pbps, who))| {
                let promoter = ["a", "b", ""][who];
                line(&format!("l{i}"), fen, fen * pct / 100, bps, (!promoter.is_empty()).then_some((promoter, pbps)))
            }).collect();
            let p = SettlementPolicy::default();
            let a = compute_amounts(&lines, &p).unwrap();
            prop_assert_eq!(a.gross.checked_sub(a.refunds).unwrap(), Money::sum([a.commission, a.promoter_fee, a.net]).unwrap());
            prop_assert!(!a.net.is_negative());
            prop_assert!(a.commission.checked_add(a.promoter_fee).unwrap() <= share_cap(a.gross, a.refunds, &p));
            prop_assert_eq!(a.promoter_fee, Money::sum(a.promoters.values().copied()).unwrap());
        }
    }
}
