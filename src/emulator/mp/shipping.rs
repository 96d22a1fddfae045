//! Shipping-info management (发货信息管理), per transaction, the way WeChat runs it.
//!
//! A paid transaction waits to ship (`order_state` 1). Uploading shipping info ships it (2); while
//! it is shipped and unconfirmed it may be corrected once (then 10060003), and the correction
//! restarts the auto-confirm clock. The buyer confirms receipt, or WeChat does it automatically 10
//! days after an express shipment and 2 days after the other kinds (3); the funds settle the day
//! after (4). Every request is checked with WeChat's errcodes (order key, logistics type, delivery
//! mode, package list, item descriptions, tracking numbers, SF Express contacts, payer, state).
//!
//! Events: `trade_manage_remind_shipping` when a payment is still unshipped 48 h after payment (or
//! after a filed pre-sale date), and `trade_manage_order_settlement` when shipping completes (with
//! the estimated settlement time) and when the funds settle (with how and when receipt was
//! confirmed). Their payloads come from [`remind_shipping_payload`] and [`settlement_payload`];
//! they are kept in an event log ([`EmulatorHandle::shipping_events`]) and handed to
//! the emulator's push sender when the app has a push URL configured.
//!
//! Transactions come from the pay emulator, which calls [`register_paid_transaction`] when a JSAPI
//! payment succeeds; tests may also register them with the control call below.
//!
//! Timers run lazily on the emulator's clock: at every shipping call, and on `tick`.
//!
//! # Control API
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /__emulator/shipping/transactions` | `{"mchid","out_trade_no","openid","amount"?,"description"?,"transaction_id"?,"sub_mchid"?,"appid"?}` | registers a paid transaction waiting to ship → `{"transaction_id"}` (the same body again → the same id) |
//! | `POST /__emulator/shipping/confirm_receive` | `{"transaction_id"}` | the buyer confirms receipt in the mini-program |
//! | `POST /__emulator/shipping/tick` | — | runs due timers now → `{"events":[…]}` produced |
//! | `GET /__emulator/shipping/events` | — | every `trade_manage_*` event so far, oldest first (runs due timers first) |
//! | `POST /__emulator/shipping/trade_managed` | `{"appid","managed"?,"confirmation_completed"?}` | what `is_trade_managed` and `is_trade_management_confirmation_completed` answer (default true) |
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use wxshop::emulator::{Emulator, mp::shipping::PaidTransaction};
//! let emu = Emulator::start_default().await?;
//! let tx = emu.register_transaction(PaidTransaction::new("1900000109", "T-1", "o-buyer", 1999))?;
//! emu.state().advance(std::time::Duration::from_secs(49 * 3600));
//! let events = emu.tick_shipping();
//! assert_eq!(events[0].event, "trade_manage_remind_shipping");
//! # let _ = tx; Ok(()) }
//! ```

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

pub use super::auth::original_id;
use super::{Authorized, WxError, WxJson, WxResult, wx_ok};
use crate::emulator::{DEFAULT_APPID, EmulatorHandle, EmulatorState, Shared, lock};
use crate::error::{Error, Result};
use crate::mp::shipping::{
    Contact, DeliveryMode, LogisticsType, MAX_ID_BYTES, MAX_ITEM_DESC_CHARS, MAX_PACKAGES, OrderSettlementEvent,
    OrderState, RemindShippingEvent, SF_EXPRESS, is_masked_contact,
};

const DAY: i64 = 86_400;
/// Ship within 48 h of payment or get reminded.
pub const REMIND_AFTER_SECS: i64 = 48 * 3600;
/// Auto-confirm after an express shipment.
pub const AUTO_CONFIRM_EXPRESS_DAYS: i64 = 10;
/// Auto-confirm after same-city, virtual and self-pickup.
pub const AUTO_CONFIRM_OTHER_DAYS: i64 = 2;
/// Funds settle this long after receipt is confirmed.
pub const SETTLE_AFTER_SECS: i64 = DAY;

/// A paid transaction to put under shipping-info management.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaidTransaction {
    /// The mini-program (default: the emulator's default app).
    #[serde(default)]
    pub appid: Option<String>,
    /// WeChat Pay's transaction id (generated when absent).
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// The mchid.
    pub mchid: String,
    /// The sub-merchant's mchid, in partner mode.
    #[serde(default)]
    pub sub_mchid: Option<String>,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// The payer.
    pub openid: String,
    /// Paid, in fen.
    #[serde(default = "one_fen")]
    pub amount: i64,
    /// Item descriptions.
    #[serde(default)]
    pub description: String,
}

fn one_fen() -> i64 {
    1
}

impl PaidTransaction {
    /// A payment of `amount` fen by `openid` for `mchid`'s order `out_trade_no`.
    pub fn new(
        mchid: impl Into<String>,
        out_trade_no: impl Into<String>,
        openid: impl Into<String>,
        amount: i64,
    ) -> Self {
        PaidTransaction {
            appid: None,
            transaction_id: None,
            mchid: mchid.into(),
            sub_mchid: None,
            out_trade_no: out_trade_no.into(),
            openid: openid.into(),
            amount,
            description: String::new(),
        }
    }

    /// With a known transaction id.
    pub fn transaction_id(mut self, id: impl Into<String>) -> Self {
        self.transaction_id = Some(id.into());
        self
    }

