//! Order shipping-info management (发货信息管理, `/wxa/sec/order/*`).
//!
//! For a mini-program under WeChat's trade management, a WeChat Pay payment stays **frozen**
//! until the merchant uploads shipping info and the buyer confirms receipt (or WeChat confirms it
//! automatically: 10 days after an express shipment, 2 days after the other kinds). A merchant
//! who never uploads is never paid.
//!
//! What this module enforces before sending, so a request WeChat would reject costs nothing:
//! the logistics type and delivery mode rules (unified = exactly one package; split = express
//! only, at most 15 packages, `is_all_delivered` required), tracking number and carrier for
//! express, `item_desc` of 1–120 characters, RFC 3339 `upload_time`, and the SF Express rule (a
//! masked receiver or sender phone is required, with the last four digits left visible).
//!
//! The re-upload rule: while an order is shipped and not yet confirmed, its shipping info may be
//! **corrected once** (WeChat answers 10060003 after that). A correction restarts the
//! auto-confirm clock. [`Shipping::correct_shipping_info`] checks [`ShippingOrder::correction_allowed`]
//! first. Uploads are never replayed automatically: a replay would spend that one correction.
//!
//! ```no_run
//! # async fn demo(client: wxshop::Client) -> wxshop::Result<()> {
//! use futures_util::TryStreamExt;
//! use wxshop::mp::shipping::{Contact, OrderKey, OrderListQuery, OrderRef, OrderState, ShippingItem, UploadShippingInfo};
//!
//! let key = OrderKey::transaction_id("4200001234202501010000000001");
//! let item = ShippingItem::express("SF1234567890", "SF", "Blue mug ×1")
//!     .contact(Contact::receiver_phone("13812345678")); // sent as 138****5678
//! client.shipping().upload_shipping_info(&UploadShippingInfo::express(key, "o-buyer-openid", item)).await?;
//!
//! let order = client.shipping().get_order(&OrderRef::transaction_id("4200001234202501010000000001")).await?;
//! assert_eq!(order.order_state, OrderState::Shipped);
//!
//! let unshipped: Vec<_> = client.shipping().get_order_list(OrderListQuery::default().order_state(OrderState::Unshipped))
//!     .try_collect().await?;
//! # Ok(()) }
//! ```

use chrono::{DateTime, FixedOffset, Utc};
use futures_util::{Stream, TryStreamExt, stream};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::Client;
use crate::error::{Error, Result};
use crate::http::Request;

/// The most packages one upload may list.
pub const MAX_PACKAGES: usize = 15;
/// The most characters of `item_desc`.
pub const MAX_ITEM_DESC_CHARS: usize = 120;
/// The most bytes of `tracking_no`, `express_company` and `payer.openid`.
pub const MAX_ID_BYTES: usize = 128;
/// The most characters of a masked contact.
pub const MAX_CONTACT_CHARS: usize = 1024;
/// The `express_company` id of SF Express, for which a contact is required.
pub const SF_EXPRESS: &str = "SF";

wire_enum! {
    /// How the goods travel (`logistics_type`).
    LogisticsType(i64) {
        /// 1: an express carrier (物流快递); needs tracking number and carrier id.
        Express = 1,
        /// 2: same-city delivery (同城配送).
        SameCity = 2,
        /// 3: virtual goods, nothing travels (虚拟商品).
        Virtual = 3,
        /// 4: the buyer picks up (用户自提).
        SelfPickup = 4,
    }
}

wire_enum! {
    /// One package or several (`delivery_mode`).
    DeliveryMode(i64) {
        /// 1: everything in one package (UNIFIED_DELIVERY).
        Unified = 1,
        /// 2: several packages, express only (SPLIT_DELIVERY).
        Split = 2,
    }
}

wire_enum! {
    /// Where a payment is in shipping-info management (`order_state`).
    OrderState(i64) {
        /// 1: paid, waiting to ship (待发货).
        Unshipped = 1,
        /// 2: shipped, waiting for receipt (已发货).
        Shipped = 2,
        /// 3: receipt confirmed (确认收货).
        Confirmed = 3,
        /// 4: complete, funds settled (交易完成).
        Settled = 4,
        /// 5: refunded (已退款).
        Refunded = 5,
        /// 6: funds waiting to settle (资金待结算).
        PendingSettlement = 6,
    }
}

/// Which payment an upload is for (`order_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    /// `order_number_type` 2: WeChat Pay's transaction id.
    TransactionId(String),
    /// `order_number_type` 1: the merchant id and the merchant's order number.
    OutTradeNo {
        /// The mchid that took the payment (the sub-merchant's in partner mode).
        mchid: String,
        /// The merchant's `out_trade_no`.
        out_trade_no: String,
    },
}

impl OrderKey {
    /// By transaction id.
    pub fn transaction_id(id: impl Into<String>) -> Self {
        OrderKey::TransactionId(id.into())
    }

    /// By mchid and `out_trade_no`.
    pub fn out_trade_no(mchid: impl Into<String>, out_trade_no: impl Into<String>) -> Self {
        OrderKey::OutTradeNo { mchid: mchid.into(), out_trade_no: out_trade_no.into() }
    }

    /// `order_number_type`.
    pub fn number_type(&self) -> u8 {
        match self {
            OrderKey::TransactionId(_) => 2,
            OrderKey::OutTradeNo { .. } => 1,
        }
    }

