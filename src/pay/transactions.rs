//! JSAPI (mini-program) payments: prepay, the `wx.requestPayment` parameters, query and close.
//!
//! | call | endpoint |
//! |---|---|
//! | [`Transactions::jsapi`] | `POST /v3/pay/transactions/jsapi` |
//! | [`Transactions::query_by_id`] | `GET /v3/pay/transactions/id/{transaction_id}?mchid=` |
//! | [`Transactions::query_by_out_trade_no`] | `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=` |
//! | [`Transactions::close`] | `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` |
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! use wxshop::pay::transactions::{JsapiPrepay, SceneInfo};
//! let req = JsapiPrepay::new("wx8888888888888888", "Coffee", "ORDER_1001", "https://shop.example/wx/pay/notify", 1800, "o-openid")
//!     .attach("table=7")
//!     .goods_tag("WXG")
//!     .profit_sharing(true)
//!     .scene_info(SceneInfo::new("203.0.113.7"))
//!     .time_expire(chrono::Utc::now() + chrono::Duration::minutes(30));
//! let params = pay.transactions().jsapi_request_payment(req).await?; // → wx.requestPayment
//! let tx = pay.transactions().query_by_out_trade_no("ORDER_1001").await?;
//! println!("{}", tx.trade_state);
//! # Ok(()) }
//! ```

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::client::{PayClient, RequestPayment, get, post};
use super::{check_no, seg};
use crate::error::{Error, Result};

/// Formats a time the way WeChat Pay wants it: RFC 3339 in Beijing time (`+08:00`).
pub fn wechat_time(t: DateTime<Utc>) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    t.with_timezone(&cst).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// An order amount in fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Amount {
    /// Total, in fen (分).
    pub total: i64,
    /// `CNY` (the only currency for domestic payments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The payer of a JSAPI order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Payer {
    /// The user's openid under the order's appid.
    pub openid: String,
}

/// One item of an order's `detail.goods_detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodsDetail {
    /// The merchant's goods id.
    pub merchant_goods_id: String,
    /// WeChat Pay's goods id, when registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wechatpay_goods_id: Option<String>,
    /// The goods name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goods_name: Option<String>,
    /// Quantity.
    pub quantity: i64,
    /// Unit price in fen.
    pub unit_price: i64,
}

impl GoodsDetail {
    /// An item.
    pub fn new(merchant_goods_id: impl Into<String>, quantity: i64, unit_price: i64) -> Self {
        GoodsDetail {
            merchant_goods_id: merchant_goods_id.into(),
            wechatpay_goods_id: None,
            goods_name: None,
            quantity,
            unit_price,
        }
    }

    /// The goods name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.goods_name = Some(name.into());
        self
    }
}

/// An order's `detail` (单品优惠).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OrderDetail {
    /// The original price in fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_price: Option<i64>,
    /// The merchant's invoice id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    /// The items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goods_detail: Vec<GoodsDetail>,
}

/// A store in `scene_info.store_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Store id.
    pub id: String,
    /// Store name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Area code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_code: Option<String>,
    /// Address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `scene_info`: where the payment happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneInfo {
    /// The user's IP (IPv4 or IPv6).
    pub payer_client_ip: String,
    /// The merchant's device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_info: Option<StoreInfo>,
}

impl SceneInfo {
    /// A scene with the payer's IP.
    pub fn new(payer_client_ip: impl Into<String>) -> Self {
        SceneInfo { payer_client_ip: payer_client_ip.into(), device_id: None, store_info: None }
    }
}

/// `settle_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SettleInfo {
    /// Freeze the funds for profit sharing (分账).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profit_sharing: Option<bool>,
}

/// `POST /v3/pay/transactions/jsapi`: a mini-program prepay order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsapiPrepay {
    /// The mini-program appid.
    pub appid: String,
    /// Filled from the client's configuration.
    pub mchid: String,
    /// What is bought (≤ 127 bytes).
    pub description: String,
    /// The merchant's order number (6–32 of `[0-9A-Za-z_-|*@]`), unique per merchant.
    pub out_trade_no: String,
    /// Payment deadline, RFC 3339 (`+08:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    /// Merchant data returned in queries and notifications (≤ 128 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// Where WeChat Pay posts the payment notification (no query string).
    pub notify_url: String,
    /// Coupon tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_tag: Option<String>,
    /// Electronic invoice support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_fapiao: Option<bool>,
    /// Amount.
    pub amount: Amount,
    /// The payer.
    pub payer: Payer,
    /// Goods detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<OrderDetail>,
    /// Scene.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<SceneInfo>,
    /// Settlement (profit sharing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_info: Option<SettleInfo>,
}