    /// For another app.
    pub fn appid(mut self, appid: impl Into<String>) -> Self {
        self.appid = Some(appid.into());
        self
    }

    /// The item descriptions.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Package {
    tracking_no: String,
    express_company: String,
    goods_desc: String,
    upload_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<Contact>,
}

#[derive(Debug, Clone)]
struct Trade {
    appid: String,
    transaction_id: String,
    mchid: String,
    sub_mchid: Option<String>,
    out_trade_no: String,
    openid: String,
    amount: i64,
    description: String,
    trade_create_time: i64,
    pay_time: i64,
    state: OrderState,
    logistics_type: Option<LogisticsType>,
    delivery_mode: Option<DeliveryMode>,
    packages: Vec<Package>,
    finish_count: u32,
    /// What the last upload said (to refuse an unchanged correction) and when it was made.
    last_upload: Option<(serde_json::Value, DateTime<FixedOffset>)>,
    shipped_at: Option<i64>,
    confirmed_at: Option<i64>,
    confirm_method: Option<u8>,
    settled_at: Option<i64>,
    remind_at: Option<i64>,
    reminded_confirm: bool,
}

impl Trade {
    fn auto_confirm_days(&self) -> i64 {
        match self.logistics_type {
            Some(LogisticsType::Express) => AUTO_CONFIRM_EXPRESS_DAYS,
            _ => AUTO_CONFIRM_OTHER_DAYS,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::json!({
            "transaction_id": self.transaction_id,
            "merchant_id": self.mchid,
            "merchant_trade_no": self.out_trade_no,
            "description": self.description,
            "paid_amount": self.amount,
            "openid": self.openid,
            "trade_create_time": self.trade_create_time,
            "pay_time": self.pay_time,
            "order_state": self.state,
            "in_complaint": false,
        });
        if let Some(sub) = &self.sub_mchid {
            o["sub_merchant_id"] = sub.clone().into();
        }
        if let (Some(lt), Some(dm)) = (self.logistics_type, self.delivery_mode) {
            o["shipping"] = serde_json::json!({
                "delivery_mode": dm,
                "logistics_type": lt,
                "finish_shipping": self.finish_count > 0,
                "goods_desc": "",
                "finish_shipping_count": self.finish_count,
                "shipping_list": self.packages,
            });
        }
        o
    }
}

/// A `trade_manage_*` event as the emulator pushed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShippingEvent {
    /// `trade_manage_remind_shipping` or `trade_manage_order_settlement`.
    pub event: String,
    /// The mini-program it is for.
    pub appid: String,
    /// The transaction.
    pub transaction_id: String,
    /// The push message body (JSON form of WeChat's message push).
    pub payload: serde_json::Value,
}

/// The emulator's shipping state.
#[derive(Debug, Default)]
pub struct ShippingState {
    trades: HashMap<String, Trade>,
    events: Vec<ShippingEvent>,
    /// How many of `events` were handed to the push sender.
    pushed: usize,
    jump_paths: HashMap<String, String>,
    managed: HashMap<String, (bool, bool)>,
}

fn envelope(appid: &str, openid: &str, event: &str, create_time: i64, body: impl Serialize) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ToUserName": original_id(appid),
        "FromUserName": openid,
        "CreateTime": create_time,
        "MsgType": "event",
        "Event": event,
    });
    if let (Some(obj), Ok(serde_json::Value::Object(extra))) = (v.as_object_mut(), serde_json::to_value(body)) {
        obj.extend(extra);
    }
    v
}

fn remind_body(t: &Trade) -> RemindShippingEvent {
    RemindShippingEvent {
        transaction_id: t.transaction_id.clone(),
        merchant_id: t.mchid.clone(),
        sub_merchant_id: t.sub_mchid.clone().unwrap_or_default(),
        merchant_trade_no: t.out_trade_no.clone(),
        pay_time: t.pay_time,
        msg: "你有一笔订单已超过48小时未发货，请尽快发货".into(),
    }
}

fn settlement_body(t: &Trade) -> OrderSettlementEvent {
    let settled = t.settled_at.is_some();
    OrderSettlementEvent {
        transaction_id: t.transaction_id.clone(),
        merchant_id: t.mchid.clone(),
        sub_merchant_id: t.sub_mchid.clone().unwrap_or_default(),
        merchant_trade_no: t.out_trade_no.clone(),
        pay_time: t.pay_time,
        shipped_time: t.shipped_at.unwrap_or_default(),
        estimated_settlement_time: (!settled)
            .then(|| t.shipped_at.map(|s| s + t.auto_confirm_days() * DAY + SETTLE_AFTER_SECS))
            .flatten(),
        confirm_receive_method: if settled { t.confirm_method } else { None },
        confirm_receive_time: if settled { t.confirmed_at } else { None },
        settlement_time: t.settled_at,
    }
}

/// The `trade_manage_remind_shipping` push for a transaction, as WeChat's JSON message push carries it.
pub fn remind_shipping_payload(state: &EmulatorState, transaction_id: &str) -> Option<serde_json::Value> {
    let st = lock(&state.shipping);
    let t = st.trades.get(transaction_id)?;
    Some(envelope(&t.appid, &t.openid, "trade_manage_remind_shipping", state.now().timestamp(), remind_body(t)))
}