    /// The same payment, as the query calls name it.
    pub fn to_ref(&self) -> OrderRef {
        match self {
            OrderKey::TransactionId(t) => OrderRef::TransactionId(t.clone()),
            OrderKey::OutTradeNo { mchid, out_trade_no } => OrderRef::MerchantTradeNo {
                merchant_id: mchid.clone(),
                sub_merchant_id: None,
                merchant_trade_no: out_trade_no.clone(),
            },
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            OrderKey::TransactionId(t) if t.is_empty() => Err(invalid("order_key.transaction_id is empty", 268485195)),
            OrderKey::OutTradeNo { mchid, .. } if mchid.is_empty() => {
                Err(invalid("order_key.mchid is empty", 268485196))
            }
            OrderKey::OutTradeNo { out_trade_no, .. } if out_trade_no.is_empty() => {
                Err(invalid("order_key.out_trade_no is empty", 268485197))
            }
            _ => Ok(()),
        }
    }
}

impl Serialize for OrderKey {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("order_number_type", &self.number_type())?;
        match self {
            OrderKey::TransactionId(t) => m.serialize_entry("transaction_id", t)?,
            OrderKey::OutTradeNo { mchid, out_trade_no } => {
                m.serialize_entry("mchid", mchid)?;
                m.serialize_entry("out_trade_no", out_trade_no)?;
            }
        }
        m.end()
    }
}

/// Which payment a query or reminder is about (`transaction_id`, or `merchant_id` +
/// `merchant_trade_no` with an optional `sub_merchant_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    /// By transaction id.
    TransactionId(String),
    /// By merchant order number.
    MerchantTradeNo {
        /// The mchid.
        merchant_id: String,
        /// The sub-merchant's mchid, in partner mode.
        sub_merchant_id: Option<String>,
        /// The merchant's `out_trade_no`.
        merchant_trade_no: String,
    },
}

impl Serialize for OrderRef {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            OrderRef::TransactionId(t) => m.serialize_entry("transaction_id", t)?,
            OrderRef::MerchantTradeNo { merchant_id, sub_merchant_id, merchant_trade_no } => {
                m.serialize_entry("merchant_id", merchant_id)?;
                if let Some(sub) = sub_merchant_id {
                    m.serialize_entry("sub_merchant_id", sub)?;
                }
                m.serialize_entry("merchant_trade_no", merchant_trade_no)?;
            }
        }
        m.end()
    }
}

impl OrderRef {
    /// By transaction id.
    pub fn transaction_id(id: impl Into<String>) -> Self {
        OrderRef::TransactionId(id.into())
    }

    /// By mchid and `out_trade_no`.
    pub fn merchant_trade_no(merchant_id: impl Into<String>, trade_no: impl Into<String>) -> Self {
        OrderRef::MerchantTradeNo {
            merchant_id: merchant_id.into(),
            sub_merchant_id: None,
            merchant_trade_no: trade_no.into(),
        }
    }
}

/// A masked phone for SF Express (`contact`): the last four digits visible, the rest masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The sender's masked phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consignor_contact: Option<String>,
    /// The receiver's masked phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_contact: Option<String>,
}

impl Contact {
    /// The receiver's phone, masked here ([`mask_phone`]); an already masked value is kept.
    pub fn receiver_phone(phone: &str) -> Self {
        Contact { consignor_contact: None, receiver_contact: Some(mask_phone(phone)) }
    }

    /// The sender's phone, masked here ([`mask_phone`]); an already masked value is kept.
    pub fn consignor_phone(phone: &str) -> Self {
        Contact { consignor_contact: Some(mask_phone(phone)), receiver_contact: None }
    }

    fn validate(&self) -> Result<()> {
        if self.consignor_contact.is_none() && self.receiver_contact.is_none() {
            return Err(invalid("contact needs consignor_contact or receiver_contact", 10060014));
        }
        for v in [&self.consignor_contact, &self.receiver_contact].into_iter().flatten() {
            if !is_masked_contact(v) {
                return Err(Error::InvalidRequest(format!(
                    "contact {v:?} is not masked the way WeChat requires: mask digits with '*' and keep the \
                     last 4 digits visible (e.g. 138****5678, 021-****1234)"
                )));
            }
        }
        Ok(())
    }
}

/// Masks a phone number the way WeChat's examples do: a mainland mobile keeps its first 3 and last
/// 4 digits (`138****5678`); anything else keeps its last 4 digits and separators
/// (`***-****5678`). A value that is already masked is returned as it is.
pub fn mask_phone(phone: &str) -> String {
    let phone = phone.trim();
    if phone.contains('*') {
        return phone.to_string();
    }
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 11 && digits[0] == '1' && phone.chars().all(|c| c.is_ascii_digit()) {
        return format!("{}****{}", &phone[..3], &phone[7..]);
    }
    let keep_from = digits.len().saturating_sub(4);
    let mut seen = 0;
    phone
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen <= keep_from { '*' } else { c }
            } else {
                c
            }
        })
        .collect()
}

