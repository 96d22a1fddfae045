//! Payment notifications, cancellation, shipping, receipt, and order queries.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::anomaly_records as anomalies;
use super::{Agg, Change, Checkout, Market, won};
use crate::market::anomaly::{AnomalyKind, RefundNotice};
use crate::market::catalog::Page;
use crate::market::checkout::{CheckoutGroup, GroupStatus};
use crate::market::clock::{new_id, trunc_ms};
use crate::market::error::{MarketError, Result};
use crate::market::events::{Actor, Timer, TimerAction};
use crate::market::gateway::{LogisticsType, ShippingParcel, ShippingUpload};
use crate::market::inventory::{Movement, MovementKind, ReservationStatus};
use crate::market::money::Money;
use crate::market::order::{
    MerchantOrder, OrderDetail, OrderLine, OrderStatus, ShipCorrection, ShipItem, ShipRequest, Shipment, Step,
    parcel_contents,
};
use crate::market::payment::{NoticeOutcome, PayMode, Payment, PaymentNotice, PaymentStatus, Refund, RefundStatus};
use crate::market::service::handles::{Orders, Payments};
use crate::market::store::StoreTx;

impl Payments<'_> {
    /// Applies a verified payment notification. Deduplicated by `notify_id` (a redelivery is
    /// [`NoticeOutcome::Duplicate`]); the group moves to Paid exactly once (a notification racing a
    /// query result is [`NoticeOutcome::AlreadyPaid`]); a payment for a group that already expired or
    /// was cancelled is refunded automatically ([`NoticeOutcome::LateRefunded`]). The amount, and the
    /// sub-orders of a combined payment, must match what was asked. A deposit `out_trade_no` (`dep…`, from
    /// [`Deposits::deposit_prepay`](crate::market::handles::Deposits::deposit_prepay)) credits the merchant's deposit instead, once.
    pub async fn handle_payment_notice(&self, n: &PaymentNotice) -> Result<NoticeOutcome> {
        if n.notify_id.is_empty() || n.out_trade_no.is_empty() || n.transaction_id.is_empty() {
            return Err(MarketError::invalid("notify_id, out_trade_no and transaction_id are required"));
        }
        let (outcome, timers) = match self.retry(|| self.apply_notice(n)).await {
            // A deposit pay-in of the wrong amount: the pay-in was rolled back; record the anomaly.
            Err(MarketError::PaymentMismatch { out_trade_no, reason }) if out_trade_no == n.out_trade_no => {
                self.retry(|| self.hold_deposit_notice(n, &reason)).await?
            }
            other => other?,
        };
        self.fire_now(timers).await;
        Ok(outcome)
    }

    /// Routes one verified WeChat Pay notification to whatever the market owns: a sale or deposit
    /// payment ([`handle_payment_notice`](crate::market::handles::Payments::handle_payment_notice)), an order or deposit-exit
    /// refund ([`handle_refund_notice`](crate::market::handles::Payments::handle_refund_notice)) or a compensation transfer bill
    /// ([`handle_transfer_notice`](crate::market::handles::Transfers::handle_transfer_notice)). `Ok(false)` when the market does
    /// not know it (another system's payment on the same merchant id, or an event it has no use for):
    /// acknowledge it, or hand it on. Any other error should be answered with a failure so that WeChat
    /// Pay redelivers.
    ///
    /// ```no_run
    /// # async fn demo(market: wxshop::market::Market, pay: wxshop::pay::PayClient) {
    /// let svc = wxshop::pay::notify::NotifyService::new(pay, move |n: wxshop::pay::Notification| {
    ///     let market = market.clone();
    ///     async move {
    ///         market.payments().handle_pay_notification(&n).await?;
    ///         Ok(())
    ///     }
    /// });
    /// # let _ = svc; }
    /// ```
    pub async fn handle_pay_notification(&self, n: &crate::pay::Notification) -> Result<bool> {
        if let Some(notice) = PaymentNotice::from_notification(n) {
            return match self.handle_payment_notice(&notice).await {
                Ok(_) => Ok(true),
                Err(MarketError::NotFound { entity: "payment", .. }) => Ok(false),
                Err(e) => Err(e),
            };
        }
        if let Some(notice) = crate::market::TransferNotice::from_notification(n) {
            return match self.governance().transfers().handle_transfer_notice(&notice).await {
                Ok(_) => Ok(true),
                Err(crate::market::MarketError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            };
        }
        if let Some(r) = RefundNotice::from_notification(n) {
            return match self.handle_refund_notice(&r.out_refund_no, r.succeeded, Some(&r.refund_id)).await {
                Ok(_) => Ok(true),
                // Not a refund the market asked for: one of its payments refunded elsewhere?
                Err(MarketError::NotFound { entity: "refund", .. }) => {
                    Ok(self.handle_external_refund(&r).await?.is_some())
                }
                Err(MarketError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            };
        }
        Ok(false)
    }

    /// Applies a refund notification (or a refund query result): a deposit exit refund (its
    /// `out_refund_no` starts with [`DEPOSIT_REFUND_PREFIX`](crate::market::governance::deposit::DEPOSIT_REFUND_PREFIX))
    /// concludes on the deposit ([`Deposits::deposit_refund_settled`](crate::market::handles::Deposits::deposit_refund_settled)), any other refund through
    /// [`refund_settled`](crate::market::handles::Orders::refund_settled). A redelivered notification changes nothing.
    ///
    /// ```no_run
    /// # async fn demo(market: wxshop::market::Market, n: wxshop::pay::Notification) -> wxshop::market::Result<()> {
    /// if let wxshop::pay::NotificationResource::Refund(r) = &n.resource {
    ///     let ok = r.refund_status.as_str() == "SUCCESS";
    ///     market.payments().handle_refund_notice(&r.out_refund_no, ok, Some(&r.refund_id)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn handle_refund_notice(
        &self,
        out_refund_no: &str,
        succeeded: bool,
        wx_refund_id: Option<&str>,
    ) -> Result<RefundSettled> {
        // A deposit exit refund is the one the market stored as such.
        if self.read().await?.deposit_refund(out_refund_no).await?.is_some() {
            let r = self.governance().deposits().deposit_refund_settled(out_refund_no, succeeded, wx_refund_id).await?;
            return Ok(RefundSettled::Deposit(r));
        }
        Ok(RefundSettled::Order(self.orders().refund_settled(out_refund_no, succeeded).await?))
    }
}

