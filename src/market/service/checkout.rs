//! Checkout.

use std::collections::HashMap;

use serde_json::json;

use super::{Agg, Change, Checkout, Market, chrono_dur, won};
use crate::market::checkout::{CheckoutGroup, CheckoutRequest, GroupStatus, Plan, plan};
use crate::market::clock::new_id;
use crate::market::error::{MarketError, Result, Shortage};
use crate::market::events::{Actor, TimerAction};
use crate::market::gateway::{PrepayRequest, SubOrder};
use crate::market::inventory::{Demand, Movement, MovementKind, Reservation, ReservationStatus, aggregate_demand};
use crate::market::order::{MerchantOrder, OrderLine, OrderStatus};
use crate::market::payment::{PayMode, Payment, PaymentStatus};
use crate::market::service::handles::Orders;
use crate::market::store::StoreTx;

const SCOPE: &str = "checkout";

/// What one checkout transaction produced.
enum Placed {
    /// A new group (with what the prepay call needs).
    New(Box<(Checkout, PrepayRequest)>),
    /// The key was used before with the same request.
    Replay(String),
}

impl Orders<'_> {
    /// Checks out: reserves stock for every line with one conditional statement, creates one checkout
    /// group with one order per merchant and a payment, then asks WeChat Pay for a prepay order (JSAPI
    /// for one merchant, partner mode for one sub-merchant, combined payment for several).
    ///
    /// Idempotent by `(buyer, idempotency_key)`: the same request returns the same group; a different
    /// request under the same key is [`MarketError::IdempotencyConflict`]. Not enough stock is
    /// [`MarketError::OutOfStock`] and nothing is written. If the prepay call fails the group stays
    /// (stock held until the deadline) and the same call again retries the prepay.
    pub async fn checkout(&self, req: CheckoutRequest) -> Result<Checkout> {
        req.validate()?;
        let hash = req.request_hash();
        let key = format!("{}:{}", req.buyer_openid, req.idempotency_key);
        let placed = self.retry(|| self.place(&req, &key, &hash)).await?;
        match placed {
            Placed::New(placed) => {
                let (co, prepay) = *placed;
                self.attach_prepay(co, Some(prepay)).await
            }
            Placed::Replay(group_id) => self.checkout_replay(&group_id).await,
        }
    }

    /// A checkout group with its orders and payment.
    pub async fn checkout_view(&self, group_id: &str) -> Result<Checkout> {
        let mut tx = self.snapshot().await?;
        let group = tx.group(group_id).await?.ok_or_else(|| MarketError::not_found("checkout", group_id))?;
        let orders = tx.orders_of_group(group_id).await?;
        let payment = tx.payment(group_id).await?.ok_or_else(|| MarketError::not_found("payment", group_id))?;
        Ok(Checkout { group, orders, payment })
    }
}