impl JsapiPrepay {
    /// A prepay order with every required field; `total` in fen.
    pub fn new(
        appid: impl Into<String>,
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        notify_url: impl Into<String>,
        total: i64,
        openid: impl Into<String>,
    ) -> Self {
        JsapiPrepay {
            appid: appid.into(),
            mchid: String::new(),
            description: description.into(),
            out_trade_no: out_trade_no.into(),
            time_expire: None,
            attach: None,
            notify_url: notify_url.into(),
            goods_tag: None,
            support_fapiao: None,
            amount: Amount { total, currency: Some("CNY".into()) },
            payer: Payer { openid: openid.into() },
            detail: None,
            scene_info: None,
            settle_info: None,
        }
    }

    /// Payment deadline.
    pub fn time_expire(mut self, at: DateTime<Utc>) -> Self {
        self.time_expire = Some(wechat_time(at));
        self
    }

    /// Merchant data echoed back.
    pub fn attach(mut self, attach: impl Into<String>) -> Self {
        self.attach = Some(attach.into());
        self
    }

    /// Coupon tag.
    pub fn goods_tag(mut self, tag: impl Into<String>) -> Self {
        self.goods_tag = Some(tag.into());
        self
    }

    /// Electronic invoice support.
    pub fn support_fapiao(mut self, yes: bool) -> Self {
        self.support_fapiao = Some(yes);
        self
    }

    /// Goods detail.
    pub fn detail(mut self, detail: OrderDetail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Scene.
    pub fn scene_info(mut self, scene: SceneInfo) -> Self {
        self.scene_info = Some(scene);
        self
    }

    /// Freeze the funds for profit sharing.
    pub fn profit_sharing(mut self, yes: bool) -> Self {
        self.settle_info = Some(SettleInfo { profit_sharing: Some(yes) });
        self
    }

    /// Checks WeChat's rules locally.
    pub fn validate(&self) -> Result<()> {
        validate_order(
            &self.description,
            &self.out_trade_no,
            &self.notify_url,
            self.amount.total,
            self.attach.as_deref(),
        )?;
        if self.appid.is_empty() || self.payer.openid.is_empty() {
            return Err(Error::InvalidRequest("appid and payer.openid are required".into()));
        }
        Ok(())
    }
}

pub(crate) fn validate_order(
    description: &str,
    out_trade_no: &str,
    notify_url: &str,
    total: i64,
    attach: Option<&str>,
) -> Result<()> {
    check_no("out_trade_no", out_trade_no, 6, 32)?;
    if description.is_empty() || description.len() > 127 {
        return Err(Error::InvalidRequest("description must be 1–127 bytes".into()));
    }
    if total <= 0 {
        return Err(Error::InvalidRequest(format!("amount.total must be positive fen, got {total}")));
    }
    if attach.is_some_and(|a| a.len() > 128) {
        return Err(Error::InvalidRequest("attach must be at most 128 bytes".into()));
    }
    match url::Url::parse(notify_url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.query().is_none() => Ok(()),
        _ => Err(Error::InvalidRequest(format!("notify_url {notify_url:?} must be an absolute URL without a query"))),
    }
}

/// The answer of a prepay call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayResponse {
    /// Valid for two hours; goes into `package=prepay_id=…`.
    pub prepay_id: String,
}

wire_enum! {
    /// `trade_state`.
    TradeState(String) {
        /// Paid.
        Success = "SUCCESS",
        /// Refund in progress or done.
        Refund = "REFUND",
        /// Not paid.
        NotPay = "NOTPAY",
        /// Closed.
        Closed = "CLOSED",
        /// Revoked (付款码).
        Revoked = "REVOKED",
        /// The user is paying (entering a password).
        UserPaying = "USERPAYING",
        /// Payment failed.
        PayError = "PAYERROR",
    }
}

/// The payer as a query or notification returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TransactionPayer {
    /// openid (direct merchants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// openid under sp_appid (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_openid: Option<String>,
    /// openid under sub_appid (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_openid: Option<String>,
}

/// The amount as a query or notification returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TransactionAmount {
    /// Order total, fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// What the user paid, fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    /// `CNY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The user's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// A payment as `query` and the `TRANSACTION.SUCCESS` notification describe it (direct and partner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// appid (direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// mchid (direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mchid: Option<String>,
    /// sp_appid (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_appid: Option<String>,
    /// sp_mchid (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_mchid: Option<String>,
    /// sub_appid (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_appid: Option<String>,
    /// sub_mchid (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// WeChat Pay's order number (once paid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// `JSAPI`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    /// The state.
    pub trade_state: TradeState,
    /// A description of the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_state_desc: Option<String>,
    /// The paying bank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_type: Option<String>,
    /// The merchant's attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// When it was paid (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<TransactionPayer>,
    /// The amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<TransactionAmount>,
    /// The scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<serde_json::Value>,
    /// Coupons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_detail: Option<Vec<serde_json::Value>>,
}

impl Transaction {
    /// Paid (`SUCCESS`).
    pub fn is_paid(&self) -> bool {
        self.trade_state == TradeState::Success
    }