impl Market {
    async fn hold_deposit_notice(&self, n: &PaymentNotice, reason: &str) -> Result<(NoticeOutcome, Vec<Timer>)> {
        let at = self.now();
        let mut tx = self.begin().await?;
        if !tx.insert_notice(&n.notify_id, &n.out_trade_no, &n.transaction_id, at).await? {
            return Ok((NoticeOutcome::Duplicate, Vec::new()));
        }
        let anomaly_ids =
            anomalies::hold_deposit_payment(&mut *tx, n, &format!("deposit pay-in {}: {reason}", n.out_trade_no), at)
                .await?;
        tx.commit().await?;
        Ok((NoticeOutcome::Held { anomaly_ids }, Vec::new()))
    }

    async fn apply_notice(&self, n: &PaymentNotice) -> Result<(NoticeOutcome, Vec<Timer>)> {
        let at = self.now();
        let mut tx = self.begin().await?;
        if !tx.insert_notice(&n.notify_id, &n.out_trade_no, &n.transaction_id, at).await? {
            return Ok((NoticeOutcome::Duplicate, Vec::new()));
        }
        // What it pays for is what the market stored for this out_trade_no: a checkout's payment, or a
        // merchant's deposit pay-in.
        let Some(pay) = tx.payment(&n.out_trade_no).await? else {
            if tx.deposit_payment(&n.out_trade_no).await?.is_none() {
                return Err(MarketError::not_found("payment", &n.out_trade_no));
            }
            let applied = super::governance::apply_deposit_notice(&mut *tx, n, at).await?;
            tx.commit().await?;
            return Ok((if applied { NoticeOutcome::Paid } else { NoticeOutcome::AlreadyPaid }, Vec::new()));
        };
        let group = tx.group(&pay.group_id).await?.ok_or_else(|| MarketError::not_found("checkout", &pay.group_id))?;
        let mut orders = tx.orders_of_group(&group.id).await?;
        let sub_txn = |o: &MerchantOrder| {
            n.sub_orders
                .iter()
                .find(|s| s.out_trade_no == o.id)
                .map_or_else(|| n.transaction_id.clone(), |s| s.transaction_id.clone())
        };
        // What the notice moved, one transaction each: the sub-orders of a combined payment, else the one.
        let transactions: Vec<anomalies::Paid<'_>> = if n.sub_orders.is_empty() {
            vec![(n.out_trade_no.clone(), n.transaction_id.clone(), n.amount, None)]
        } else {
            n.sub_orders
                .iter()
                .map(|s| {
                    (
                        s.out_trade_no.clone(),
                        s.transaction_id.clone(),
                        s.amount,
                        orders.iter().find(|o| o.id == s.out_trade_no),
                    )
                })
                .collect()
        };
        if !matches!(pay.status, PaymentStatus::Initiated | PaymentStatus::Closed) {
            if pay.transaction_id.as_deref() == Some(n.transaction_id.as_str()) {
                tx.commit().await?; // keep the notice id
                return Ok((NoticeOutcome::AlreadyPaid, Vec::new()));
            }
            // A second transaction for a checkout already paid: send it back.
            let detail =
                format!("checkout {} was already paid by {}", group.id, pay.transaction_id.as_deref().unwrap_or("?"));
            let finding = anomalies::Finding {
                kind: AnomalyKind::DuplicatePayment,
                expected: None,
                detail: &detail,
                notify_id: &n.notify_id,
                refund: true,
            };
            let (anomaly_ids, timers) =
                anomalies::record_paid_anomalies(&mut *tx, &pay, &transactions, finding, at).await?;
            tx.commit().await?;
            return Ok((NoticeOutcome::DuplicateRefunded { anomaly_ids }, timers));
        }
        let mismatch = if n.amount != pay.amount {
            Some(format!("paid {} fen, expected {} fen", n.amount.as_fen(), pay.amount.as_fen()))
        } else if pay.mode == PayMode::Combine
            && (n.sub_orders.len() != orders.len()
                || orders
                    .iter()
                    .any(|o| n.sub_orders.iter().find(|s| s.out_trade_no == o.id).is_none_or(|s| s.amount != o.total)))
        {
            Some("sub-orders missing, unknown or with the wrong amount".to_string())
        } else {
            None
        };
        if let Some(reason) = mismatch {
            // Recorded and acknowledged, never applied: the platform reviews it (refund or dismiss).
            let detail = format!("payment of checkout {}: {reason}", group.id);
            let finding = anomalies::Finding {
                kind: AnomalyKind::AmountMismatch,
                expected: Some(pay.amount),
                detail: &detail,
                notify_id: &n.notify_id,
                refund: false,
            };
            let (anomaly_ids, _) = anomalies::record_paid_anomalies(&mut *tx, &pay, &transactions, finding, at).await?;
            tx.commit().await?;
            return Ok((NoticeOutcome::Held { anomaly_ids }, Vec::new()));
        }
        let mut paid = pay.clone();
        paid.status = PaymentStatus::Paid;
        paid.transaction_id = Some(n.transaction_id.clone());
        paid.paid_at = Some(trunc_ms(n.paid_at));
        paid.version = pay.version + 1;
        paid.updated_at = at;
        won(tx.update_payment(&paid, pay.version).await?, "payment")?;
        let gagg = Agg::new("group", &group.id, None);
        let notice_json = json!({ "group_id": group.id, "transaction_id": n.transaction_id, "amount": n.amount });