/// Checks WeChat's masking rule: visible digits, `*`, and the separators `-+ ()`; at least one
/// `*`; the last four digit positions unmasked; at most 1024 characters.
pub fn is_masked_contact(v: &str) -> bool {
    if v.is_empty() || v.chars().count() > MAX_CONTACT_CHARS || !v.contains('*') {
        return false;
    }
    if !v.chars().all(|c| c.is_ascii_digit() || "*-+ ()".contains(c)) {
        return false;
    }
    let tail: Vec<char> = v.chars().rev().filter(|c| c.is_ascii_digit() || *c == '*').take(4).collect();
    tail.len() == 4 && tail.iter().all(char::is_ascii_digit)
}

/// One package (`shipping_list` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingItem {
    /// The waybill number (express only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_no: Option<String>,
    /// The carrier id from `get_delivery_list` (express only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub express_company: Option<String>,
    /// What is inside (1–120 characters), e.g. `Blue mug ×1`.
    pub item_desc: String,
    /// Masked phones; required for SF Express.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
}

impl ShippingItem {
    /// An express package.
    pub fn express(
        tracking_no: impl Into<String>,
        express_company: impl Into<String>,
        item_desc: impl Into<String>,
    ) -> Self {
        ShippingItem {
            tracking_no: Some(tracking_no.into()),
            express_company: Some(express_company.into()),
            item_desc: item_desc.into(),
            contact: None,
        }
    }

    /// A description only (same-city, virtual, self-pickup).
    pub fn described(item_desc: impl Into<String>) -> Self {
        ShippingItem { tracking_no: None, express_company: None, item_desc: item_desc.into(), contact: None }
    }

    /// Adds masked phones.
    pub fn contact(mut self, contact: Contact) -> Self {
        self.contact = Some(contact);
        self
    }

    fn validate(&self, logistics: LogisticsType) -> Result<()> {
        let desc = self.item_desc.chars().count();
        if self.item_desc.trim().is_empty() {
            return Err(invalid("item_desc is empty", 10060008));
        }
        if desc > MAX_ITEM_DESC_CHARS {
            return Err(Error::InvalidRequest(format!(
                "item_desc is {desc} characters; WeChat allows {MAX_ITEM_DESC_CHARS} (10060009)"
            )));
        }
        if logistics == LogisticsType::Express {
            match self.tracking_no.as_deref() {
                None | Some("") => return Err(invalid("express shipments need tracking_no", 268485226)),
                Some(t) if t.len() > MAX_ID_BYTES => {
                    return Err(invalid("tracking_no is longer than 128 bytes", 10060026));
                }
                _ => {}
            }
            match self.express_company.as_deref() {
                None | Some("") => return Err(invalid("express shipments need express_company", 268485227)),
                Some(c) if c.len() > MAX_ID_BYTES => {
                    return Err(invalid("express_company is longer than 128 bytes", 10060025));
                }
                _ => {}
            }
        }
        if self.express_company.as_deref() == Some(SF_EXPRESS) && self.contact.is_none() {
            return Err(Error::InvalidRequest(
                "SF Express shipments need a contact: the receiver's or sender's phone, masked (e.g. 138****5678)"
                    .into(),
            ));
        }
        if let Some(c) = &self.contact {
            c.validate()?;
        }
        Ok(())
    }
}

fn invalid(what: &str, errcode: i64) -> Error {
    Error::InvalidRequest(format!("{what} (WeChat would answer {errcode})"))
}

/// The payer (`payer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    /// The payer's openid in this mini-program.
    pub openid: String,
}

/// `upload_time` as WeChat writes it: RFC 3339 in China time with milliseconds.
pub fn wechat_time(t: DateTime<Utc>) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    t.with_timezone(&cst).format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

fn check_shipping(
    logistics: LogisticsType,
    mode: DeliveryMode,
    all_delivered: Option<bool>,
    list: &[ShippingItem],
) -> Result<()> {
    if let LogisticsType::Other(c) = logistics {
        return Err(Error::InvalidRequest(format!("logistics_type {c} is not 1..4 (10060005)")));
    }
    if list.is_empty() {
        return Err(Error::InvalidRequest("shipping_list needs at least one package".into()));
    }
    if list.len() > MAX_PACKAGES {
        return Err(Error::InvalidRequest(format!(
            "shipping_list has {} packages; WeChat allows {MAX_PACKAGES} (10060024)",
            list.len()
        )));
    }
    match mode {
        DeliveryMode::Unified if list.len() != 1 => {
            return Err(invalid("unified delivery takes exactly one package", 268485228));
        }
        DeliveryMode::Split if logistics != LogisticsType::Express => {
            return Err(invalid("split delivery is only for express shipments", 10060006));
        }
        DeliveryMode::Split if all_delivered.is_none() => {
            return Err(invalid("split delivery must set is_all_delivered", 10060007));
        }
        DeliveryMode::Other(c) => return Err(invalid(&format!("delivery_mode {c} is not 1 or 2"), 268485224)),
        _ => {}
    }
    list.iter().try_for_each(|item| item.validate(logistics))
}

fn check_payer(payer: &Payer) -> Result<()> {
    if payer.openid.is_empty() || payer.openid.len() > MAX_ID_BYTES {
        return Err(Error::InvalidRequest("payer.openid must be 1 to 128 bytes".into()));
    }
    Ok(())
}

fn check_upload_time(t: &str) -> Result<()> {
    DateTime::parse_from_rfc3339(t)
        .map(|_| ())
        .map_err(|_| invalid(&format!("upload_time {t:?} is not RFC 3339"), 268485216))
}