impl Market {
    async fn place(&self, req: &CheckoutRequest, key: &str, hash: &str) -> Result<Placed> {
        let at = self.now();
        let mut tx = self.begin().await?;
        if let Some(found) = replay(&mut *tx, key, hash, &req.idempotency_key).await? {
            return Ok(Placed::Replay(found));
        }
        let demand = req.aggregated()?;
        let sku_ids: Vec<String> = demand.keys().cloned().collect();
        let offers = tx.offers(&sku_ids).await?;
        let mut cats: Vec<String> = offers.iter().map(|o| o.category_id.clone()).collect();
        cats.sort();
        cats.dedup();
        let rules: HashMap<_, _> =
            tx.current_rules(&cats).await?.into_iter().map(|r| (r.category_id.clone(), r)).collect();
        let plan = plan(req, &offers, &rules)?;

        let group_id = new_id();
        if !tx.insert_idempotency(SCOPE, key, hash, &group_id, at).await? {
            // A concurrent checkout with this key committed first: start over and replay it.
            return Err(MarketError::Conflict("idempotency key".into()));
        }
        let deadline = at + chrono_dur(self.config().pay_window);
        let (group, orders, payment, prepay) =
            build(&plan, req, &group_id, at, deadline, &self.config().pay_description);
        tx.insert_group(&group).await?;
        tx.insert_payment(&payment).await?;
        let gagg = Agg::new("group", &group.id, None);
        let buyer = Actor::Buyer(req.buyer_openid.clone());
        let mut demands = Vec::new();
        for (o, po) in orders.iter().zip(&plan.orders) {
            tx.insert_order(o).await?;
            for (i, l) in po.lines.iter().enumerate() {
                tx.insert_order_line(&OrderLine {
                    order_id: o.id.clone(),
                    merchant_id: o.merchant_id.clone(),
                    line_no: i as i64 + 1,
                    sku_id: l.sku.id.clone(),
                    product_id: l.sku.product_id.clone(),
                    title: l.title.clone(),
                    attrs: l.sku.attrs.clone(),
                    category_id: l.category_id.clone(),
                    rule_version: l.rule.version,
                    unit_price: l.sku.price,
                    qty: l.qty,
                    line_total: l.line_total,
                    discount: l.discount,
                    commission_bps: l.rule.spec.commission_bps,
                    commission: l.commission,
                    shipped_qty: 0,
                })
                .await?;
                let r = Reservation {
                    id: new_id(),
                    merchant_id: o.merchant_id.clone(),
                    group_id: group.id.clone(),
                    order_id: o.id.clone(),
                    sku_id: l.sku.id.clone(),
                    qty: l.qty,
                    status: ReservationStatus::Active,
                    expires_at: deadline,
                    created_at: at,
                    updated_at: at,
                };
                tx.insert_reservation(&r).await?;
                tx.insert_movement(&Movement {
                    id: new_id(),
                    merchant_id: r.merchant_id.clone(),
                    sku_id: r.sku_id.clone(),
                    kind: MovementKind::Reserve,
                    on_hand_delta: 0,
                    reserved_delta: r.qty,
                    ref_id: Some(r.id.clone()),
                    at,
                })
                .await?;
                demands.push((o.merchant_id.as_str(), l.sku.id.as_str(), l.qty));
            }
            Agg::new("order", &o.id, Some(&o.merchant_id))
                .record(
                    &mut *tx,
                    at,
                    &buyer,
                    Change::new("created").to(o.status).event(
                        "order.created",
                        json!({ "order_id": o.id, "group_id": group.id, "merchant_id": o.merchant_id, "total": o.total }),
                    ),
                )
                .await?;
        }
        tx.insert_timer(&gagg.timer(at, TimerAction::CloseUnpaid, deadline)).await?;
        gagg.record(
            &mut *tx,
            at,
            &buyer,
            Change::new("created").to(group.status).event(
                "checkout.created",
                json!({ "group_id": group.id, "total": group.total, "orders": orders.iter().map(|o| &o.id).collect::<Vec<_>>() }),
            ),
        )
        .await?;
        // Last, so the rows it locks on a hot SKU are held for as short a time as possible.
        let demand: Vec<Demand> = aggregate_demand(demands)?;
        let got = tx.reserve(&demand, at).await?;
        if got.len() != demand.len() {
            let short: Vec<String> =
                demand.iter().filter(|d| !got.contains(&d.sku_id)).map(|d| d.sku_id.clone()).collect();
            let levels = tx.stock_of(&short).await?;
            let shortages = demand
                .iter()
                .filter(|d| short.contains(&d.sku_id))
                .map(|d| Shortage {
                    sku_id: d.sku_id.clone(),
                    requested: d.qty,
                    available: levels.get(&d.sku_id).map_or(0, |l| l.available().max(0)),
                })
                .collect();
            return Err(MarketError::OutOfStock { shortages }); // dropping `tx` rolls everything back
        }
        tx.commit().await?;
        Ok(Placed::New(Box::new((Checkout { group, orders, payment }, prepay))))
    }

    /// The group a buyer's idempotency key produced, if any.
    pub(super) async fn checkout_for_key(&self, buyer_openid: &str, key: &str) -> Result<Option<String>> {
        let mut tx = self.read().await?;
        Ok(tx.idempotency(SCOPE, &format!("{buyer_openid}:{key}")).await?.map(|(_, group_id)| group_id))
    }

    /// A stored checkout, with its prepay order made if an earlier attempt could not.
    pub(super) async fn checkout_replay(&self, group_id: &str) -> Result<Checkout> {
        let co = self.orders().checkout_view(group_id).await?;
        self.attach_prepay(co, None).await
    }

    /// Makes sure an awaiting group has its prepay order, calling the gateway if needed.
    async fn attach_prepay(&self, mut co: Checkout, prepay: Option<PrepayRequest>) -> Result<Checkout> {
        if co.payment.prepay_id.is_some() || co.group.status != GroupStatus::AwaitingPayment {
            return Ok(co);
        }
        let req = match prepay {
            Some(r) => r,
            None => self.prepay_request(&co).await?,
        };
        let ticket = self.inner.pay.prepay(&req).await?;
        let payment = self
            .retry(|| async {
                let at = self.now();
                let mut tx = self.begin().await?;
                let cur =
                    tx.payment(&co.group.id).await?.ok_or_else(|| MarketError::not_found("payment", &co.group.id))?;
                if cur.prepay_id.is_some() {
                    return Ok(cur);
                }
                let mut next = cur.clone();
                next.prepay_id = Some(ticket.prepay_id.clone());
                next.pay_params = Some(ticket.pay_params.clone());
                next.version = cur.version + 1;
                next.updated_at = at;
                won(tx.update_payment(&next, cur.version).await?, "payment")?;
                tx.commit().await?;
                Ok(next)
            })
            .await?;
        co.payment = payment;
        Ok(co)
    }