        if group.status != GroupStatus::AwaitingPayment {
            // Too late: the stock went back on sale. Refund rather than oversell.
            gagg.record(
                &mut *tx,
                at,
                &Actor::WechatPay,
                Change::new("late_payment").states(pay.status, paid.status).event("payment.late", notice_json),
            )
            .await?;
            let mut timers = Vec::new();
            let mut refund_ids = Vec::new();
            let targets: Vec<(Option<&MerchantOrder>, String, String, crate::market::Money)> =
                if pay.mode == PayMode::Combine {
                    orders.iter().map(|o| (Some(o), o.id.clone(), sub_txn(o), o.total)).collect()
                } else {
                    vec![(orders.first(), group.id.clone(), n.transaction_id.clone(), group.total)]
                };
            for (order, out_trade_no, txn, amount) in targets {
                let (t, id) = request_refund(
                    &mut *tx,
                    at,
                    &group,
                    order,
                    out_trade_no,
                    Some(txn),
                    amount,
                    "payment arrived after the order closed",
                    pay.mode,
                )
                .await?;
                timers.push(t);
                refund_ids.push(id);
            }
            tx.commit().await?;
            return Ok((NoticeOutcome::LateRefunded { refund_ids }, timers));
        }

        let mut g = group.clone();
        g.status = GroupStatus::Paid;
        g.version = group.version + 1;
        g.updated_at = at;
        won(tx.update_group(&g, group.version).await?, "checkout")?;
        for o in &mut orders {
            if o.status.step(OrderStatus::Paid)? == Step::Noop {
                continue;
            }
            let mut next = o.clone();
            next.status = OrderStatus::Paid;
            next.paid_at = Some(at);
            next.ship_deadline = Some(at + chrono::Duration::hours(o.ship_sla_hours));
            next.transaction_id = Some(sub_txn(o));
            next.version = o.version + 1;
            next.updated_at = at;
            won(tx.update_order(&next, o.version).await?, "order")?;
            let oagg = Agg::new("order", &o.id, Some(&o.merchant_id));
            if let Some(deadline) = next.ship_deadline {
                tx.insert_timer(&oagg.timer(at, TimerAction::ShipOverdue, deadline)).await?;
            }
            oagg.record(
                &mut *tx,
                at,
                &Actor::WechatPay,
                Change::new("paid").states(o.status, next.status).event(
                    "order.paid",
                    json!({ "order_id": o.id, "merchant_id": o.merchant_id, "total": o.total,
                            "ship_deadline": next.ship_deadline }),
                ),
            )
            .await?;
            *o = next;
        }
        for r in tx.reservations_of_group(&group.id).await? {
            if r.status != ReservationStatus::Active {
                continue;
            }
            won(
                tx.set_reservation_status(&r.merchant_id, &r.id, r.status, ReservationStatus::Committed, at).await?,
                "reservation",
            )?;
            if !tx.commit_stock(&r.merchant_id, &r.sku_id, r.qty, at).await? {
                return Err(MarketError::Store {
                    message: format!("stock of {} lost its reservation", r.sku_id),
                    retryable: false,
                });
            }
            tx.insert_movement(&Movement {
                id: new_id(),
                merchant_id: r.merchant_id.clone(),
                sku_id: r.sku_id.clone(),
                kind: MovementKind::Commit,
                on_hand_delta: -r.qty,
                reserved_delta: -r.qty,
                ref_id: Some(r.id.clone()),
                at,
            })
            .await?;
        }
        tx.cancel_timers(&group.id, TimerAction::CloseUnpaid, at).await?;
        gagg.record(
            &mut *tx,
            at,
            &Actor::WechatPay,
            Change::new("paid").states(group.status, g.status).event("payment.succeeded", notice_json),
        )
        .await?;
        tx.commit().await?;
        Ok((NoticeOutcome::Paid, Vec::new()))
    }

    /// Closes an awaiting group inside `tx` (the caller checked the status): orders Cancelled,
    /// reservations released (or expired), payment Closed, a ClosePrepay call scheduled.
    pub(super) async fn close_group(
        &self,
        tx: &mut dyn StoreTx,
        group: CheckoutGroup,
        to: GroupStatus,
        actor: &Actor,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<Timer>> {
        let mut g = group.clone();
        g.status = to;
        g.version = group.version + 1;
        g.updated_at = at;
        won(tx.update_group(&g, group.version).await?, "checkout")?;
        for o in tx.orders_of_group(&group.id).await? {
            if o.status.step(OrderStatus::Cancelled)? == Step::Noop {
                continue;
            }
            let mut next = o.clone();
            next.status = OrderStatus::Cancelled;
            next.cancelled_at = Some(at);
            next.cancel_reason = Some(reason.into());
            next.version = o.version + 1;
            next.updated_at = at;
            won(tx.update_order(&next, o.version).await?, "order")?;
            Agg::new("order", &o.id, Some(&o.merchant_id))
                .record(
                    tx,
                    at,
                    actor,
                    Change::new("cancelled").states(o.status, next.status).reason(Some(reason)).event(
                        "order.cancelled",
                        json!({ "order_id": o.id, "merchant_id": o.merchant_id, "reason": reason }),
                    ),
                )
                .await?;
        }
        let (rs, kind) = if to == GroupStatus::Expired {
            (ReservationStatus::Expired, MovementKind::Expire)
        } else {
            (ReservationStatus::Released, MovementKind::Release)
        };
        for r in tx.reservations_of_group(&group.id).await? {
            if r.status != ReservationStatus::Active {
                continue;
            }
            won(tx.set_reservation_status(&r.merchant_id, &r.id, r.status, rs, at).await?, "reservation")?;
            if !tx.release(&r.merchant_id, &r.sku_id, r.qty, at).await? {
                return Err(MarketError::Store {
                    message: format!("stock of {} lost its reservation", r.sku_id),
                    retryable: false,
                });
            }
            tx.insert_movement(&Movement {
                id: new_id(),
                merchant_id: r.merchant_id.clone(),
                sku_id: r.sku_id.clone(),
                kind,
                on_hand_delta: 0,
                reserved_delta: -r.qty,
                ref_id: Some(r.id.clone()),
                at,
            })
            .await?;
        }
        if let Some(p) = tx.payment(&group.id).await?
            && p.status == PaymentStatus::Initiated
        {
            let mut next = p.clone();
            next.status = PaymentStatus::Closed;
            next.version = p.version + 1;
            next.updated_at = at;
            won(tx.update_payment(&next, p.version).await?, "payment")?;
        }
        tx.cancel_timers(&group.id, TimerAction::CloseUnpaid, at).await?;
        let gagg = Agg::new("group", &group.id, None);
        let close = gagg.timer(at, TimerAction::ClosePrepay, at);
        tx.insert_timer(&close).await?;
        let event_type = if to == GroupStatus::Expired { "checkout.expired" } else { "checkout.cancelled" };
        gagg.record(
            tx,
            at,
            actor,
            Change::new(if to == GroupStatus::Expired { "expired" } else { "cancelled" })
                .states(group.status, to)
                .reason(Some(reason))
                .event(event_type, json!({ "group_id": group.id, "reason": reason })),
        )
        .await?;
        Ok(vec![close])
    }
}