/// `POST /wxa/sec/order/upload_shipping_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadShippingInfo {
    /// The payment.
    pub order_key: OrderKey,
    /// How the goods travel.
    pub logistics_type: LogisticsType,
    /// One package or several.
    pub delivery_mode: DeliveryMode,
    /// Split delivery: is this the last upload (the buyer is told when it is)?
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_all_delivered: Option<bool>,
    /// The packages (1 for unified delivery, up to 15 for split).
    pub shipping_list: Vec<ShippingItem>,
    /// When this was uploaded (RFC 3339); a correction must be newer than what it corrects.
    pub upload_time: String,
    /// The payer.
    pub payer: Payer,
}

impl UploadShippingInfo {
    /// Unified delivery of one package, uploaded now.
    pub fn unified(
        order_key: OrderKey,
        payer_openid: impl Into<String>,
        logistics: LogisticsType,
        item: ShippingItem,
    ) -> Self {
        UploadShippingInfo {
            order_key,
            logistics_type: logistics,
            delivery_mode: DeliveryMode::Unified,
            is_all_delivered: None,
            shipping_list: vec![item],
            upload_time: wechat_time(Utc::now()),
            payer: Payer { openid: payer_openid.into() },
        }
    }

    /// One express package.
    pub fn express(order_key: OrderKey, payer_openid: impl Into<String>, item: ShippingItem) -> Self {
        Self::unified(order_key, payer_openid, LogisticsType::Express, item)
    }

    /// Same-city delivery.
    pub fn same_city(order_key: OrderKey, payer_openid: impl Into<String>, item_desc: impl Into<String>) -> Self {
        Self::unified(order_key, payer_openid, LogisticsType::SameCity, ShippingItem::described(item_desc))
    }

    /// Virtual goods (upload right after payment: nothing travels).
    pub fn virtual_goods(order_key: OrderKey, payer_openid: impl Into<String>, item_desc: impl Into<String>) -> Self {
        Self::unified(order_key, payer_openid, LogisticsType::Virtual, ShippingItem::described(item_desc))
    }

    /// Self-pickup.
    pub fn self_pickup(order_key: OrderKey, payer_openid: impl Into<String>, item_desc: impl Into<String>) -> Self {
        Self::unified(order_key, payer_openid, LogisticsType::SelfPickup, ShippingItem::described(item_desc))
    }

    /// Split express delivery: these packages, and whether they are the last ones.
    pub fn split(
        order_key: OrderKey,
        payer_openid: impl Into<String>,
        packages: Vec<ShippingItem>,
        all_delivered: bool,
    ) -> Self {
        UploadShippingInfo {
            order_key,
            logistics_type: LogisticsType::Express,
            delivery_mode: DeliveryMode::Split,
            is_all_delivered: Some(all_delivered),
            shipping_list: packages,
            upload_time: wechat_time(Utc::now()),
            payer: Payer { openid: payer_openid.into() },
        }
    }

    /// Sets `upload_time`.
    pub fn upload_time(mut self, t: DateTime<Utc>) -> Self {
        self.upload_time = wechat_time(t);
        self
    }

    /// Checks every rule WeChat documents.
    pub fn validate(&self) -> Result<()> {
        self.order_key.validate()?;
        check_payer(&self.payer)?;
        check_upload_time(&self.upload_time)?;
        check_shipping(self.logistics_type, self.delivery_mode, self.is_all_delivered, &self.shipping_list)
    }
}

/// One sub-order of a combined payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubOrderShipping {
    /// The sub-order (same key type as the combined order).
    pub order_key: OrderKey,
    /// How its goods travel.
    pub logistics_type: LogisticsType,
    /// One package or several.
    pub delivery_mode: DeliveryMode,
    /// Split delivery: the last upload?
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_all_delivered: Option<bool>,
    /// Its packages.
    pub shipping_list: Vec<ShippingItem>,
}

impl SubOrderShipping {
    /// One package for a sub-order.
    pub fn unified(order_key: OrderKey, logistics: LogisticsType, item: ShippingItem) -> Self {
        SubOrderShipping {
            order_key,
            logistics_type: logistics,
            delivery_mode: DeliveryMode::Unified,
            is_all_delivered: None,
            shipping_list: vec![item],
        }
    }

    /// Split express packages for a sub-order.
    pub fn split(order_key: OrderKey, packages: Vec<ShippingItem>, all_delivered: bool) -> Self {
        SubOrderShipping {
            order_key,
            logistics_type: LogisticsType::Express,
            delivery_mode: DeliveryMode::Split,
            is_all_delivered: Some(all_delivered),
            shipping_list: packages,
        }
    }
}

/// `POST /wxa/sec/order/upload_combined_shipping_info`: shipping for a combined payment (合单支付).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadCombinedShippingInfo {
    /// The combined payment.
    pub order_key: OrderKey,
    /// Its sub-orders.
    pub sub_orders: Vec<SubOrderShipping>,
    /// When this was uploaded (RFC 3339).
    pub upload_time: String,
    /// The payer.
    pub payer: Payer,
}

