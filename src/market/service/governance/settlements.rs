//! Settlement per merchant order, profit sharing (分账), promoter commission and commission rules.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::{config, line_key, post, record, schedule, schedule_call, won};
use crate::market::error::{MarketError, Result};
use crate::market::events::{Actor, Timer};
use crate::market::gateway::{CompensationRequest, ProfitShareReceiver, ProfitShareRequest};
use crate::market::governance::aftersale::Payer;
use crate::market::governance::commission::{CommissionRule, CommissionSnapshot, LineRef, Rate, resolve};
use crate::market::governance::ledger::{Account, TxnBuilder, TxnKind};
use crate::market::governance::settlement::{
    Attribution, AttributionState, Click, PayoutStatus, ProfitShare, PromoterShare, ReceiverKind, Settlement,
    SettlementLine, SettlementState, ShareRequest, ShareStatus, attribute,
};
use crate::market::governance::{GovernanceConfig, Transition};
use crate::market::money::Money;
use crate::market::payment::PayMode;
use crate::market::service::Market;
use crate::market::service::handles::Settlements;
use crate::market::store::StoreTx;

impl Settlements<'_> {
    /// Adds or replaces a commission rule (validated; a change bumps its version). Orders already paid
    /// keep the snapshot they were sold under.
    pub async fn put_commission_rule(&self, rule: CommissionRule) -> Result<CommissionRule> {
        rule.validate()?;
        self.retry(|| async {
            let at = self.now();
            let mut rule = rule.clone();
            let mut tx = self.begin().await?;
            if let Some(old) = tx.commission_rules().await?.into_iter().find(|r| r.id == rule.id) {
                rule.version = old.version + 1;
                rule.created_at = old.created_at;
            }
            tx.put_commission_rule(&rule).await?;
            crate::market::service::Agg::new("commission_rule", &rule.id, None)
                .record(
                    &mut *tx,
                    at,
                    &Actor::Platform,
                    crate::market::service::Change::new("configured")
                        .to(rule.version)
                        .event("commission.rule_changed", json!({ "rule": rule })),
                )
                .await?;
            tx.commit().await?;
            Ok(rule)
        })
        .await
    }

    /// Every commission rule.
    pub async fn commission_rules(&self) -> Result<Vec<CommissionRule>> {
        self.read().await?.commission_rules().await
    }

    /// The settlement of a merchant order.
    pub async fn settlement(&self, order_id: &str) -> Result<Settlement> {
        let v = self.read().await?.settlement(order_id).await?;
        Ok(v.ok_or_else(|| MarketError::NotFound { entity: "settlement", id: order_id.into() })?.value)
    }

    /// A merchant's settlements, newest first.
    pub async fn merchant_settlements(&self, merchant_id: &str, limit: i64) -> Result<Vec<Settlement>> {
        self.read().await?.settlements_of(merchant_id, limit.clamp(1, 500)).await
    }

    /// Pays a released settlement's net out to the merchant (refused while payouts are restricted).
    pub async fn payout_settlement(&self, merchant_id: &str, order_id: &str) -> Result<Settlement> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            let mut s = tx
                .settlement(order_id)
                .await?
                .filter(|s| s.value.merchant_id == merchant_id)
                .ok_or_else(|| MarketError::NotFound { entity: "settlement", id: order_id.into() })?;
            let m = tx
                .merchant(merchant_id)
                .await?
                .ok_or_else(|| MarketError::NotFound { entity: "merchant", id: merchant_id.into() })?;
            let (t, tr) = s.value.payout(!m.can_payout(), at)?;
            if !t.is_empty() {
                post(&mut *tx, &t.build(format!("payout:{order_id}"), at)?, &cfg).await?;
            }
            won(tx.update_settlement(&s.value, s.version).await?, "settlement")?;
            record_settlement(&mut *tx, &s.value, &Actor::Merchant(merchant_id.into()), &tr).await?;
            tx.commit().await?;
            Ok(s.value)
        })
        .await
    }

    /// A buyer followed a promoter's share link (attribution is decided when an order is paid).
    pub async fn record_click(&self, buyer_openid: &str, promoter_id: &str, share_token: &str) -> Result<()> {
        for (name, v) in [("buyer", buyer_openid), ("promoter", promoter_id), ("share_token", share_token)] {
            if v.is_empty() || v.len() > 128 {
                return Err(MarketError::invalid(format!("{name} must be 1..=128 characters")));
            }
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let c = Click { promoter_id: promoter_id.into(), share_token: share_token.into(), at };
            tx.insert_click(buyer_openid, &c).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The promoter id of a buyer who shares: a small positive integer (1, 2, 3… in the order buyers
    /// first share), so that a signed referral token naming it fits a 32-character wxacode `scene`
    /// ([`crate::mp::referral`]). Kept in the market store, so tokens in links and codes (valid up to 30
    /// days) keep naming the same buyer after a restart and on every instance; the same openid always
    /// gets the same id, and concurrent first calls for one openid agree on one id. Clicks and profit
    /// sharing still name the promoter by openid: map a token's id back with
    /// [`Settlements::promoter_openid`](crate::market::handles::Settlements::promoter_openid).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> wxshop::market::Result<()> {
    /// use wxshop::market::{Market, RecordingGateway, store};
    /// let gw = std::sync::Arc::new(RecordingGateway::default());
    /// let market = Market::builder(store::open("sqlite::memory:").await?).payments(gw.clone()).shipping(gw).build()?;
    /// let alice = market.governance().settlements().promoter_id("o-alice").await?;
    /// assert_eq!(alice, 1);
    /// assert_eq!(market.governance().settlements().promoter_id("o-alice").await?, 1, "the same openid, the same id");
    /// assert_eq!(market.governance().settlements().promoter_id("o-bob").await?, 2);
    /// // A referral token carries the id; the click and the profit share need the openid.
    /// assert_eq!(market.governance().settlements().promoter_openid(alice).await?.as_deref(), Some("o-alice"));
    /// assert_eq!(market.governance().settlements().promoter_openid(99).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn promoter_id(&self, openid: &str) -> Result<u64> {
        if openid.is_empty() || openid.len() > 128 {
            return Err(MarketError::invalid("openid must be 1..=128 characters"));
        }
        // Every share asks: answer a known promoter without taking the write lock.
        if let Some(id) = self.read().await?.promoter_id(openid).await? {
            return promoter_u64(id);
        }
        self.retry(|| async {
            let mut tx = self.begin().await?;
            tx.insert_promoter(openid, self.now()).await?;
            // Absent after the insert: another transaction took the same next id first; retry.
            let id = tx
                .promoter_id(openid)
                .await?
                .ok_or_else(|| crate::market::MarketError::Conflict(format!("promoter id of {openid}")))?;
            tx.commit().await?;
            promoter_u64(id)
        })
        .await
    }

    /// The openid of a promoter id ([`Settlements::promoter_id`](crate::market::handles::Settlements::promoter_id)); `None` if no buyer has that id.
    pub async fn promoter_openid(&self, id: u64) -> Result<Option<String>> {
        let Ok(id) = i64::try_from(id) else { return Ok(None) };
        self.read().await?.promoter_openid(id).await
    }

    /// The promoter attribution of an order.
    pub async fn attribution(&self, order_id: &str) -> Result<Option<Attribution>> {
        Ok(self.read().await?.attribution_of(order_id).await?.map(|v| v.value))
    }

    /// The profit-sharing record of a merchant order's settlement (`None` until it is released).
    pub async fn profit_share_of(&self, order_id: &str) -> Result<Option<ProfitShare>> {
        self.read().await?.profit_share(&share_no(order_id)).await
    }
}

impl Market {
    /// `order.paid`: opens the settlement.
    pub(super) async fn open_settlement(&self, order_id: &str) -> Result<()> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            open_settlement_in(&mut *tx, order_id, &cfg, at).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// `order.received`: the after-sale window starts.
    pub(super) async fn on_received(&self, order_id: &str) -> Result<()> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let cfg = config(&mut *tx).await?;
            open_settlement_in(&mut *tx, order_id, &cfg, at).await?;
            let Some(o) = tx.order(order_id).await? else { return Ok(()) };
            let (Some(received), Some(mut s)) = (o.received_at, tx.settlement(order_id).await?) else { return Ok(()) };
            if s.value.received_at.is_some() {
                return Ok(());
            }
            // The window's end is the market's `order.completed` (its Complete timer fires then).
            s.value.received(received, o.after_sale_days);
            won(tx.update_settlement(&s.value, s.version).await?, "settlement")?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// `order.completed`: the after-sale window closed; release unless a case is open.
    pub(super) async fn on_completed(&self, order_id: &str) -> Result<()> {
        let timers = self
            .retry(|| async {
                let now = self.now();
                let mut tx = self.begin().await?;
                let cfg = config(&mut *tx).await?;
                // The market's Complete timer fired when the window closed, possibly as of an instant
                // ahead of this clock (timers run ahead of time): the release is judged as of then.
                let at = tx.order(order_id).await?.and_then(|o| o.completed_at).map_or(now, |c| c.max(now));
                open_settlement_in(&mut *tx, order_id, &cfg, at).await?;
                let timers = settle_in(&mut *tx, order_id, &cfg, at).await?;
                tx.commit().await?;
                Ok(timers)
            })
            .await?;
        self.fire_now(timers).await;
        Ok(())
    }

    /// A settlement deadline: the backstop is near.
    pub(super) async fn settlement_deadline(
        &self,
        tx: &mut dyn StoreTx,
        order_id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let cfg = config(tx).await?;
        settle_in(tx, order_id, &cfg, at).await?;
        Ok(())
    }

    /// The profit-sharing call of a release. Who shares is who collected the payment: a sub-merchant
    /// for its own partner-mode payment (commission to the platform, fees to promoters); the
    /// platform's own merchant id for JSAPI and combined payments, which already holds the commission,
    /// so only promoters are shared to (and with none, the rest is just unfrozen).
    pub(super) async fn call_profit_share(&self, out_order_no: &str) -> Result<()> {
        let (p, sub_mchid, cfg) = {
            let mut tx = self.read().await?;
            let cfg = config(&mut *tx).await?;
            let Some(p) = tx.profit_share(out_order_no).await? else { return Ok(()) };
            let group = tx.order(&p.order_id).await?.map(|o| o.group_id);
            let mode = match group {
                Some(g) => tx.payment(&g).await?.map(|pay| pay.mode),
                None => None,
            };
            let sub = match mode {
                Some(PayMode::Partner) => tx.merchant(&p.merchant_id).await?.and_then(|m| m.sub_mchid),
                _ => None,
            };
            (p, sub, cfg)
        };
        if p.status != ShareStatus::Requested {
            return Ok(());
        }
        let platform = if cfg.settlement.platform_mchid.is_empty() {
            "platform".to_string()
        } else {
            cfg.settlement.platform_mchid.clone()
        };
        let platform_collected = sub_mchid.is_none();
        let req = ProfitShareRequest {
            out_order_no: p.request.out_order_no.clone(),
            transaction_id: p.request.transaction_id.clone(),
            sub_mchid,
            receivers: p
                .request
                .receivers
                .iter()
                .filter(|r| !(platform_collected && r.kind == ReceiverKind::Platform))
                .map(|r| ProfitShareReceiver {
                    receiver_type: if r.kind == ReceiverKind::Platform {
                        "MERCHANT_ID".into()
                    } else {
                        "PERSONAL_OPENID".into()
                    },
                    account: if r.kind == ReceiverKind::Platform { platform.clone() } else { r.id.clone() },
                    amount: r.amount,
                    description: r.description.clone(),
                })
                .collect(),
            unfreeze_unsplit: p.request.unfreeze_unsplit,
        };
        let ticket = self.inner.pay.profit_share(&req).await.map_err(crate::market::MarketError::from)?;
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let Some(cur) = tx.profit_share(out_order_no).await? else { return Ok(()) };
            if cur.status != ShareStatus::Requested {
                return Ok(());
            }
            let mut next = cur.clone();
            next.status = if ticket.finished { ShareStatus::Finished } else { ShareStatus::Processing };
            next.wx_order_id = Some(ticket.order_id.clone());
            next.updated_at = at;
            won(tx.update_profit_share(&next, cur.status).await?, "profit share")?;
            if ticket.finished {
                pay_promoters(&mut *tx, &next, &cfg, at).await?;
            }
            crate::market::service::Agg::new("profit_share", out_order_no, Some(&cur.merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &Actor::WechatPay,
                    crate::market::service::Change::new("shared").states(cur.status, next.status).event(
                        "profit_share.accepted",
                        json!({ "out_order_no": out_order_no, "order_id": cur.order_id, "amount": cur.amount(),
                                "wx_order_id": ticket.order_id, "finished": ticket.finished }),
                    ),
                )
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The compensation call of a deposit deduction or a platform advance: paid at once, or (merchant
    /// transfers) a bill the buyer confirms, recorded on the compensation until its notification.
    pub(super) async fn call_compensation(&self, id: &str) -> Result<()> {
        let (c, sub_mchid, current) = {
            let mut tx = self.read().await?;
            let Some(c) = tx.compensation(id).await? else { return Ok(()) };
            let sub = tx.merchant(&c.merchant_id).await?.and_then(|m| m.sub_mchid);
            let current = tx.compensation_transfers(id).await?.pop();
            (c, sub, current)
        };
        if c.status != PayoutStatus::Requested {
            return Ok(());
        }
        // The first transfer's out_bill_no is the compensation id; a re-issue recorded a new one.
        let out_no = current.as_ref().map_or_else(|| c.id.clone(), |t| t.out_bill_no.clone());
        let req = CompensationRequest {
            out_no,
            business_type: match c.source {
                Payer::Deposit => "DEPOSIT_COMPENSATION".into(),
                _ => "PLATFORM_AFTER_SALES_COMPENSATION".into(),
            },
            payer_openid: c.buyer_id.clone(),
            sub_mchid: if c.source == Payer::Deposit { sub_mchid } else { None },
            amount: c.amount,
            description: compensation_remark(&c.reference),
        };
        let ticket = self.inner.pay.compensate(&req).await.map_err(crate::market::MarketError::from)?;
        if ticket.state.is_some() {
            return self.transfer_accepted(&c, &req.out_no, &ticket).await;
        }
        if ticket.succeeded {
            self.compensation_paid(id).await?;
        }
        Ok(())
    }
}

/// What the buyer sees on a compensation transfer (at most 32 characters).
fn compensation_remark(reference: &str) -> String {
    match reference.split_once(':').map(|(k, _)| k) {
        Some("penalty") => "商家违规赔付".into(),
        Some("case" | "dispute") => "售后赔付".into(),
        _ => "平台赔付".into(),
    }
}

/// The `out_order_no` of a merchant order's profit sharing.
fn share_no(order_id: &str) -> String {
    format!("ps_{order_id}")
}

/// A settlement's id (its aggregate id in audit rows and timers; the order's own trail stays the order's).
pub(super) fn settlement_key(order_id: &str) -> String {
    format!("settlement:{order_id}")
}

/// Opens the settlement of a paid order (idempotent): commission snapshotted per line, the promoter
/// attributed from the buyer's clicks, the sale posted, the backstop timer set.
pub(super) async fn open_settlement_in(
    tx: &mut dyn StoreTx,
    order_id: &str,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<()> {
    if tx.settlement(order_id).await?.is_some() {
        return Ok(());
    }
    let Some(o) = tx.order(order_id).await? else { return Ok(()) };
    let Some(paid_at) = o.paid_at else { return Ok(()) };
    let rules = tx.commission_rules().await?;
    let clicks = tx.clicks_of(&o.buyer_openid, paid_at - Duration::days(cfg.promoter.window_days)).await?;
    let promoter = attribute(&clicks, paid_at, cfg.promoter.window_days, cfg.promoter.touch).cloned();
    let mut lines = Vec::new();
    for l in tx.order_lines(&o.merchant_id, order_id).await? {
        let line = LineRef { product_id: &l.product_id, merchant_id: &o.merchant_id, category_id: &l.category_id };
        let commission = resolve(&rules, &line).unwrap_or_else(|| CommissionSnapshot {
            rule_id: format!("category:{}@v{}", l.category_id, l.rule_version),
            rate: Rate::Bps(l.commission_bps),
            ..CommissionSnapshot::none()
        });
        lines.push(SettlementLine {
            line_id: line_key(order_id, l.line_no),
            amount: l.line_total.checked_sub(l.discount)?,
            quantity: l.qty,
            refunded: Money::ZERO,
            compensated: Money::ZERO,
            commission,
            promoter: promoter
                .as_ref()
                .filter(|_| cfg.promoter.bps > 0)
                .map(|c| PromoterShare { promoter_id: c.promoter_id.clone(), bps: cfg.promoter.bps }),
        });
    }
    let (s, sale) = Settlement::new(
        settlement_key(order_id),
        order_id,
        &o.merchant_id,
        &o.buyer_openid,
        o.transaction_id.clone().unwrap_or_default(),
        paid_at,
        lines,
        &cfg.settlement,
    )?;
    if !tx.insert_settlement(&s).await? {
        return Ok(());
    }
    post(tx, &sale.build(format!("sale:{order_id}"), at)?, cfg).await?;
    schedule(tx, "settlement", &s.id, &o.merchant_id, s.backstop_timer_at(&cfg.settlement), at, false).await?;
    if let Some(c) = &promoter
        && cfg.promoter.bps > 0
    {
        let a = Attribution {
            id: format!("attr_{order_id}"),
            promoter_id: c.promoter_id.clone(),
            share_token: c.share_token.clone(),
            order_id: order_id.into(),
            bps: cfg.promoter.bps,
            state: AttributionState::Attributed,
            amount: Money::ZERO,
            updated_at: at,
        };
        tx.insert_attribution(&o.merchant_id, &a).await?;
    }
    let tr = Transition {
        from: None,
        to: s.state.to_string(),
        actor: crate::market::governance::Actor::Gateway,
        at,
        note: "opened".into(),
    };
    record_settlement(tx, &s, &Actor::WechatPay, &tr).await
}

/// Books a refund decided for one line of an order against its settlement (before the WeChat Pay call).
pub(super) async fn refund_from_settlement(
    tx: &mut dyn StoreTx,
    order_id: &str,
    line_id: &str,
    amount: Money,
    refund_id: &str,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<()> {
    open_settlement_in(tx, order_id, cfg, at).await?;
    let mut s = tx
        .settlement(order_id)
        .await?
        .ok_or_else(|| MarketError::NotFound { entity: "settlement", id: order_id.into() })?;
    let t = s.value.refund(line_id, amount, at)?;
    post(tx, &t.build(format!("refund:{refund_id}"), at)?, cfg).await?;
    won(tx.update_settlement(&s.value, s.version).await?, "settlement")
}

/// Books a whole-order refund that no case asked for (a cancellation), spread over the lines by what
/// each can still refund.
pub(super) async fn book_order_refund(
    tx: &mut dyn StoreTx,
    order_id: &str,
    amount: Money,
    refund_id: &str,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<()> {
    open_settlement_in(tx, order_id, cfg, at).await?;
    let Some(mut s) = tx.settlement(order_id).await? else { return Ok(()) };
    let weights: Vec<i64> = s.value.lines.iter().map(|l| (l.amount.as_fen() - l.refunded.as_fen()).max(0)).collect();
    let left = Money::fen(weights.iter().sum());
    if amount > left {
        // More than the settlement still holds (a cancellation after a partial refund): book what is
        // left; the excess is the payment gateway's to refuse, and is recorded for people to check.
        tracing::error!(order = %order_id, refund = %refund_id, %amount, %left, "refund exceeds what the settlement holds");
    }
    let amount = amount.min(left);
    if !amount.is_positive() {
        return Ok(());
    }
    let parts = amount.split(&weights)?;
    let from = match s.value.state {
        SettlementState::Frozen | SettlementState::Releasable => Account::MerchantPending(s.value.merchant_id.clone()),
        _ => Account::MerchantAvailable(s.value.merchant_id.clone()),
    };
    let ids: Vec<String> = s.value.lines.iter().map(|l| l.line_id.clone()).collect();
    for (id, part) in ids.iter().zip(parts) {
        if part.is_positive() {
            let _ = s.value.refund(id, part, at)?;
        }
    }
    let t = TxnBuilder::new(TxnKind::Refund, format!("order:{order_id}"))
        .transfer(from, Account::BuyerRefundPayable(s.value.buyer_id.clone()), amount)
        .build(format!("refund:{refund_id}"), at)?;
    post(tx, &t, cfg).await?;
    won(tx.update_settlement(&s.value, s.version).await?, "settlement")
}

/// A case of the order closed: the settlement may now be releasable.
pub(super) async fn on_case_closed(
    tx: &mut dyn StoreTx,
    order_id: &str,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<Vec<Timer>> {
    settle_in(tx, order_id, cfg, at).await
}

/// Frozen → Releasable → Released when the rules allow: commission, promoter fees and net booked, the
/// profit-sharing call scheduled, the promoter's attribution settled.
pub(super) async fn settle_in(
    tx: &mut dyn StoreTx,
    order_id: &str,
    cfg: &GovernanceConfig,
    at: DateTime<Utc>,
) -> Result<Vec<Timer>> {
    let Some(mut s) = tx.settlement(order_id).await? else { return Ok(Vec::new()) };
    if s.value.state != SettlementState::Frozen {
        return Ok(Vec::new());
    }
    let open = tx.cases_of_order(order_id).await?.iter().filter(|c| c.state.is_open()).count();
    let Some(tr) = s.value.evaluate(at, open, &cfg.settlement) else { return Ok(Vec::new()) };
    record_settlement(tx, &s.value, &Actor::Timer, &tr).await?;
    let out_order_no = share_no(order_id);
    let r = s.value.release(out_order_no.clone(), at, &cfg.settlement)?;
    if !r.txn.is_empty() {
        post(tx, &r.txn.build(format!("release:{order_id}"), at)?, cfg).await?;
    }
    let request = r.share.unwrap_or(ShareRequest {
        out_order_no: out_order_no.clone(),
        transaction_id: s.value.transaction_id.clone(),
        receivers: Vec::new(),
        unfreeze_unsplit: true,
    });
    let share = ProfitShare {
        merchant_id: s.value.merchant_id.clone(),
        order_id: order_id.into(),
        request,
        status: ShareStatus::Requested,
        wx_order_id: None,
        created_at: at,
        updated_at: at,
    };
    let mut timers = Vec::new();
    if tx.insert_profit_share(&share).await? {
        timers.push(schedule_call(tx, "profit_share", &out_order_no, &s.value.merchant_id, at).await?);
    }
    if let Some(mut a) = tx.attribution_of(order_id).await?
        && a.value.state == AttributionState::Attributed
    {
        a.value.settle(&r.amounts, at)?;
        won(tx.update_attribution(&a.value, a.version).await?, "attribution")?;
    }
    won(tx.update_settlement(&s.value, s.version).await?, "settlement")?;
    record_settlement(tx, &s.value, &Actor::Timer, &r.transition).await?;
    Ok(timers)
}

/// Profit sharing finished: the promoters' shares reached them.
async fn pay_promoters(tx: &mut dyn StoreTx, p: &ProfitShare, cfg: &GovernanceConfig, at: DateTime<Utc>) -> Result<()> {
    if let Some(mut a) = tx.attribution_of(&p.order_id).await?
        && a.value.state == AttributionState::Payable
    {
        let t = a.value.pay(at)?;
        post(tx, &t.build(format!("promoter_payout:{}", a.value.id), at)?, cfg).await?;
        won(tx.update_attribution(&a.value, a.version).await?, "attribution")?;
    }
    Ok(())
}

async fn record_settlement(tx: &mut dyn StoreTx, s: &Settlement, actor: &Actor, tr: &Transition) -> Result<()> {
    record(
        tx,
        "settlement",
        &s.id,
        &s.merchant_id,
        actor,
        tr,
        &format!("settlement.{}", s.state),
        json!({ "order_id": s.order_id, "merchant_id": s.merchant_id, "state": s.state, "amounts": s.amounts }),
    )
    .await
}

fn promoter_u64(id: i64) -> Result<u64> {
    u64::try_from(id).map_err(|_| crate::market::MarketError::Store {
        message: format!("corrupt promoter id {id}"),
        retryable: false,
    })
}