impl Orders<'_> {
    /// The buyer cancels an unpaid checkout: orders cancelled, stock released, prepay order closed.
    /// Cancelling twice is a no-op; cancelling a paid group is [`MarketError::IllegalTransition`].
    pub async fn cancel_checkout(&self, buyer_openid: &str, group_id: &str) -> Result<Checkout> {
        let timers = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let g = tx
                    .group(group_id)
                    .await?
                    .filter(|g| g.buyer_openid == buyer_openid)
                    .ok_or_else(|| MarketError::not_found("checkout", group_id))?;
                match g.status {
                    GroupStatus::Cancelled => return Ok(Vec::new()),
                    GroupStatus::AwaitingPayment => {}
                    s => return Err(MarketError::illegal("checkout", s, GroupStatus::Cancelled)),
                }
                let t = self
                    .close_group(
                        &mut *tx,
                        g,
                        GroupStatus::Cancelled,
                        &Actor::Buyer(buyer_openid.into()),
                        "cancelled by buyer",
                        at,
                    )
                    .await?;
                tx.commit().await?;
                Ok(t)
            })
            .await?;
        self.fire_now(timers).await;
        self.checkout_view(group_id).await
    }

    /// The merchant cancels a paid, unshipped order: units back in stock, the order's payment refunded.
    pub async fn cancel_paid_order(&self, merchant_id: &str, order_id: &str, reason: &str) -> Result<OrderDetail> {
        let timers = self
           .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let o = owned_order(&mut *tx, order_id, |o| o.merchant_id == merchant_id).await?;
                match o.status.step(OrderStatus::Cancelled)? {
                    Step::Noop => return Ok(Vec::new()),
                    Step::Move if o.status != OrderStatus::Paid => {
                        return Err(MarketError::illegal("order", o.status, OrderStatus::Cancelled));
                    }
                    Step::Move => {}
                }
                let group = tx.group(&o.group_id).await?.ok_or_else(|| MarketError::not_found("checkout", &o.group_id))?;
                let pay = tx.payment(&o.group_id).await?.ok_or_else(|| MarketError::not_found("payment", &o.group_id))?;
                let mut next = o.clone();
                next.status = OrderStatus::Cancelled;
                next.cancelled_at = Some(at);
                next.cancel_reason = Some(reason.into());
                next.version = o.version + 1;
                next.updated_at = at;
                won(tx.update_order(&next, o.version).await?, "order")?;
                restock_unshipped(&mut *tx, merchant_id, order_id, at).await?;
                let out_trade_no = if pay.mode == PayMode::Combine { o.id.clone() } else { group.id.clone() };
                // Only what was not already refunded (after-sales may have refunded part of the order).
                let mut already = Money::ZERO;
                for r in tx.refunds_of_group(&o.group_id).await? {
                    if r.order_id.as_deref() == Some(order_id) && r.status != RefundStatus::Failed {
                        already = already.checked_add(r.amount)?;
                    }
                }
                let remaining = o.total.checked_sub(already)?;
                let mut timers = Vec::new();
                if remaining > Money::ZERO {
                    let (t, _) = request_refund(
                        &mut *tx,
                        at,
                        &group,
                        Some(&o),
                        out_trade_no,
                        o.transaction_id.clone(),
                        remaining,
                        reason,
                        pay.mode,
                    )
                    .await?;
                    timers.push(t);
                }
                Agg::new("order", order_id, Some(merchant_id))
                    .record(
                        &mut *tx,
                        at,
                        &Actor::Merchant(merchant_id.into()),
                        Change::new("cancelled").states(o.status, next.status).reason(Some(reason)).event(
                            "order.cancelled",
                            json!({ "order_id": order_id, "merchant_id": merchant_id, "reason": reason, "refund": remaining }),
                        ),
                    )
                    .await?;
                tx.commit().await?;
                Ok(timers)
            })
            .await?;
        self.fire_now(timers).await;
        self.order(order_id).await
    }

    /// Ships a parcel of a paid order: uploads the shipping info to WeChat through the
    /// [`ShippingGateway`](crate::market::ShippingGateway) first (if that fails nothing changes), then
    /// records it; the order becomes PartiallyShipped or Shipped, and a fully shipped order starts its
    /// auto-confirm timer. Shipping the same waybill again is a no-op.
    pub async fn ship(&self, merchant_id: &str, order_id: &str, req: ShipRequest) -> Result<OrderDetail> {
        if req.tracking_no.is_empty()
            || req.tracking_no.len() > 128
            || req.express_company.is_empty()
            || req.express_company.len() > 32
        {
            return Err(MarketError::invalid("tracking_no (1..=128) and express_company (1..=32) are required"));
        }
        let detail = self.order(order_id).await?;
        if detail.order.merchant_id != merchant_id {
            return Err(MarketError::not_found("order", order_id));
        }
        if detail.shipments.iter().any(|s| s.tracking_no == req.tracking_no) {
            return Ok(detail);
        }
        let o = &detail.order;
        if !matches!(o.status, OrderStatus::Paid | OrderStatus::PartiallyShipped) {
            return Err(MarketError::illegal("order", o.status, OrderStatus::Shipped));
        }
        let (items, all) = parcel_contents(&detail.lines, req.items.as_deref())?;
        let (pay, merchant) = {
            let mut tx = self.read().await?;
            let pay = tx.payment(&o.group_id).await?.ok_or_else(|| MarketError::not_found("payment", &o.group_id))?;
            let m = tx.merchant(merchant_id).await?.ok_or_else(|| MarketError::not_found("merchant", merchant_id))?;
            (pay, m)
        };
        let item_desc = parcel_desc(&detail.lines, &items);
        let upload = ShippingUpload {
            out_trade_no: if pay.mode == PayMode::Combine { o.id.clone() } else { o.group_id.clone() },
            transaction_id: o.transaction_id.clone(),
            sub_mchid: merchant.sub_mchid.clone(),
            logistics_type: LogisticsType::Express,
            split: !(all && detail.shipments.is_empty()),
            is_all_delivered: all,
            parcels: vec![ShippingParcel {
                tracking_no: req.tracking_no.clone(),
                express_company: req.express_company.clone(),
                item_desc,
                receiver_phone: req.receiver_phone.clone(),
            }],
            payer_openid: o.buyer_openid.clone(),
            upload_time: self.now(),
        };
        self.inner.ship.upload(&upload).await?;
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let o = owned_order(&mut *tx, order_id, |o| o.merchant_id == merchant_id).await?;
            let lines = tx.order_lines(merchant_id, order_id).await?;
            let (items, all) = parcel_contents(&lines, Some(&items))?;
            let to = if all { OrderStatus::Shipped } else { OrderStatus::PartiallyShipped };
            o.status.step(to)?;
            let shipment = Shipment {
                id: new_id(),
                merchant_id: merchant_id.into(),
                order_id: order_id.into(),
                tracking_no: req.tracking_no.clone(),
                express_company: req.express_company.clone(),
                items: items.clone(),
                shipped_at: at,
            };
            if !tx.insert_shipment(&shipment).await? {
                return Ok(()); // this waybill was recorded by a concurrent call
            }
            for it in &items {
                let l = lines
                    .iter()
                    .find(|l| l.line_no == it.line_no)
                    .ok_or_else(|| MarketError::not_found("order line", it.line_no))?;
                tx.set_line_shipped(merchant_id, order_id, it.line_no, l.shipped_qty + it.qty).await?;
            }
            let mut next = o.clone();
            next.status = to;
            next.version = o.version + 1;
            next.updated_at = at;
            let oagg = Agg::new("order", order_id, Some(merchant_id));
            if all {
                next.shipped_at = Some(at);
                tx.cancel_timers(order_id, TimerAction::ShipOverdue, at).await?;
                let due = at + chrono::Duration::days(o.auto_confirm_days);
                tx.insert_timer(&oagg.timer(at, TimerAction::AutoConfirm, due)).await?;
            }
            won(tx.update_order(&next, o.version).await?, "order")?;
            oagg.record(
                &mut *tx,
                at,
                &Actor::Merchant(merchant_id.into()),
                Change::new("shipped").states(o.status, to).event(
                    if all { "order.shipped" } else { "order.partially_shipped" },
                    json!({ "order_id": order_id, "merchant_id": merchant_id, "tracking_no": req.tracking_no,
                            "express_company": req.express_company, "late": o.ship_deadline.is_some_and(|d| at > d) }),
                ),
            )
            .await?;
            tx.commit().await
        })
        .await?;
        self.order(order_id).await
    }

    /// Corrects the waybill of a shipped order (wrong number or carrier): WeChat's shipping-info
    /// management allows one correction per payment while the order is shipped and unconfirmed. The
    /// corrected shipping info (every parcel of the order, the named one replaced) goes to WeChat
    /// through [`ShippingGateway::correct`](crate::market::ShippingGateway::correct) first; then the
    /// parcel's recorded waybill is replaced and the change audited (`order.shipping_corrected`). The
    /// order's status and timers do not change. A spent correction, or an order not Shipped, is
    /// [`MarketError::CorrectionRefused`] and changes nothing.
    pub async fn correct_shipment(&self, merchant_id: &str, order_id: &str, c: ShipCorrection) -> Result<OrderDetail> {
        if c.tracking_no.is_empty()
            || c.tracking_no.len() > 128
            || c.express_company.is_empty()
            || c.express_company.len() > 32
        {
            return Err(MarketError::invalid("tracking_no (1..=128) and express_company (1..=32) are required"));
        }
        let detail = self.order(order_id).await?;
        let o = &detail.order;
        if o.merchant_id != merchant_id {
            return Err(MarketError::not_found("order", order_id));
        }
        if o.status != OrderStatus::Shipped {
            return Err(MarketError::CorrectionRefused {
                order_id: order_id.into(),
                reason: format!("the order is {}, not Shipped", o.status),
            });
        }
        let target = match &c.replaces {
            Some(t) => detail.shipments.iter().find(|s| s.tracking_no == *t),
            None if detail.shipments.len() == 1 => detail.shipments.first(),
            None => {
                return Err(MarketError::invalid("the order went out in several parcels: name the waybill (replaces)"));
            }
        }
        .ok_or_else(|| MarketError::not_found("shipment", c.replaces.as_deref().unwrap_or_default()))?
        .clone();
        if detail.shipments.iter().any(|s| s.id != target.id && s.tracking_no == c.tracking_no) {
            return Err(MarketError::invalid(format!("{} is another parcel of this order", c.tracking_no)));
        }
        let (pay, merchant) = {
            let mut tx = self.read().await?;
            let pay = tx.payment(&o.group_id).await?.ok_or_else(|| MarketError::not_found("payment", &o.group_id))?;
            let m = tx.merchant(merchant_id).await?.ok_or_else(|| MarketError::not_found("merchant", merchant_id))?;
            (pay, m)
        };
        let parcels = detail
            .shipments
            .iter()
            .map(|s| {
                let fixed = s.id == target.id;
                ShippingParcel {
                    tracking_no: if fixed { c.tracking_no.clone() } else { s.tracking_no.clone() },
                    express_company: if fixed { c.express_company.clone() } else { s.express_company.clone() },
                    item_desc: parcel_desc(&detail.lines, &s.items),
                    receiver_phone: c.receiver_phone.clone(),
                }
            })
            .collect::<Vec<_>>();
        let upload = ShippingUpload {
            out_trade_no: if pay.mode == PayMode::Combine { o.id.clone() } else { o.group_id.clone() },
            transaction_id: o.transaction_id.clone(),
            sub_mchid: merchant.sub_mchid.clone(),
            logistics_type: LogisticsType::Express,
            split: parcels.len() > 1,
            is_all_delivered: true,
            parcels,
            payer_openid: o.buyer_openid.clone(),
            upload_time: self.now(),
        };
        if !self.inner.ship.correct(&upload).await? {
            return Err(MarketError::CorrectionRefused {
                order_id: order_id.into(),
                reason: "WeChat allows one correction per payment, and this one's is used".into(),
            });
        }
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            owned_order(&mut *tx, order_id, |o| o.merchant_id == merchant_id).await?;
            if !tx
                .correct_shipment(merchant_id, &target.id, &target.tracking_no, &c.tracking_no, &c.express_company)
                .await?
            {
                return Ok(()); // a concurrent call recorded it
            }
            Agg::new("order", order_id, Some(merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &Actor::Merchant(merchant_id.into()),
                    Change::new("shipping_corrected").event(
                        "order.shipping_corrected",
                        json!({ "order_id": order_id, "merchant_id": merchant_id,
                                "from": { "tracking_no": target.tracking_no, "express_company": target.express_company },
                                "to": { "tracking_no": c.tracking_no, "express_company": c.express_company } }),
                    ),
                )
                .await?;
            tx.commit().await
        })
        .await?;
        self.order(order_id).await
    }

    /// The buyer confirms receipt (Shipped → Received; again is a no-op); the after-sale window starts.
    pub async fn confirm_receipt(&self, buyer_openid: &str, order_id: &str) -> Result<OrderDetail> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let o = owned_order(&mut *tx, order_id, |o| o.buyer_openid == buyer_openid).await?;
            if o.status.step(OrderStatus::Received)? == Step::Noop {
                return Ok(());
            }
            receive(&mut *tx, o, &Actor::Buyer(buyer_openid.into()), "buyer", at).await?;
            tx.commit().await
        })
        .await?;
        self.order(order_id).await
    }

    /// An order with its lines and parcels.
    pub async fn order(&self, order_id: &str) -> Result<OrderDetail> {
        let mut tx = self.snapshot().await?;
        let order = tx.order(order_id).await?.ok_or_else(|| MarketError::not_found("order", order_id))?;
        let lines = tx.order_lines(&order.merchant_id, order_id).await?;
        let shipments = tx.shipments(&order.merchant_id, order_id).await?;
        Ok(OrderDetail { order, lines, shipments })
    }

    /// A buyer's orders, newest first (`after` = the `next` of the previous page).
    pub async fn buyer_orders(
        &self,
        buyer_openid: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Page<MerchantOrder>> {
        crate::market::catalog::check_id_page(after, limit)?;
        let items = self.read().await?.orders_of_buyer(buyer_openid, after, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit, |o| o.id.clone()))
    }

    /// A merchant's orders, newest first, optionally in one status.
    pub async fn merchant_orders(
        &self,
        merchant_id: &str,
        status: Option<OrderStatus>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Page<MerchantOrder>> {
        crate::market::catalog::check_id_page(after, limit)?;
        let items = self.read().await?.orders_of_merchant(merchant_id, status, after, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit, |o| o.id.clone()))
    }

    /// The refunds of a checkout group.
    pub async fn refunds(&self, group_id: &str) -> Result<Vec<Refund>> {
        self.read().await?.refunds_of_group(group_id).await
    }

    /// Applies a refund result WeChat Pay reported later (a refund notification or query) for a refund
    /// that was Processing. Repeats are no-ops.
    pub async fn refund_settled(&self, refund_id: &str, succeeded: bool) -> Result<Refund> {
        self.retry(|| async {
            let at = self.now();
            let mut tx = self.begin().await?;
            let r = tx.refund(refund_id).await?.ok_or_else(|| MarketError::not_found("refund", refund_id))?;
            if r.status != RefundStatus::Processing && r.status != RefundStatus::Requested {
                return Ok(r);
            }
            let r = conclude_refund(
                &mut *tx,
                r,
                if succeeded { RefundStatus::Succeeded } else { RefundStatus::Failed },
                None,
                at,
            )
            .await?;
            tx.commit().await?;
            Ok(r)
        })
        .await
    }
}