impl UploadCombinedShippingInfo {
    /// Shipping for `sub_orders` of the combined payment `order_key`, uploaded now.
    pub fn new(order_key: OrderKey, payer_openid: impl Into<String>, sub_orders: Vec<SubOrderShipping>) -> Self {
        UploadCombinedShippingInfo {
            order_key,
            sub_orders,
            upload_time: wechat_time(Utc::now()),
            payer: Payer { openid: payer_openid.into() },
        }
    }

    /// Sets `upload_time`.
    pub fn upload_time(mut self, t: DateTime<Utc>) -> Self {
        self.upload_time = wechat_time(t);
        self
    }

    /// Checks every rule WeChat documents.
    pub fn validate(&self) -> Result<()> {
        self.order_key.validate()?;
        check_payer(&self.payer)?;
        check_upload_time(&self.upload_time)?;
        if self.sub_orders.is_empty() {
            return Err(Error::InvalidRequest("sub_orders needs at least one sub-order".into()));
        }
        for sub in &self.sub_orders {
            sub.order_key.validate()?;
            if sub.order_key.number_type() != self.order_key.number_type() {
                return Err(Error::InvalidRequest(
                    "every sub_orders[].order_key must use the combined order's order_number_type".into(),
                ));
            }
            check_shipping(sub.logistics_type, sub.delivery_mode, sub.is_all_delivered, &sub.shipping_list)?;
        }
        Ok(())
    }
}

/// A package as WeChat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShippedPackage {
    /// The waybill number.
    #[serde(default)]
    pub tracking_no: String,
    /// The carrier id (or same-city company name).
    #[serde(default)]
    pub express_company: String,
    /// The description uploaded with it.
    #[serde(default)]
    pub goods_desc: String,
    /// Unix seconds.
    #[serde(default)]
    pub upload_time: i64,
    /// Masked phones.
    #[serde(default)]
    pub contact: Option<Contact>,
}

/// The shipping of a payment as WeChat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShippingDetail {
    /// One package or several.
    pub delivery_mode: DeliveryMode,
    /// How the goods travel.
    pub logistics_type: LogisticsType,
    /// Everything is shipped.
    #[serde(default)]
    pub finish_shipping: bool,
    /// The description entered in the mini-program admin console.
    #[serde(default)]
    pub goods_desc: String,
    /// 0 = not finished, 1 = finished, 2 = finished again after the one correction.
    #[serde(default)]
    pub finish_shipping_count: u32,
    /// The packages.
    #[serde(default)]
    pub shipping_list: Vec<ShippedPackage>,
}

/// A payment in shipping-info management.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShippingOrder {
    /// WeChat Pay's transaction id.
    #[serde(default)]
    pub transaction_id: String,
    /// The mchid.
    #[serde(default)]
    pub merchant_id: String,
    /// The sub-merchant's mchid.
    #[serde(default)]
    pub sub_merchant_id: Option<String>,
    /// The merchant's `out_trade_no`.
    #[serde(default)]
    pub merchant_trade_no: String,
    /// Item descriptions joined with `;` (cut at 120 characters with `...`).
    #[serde(default)]
    pub description: String,
    /// Paid, in fen.
    #[serde(default)]
    pub paid_amount: i64,
    /// The payer.
    #[serde(default)]
    pub openid: String,
    /// Unix seconds.
    #[serde(default)]
    pub trade_create_time: i64,
    /// Unix seconds.
    #[serde(default)]
    pub pay_time: i64,
    /// Where it is.
    pub order_state: OrderState,
    /// A dispute is open.
    #[serde(default)]
    pub in_complaint: bool,
    /// What was shipped, once something was.
    #[serde(default)]
    pub shipping: Option<ShippingDetail>,
}

impl ShippingOrder {
    /// Shipping info may be uploaded now (the order waits to ship).
    pub fn can_ship(&self) -> bool {
        self.order_state == OrderState::Unshipped
    }

    /// WeChat's re-upload rule: a shipped, unconfirmed order may be corrected once.
    pub fn correction_allowed(&self) -> bool {
        self.order_state == OrderState::Shipped && self.shipping.as_ref().is_some_and(|s| s.finish_shipping_count < 2)
    }
}

/// The begin and end (inclusive) of `pay_time`, Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PayTimeRange {
    /// From (0 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub begin_time: Option<i64>,
    /// To, inclusive (u32::MAX when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
}

/// Filters of `get_order_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrderListQuery {
    /// Paid within.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_time_range: Option<PayTimeRange>,
    /// In this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_state: Option<OrderState>,
    /// Paid by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// Orders per page (WeChat's default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
}

impl OrderListQuery {
    /// Only this state.
    pub fn order_state(mut self, state: OrderState) -> Self {
        self.order_state = Some(state);
        self
    }

    /// Only this payer.
    pub fn openid(mut self, openid: impl Into<String>) -> Self {
        self.openid = Some(openid.into());
        self
    }

    /// Paid between `begin` and `end` (inclusive), Unix seconds.
    pub fn paid_between(mut self, begin: i64, end: i64) -> Self {
        self.pay_time_range = Some(PayTimeRange { begin_time: Some(begin), end_time: Some(end) });
        self
    }

    /// Orders per page.
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n);
        self
    }
}

/// One page of `get_order_list`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderPage {
    /// The orders.
    #[serde(default)]
    pub order_list: Vec<ShippingOrder>,
    /// More pages follow.
    #[serde(default)]
    pub has_more: bool,
    /// Pass to get the next page.
    #[serde(default)]
    pub last_index: Option<String>,
}