    /// The prepay request of a stored group (for replays).
    async fn prepay_request(&self, co: &Checkout) -> Result<PrepayRequest> {
        let mut tx = self.read().await?;
        let mut subs = Vec::new();
        for o in &co.orders {
            let m =
                tx.merchant(&o.merchant_id).await?.ok_or_else(|| MarketError::not_found("merchant", &o.merchant_id))?;
            subs.push(SubOrder {
                out_trade_no: o.id.clone(),
                merchant_id: m.id,
                sub_mchid: m.sub_mchid,
                amount: o.total,
                description: self.config().pay_description.clone(),
            });
        }
        Ok(prepay_request(co.payment.mode, &co.group, subs, &self.config().pay_description))
    }
}

async fn replay(tx: &mut dyn StoreTx, key: &str, hash: &str, idem_key: &str) -> Result<Option<String>> {
    match tx.idempotency(SCOPE, key).await? {
        Some((stored, group_id)) if stored == hash => Ok(Some(group_id)),
        Some(_) => Err(MarketError::IdempotencyConflict { key: idem_key.into() }),
        None => Ok(None),
    }
}

fn prepay_request(mode: PayMode, g: &CheckoutGroup, subs: Vec<SubOrder>, description: &str) -> PrepayRequest {
    PrepayRequest {
        mode,
        out_trade_no: g.id.clone(),
        description: description.into(),
        payer_openid: g.buyer_openid.clone(),
        total: g.total,
        time_expire: g.pay_deadline,
        sub_mchid: if mode == PayMode::Partner { subs.first().and_then(|s| s.sub_mchid.clone()) } else { None },
        sub_orders: if mode == PayMode::Combine { subs } else { Vec::new() },
        purpose: crate::market::payment::PaymentPurpose::Sale,
    }
}

fn build(
    plan: &Plan,
    req: &CheckoutRequest,
    group_id: &str,
    at: chrono::DateTime<chrono::Utc>,
    deadline: chrono::DateTime<chrono::Utc>,
    description: &str,
) -> (CheckoutGroup, Vec<MerchantOrder>, Payment, PrepayRequest) {
    let group = CheckoutGroup {
        id: group_id.into(),
        buyer_openid: req.buyer_openid.clone(),
        status: GroupStatus::AwaitingPayment,
        subtotal: plan.subtotal,
        discount: plan.discount,
        total: plan.total,
        merchant_count: plan.orders.len() as i64,
        pay_deadline: deadline,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let orders: Vec<MerchantOrder> = plan
        .orders
        .iter()
        .map(|po| MerchantOrder {
            id: new_id(),
            group_id: group_id.into(),
            merchant_id: po.merchant.id.clone(),
            buyer_openid: req.buyer_openid.clone(),
            status: OrderStatus::PendingPayment,
            subtotal: po.subtotal,
            discount: po.discount,
            total: po.total,
            commission: po.commission,
            ship_sla_hours: po.ship_sla_hours,
            auto_confirm_days: po.auto_confirm_days,
            after_sale_days: po.after_sale_days,
            transaction_id: None,
            paid_at: None,
            ship_deadline: None,
            shipped_at: None,
            received_at: None,
            received_by: None,
            completed_at: None,
            cancelled_at: None,
            cancel_reason: None,
            version: 1,
            created_at: at,
            updated_at: at,
        })
        .collect();
    let subs: Vec<Option<String>> = plan.orders.iter().map(|o| o.merchant.sub_mchid.clone()).collect();
    let mode = PayMode::for_merchants(&subs);
    let payment = Payment {
        group_id: group_id.into(),
        buyer_openid: req.buyer_openid.clone(),
        mode,
        amount: plan.total,
        status: PaymentStatus::Initiated,
        prepay_id: None,
        pay_params: None,
        transaction_id: None,
        paid_at: None,
        refunded: crate::market::money::Money::ZERO,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let sub_orders = orders
        .iter()
        .zip(&plan.orders)
        .map(|(o, po)| SubOrder {
            out_trade_no: o.id.clone(),
            merchant_id: po.merchant.id.clone(),
            sub_mchid: po.merchant.sub_mchid.clone(),
            amount: o.total,
            description: description.into(),
        })
        .collect();
    let prepay = prepay_request(mode, &group, sub_orders, description);
    (group, orders, payment, prepay)
}