/// A refund notification applied by [`Payments::handle_refund_notice`](crate::market::handles::Payments::handle_refund_notice).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "refund", rename_all = "snake_case")]
pub enum RefundSettled {
    /// A refund of a checkout payment.
    Order(Refund),
    /// A deposit exit refund.
    Deposit(crate::market::governance::deposit::DepositRefund),
}

/// A cancelled unshipped order's units go back on hand (each with its movement), and its ship deadline
/// stops.
pub(super) async fn restock_unshipped(
    tx: &mut dyn StoreTx,
    merchant_id: &str,
    order_id: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    for l in tx.order_lines(merchant_id, order_id).await? {
        tx.add_on_hand(merchant_id, &l.sku_id, l.qty, at).await?;
        tx.insert_movement(&Movement {
            id: new_id(),
            merchant_id: merchant_id.into(),
            sku_id: l.sku_id.clone(),
            kind: MovementKind::Restock,
            on_hand_delta: l.qty,
            reserved_delta: 0,
            ref_id: Some(order_id.into()),
            at,
        })
        .await?;
    }
    tx.cancel_timers(order_id, TimerAction::ShipOverdue, at).await?;
    Ok(())
}

async fn owned_order(
    tx: &mut dyn StoreTx,
    order_id: &str,
    owns: impl Fn(&MerchantOrder) -> bool,
) -> Result<MerchantOrder> {
    tx.order(order_id).await?.filter(|o| owns(o)).ok_or_else(|| MarketError::not_found("order", order_id))
}