/// `POST /wxa/sec/order/opspecialorder`: a pre-sale order that ships late, or a test order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecialOrder {
    /// The transaction id or `out_trade_no` of an unshipped order.
    pub order_id: String,
    /// 1 = pre-sale, 2 = test order.
    #[serde(rename = "type")]
    pub kind: u8,
    /// Pre-sale: when it will ship (15 to 330 days after payment), Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_to: Option<i64>,
}

impl SpecialOrder {
    /// A pre-sale order that will ship at `ships_at`.
    pub fn presale(order_id: impl Into<String>, ships_at: DateTime<Utc>) -> Self {
        SpecialOrder { order_id: order_id.into(), kind: 1, delay_to: Some(ships_at.timestamp()) }
    }

    /// A test order that needs no shipping.
    pub fn test_order(order_id: impl Into<String>) -> Self {
        SpecialOrder { order_id: order_id.into(), kind: 2, delay_to: None }
    }
}

/// A carrier (`get_delivery_list`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DeliveryCompany {
    /// The id to put in `express_company`.
    pub delivery_id: String,
    /// Its name.
    pub delivery_name: String,
}

/// `trade_manage_remind_shipping`: an order is still unshipped 48 h after payment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RemindShippingEvent {
    /// The transaction id.
    pub transaction_id: String,
    /// The mchid.
    pub merchant_id: String,
    /// The sub-merchant's mchid.
    #[serde(default)]
    pub sub_merchant_id: String,
    /// The merchant's `out_trade_no`.
    pub merchant_trade_no: String,
    /// Unix seconds.
    pub pay_time: i64,
    /// WeChat's text.
    pub msg: String,
}

/// `trade_manage_order_settlement`: sent when shipping completes (with the estimated settlement
/// time) and when the funds settle (with how and when receipt was confirmed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OrderSettlementEvent {
    /// The transaction id.
    pub transaction_id: String,
    /// The mchid.
    pub merchant_id: String,
    /// The sub-merchant's mchid.
    #[serde(default)]
    pub sub_merchant_id: String,
    /// The merchant's `out_trade_no`.
    pub merchant_trade_no: String,
    /// Unix seconds.
    pub pay_time: i64,
    /// Unix seconds.
    pub shipped_time: i64,
    /// Unix seconds; on the shipping-complete push only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_settlement_time: Option<i64>,
    /// 1 = confirmed automatically, 2 = by the buyer; on the settlement push only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_receive_method: Option<u8>,
    /// Unix seconds; on the settlement push only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_receive_time: Option<i64>,
    /// Unix seconds; on the settlement push only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_time: Option<i64>,
}

/// Shipping-info management APIs of one [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct Shipping<'a> {
    pub(crate) client: &'a Client,
}

#[derive(Deserialize)]
struct Ack {}

