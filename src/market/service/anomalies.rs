//! Payment anomalies: a wrong amount held for review, a double payment refunded, an external refund
//! applied like any refund (see [`crate::market::anomaly`]).

use chrono::{DateTime, Utc};
use serde_json::json;

use super::anomaly_records::{move_anomaly, record_anomaly, refund_anomaly_in};
use super::orders::{conclude_refund, restock_unshipped};
use super::{Agg, Change, won};
use crate::market::anomaly::{AnomalyKind, AnomalyStatus, PaymentAnomaly, RefundNotice};
use crate::market::catalog::Page;
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::Actor;
use crate::market::money::Money;
use crate::market::order::{MerchantOrder, OrderStatus};
use crate::market::payment::{PayMode, PaymentStatus, Refund, RefundStatus};
use crate::market::service::handles::Payments;
use crate::market::store::StoreTx;

impl Payments<'_> {
    /// Anomalies (of one status, or all), oldest first, paged by id (`after` = the previous page's `next`).
    pub async fn anomalies(
        &self,
        status: Option<AnomalyStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Page<PaymentAnomaly>> {
        crate::market::catalog::check_id_page(after, limit)?;
        let items = self.read().await?.anomalies(status, after, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit, |a| a.id.clone()))
    }

    /// One anomaly.
    pub async fn anomaly(&self, id: &str) -> Result<PaymentAnomaly> {
        self.read().await?.anomaly(id).await?.ok_or_else(|| MarketError::not_found("anomaly", id))
    }

    /// The platform sends the money of a held anomaly (or of a failed refund of one) back to the buyer:
    /// Held | RefundFailed → Refunding, with a refund of the whole transaction requested after commit.
    pub async fn refund_anomaly(&self, id: &str, note: &str) -> Result<PaymentAnomaly> {
        let timers = self
           .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let a = tx.anomaly(id).await?.ok_or_else(|| MarketError::not_found("anomaly", id))?;
                if a.status == AnomalyStatus::Refunding {
                    return Ok(Vec::new());
                }
                if a.kind == AnomalyKind::ExternalRefund {
                    return Err(MarketError::invalid("an external refund has nothing to send back"));
                }
                let Some(pay) = tx.payment(&a.group_id).await? else {
                    return Err(MarketError::invalid(
                        "a deposit pay-in has no checkout to refund against: return it outside the market, then dismiss",
                    ));
                };
                let (timer, _) = refund_anomaly_in(&mut *tx, a, &pay, Some(note), at).await?;
                tx.commit().await?;
                Ok(vec![timer])
            })
            .await?;
        self.fire_now(timers).await;
        self.anomaly(id).await
    }

    /// The platform accepts a held anomaly as it is (settled outside the market, say): → Dismissed,
    /// with its note.
    pub async fn dismiss_anomaly(&self, id: &str, note: &str) -> Result<PaymentAnomaly> {
        if note.trim().is_empty() {
            return Err(MarketError::invalid("say why the anomaly is dismissed"));
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let a = tx.anomaly(id).await?.ok_or_else(|| MarketError::not_found("anomaly", id))?;
            if a.status == AnomalyStatus::Dismissed {
                return Ok(a);
            }
            let next = move_anomaly(&mut *tx, &a, AnomalyStatus::Dismissed, None, Some(note), at).await?;
            tx.commit().await?;
            Ok(next)
        })
        .await
    }

    /// Applies a refund WeChat Pay reports that the market did not request (a merchant refunding in
    /// WeChat Pay's merchant platform): it becomes a refund of the order like any other — the payment's
    /// refunded amount, the settlement and the ledger (through the `refund.*` events), and the order,
    /// cancelled and restocked when it was unshipped and is now refunded in full — and an
    /// [`ExternalRefund`](AnomalyKind::ExternalRefund) anomaly, Applied, records it. One it cannot match
    /// (more than is left to refund) is recorded Held. `Ok(None)` when the refund is not the market's
    /// (another system's payment on the same merchant id), did not succeed, or was already applied.
    pub async fn handle_external_refund(&self, n: &RefundNotice) -> Result<Option<PaymentAnomaly>> {
        if !n.succeeded || n.amount <= Money::ZERO {
            return Ok(None);
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            if tx.refund(&n.out_refund_no).await?.is_some() {
                return Ok(None);
            }
            // A JSAPI or partner payment is refunded by the group id, a combined sub-order by its order id.
            let (pay, order) = match tx.payment(&n.out_trade_no).await? {
                Some(p) => (p, None),
                None => match tx.order(&n.out_trade_no).await? {
                    Some(o) => match tx.payment(&o.group_id).await? {
                        Some(p) => (p, Some(o)),
                        None => return Ok(None),
                    },
                    None => return Ok(None),
                },
            };
            let orders = tx.orders_of_group(&pay.group_id).await?;
            let refunds = tx.refunds_of_group(&pay.group_id).await?;
            let refunded_of = |order_id: &str| {
                refunds
                    .iter()
                    .filter(|r| r.order_id.as_deref() == Some(order_id) && r.status != RefundStatus::Failed)
                    .try_fold(Money::ZERO, |sum, r| sum.checked_add(r.amount))
            };
            // The order it refunds: the sub-order named, else the first with enough left to refund.
            let candidates = match &order {
                Some(o) => std::slice::from_ref(o),
                None => orders.as_slice(),
            };
            let mut target = None;
            for o in candidates {
                if o.total.checked_sub(refunded_of(&o.id)?)? >= n.amount {
                    target = Some(o.clone());
                    break;
                }
            }
            let payment_room = pay.amount.checked_sub(pay.refunded)?;
            let paid = matches!(pay.status, PaymentStatus::Paid | PaymentStatus::PartiallyRefunded);
            let mut a = PaymentAnomaly {
                id: new_id(),
                kind: AnomalyKind::ExternalRefund,
                status: AnomalyStatus::Applied,
                group_id: pay.group_id.clone(),
                order_id: target.as_ref().map(|o| o.id.clone()).or(order.as_ref().map(|o| o.id.clone())),
                out_trade_no: n.out_trade_no.clone(),
                transaction_id: n.transaction_id.clone(),
                event_key: format!("refund:{}", n.out_refund_no),
                amount: n.amount,
                expected: None,
                refund_id: Some(n.out_refund_no.clone()),
                detail: format!("refund {} made outside the market (notification {})", n.out_refund_no, n.notify_id),
                note: None,
                version: 1,
                created_at: at,
                updated_at: at,
            };
            let Some(o) = target.filter(|_| paid && n.amount <= payment_room) else {
                a.status = AnomalyStatus::Held;
                a.refund_id = None;
                a.expected = Some(payment_room);
                a.detail = format!(
                    "refund {} of {} fen made outside the market matches nothing left to refund (notification {})",
                    n.out_refund_no,
                    n.amount.as_fen(),
                    n.notify_id
                );
                if !tx.insert_anomaly(&a).await? {
                    return Ok(None);
                }
                record_anomaly(&mut *tx, &a, at).await?;
                tx.commit().await?;
                return Ok(Some(a));
            };
            if !tx.insert_anomaly(&a).await? {
                return Ok(None);
            }
            let total = if pay.mode == PayMode::Combine { o.total } else { pay.amount };
            let refund = Refund {
                id: n.out_refund_no.clone(),
                group_id: pay.group_id.clone(),
                order_id: Some(o.id.clone()),
                merchant_id: Some(o.merchant_id.clone()),
                out_trade_no: n.out_trade_no.clone(),
                transaction_id: Some(n.transaction_id.clone()),
                sub_mchid: None,
                amount: n.amount,
                total,
                reason: "refunded outside the market".into(),
                status: RefundStatus::Requested,
                wx_refund_id: None,
                created_at: at,
                updated_at: at,
            };
            tx.insert_refund(&refund).await?;
            // The requested event books it against the settlement, the succeeded one pays it in the ledger.
            Agg::new("refund", &refund.id, refund.merchant_id.as_deref())
                .record(
                    &mut *tx,
                    at,
                    &Actor::WechatPay,
                    Change::new("requested").to(refund.status).reason(Some(&refund.reason)).event(
                        "refund.requested",
                        json!({ "refund_id": refund.id, "group_id": refund.group_id, "order_id": refund.order_id,
                                "amount": refund.amount, "reason": refund.reason, "external": true }),
                    ),
                )
                .await?;
            conclude_refund(&mut *tx, refund, RefundStatus::Succeeded, Some(n.refund_id.clone()), at).await?;
            // An after-sale case waiting on the merchant is answered by this refund.
            let case = super::governance::settle_case_refunded_outside(&mut *tx, &o.id, n.amount, at).await?;
            if let Some(case_id) = &case {
                let mut next = a.clone();
                next.note = Some(format!("settles after-sale case {case_id}"));
                next.version = a.version + 1;
                won(tx.update_anomaly(&next, a.version).await?, "anomaly")?;
                a = next;
            }
            if case.is_none() && o.status == OrderStatus::Paid && refunded_of(&o.id)?.checked_add(n.amount)? >= o.total
            {
                cancel_refunded_order(&mut *tx, o, at).await?;
            }
            record_anomaly(&mut *tx, &a, at).await?;
            tx.commit().await?;
            Ok(Some(a))
        })
        .await
    }
}

/// An unshipped order refunded in full outside the market: Cancelled, its units back on hand, its
/// ship deadline gone (the refund itself is already booked).
async fn cancel_refunded_order(tx: &mut dyn StoreTx, o: MerchantOrder, at: DateTime<Utc>) -> Result<()> {
    let mut next = o.clone();
    next.status = OrderStatus::Cancelled;
    next.cancelled_at = Some(at);
    next.cancel_reason = Some("refunded outside the market".into());
    next.version = o.version + 1;
    next.updated_at = at;
    won(tx.update_order(&next, o.version).await?, "order")?;
    restock_unshipped(tx, &o.merchant_id, &o.id, at).await?;
    Agg::new("order", &o.id, Some(&o.merchant_id))
        .record(
            tx,
            at,
            &Actor::WechatPay,
            Change::new("cancelled").states(o.status, next.status).reason(Some("refunded outside the market")).event(
                "order.cancelled",
                json!({ "order_id": o.id, "merchant_id": o.merchant_id, "reason": "refunded outside the market",
                        "refund": Money::ZERO }),
            ),
        )
        .await
}