/// The `trade_manage_order_settlement` push for a transaction in its current state: after shipping
/// completes it carries `estimated_settlement_time`; after settlement, how and when receipt was
/// confirmed and `settlement_time`.
pub fn settlement_payload(state: &EmulatorState, transaction_id: &str) -> Option<serde_json::Value> {
    let st = lock(&state.shipping);
    let t = st.trades.get(transaction_id)?;
    Some(envelope(&t.appid, &t.openid, "trade_manage_order_settlement", state.now().timestamp(), settlement_body(t)))
}

/// Hands the events not yet pushed to the emulator's push sender, in order, for every app that
/// has a push URL configured (`/__emulator/push/config`); apps without one only keep the event log.
/// Runs after every emulator request, so timers that fire lazily are pushed too.
pub(crate) fn flush_events(s: &Shared) {
    let pending: Vec<ShippingEvent> = {
        let mut st = lock(&s.shipping);
        let from = st.pushed.min(st.events.len());
        st.pushed = st.events.len();
        st.events[from..].to_vec()
    };
    let pending: Vec<ShippingEvent> = pending.into_iter().filter(|e| super::message::has_config(s, &e.appid)).collect();
    if pending.is_empty() {
        return;
    }
    let s = s.clone();
    tokio::spawn(async move {
        for ev in pending {
            let serde_json::Value::Object(fields) = ev.payload else { continue };
            if let Err(e) = super::message::deliver(&s, &ev.appid, fields, 1).await {
                tracing::warn!(event = %ev.event, error = %e, "emulator could not push a trade_manage event");
            }
        }
    });
}

impl ShippingState {
    fn emit(&mut self, t: &Trade, event: &str, at: i64) {
        let payload = match event {
            "trade_manage_remind_shipping" => envelope(&t.appid, &t.openid, event, at, remind_body(t)),
            _ => envelope(&t.appid, &t.openid, event, at, settlement_body(t)),
        };
        let ev = ShippingEvent {
            event: event.to_string(),
            appid: t.appid.clone(),
            transaction_id: t.transaction_id.clone(),
            payload,
        };
        tracing::debug!(event = %ev.event, appid = %ev.appid, transaction_id = %ev.transaction_id, "trade_manage event");
        self.events.push(ev);
    }

