//! Recording payment anomalies inside a transaction: what the notice path (`orders.rs`) and the
//! platform's resolutions (`anomalies.rs`) share, kept below both so neither imports the other.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Agg, Change, won};
use crate::market::anomaly::{AnomalyKind, AnomalyStatus, PaymentAnomaly};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result};
use crate::market::events::{Actor, Timer, TimerAction};
use crate::market::money::Money;
use crate::market::order::MerchantOrder;
use crate::market::payment::{PayMode, Payment, Refund, RefundStatus};
use crate::market::store::StoreTx;

/// What a notice revealed: its anomaly kind, what was expected, why, which notification, and whether
/// the money goes back at once.
pub(super) struct Finding<'a> {
    pub kind: AnomalyKind,
    pub expected: Option<Money>,
    pub detail: &'a str,
    pub notify_id: &'a str,
    pub refund: bool,
}

/// One transaction a notice was about: `(out_trade_no, transaction_id, amount, order)`.
pub(super) type Paid<'a> = (String, String, Money, Option<&'a MerchantOrder>);

/// Records anomalies for the transactions of a notice that does not fit the market's books: Held for
/// review (`refund = false`), or with their refunds requested at once (`refund = true`, a double
/// payment). Returns the anomalies recorded now (none on a repeat) and the refund timers to fire.
pub(super) async fn record_paid_anomalies(
    tx: &mut dyn StoreTx,
    pay: &Payment,
    paid: &[Paid<'_>],
    f: Finding<'_>,
    at: DateTime<Utc>,
) -> Result<(Vec<String>, Vec<Timer>)> {
    let Finding { kind, expected, detail, notify_id, refund } = f;
    let mut ids = Vec::new();
    let mut timers = Vec::new();
    for (out_trade_no, txn, amount, order) in paid {
        let a = PaymentAnomaly {
            id: new_id(),
            kind,
            status: AnomalyStatus::Held,
            group_id: pay.group_id.clone(),
            order_id: order.map(|o| o.id.clone()),
            out_trade_no: out_trade_no.clone(),
            transaction_id: txn.clone(),
            event_key: format!("txn:{txn}:{out_trade_no}"),
            amount: *amount,
            expected: order.map(|o| o.total).or(expected),
            refund_id: None,
            detail: format!("{detail} (notification {notify_id})"),
            note: None,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        if !tx.insert_anomaly(&a).await? {
            continue;
        }
        record_anomaly(tx, &a, at).await?;
        ids.push(a.id.clone());
        if refund && *amount > Money::ZERO {
            let (t, _) = refund_anomaly_in(tx, a, pay, None, at).await?;
            timers.push(t);
        }
    }
    Ok((ids, timers))
}

/// Records a deposit pay-in of the wrong amount, Held: the deposit was not credited; the platform
/// returns the money outside the market (a deposit has no checkout to refund against) and dismisses it.
pub(super) async fn hold_deposit_payment(
    tx: &mut dyn StoreTx,
    n: &crate::market::payment::PaymentNotice,
    detail: &str,
    at: DateTime<Utc>,
) -> Result<Vec<String>> {
    let a = PaymentAnomaly {
        id: new_id(),
        kind: AnomalyKind::AmountMismatch,
        status: AnomalyStatus::Held,
        group_id: n.out_trade_no.clone(),
        order_id: None,
        out_trade_no: n.out_trade_no.clone(),
        transaction_id: n.transaction_id.clone(),
        event_key: format!("txn:{}:{}", n.transaction_id, n.out_trade_no),
        amount: n.amount,
        expected: None,
        refund_id: None,
        detail: format!("{detail} (notification {})", n.notify_id),
        note: None,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    if !tx.insert_anomaly(&a).await? {
        return Ok(Vec::new());
    }
    record_anomaly(tx, &a, at).await?;
    Ok(vec![a.id])
}

/// Requests the refund of an anomaly's transaction (its refund timer is returned, to fire after commit)
/// and moves it to Refunding.
pub(super) async fn refund_anomaly_in(
    tx: &mut dyn StoreTx,
    a: PaymentAnomaly,
    pay: &Payment,
    note: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(Timer, PaymentAnomaly)> {
    if !a.status.can_become(AnomalyStatus::Refunding) {
        return Err(MarketError::illegal("anomaly", a.status, AnomalyStatus::Refunding));
    }
    // Only a partner-mode payment was taken by the sub-merchant, which then refunds it.
    let sub_mchid = match pay.mode {
        PayMode::Partner => match tx.orders_of_group(&pay.group_id).await?.first() {
            Some(o) => tx.merchant(&o.merchant_id).await?.and_then(|m| m.sub_mchid),
            None => None,
        },
        _ => None,
    };
    // No order: the money never belonged to one, so neither the payment nor the settlement counts it.
    let refund = Refund {
        id: new_id(),
        group_id: a.group_id.clone(),
        order_id: None,
        merchant_id: None,
        out_trade_no: a.out_trade_no.clone(),
        transaction_id: Some(a.transaction_id.clone()),
        sub_mchid,
        amount: a.amount,
        total: a.amount,
        reason: format!("{} sent back", a.kind),
        status: RefundStatus::Requested,
        wx_refund_id: None,
        created_at: at,
        updated_at: at,
    };
    tx.insert_refund(&refund).await?;
    let ragg = Agg::new("refund", &refund.id, None);
    let timer = ragg.timer(at, TimerAction::Refund, at);
    tx.insert_timer(&timer).await?;
    ragg.record(
        tx,
        at,
        &Actor::Platform,
        Change::new("requested").to(refund.status).reason(Some(&refund.reason)).event(
            "refund.requested",
            json!({ "refund_id": refund.id, "group_id": refund.group_id, "order_id": null,
                    "amount": refund.amount, "reason": refund.reason, "anomaly_id": a.id }),
        ),
    )
    .await?;
    let next = move_anomaly(tx, &a, AnomalyStatus::Refunding, Some(refund.id.clone()), note, at).await?;
    Ok((timer, next))
}

/// A refund of an anomaly concluded: Refunding → Refunded or RefundFailed. `false` when `refund_id` is
/// not an anomaly's (an order's refund, which the payment counts).
pub(super) async fn anomaly_refund_concluded(
    tx: &mut dyn StoreTx,
    refund_id: &str,
    to: RefundStatus,
    at: DateTime<Utc>,
) -> Result<bool> {
    let Some(a) = tx.anomaly_of_refund(refund_id).await? else { return Ok(false) };
    if a.kind == AnomalyKind::ExternalRefund {
        return Ok(false);
    }
    let next = match to {
        RefundStatus::Succeeded => AnomalyStatus::Refunded,
        RefundStatus::Failed => AnomalyStatus::RefundFailed,
        RefundStatus::Processing | RefundStatus::Requested => return Ok(true),
    };
    if a.status == AnomalyStatus::Refunding {
        move_anomaly(tx, &a, next, None, None, at).await?;
    }
    Ok(true)
}

pub(super) async fn move_anomaly(
    tx: &mut dyn StoreTx,
    a: &PaymentAnomaly,
    to: AnomalyStatus,
    refund_id: Option<String>,
    note: Option<&str>,
    at: DateTime<Utc>,
) -> Result<PaymentAnomaly> {
    if !a.status.can_become(to) {
        return Err(MarketError::illegal("anomaly", a.status, to));
    }
    let mut next = a.clone();
    next.status = to;
    next.refund_id = refund_id.or(a.refund_id.clone());
    next.note = note.map(str::to_string).or(a.note.clone());
    next.version = a.version + 1;
    next.updated_at = at;
    won(tx.update_anomaly(&next, a.version).await?, "anomaly")?;
    Agg::new("anomaly", &a.id, None)
        .record(
            tx,
            at,
            &Actor::Platform,
            Change::new("status").states(a.status, to).reason(note).event(
                "anomaly.changed",
                json!({ "anomaly_id": a.id, "kind": a.kind, "from": a.status, "to": to, "group_id": a.group_id }),
            ),
        )
        .await?;
    Ok(next)
}

pub(super) async fn record_anomaly(tx: &mut dyn StoreTx, a: &PaymentAnomaly, at: DateTime<Utc>) -> Result<()> {
    tracing::warn!(anomaly_id = %a.id, kind = %a.kind, group_id = %a.group_id, amount = a.amount.as_fen(), "payment anomaly recorded");
    Agg::new("anomaly", &a.id, None)
        .record(
            tx,
            at,
            &Actor::WechatPay,
            Change::new("recorded").to(a.status).event(
                "anomaly.recorded",
                json!({ "anomaly_id": a.id, "kind": a.kind, "status": a.status, "group_id": a.group_id,
                        "order_id": a.order_id, "amount": a.amount, "expected": a.expected }),
            ),
        )
        .await
}