impl Shipping<'_> {
    /// Uploads shipping info (or, for a shipped order, corrects it: once).
    pub async fn upload_shipping_info(&self, req: &UploadShippingInfo) -> Result<()> {
        req.validate()?;
        let _: Ack = self.client.call(&Request::mp_post("/wxa/sec/order/upload_shipping_info", req)?).await?;
        Ok(())
    }

    /// Corrects the shipping info of a shipped order, after checking with WeChat that the one
    /// correction is still available (so a spent correction fails here, not after the upload).
    pub async fn correct_shipping_info(&self, req: &UploadShippingInfo) -> Result<()> {
        req.validate()?;
        let order = self.get_order(&req.order_key.to_ref()).await?;
        if !order.correction_allowed() {
            return Err(Error::InvalidRequest(format!(
                "shipping info of this order cannot be corrected: it is {:?} and finish_shipping_count is {} \
                 (one correction is allowed while shipped and unconfirmed)",
                order.order_state,
                order.shipping.as_ref().map_or(0, |s| s.finish_shipping_count)
            )));
        }
        self.upload_shipping_info(req).await
    }

    /// Uploads shipping info for a combined payment.
    pub async fn upload_combined_shipping_info(&self, req: &UploadCombinedShippingInfo) -> Result<()> {
        req.validate()?;
        let path = "/wxa/sec/order/upload_combined_shipping_info";
        let _: Ack = self.client.call(&Request::mp_post(path, req)?).await?;
        Ok(())
    }

    /// The shipping state of one payment.
    pub async fn get_order(&self, order: &OrderRef) -> Result<ShippingOrder> {
        #[derive(Deserialize)]
        struct R {
            order: ShippingOrder,
        }
        let r: R = self.client.call(&Request::mp_post("/wxa/sec/order/get_order", order)?.idempotent(true)).await?;
        Ok(r.order)
    }

    /// One page of orders; pass the previous page's `last_index` to continue.
    pub async fn get_order_list_page(&self, query: &OrderListQuery, last_index: Option<&str>) -> Result<OrderPage> {
        #[derive(Serialize)]
        struct Body<'q> {
            #[serde(flatten)]
            query: &'q OrderListQuery,
            #[serde(skip_serializing_if = "Option::is_none")]
            last_index: Option<&'q str>,
        }
        let req = Request::mp_post("/wxa/sec/order/get_order_list", &Body { query, last_index })?.idempotent(true);
        self.client.call(&req).await
    }

    /// Every order matching `query`, fetching pages as the stream is read. The stream ends after
    /// the last page or the first error.
    pub fn get_order_list(&self, query: OrderListQuery) -> impl Stream<Item = Result<ShippingOrder>> + Send + 'static {
        let client = self.client.clone();
        let pages = stream::try_unfold(Some(None::<String>), move |cursor| {
            let client = client.clone();
            let query = query.clone();
            async move {
                let Some(last_index) = cursor else { return Ok(None) };
                let page = client.shipping().get_order_list_page(&query, last_index.as_deref()).await?;
                let next = match (page.has_more, page.last_index.clone()) {
                    (true, Some(next)) if Some(&next) != last_index.as_ref() && !next.is_empty() => Some(Some(next)),
                    (true, _) => {
                        return Err(Error::decode(
                            "/wxa/sec/order/get_order_list",
                            "has_more without a new last_index",
                        ));
                    }
                    (false, _) => None,
                };
                Ok(Some((page.order_list, next)))
            }
        });
        pages.map_ok(|orders| stream::iter(orders.into_iter().map(Ok))).try_flatten()
    }

    /// Reminds the buyer to confirm receipt of an express shipment, once per payment.
    pub async fn notify_confirm_receive(&self, order: &OrderRef, received_time: DateTime<Utc>) -> Result<()> {
        #[derive(Serialize)]
        struct Body<'o> {
            #[serde(flatten)]
            order: &'o OrderRef,
            received_time: i64,
        }
        let body = Body { order, received_time: received_time.timestamp() };
        let _: Ack = self.client.call(&Request::mp_post("/wxa/sec/order/notify_confirm_receive", &body)?).await?;
        Ok(())
    }

    /// Where shipping and confirm-receipt messages jump to (your order page).
    pub async fn set_msg_jump_path(&self, path: &str) -> Result<()> {
        if path.is_empty() {
            return Err(Error::InvalidRequest("path is required".into()));
        }
        let body = serde_json::json!({ "path": path });
        let req = Request::mp_post("/wxa/sec/order/set_msg_jump_path", &body)?.idempotent(true);
        let _: Ack = self.client.call(&req).await?;
        Ok(())
    }

    /// Whether this mini-program is under trade management (its payments wait for shipping info).
    pub async fn is_trade_managed(&self) -> Result<bool> {
        #[derive(Deserialize)]
        struct R {
            is_trade_managed: bool,
        }
        let body = serde_json::json!({ "appid": self.client.appid() });
        let req = Request::mp_post("/wxa/sec/order/is_trade_managed", &body)?.idempotent(true);
        Ok(self.client.call::<R>(&req).await?.is_trade_managed)
    }

    /// Whether every merchant id linked to this mini-program has completed the trade-management
    /// confirmation (authorised or unbound).
    pub async fn is_trade_management_confirmation_completed(&self) -> Result<bool> {
        #[derive(Deserialize)]
        struct R {
            completed: bool,
        }
        let body = serde_json::json!({ "appid": self.client.appid() });
        let path = "/wxa/sec/order/is_trade_management_confirmation_completed";
        let req = Request::mp_post(path, &body)?.idempotent(true);
        Ok(self.client.call::<R>(&req).await?.completed)
    }

    /// Files a special order: pre-sale (ships 15–330 days after payment) or test order.
    pub async fn op_special_order(&self, req: &SpecialOrder) -> Result<()> {
        if req.order_id.is_empty() {
            return Err(Error::InvalidRequest("order_id is required".into()));
        }
        if req.kind == 1 && req.delay_to.is_none() {
            return Err(invalid("a pre-sale order needs delay_to", 268546001));
        }
        let _: Ack = self.client.call(&Request::mp_post("/wxa/sec/order/opspecialorder", req)?).await?;
        Ok(())
    }

    /// The carriers and the ids to use as `express_company`.
    pub async fn get_delivery_list(&self) -> Result<Vec<DeliveryCompany>> {
        #[derive(Deserialize)]
        struct R {
            #[serde(default)]
            delivery_list: Vec<DeliveryCompany>,
        }
        let path = "/cgi-bin/express/delivery/open_msg/get_delivery_list";
        let req = Request::mp_post(path, &serde_json::json!({}))?.idempotent(true);
        Ok(self.client.call::<R>(&req).await?.delivery_list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key() -> OrderKey {
        OrderKey::transaction_id("4200000001")
    }

    #[test]
    fn order_keys_serialize_with_their_number_type() {
        assert_eq!(serde_json::to_string(&key()).unwrap(), r#"{"order_number_type":2,"transaction_id":"4200000001"}"#);
        assert_eq!(
            serde_json::to_string(&OrderKey::out_trade_no("1900000109", "T1")).unwrap(),
            r#"{"order_number_type":1,"mchid":"1900000109","out_trade_no":"T1"}"#
        );
        assert_eq!(serde_json::to_string(&OrderRef::transaction_id("42")).unwrap(), r#"{"transaction_id":"42"}"#);
        assert_eq!(
            serde_json::to_string(&OrderRef::merchant_trade_no("m", "t")).unwrap(),
            r#"{"merchant_id":"m","merchant_trade_no":"t"}"#
        );
    }

    #[test]
    fn upload_time_is_china_time_with_millis() {
        let t = Utc.with_ymd_and_hms(2022, 12, 15, 5, 29, 35).unwrap() + chrono::Duration::milliseconds(120);
        assert_eq!(wechat_time(t), "2022-12-15T13:29:35.120+08:00");
    }

    #[test]
    fn masking_keeps_the_last_four_digits() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("021-12345678"), "***-****5678");
        assert_eq!(mask_phone("189****1234"), "189****1234");
        for ok in ["189****1234", "021-****1234", "****1234", "0**2-***1234", "0**2-******23-10", "****123-8008"] {
            assert!(is_masked_contact(ok), "{ok}");
        }
        for bad in ["13812345678", "138123****", "1381234**78", "", "abc****1234", "****"] {
            assert!(!is_masked_contact(bad), "{bad}");
        }
    }

    #[test]
    fn every_logistics_type_has_its_rules() {
        let express = UploadShippingInfo::express(key(), "o1", ShippingItem::express("YT1", "YTO", "mug"));
        assert!(express.validate().is_ok());
        let no_tracking = UploadShippingInfo::express(key(), "o1", ShippingItem::described("mug"));
        assert!(no_tracking.validate().unwrap_err().to_string().contains("268485226"));
        assert!(UploadShippingInfo::same_city(key(), "o1", "cake").validate().is_ok());
        assert!(UploadShippingInfo::virtual_goods(key(), "o1", "top-up").validate().is_ok());
        assert!(UploadShippingInfo::self_pickup(key(), "o1", "flowers").validate().is_ok());
        let mut other = UploadShippingInfo::same_city(key(), "o1", "x");
        other.logistics_type = LogisticsType::Other(5);
        assert!(other.validate().unwrap_err().to_string().contains("10060005"));
    }

    #[test]
    fn unified_and_split_rules() {
        let two = vec![ShippingItem::express("A", "ZTO", "a"), ShippingItem::express("B", "ZTO", "b")];
        let mut unified = UploadShippingInfo::express(key(), "o1", two[0].clone());
        unified.shipping_list = two.clone();
        assert!(unified.validate().unwrap_err().to_string().contains("268485228"));
        assert!(UploadShippingInfo::split(key(), "o1", two.clone(), false).validate().is_ok());
        let mut split_city = UploadShippingInfo::split(key(), "o1", two.clone(), true);
        split_city.logistics_type = LogisticsType::SameCity;
        assert!(split_city.validate().unwrap_err().to_string().contains("10060006"));
        let mut no_flag = UploadShippingInfo::split(key(), "o1", two, true);
        no_flag.is_all_delivered = None;
        assert!(no_flag.validate().unwrap_err().to_string().contains("10060007"));
        let many = (0..16).map(|i| ShippingItem::express(format!("T{i}"), "ZTO", "x")).collect();
        assert!(
            UploadShippingInfo::split(key(), "o1", many, true).validate().unwrap_err().to_string().contains("10060024")
        );
    }

    #[test]
    fn sf_express_needs_a_masked_contact() {
        let bare = UploadShippingInfo::express(key(), "o1", ShippingItem::express("SF1", "SF", "mug"));
        assert!(bare.validate().unwrap_err().to_string().contains("SF Express"));
        let masked = ShippingItem::express("SF1", "SF", "mug").contact(Contact::receiver_phone("13812345678"));
        assert!(UploadShippingInfo::express(key(), "o1", masked).validate().is_ok());
        let clear = ShippingItem::express("SF1", "SF", "mug")
            .contact(Contact { receiver_contact: Some("13812345678".into()), consignor_contact: None });
        assert!(UploadShippingInfo::express(key(), "o1", clear).validate().unwrap_err().to_string().contains("masked"));
    }

    #[test]
    fn item_desc_is_1_to_120_chars() {
        let long = "好".repeat(121);
        assert!(
            UploadShippingInfo::virtual_goods(key(), "o1", long)
                .validate()
                .unwrap_err()
                .to_string()
                .contains("10060009")
        );
        assert!(UploadShippingInfo::virtual_goods(key(), "o1", "好".repeat(120)).validate().is_ok());
        assert!(
            UploadShippingInfo::virtual_goods(key(), "o1", " ")
                .validate()
                .unwrap_err()
                .to_string()
                .contains("10060008")
        );
    }

    #[test]
    fn order_states_decode_and_keep_unknowns() {
        let s: OrderState = serde_json::from_str("2").unwrap();
        assert_eq!(s, OrderState::Shipped);
        let s: OrderState = serde_json::from_str("9").unwrap();
        assert_eq!(s, OrderState::Other(9));
        assert_eq!(serde_json::to_string(&OrderState::Settled).unwrap(), "4");
    }

    #[test]
    fn correction_is_allowed_once_while_shipped() {
        let mut order: ShippingOrder = serde_json::from_value(serde_json::json!({
            "order_state": 2,
            "shipping": {"delivery_mode": 1, "logistics_type": 1, "finish_shipping": true, "finish_shipping_count": 1}
        }))
        .unwrap();
        assert!(order.correction_allowed());
        order.shipping.as_mut().unwrap().finish_shipping_count = 2;
        assert!(!order.correction_allowed());
        order.order_state = OrderState::Confirmed;
        order.shipping.as_mut().unwrap().finish_shipping_count = 1;
        assert!(!order.correction_allowed());
    }
}