    /// The order total in fen, when present.
    pub fn total(&self) -> Option<i64> {
        self.amount.as_ref().and_then(|a| a.total)
    }
}

impl PayClient {
    /// Payments (JSAPI prepay, query, close).
    pub fn transactions(&self) -> Transactions<'_> {
        Transactions { client: self }
    }
}

/// Direct-merchant payments. From [`PayClient::transactions`].
#[derive(Debug, Clone, Copy)]
pub struct Transactions<'a> {
    pub(crate) client: &'a PayClient,
}

impl Transactions<'_> {
    /// `POST /v3/pay/transactions/jsapi`. Repeating the same `out_trade_no` with the same fields
    /// answers the same prepay_id, so it is retried on transient failures.
    pub async fn jsapi(self, mut req: JsapiPrepay) -> Result<PrepayResponse> {
        req.mchid = self.client.mchid().to_string();
        req.validate()?;
        self.client.send_json(&post("/v3/pay/transactions/jsapi", &req)?).await
    }

    /// Prepay, then the signed `wx.requestPayment` parameters.
    pub async fn jsapi_request_payment(self, req: JsapiPrepay) -> Result<RequestPayment> {
        let appid = req.appid.clone();
        let prepay = self.jsapi(req).await?;
        self.client.request_payment(&appid, &prepay.prepay_id)
    }

    /// `GET /v3/pay/transactions/id/{transaction_id}?mchid=`.
    pub async fn query_by_id(self, transaction_id: &str) -> Result<Transaction> {
        if transaction_id.is_empty() {
            return Err(Error::InvalidRequest("transaction_id is empty".into()));
        }
        let req = get(format!("/v3/pay/transactions/id/{}", seg(transaction_id))).query("mchid", self.client.mchid());
        self.client.send_json(&req).await
    }

    /// `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=`.
    pub async fn query_by_out_trade_no(self, out_trade_no: &str) -> Result<Transaction> {
        check_no("out_trade_no", out_trade_no, 6, 32)?;
        let req =
            get(format!("/v3/pay/transactions/out-trade-no/{}", seg(out_trade_no))).query("mchid", self.client.mchid());
        self.client.send_json(&req).await
    }

    /// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` (answers 204).
    pub async fn close(self, out_trade_no: &str) -> Result<()> {
        check_no("out_trade_no", out_trade_no, 6, 32)?;
        let body = serde_json::json!({ "mchid": self.client.mchid() });
        let req = post(format!("/v3/pay/transactions/out-trade-no/{}/close", seg(out_trade_no)), &body)?;
        self.client.send_no_content(&req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepay_serializes_every_field() {
        let at = DateTime::parse_from_rfc3339("2024-01-01T02:00:00Z").unwrap().with_timezone(&Utc);
        let mut r = JsapiPrepay::new("wx1", "Coffee", "ORDER_1001", "https://a.example/n", 1800, "o1")
            .attach("t=7")
            .goods_tag("WXG")
            .profit_sharing(true)
            .time_expire(at)
            .scene_info(SceneInfo::new("203.0.113.7"))
            .detail(OrderDetail {
                cost_price: Some(2000),
                invoice_id: None,
                goods_detail: vec![GoodsDetail::new("sku1", 1, 1800)],
            });
        r.mchid = "1900009191".into();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "appid": "wx1", "mchid": "1900009191", "description": "Coffee", "out_trade_no": "ORDER_1001",
                "time_expire": "2024-01-01T10:00:00+08:00", "attach": "t=7", "notify_url": "https://a.example/n",
                "goods_tag": "WXG", "amount": {"total": 1800, "currency": "CNY"}, "payer": {"openid": "o1"},
                "detail": {"cost_price": 2000, "goods_detail": [{"merchant_goods_id": "sku1", "quantity": 1, "unit_price": 1800}]},
                "scene_info": {"payer_client_ip": "203.0.113.7"}, "settle_info": {"profit_sharing": true}
            })
        );
        r.validate().unwrap();
    }

    #[test]
    fn local_rules_reject_before_sending() {
        let ok = JsapiPrepay::new("wx1", "Coffee", "ORDER_1001", "https://a.example/n", 1800, "o1");
        assert!(ok.clone().validate().is_ok());
        let mut bad = ok.clone();
        bad.amount.total = 0;
        assert!(matches!(bad.validate(), Err(Error::InvalidRequest(_))));
        let mut bad = ok.clone();
        bad.notify_url = "https://a.example/n?x=1".into();
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.out_trade_no = "short".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn unknown_trade_states_survive() {
        let t: TradeState = serde_json::from_str("\"NEWSTATE\"").unwrap();
        assert_eq!(t, TradeState::Other("NEWSTATE".into()));
        assert_eq!(serde_json::to_string(&TradeState::NotPay).unwrap(), "\"NOTPAY\"");
    }
}