    /// Runs every timer due at `now`, in time order per transaction; returns the events produced.
    fn run_timers(&mut self, now: i64) -> Vec<ShippingEvent> {
        let before = self.events.len();
        let mut ids: Vec<String> = self.trades.keys().cloned().collect();
        ids.sort();
        for id in ids {
            while let Some(mut t) = self.trades.get(&id).cloned() {
                let fired = match t.state {
                    OrderState::Unshipped => match t.remind_at {
                        Some(at) if now >= at => {
                            t.remind_at = None;
                            Some(("trade_manage_remind_shipping", at))
                        }
                        _ => None,
                    },
                    OrderState::Shipped if t.finish_count > 0 => {
                        let at = t.shipped_at.unwrap_or(now) + t.auto_confirm_days() * DAY;
                        if now >= at {
                            t.state = OrderState::Confirmed;
                            t.confirmed_at = Some(at);
                            t.confirm_method = Some(1);
                            Some(("", at))
                        } else {
                            None
                        }
                    }
                    OrderState::Confirmed => {
                        let at = t.confirmed_at.unwrap_or(now) + SETTLE_AFTER_SECS;
                        if now >= at {
                            t.state = OrderState::Settled;
                            t.settled_at = Some(at);
                            Some(("trade_manage_order_settlement", at))
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                let Some((event, at)) = fired else { break };
                if !event.is_empty() {
                    self.emit(&t, event, at);
                }
                self.trades.insert(id.clone(), t);
            }
        }
        self.events[before..].to_vec()
    }

    fn find(&self, appid: &str, key: &Key) -> Option<String> {
        self.trades
            .values()
            .find(|t| {
                t.appid == appid
                    && match key {
                        Key::Transaction(id) => &t.transaction_id == id,
                        Key::Merchant { mchid, trade_no, sub } => {
                            &t.out_trade_no == trade_no
                                && (&t.mchid == mchid || t.sub_mchid.as_ref() == Some(mchid))
                                && sub.as_ref().is_none_or(|s| t.sub_mchid.as_ref() == Some(s))
                        }
                    }
            })
            .map(|t| t.transaction_id.clone())
    }
}

enum Key {
    Transaction(String),
    Merchant { mchid: String, trade_no: String, sub: Option<String> },
}

/// Puts a paid transaction under shipping-info management, waiting to ship. The pay emulator calls
/// this when a JSAPI payment succeeds. Registering the same transaction again returns the same id
/// and changes nothing.
pub fn register_paid_transaction(state: &EmulatorState, tx: PaidTransaction) -> Result<String> {
    let appid = tx.appid.clone().unwrap_or_else(|| DEFAULT_APPID.to_string());
    if tx.mchid.is_empty() || tx.out_trade_no.is_empty() || tx.openid.is_empty() {
        return Err(Error::InvalidRequest("a transaction needs mchid, out_trade_no and openid".into()));
    }
    let now = state.now().timestamp();
    let mut st = lock(&state.shipping);
    let key = Key::Merchant { mchid: tx.mchid.clone(), trade_no: tx.out_trade_no.clone(), sub: None };
    if let Some(existing) = st.find(&appid, &key) {
        if tx.transaction_id.as_ref().is_none_or(|t| *t == existing) {
            return Ok(existing);
        }
        return Err(Error::InvalidRequest(format!("{} already paid as transaction {existing}", tx.out_trade_no)));
    }
    let id = tx.transaction_id.clone().unwrap_or_else(|| {
        format!("4200{:010}{}", rand::random_range(0..10_000_000_000u64), state.now().format("%Y%m%d%H%M%S"))
    });
    if st.trades.contains_key(&id) {
        return Err(Error::InvalidRequest(format!("transaction {id} exists for another order")));
    }
    st.trades.insert(
        id.clone(),
        Trade {
            appid,
            transaction_id: id.clone(),
            mchid: tx.mchid,
            sub_mchid: tx.sub_mchid,
            out_trade_no: tx.out_trade_no,
            openid: tx.openid,
            amount: tx.amount,
            description: tx.description,
            trade_create_time: now,
            pay_time: now,
            state: OrderState::Unshipped,
            logistics_type: None,
            delivery_mode: None,
            packages: Vec::new(),
            finish_count: 0,
            last_upload: None,
            shipped_at: None,
            confirmed_at: None,
            confirm_method: None,
            settled_at: None,
            remind_at: Some(now + REMIND_AFTER_SECS),
            reminded_confirm: false,
        },
    );
    drop(st);
    state.bump("shipping.transactions");
    Ok(id)
}

/// The buyer confirms receipt (the confirm-receipt component in the mini-program).
pub fn confirm_receipt(state: &EmulatorState, transaction_id: &str) -> Result<()> {
    let now = state.now().timestamp();
    let mut st = lock(&state.shipping);
    st.run_timers(now);
    let t = st
        .trades
        .get_mut(transaction_id)
        .ok_or_else(|| Error::InvalidRequest(format!("no transaction {transaction_id}")))?;
    if t.state != OrderState::Shipped {
        return Err(Error::InvalidRequest(format!("transaction {transaction_id} is {:?}, not shipped", t.state)));
    }
    t.state = OrderState::Confirmed;
    t.confirmed_at = Some(now);
    t.confirm_method = Some(2);
    Ok(())
}

impl EmulatorHandle {
    /// Registers a paid transaction waiting to ship (see [`register_paid_transaction`]).
    pub fn register_transaction(&self, tx: PaidTransaction) -> Result<String> {
        register_paid_transaction(self.state(), tx)
    }

    /// The buyer confirms receipt of a shipped transaction.
    pub fn confirm_receipt(&self, transaction_id: &str) -> Result<()> {
        confirm_receipt(self.state(), transaction_id)
    }

    /// Runs due shipping timers now; returns the events they produced.
    pub fn tick_shipping(&self) -> Vec<ShippingEvent> {
        let now = self.state().now().timestamp();
        let events = lock(&self.state().shipping).run_timers(now);
        flush_events(self.state());
        events
    }

    /// Every `trade_manage_*` event so far, oldest first (due timers run first).
    pub fn shipping_events(&self) -> Vec<ShippingEvent> {
        self.tick_shipping();
        lock(&self.state().shipping).events.clone()
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/wxa/sec/order/upload_shipping_info", post(upload_shipping_info))
        .route("/wxa/sec/order/upload_combined_shipping_info", post(upload_combined_shipping_info))
        .route("/wxa/sec/order/get_order", post(get_order))
        .route("/wxa/sec/order/get_order_list", post(get_order_list))
        .route("/wxa/sec/order/notify_confirm_receive", post(notify_confirm_receive))
        .route("/wxa/sec/order/set_msg_jump_path", post(set_msg_jump_path))
        .route("/wxa/sec/order/is_trade_managed", post(is_trade_managed))
        .route("/wxa/sec/order/is_trade_management_confirmation_completed", post(confirmation_completed))
        .route("/wxa/sec/order/opspecialorder", post(op_special_order))
        .route("/cgi-bin/express/delivery/open_msg/get_delivery_list", post(get_delivery_list))
        .route("/__emulator/shipping/transactions", post(control_register))
        .route("/__emulator/shipping/confirm_receive", post(control_confirm))
        .route("/__emulator/shipping/tick", post(control_tick))
        .route("/__emulator/shipping/events", get(control_events))
        .route("/__emulator/shipping/trade_managed", post(control_managed))
}

#[derive(Deserialize)]
struct KeyBody {
    order_number_type: Option<i64>,
    transaction_id: Option<String>,
    mchid: Option<String>,
    out_trade_no: Option<String>,
}

impl KeyBody {
    fn key(&self) -> WxResult<Key> {
        let present = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
        match self.order_number_type {
            Some(2) => present(&self.transaction_id)
                .map(Key::Transaction)
                .ok_or_else(|| WxError::new(268485195, "transaction_id is required when order_number_type is 2")),
            Some(1) => {
                let mchid = present(&self.mchid).ok_or_else(|| WxError::new(268485196, "mchid is required"))?;
                let trade_no =
                    present(&self.out_trade_no).ok_or_else(|| WxError::new(268485197, "out_trade_no is required"))?;
                Ok(Key::Merchant { mchid, trade_no, sub: None })
            }
            _ => Err(WxError::new(268485194, "invalid order_number_type")),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, PartialEq)]
struct ItemBody {
    tracking_no: Option<String>,
    express_company: Option<String>,
    item_desc: Option<String>,
    contact: Option<Contact>,
}

#[derive(Deserialize)]
struct PayerBody {
    openid: Option<String>,
}

/// A parsed, checked shipping of one order (or sub-order).
struct Shipment {
    key: Key,
    logistics: LogisticsType,
    mode: DeliveryMode,
    all_delivered: bool,
    items: Vec<ItemBody>,
    fingerprint: serde_json::Value,
}

fn check_shipment(
    key: &KeyBody,
    logistics: Option<i64>,
    mode: Option<i64>,
    all_delivered: Option<bool>,
    list: Option<Vec<ItemBody>>,
) -> WxResult<Shipment> {
    let key = key.key()?;
    let (Some(logistics), Some(mode), Some(items)) = (logistics, mode, list) else {
        return Err(WxError::new(
            47001,
            "data format error: logistics_type, delivery_mode and shipping_list are required",
        ));
    };
    let logistics = match LogisticsType::from_code(logistics) {
        LogisticsType::Other(_) => return Err(WxError::new(10060005, "invalid logistics_type")),
        l => l,
    };
    let mode = match DeliveryMode::from_code(mode) {
        DeliveryMode::Other(_) => return Err(WxError::new(268485224, "invalid delivery_mode")),
        m => m,
    };
    if items.is_empty() {
        return Err(WxError::new(10060014, "invalid param: shipping_list is empty"));
    }
    if items.len() > MAX_PACKAGES {
        return Err(WxError::new(10060024, "shipping_list too long"));
    }
    match mode {
        DeliveryMode::Unified if items.len() != 1 => {
            return Err(WxError::new(268485228, "统一发货模式下，物流信息列表长度必须为 1"));
        }
        DeliveryMode::Split if logistics != LogisticsType::Express => {
            return Err(WxError::new(10060006, "非快递发货时不允许分拆发货"));
        }
        DeliveryMode::Split if all_delivered.is_none() => {
            return Err(WxError::new(10060007, "分拆发货模式下必须填写 is_all_delivered 字段"));
        }
        _ => {}
    }
    for item in &items {
        let desc = item.item_desc.as_deref().unwrap_or("");
        if desc.trim().is_empty() {
            return Err(WxError::new(10060008, "item_desc is empty"));
        }
        if desc.chars().count() > MAX_ITEM_DESC_CHARS {
            return Err(WxError::new(10060009, "item_desc too long"));
        }
        let company = item.express_company.as_deref().unwrap_or("");
        let tracking = item.tracking_no.as_deref().unwrap_or("");
        if logistics == LogisticsType::Express {
            if tracking.is_empty() {
                return Err(WxError::new(268485226, "tracking_no is required for express"));
            }
            if company.is_empty() {
                return Err(WxError::new(268485227, "express_company is required for express"));
            }
        }
        if company.len() > MAX_ID_BYTES {
            return Err(WxError::new(10060025, "express_company too long"));
        }
        if tracking.len() > MAX_ID_BYTES {
            return Err(WxError::new(10060026, "tracking_no too long"));
        }
        match &item.contact {
            None if company == SF_EXPRESS => {
                return Err(WxError::new(10060014, "invalid param: contact is required for SF Express"));
            }
            Some(c) => {
                let values: Vec<&String> = [&c.consignor_contact, &c.receiver_contact].into_iter().flatten().collect();
                if values.is_empty() || values.iter().any(|v| !is_masked_contact(v)) {
                    return Err(WxError::new(10060014, "invalid param: contact must be masked, last 4 digits visible"));
                }
            }
            None => {}
        }
    }
    let fingerprint = serde_json::json!({ "l": logistics, "m": mode, "a": all_delivered, "items": items });
    Ok(Shipment { key, logistics, mode, all_delivered: all_delivered.unwrap_or(true), items, fingerprint })
}

/// Applies a checked shipment to its trade (state rules, re-upload rule), emitting events.
fn apply_shipment(
    st: &mut ShippingState,
    id: &str,
    s: &Shipment,
    upload_time: DateTime<FixedOffset>,
    now: i64,
) -> WxResult<()> {
    let Some(mut t) = st.trades.get(id).cloned() else {
        return Err(WxError::new(10060001, "支付单不存在"));
    };
    let packages: Vec<Package> = s
        .items
        .iter()
        .map(|i| Package {
            tracking_no: i.tracking_no.clone().unwrap_or_default(),
            express_company: i.express_company.clone().unwrap_or_default(),
            goods_desc: i.item_desc.clone().unwrap_or_default(),
            upload_time: upload_time.timestamp(),
            contact: i.contact.clone(),
        })
        .collect();
    match t.state {
        OrderState::Unshipped => {
            if let Some((_, previous)) = &t.last_upload
                && upload_time <= *previous
            {
                return Err(WxError::new(
                    10060014,
                    "invalid param: upload_time must be later than the previous upload",
                ));
            }
            // Split deliveries accumulate until is_all_delivered.
            if t.delivery_mode == Some(DeliveryMode::Split) && s.mode == DeliveryMode::Split {
                if t.packages.len() + packages.len() > MAX_PACKAGES {
                    return Err(WxError::new(10060024, "shipping_list too long"));
                }
                t.packages.extend(packages);
            } else {
                t.packages = packages;
            }
            t.logistics_type = Some(s.logistics);
            t.delivery_mode = Some(s.mode);
            if s.mode == DeliveryMode::Unified || s.all_delivered {
                t.state = OrderState::Shipped;
                t.finish_count = 1;
                t.shipped_at = Some(now);
                t.remind_at = None;
            }
        }
        OrderState::Shipped => {
            if t.finish_count >= 2 {
                return Err(WxError::new(10060003, "支付单已使用重新发货机会"));
            }
            if t.last_upload.as_ref().is_some_and(|(f, _)| *f == s.fingerprint) {
                return Err(WxError::new(10060023, "发货信息未更新"));
            }
            if t.last_upload.as_ref().is_some_and(|(_, previous)| upload_time <= *previous) {
                return Err(WxError::new(
                    10060014,
                    "invalid param: upload_time must be later than the previous upload",
                ));
            }
            // The one correction: replaces the shipping info and restarts the auto-confirm clock.
            t.packages = packages;
            t.logistics_type = Some(s.logistics);
            t.delivery_mode = Some(s.mode);
            t.finish_count = 2;
            t.shipped_at = Some(now);
        }
        _ => return Err(WxError::new(10060004, "支付单处于不可发货的状态")),
    }
    t.last_upload = Some((s.fingerprint.clone(), upload_time));
    let completed = t.state == OrderState::Shipped;
    st.trades.insert(id.to_string(), t.clone());
    if completed {
        st.emit(&t, "trade_manage_order_settlement", now);
    }
    Ok(())
}

fn resolve(st: &ShippingState, appid: &str, key: &Key, openid: &str) -> WxResult<String> {
    let id = st.find(appid, key).ok_or_else(|| WxError::new(10060001, "支付单不存在"))?;
    if st.trades.get(&id).is_some_and(|t| t.openid != openid) {
        return Err(WxError::new(10060031, "该笔支付单不属于 openid 所指定的用户"));
    }
    Ok(id)
}

fn payer_of(p: Option<PayerBody>) -> WxResult<String> {
    match p.and_then(|p| p.openid).filter(|o| !o.is_empty()) {
        Some(o) if o.len() <= MAX_ID_BYTES => Ok(o),
        _ => Err(WxError::new(47001, "data format error: payer.openid is required")),
    }
}

fn upload_time_of(t: Option<String>) -> WxResult<DateTime<FixedOffset>> {
    let Some(t) = t else { return Err(WxError::new(47001, "data format error: upload_time is required")) };
    DateTime::parse_from_rfc3339(&t).map_err(|_| WxError::new(268485216, "上传时间非法，请按照 RFC 3339 格式填写"))
}

#[derive(Deserialize)]
struct UploadBody {
    order_key: Option<KeyBody>,
    logistics_type: Option<i64>,
    delivery_mode: Option<i64>,
    is_all_delivered: Option<bool>,
    shipping_list: Option<Vec<ItemBody>>,
    upload_time: Option<String>,
    payer: Option<PayerBody>,
}

async fn upload_shipping_info(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<UploadBody>,
) -> WxResult {
    let Some(key) = b.order_key else { return Err(WxError::new(47001, "data format error: order_key is required")) };
    let shipment = check_shipment(&key, b.logistics_type, b.delivery_mode, b.is_all_delivered, b.shipping_list)?;
    let upload_time = upload_time_of(b.upload_time)?;
    let openid = payer_of(b.payer)?;
    let now = s.now().timestamp();
    let mut st = lock(&s.shipping);
    st.run_timers(now);
    let id = resolve(&st, &appid, &shipment.key, &openid)?;
    apply_shipment(&mut st, &id, &shipment, upload_time, now)?;
    drop(st);
    s.bump("shipping.upload");
    wx_ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct SubOrderBody {
    order_key: Option<KeyBody>,
    logistics_type: Option<i64>,
    delivery_mode: Option<i64>,
    is_all_delivered: Option<bool>,
    shipping_list: Option<Vec<ItemBody>>,
}

#[derive(Deserialize)]
struct CombinedBody {
    order_key: Option<KeyBody>,
    sub_orders: Option<Vec<SubOrderBody>>,
    upload_time: Option<String>,
    payer: Option<PayerBody>,
}

async fn upload_combined_shipping_info(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<CombinedBody>,
) -> WxResult {
    let Some(parent) = b.order_key else { return Err(WxError::new(47001, "data format error: order_key is required")) };
    // The combined order itself is only checked for shape: the emulator keeps sub-orders as
    // transactions of their own.
    parent.key()?;
    let subs = b.sub_orders.unwrap_or_default();
    if subs.is_empty() {
        return Err(WxError::new(10060014, "invalid param: sub_orders is empty"));
    }
    let upload_time = upload_time_of(b.upload_time)?;
    let openid = payer_of(b.payer)?;
    let mut shipments = Vec::with_capacity(subs.len());
    for sub in subs {
        let Some(key) = sub.order_key else {
            return Err(WxError::new(47001, "data format error: sub_orders[].order_key"));
        };
        if key.order_number_type != parent.order_number_type {
            return Err(WxError::new(268485194, "sub-orders must use the combined order's order_number_type"));
        }
        shipments.push(check_shipment(
            &key,
            sub.logistics_type,
            sub.delivery_mode,
            sub.is_all_delivered,
            sub.shipping_list,
        )?);
    }
    let now = s.now().timestamp();
    let mut st = lock(&s.shipping);
    st.run_timers(now);
    let mut ids = Vec::with_capacity(shipments.len());
    for sh in &shipments {
        ids.push(resolve(&st, &appid, &sh.key, &openid)?);
    }
    // All or nothing: apply to a copy, keep it only when every sub-order was accepted.
    let (trades, events) = (st.trades.clone(), st.events.len());
    for (id, sh) in ids.iter().zip(&shipments) {
        if let Err(r) = apply_shipment(&mut st, id, sh, upload_time, now) {
            st.trades = trades;
            st.events.truncate(events);
            return Err(r);
        }
    }
    drop(st);
    s.bump("shipping.upload_combined");
    wx_ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct RefBody {
    transaction_id: Option<String>,
    merchant_id: Option<String>,
    sub_merchant_id: Option<String>,
    merchant_trade_no: Option<String>,
    received_time: Option<i64>,
}

impl RefBody {
    fn key(&self) -> WxResult<Key> {
        let present = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
        if let Some(t) = present(&self.transaction_id) {
            return Ok(Key::Transaction(t));
        }
        match (present(&self.merchant_id), present(&self.merchant_trade_no)) {
            (Some(mchid), Some(trade_no)) => Ok(Key::Merchant { mchid, trade_no, sub: present(&self.sub_merchant_id) }),
            _ => Err(WxError::new(10060014, "invalid param: transaction_id or merchant_id + merchant_trade_no")),
        }
    }
}

async fn get_order(State(s): State<Shared>, Authorized(appid): Authorized, WxJson(b): WxJson<RefBody>) -> WxResult {
    let key = b.key()?;
    let mut st = lock(&s.shipping);
    st.run_timers(s.now().timestamp());
    match st.find(&appid, &key).and_then(|id| st.trades.get(&id)) {
        Some(t) => wx_ok(serde_json::json!({ "order": t.to_json() })),
        None => Err(WxError::new(10060001, "支付单不存在")),
    }
}

#[derive(Deserialize, Default)]
struct RangeBody {
    begin_time: Option<i64>,
    end_time: Option<i64>,
}

#[derive(Deserialize)]
struct ListBody {
    pay_time_range: Option<RangeBody>,
    order_state: Option<i64>,
    openid: Option<String>,
    last_index: Option<String>,
    page_size: Option<usize>,
}

async fn get_order_list(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<ListBody>,
) -> WxResult {
    let mut st = lock(&s.shipping);
    st.run_timers(s.now().timestamp());
    let range = b.pay_time_range.unwrap_or_default();
    let (begin, end) = (range.begin_time.unwrap_or(0), range.end_time.unwrap_or(i64::from(u32::MAX)));
    let mut orders: Vec<&Trade> = st
        .trades
        .values()
        .filter(|t| t.appid == appid && t.pay_time >= begin && t.pay_time <= end)
        .filter(|t| b.order_state.is_none_or(|s| t.state.code() == s))
        .filter(|t| b.openid.as_ref().is_none_or(|o| &t.openid == o))
        .collect();
    orders.sort_by(|a, b| (a.pay_time, &a.transaction_id).cmp(&(b.pay_time, &b.transaction_id)));
    let start = match b.last_index.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(ix) => match usize::from_str_radix(ix, 16) {
            Ok(n) if ix.len() == 16 && n <= orders.len() => n,
            _ => return Err(WxError::new(10060011, "last_index不合法")),
        },
    };
    let size = b.page_size.filter(|n| *n > 0).unwrap_or(100);
    let end_ix = (start + size).min(orders.len());
    let page: Vec<serde_json::Value> = orders[start..end_ix].iter().map(|t| t.to_json()).collect();
    let has_more = end_ix < orders.len();
    wx_ok(serde_json::json!({ "order_list": page, "has_more": has_more, "last_index": format!("{end_ix:016x}") }))
}

async fn notify_confirm_receive(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<RefBody>,
) -> WxResult {
    let key = b.key()?;
    let Some(received) = b.received_time else {
        return Err(WxError::new(47001, "data format error: received_time is required"));
    };
    let now = s.now().timestamp();
    let mut st = lock(&s.shipping);
    st.run_timers(now);
    let Some(id) = st.find(&appid, &key) else { return Err(WxError::new(10060001, "支付单不存在")) };
    let Some(t) = st.trades.get_mut(&id) else { return Err(WxError::new(10060001, "支付单不存在")) };
    if t.state != OrderState::Shipped {
        return Err(WxError::new(10060028, "支付单不是已发货状态"));
    }
    if t.logistics_type != Some(LogisticsType::Express) {
        return Err(WxError::new(10060032, "只有物流快递发货时允许提醒用户确认收货"));
    }
    if t.reminded_confirm {
        return Err(WxError::new(10060030, "支付单已使用提醒收货机会"));
    }
    if received < t.shipped_at.unwrap_or(0) || received > now {
        return Err(WxError::new(10060029, "签收时间非法"));
    }
    t.reminded_confirm = true;
    drop(st);
    s.bump("shipping.notify_confirm_receive");
    wx_ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct PathBody {
    path: Option<String>,
}

async fn set_msg_jump_path(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<PathBody>,
) -> WxResult {
    let Some(path) = b.path.filter(|p| !p.is_empty()) else {
        return Err(WxError::new(47001, "data format error: path is required"));
    };
    lock(&s.shipping).jump_paths.insert(appid, path);
    wx_ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct AppidBody {
    appid: Option<String>,
}

fn managed_flags(s: &EmulatorState, appid: &str, b: AppidBody) -> WxResult<(bool, bool)> {
    match b.appid.filter(|a| !a.is_empty()) {
        None => Err(WxError::new(40097, "invalid args: appid is required")),
        Some(a) if a != appid => Err(WxError::new(40013, "invalid appid")),
        Some(a) => Ok(lock(&s.shipping).managed.get(&a).copied().unwrap_or((true, true))),
    }
}

async fn is_trade_managed(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<AppidBody>,
) -> WxResult {
    let (managed, _) = managed_flags(&s, &appid, b)?;
    wx_ok(serde_json::json!({ "is_trade_managed": managed }))
}

async fn confirmation_completed(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<AppidBody>,
) -> WxResult {
    let (_, completed) = managed_flags(&s, &appid, b)?;
    wx_ok(serde_json::json!({ "completed": completed }))
}

#[derive(Deserialize)]
struct SpecialBody {
    order_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<i64>,
    delay_to: Option<i64>,
}

async fn op_special_order(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<SpecialBody>,
) -> WxResult {
    let Some(order_id) = b.order_id.filter(|o| !o.is_empty()) else {
        return Err(WxError::new(47001, "data format error: order_id is required"));
    };
    let kind = b.kind.unwrap_or(0);
    if kind != 1 && kind != 2 {
        return Err(WxError::new(268546000, "type非法"));
    }
    let now = s.now().timestamp();
    let mut st = lock(&s.shipping);
    st.run_timers(now);
    let Some(t) = st.trades.values_mut().find(|t| {
        t.appid == appid
            && t.state == OrderState::Unshipped
            && (t.transaction_id == order_id || t.out_trade_no == order_id)
    }) else {
        return Err(WxError::new(268546002, "账户不存在这个待发货单号"));
    };
    if kind == 1 {
        match b.delay_to {
            Some(d) if d >= t.pay_time + 15 * DAY && d <= t.pay_time + 330 * DAY => t.remind_at = Some(d),
            _ => return Err(WxError::new(268546001, "delay_to非法")),
        }
    } else {
        // A test order needs no shipping: no reminder.
        t.remind_at = None;
    }
    wx_ok(serde_json::json!({}))
}

/// A few of WeChat's carrier ids (the real list has over a thousand).
pub const DELIVERY_COMPANIES: &[(&str, &str)] = &[
    ("SF", "顺丰速运"),
    ("YTO", "圆通速递"),
    ("ZTO", "中通快递"),
    ("STO", "申通快递"),
    ("YD", "韵达速递"),
    ("JTSD", "极兔速递"),
    ("EMS", "中国邮政速递物流"),
    ("JD", "京东物流"),
    ("DHL", "DHL"),
];

async fn get_delivery_list(State(_s): State<Shared>, _: Authorized) -> WxResult {
    let list: Vec<serde_json::Value> = DELIVERY_COMPANIES
        .iter()
        .map(|(id, name)| serde_json::json!({ "delivery_id": id, "delivery_name": name }))
        .collect();
    wx_ok(serde_json::json!({ "count": list.len(), "delivery_list": list }))
}

fn control_error(msg: String) -> Response {
    (axum::http::StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn control_register(State(s): State<Shared>, axum::Json(tx): axum::Json<PaidTransaction>) -> Response {
    match register_paid_transaction(&s, tx) {
        Ok(id) => axum::Json(serde_json::json!({ "transaction_id": id })).into_response(),
        Err(e) => control_error(e.to_string()),
    }
}

#[derive(Deserialize)]
struct TxBody {
    transaction_id: String,
}

async fn control_confirm(State(s): State<Shared>, axum::Json(b): axum::Json<TxBody>) -> Response {
    match confirm_receipt(&s, &b.transaction_id) {
        Ok(()) => axum::Json(serde_json::json!({ "ok": true })).into_response(),
        Err(e) => control_error(e.to_string()),
    }
}

async fn control_tick(State(s): State<Shared>) -> Response {
    let events = lock(&s.shipping).run_timers(s.now().timestamp());
    axum::Json(serde_json::json!({ "events": events })).into_response()
}

async fn control_events(State(s): State<Shared>) -> Response {
    let mut st = lock(&s.shipping);
    st.run_timers(s.now().timestamp());
    axum::Json(serde_json::json!({ "events": st.events })).into_response()
}

#[derive(Deserialize)]
struct ManagedBody {
    appid: String,
    managed: Option<bool>,
    confirmation_completed: Option<bool>,
}

async fn control_managed(State(s): State<Shared>, axum::Json(b): axum::Json<ManagedBody>) -> Response {
    let mut st = lock(&s.shipping);
    let entry = st.managed.entry(b.appid).or_insert((true, true));
    entry.0 = b.managed.unwrap_or(entry.0);
    entry.1 = b.confirmation_completed.unwrap_or(entry.1);
    axum::Json(serde_json::json!({ "managed": entry.0, "confirmation_completed": entry.1 })).into_response()
}