/// Shipped → Received inside `tx`: cancels the auto-confirm timer and schedules completion at the end
/// of the after-sale window.
pub(super) async fn receive(
    tx: &mut dyn StoreTx,
    o: MerchantOrder,
    actor: &Actor,
    by: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    let mut next = o.clone();
    next.status = OrderStatus::Received;
    next.received_at = Some(at);
    next.received_by = Some(by.into());
    next.version = o.version + 1;
    next.updated_at = at;
    won(tx.update_order(&next, o.version).await?, "order")?;
    tx.cancel_timers(&o.id, TimerAction::AutoConfirm, at).await?;
    let oagg = Agg::new("order", &o.id, Some(&o.merchant_id));
    tx.insert_timer(&oagg.timer(at, TimerAction::Complete, at + chrono::Duration::days(o.after_sale_days))).await?;
    oagg.record(
        tx,
        at,
        actor,
        Change::new("received")
            .states(o.status, next.status)
            .event("order.received", json!({ "order_id": o.id, "merchant_id": o.merchant_id, "by": by })),
    )
    .await
}

/// Records a refund to request and its timer (the gateway call happens after commit).
#[allow(clippy::too_many_arguments)]
pub(super) async fn request_refund(
    tx: &mut dyn StoreTx,
    at: DateTime<Utc>,
    group: &CheckoutGroup,
    order: Option<&MerchantOrder>,
    out_trade_no: String,
    transaction_id: Option<String>,
    amount: crate::market::Money,
    reason: &str,
    mode: PayMode,
) -> Result<(Timer, String)> {
    // Only a partner-mode payment was taken by the sub-merchant; JSAPI and combined payments were
    // taken by the platform's merchant id, which refunds them.
    let sub_mchid = match order {
        Some(o) if mode == PayMode::Partner => tx.merchant(&o.merchant_id).await?.and_then(|m| m.sub_mchid),
        _ => None,
    };
    let total = if out_trade_no == group.id { group.total } else { order.map_or(amount, |o| o.total) };
    let refund = Refund {
        id: new_id(),
        group_id: group.id.clone(),
        order_id: order.map(|o| o.id.clone()),
        merchant_id: order.map(|o| o.merchant_id.clone()),
        out_trade_no,
        transaction_id,
        sub_mchid,
        amount,
        total,
        reason: reason.into(),
        status: RefundStatus::Requested,
        wx_refund_id: None,
        created_at: at,
        updated_at: at,
    };
    tx.insert_refund(&refund).await?;
    let ragg = Agg::new("refund", &refund.id, refund.merchant_id.as_deref());
    let timer = ragg.timer(at, TimerAction::Refund, at);
    tx.insert_timer(&timer).await?;
    ragg.record(
        tx,
        at,
        &Actor::Platform,
        Change::new("requested").to(refund.status).reason(Some(reason)).event(
            "refund.requested",
            json!({ "refund_id": refund.id, "group_id": group.id, "order_id": refund.order_id, "amount": amount, "reason": reason }),
        ),
    )
    .await?;
    Ok((timer, refund.id))
}

/// Moves a refund to `to` and, on success, adds it to the payment's refunded amount.
pub(super) async fn conclude_refund(
    tx: &mut dyn StoreTx,
    r: Refund,
    to: RefundStatus,
    wx_refund_id: Option<String>,
    at: DateTime<Utc>,
) -> Result<Refund> {
    let mut next = r.clone();
    next.status = to;
    next.wx_refund_id = wx_refund_id.or(r.wx_refund_id.clone());
    next.updated_at = at;
    won(tx.update_refund(&next, r.status).await?, "refund")?;
    // An anomaly's refund sends back money the payment never counted.
    let of_anomaly = anomalies::anomaly_refund_concluded(tx, &r.id, to, at).await?;
    if to == RefundStatus::Succeeded && !of_anomaly {
        let p: Payment =
            tx.payment(&r.group_id).await?.ok_or_else(|| MarketError::not_found("payment", &r.group_id))?;
        let mut np = p.clone();
        np.refunded = p.refunded.checked_add(r.amount)?;
        if np.refunded > p.amount {
            return Err(MarketError::Money(format!("refunds of {} exceed the payment", r.group_id)));
        }
        np.status = if np.refunded == p.amount { PaymentStatus::Refunded } else { PaymentStatus::PartiallyRefunded };
        np.version = p.version + 1;
        np.updated_at = at;
        won(tx.update_payment(&np, p.version).await?, "payment")?;
    }
    let event_type = match to {
        RefundStatus::Succeeded => "refund.succeeded",
        RefundStatus::Failed => "refund.failed",
        RefundStatus::Processing => "refund.processing",
        RefundStatus::Requested => "refund.requested",
    };
    Agg::new("refund", &r.id, r.merchant_id.as_deref())
        .record(
            tx,
            at,
            &Actor::WechatPay,
            Change::new("status").states(r.status, to).event(
                event_type,
                json!({ "refund_id": r.id, "group_id": r.group_id, "order_id": r.order_id, "amount": r.amount }),
            ),
        )
        .await?;
    Ok(next)
}

/// What WeChat is told a parcel holds: "title×qty, …", at most 120 characters.
fn parcel_desc(lines: &[OrderLine], items: &[ShipItem]) -> String {
    items
        .iter()
        .filter_map(|it| lines.iter().find(|l| l.line_no == it.line_no).map(|l| format!("{}×{}", l.title, it.qty)))
        .collect::<Vec<_>>()
        .join(", ")
        .chars()
        .take(120)
        .collect()
}
