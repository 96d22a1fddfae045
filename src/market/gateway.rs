//! The marketplace's view of WeChat Pay and WeChat shipping-info management.
//!
//! `market` never sends HTTP: it calls a [`PaymentGateway`] and a [`ShippingGateway`], which the
//! WeChat Pay client and the mini-program shipping client implement (pointed at WeChat or at the
//! emulator). [`WechatPayGateway`] pays through [`crate::pay::PayClient`] (JSAPI, partner and combined
//! payments, close, refunds); [`MpShippingGateway`] uploads through [`crate::mp::shipping`];
//! [`RecordingGateway`] implements both traits in memory and records every call, for tests and demos
//! that need no emulator.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use wxshop::market::{Money, PayMode, PaymentGateway, PrepayRequest, RecordingGateway};
//! let gw = RecordingGateway::default();
//! let req = PrepayRequest {
//!     mode: PayMode::Jsapi, out_trade_no: "g1".into(), description: "tea".into(),
//!     payer_openid: "o1".into(), total: Money::fen(100),
//!     time_expire: chrono::Utc::now(), sub_mchid: None, sub_orders: vec![],
//! };
//! let ticket = gw.prepay(&req).await.unwrap();
//! assert_eq!(ticket.prepay_id, "prepay_g1");
//! assert_eq!(gw.calls().len(), 1);
//! # }
//! ```

use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::money::Money;
use super::payment::{PayMode, PaymentNotice};

/// One sub-order of a combined payment (or the single order of a partner payment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOrder {
    /// The merchant order id (`out_trade_no` of the sub-order).
    pub out_trade_no: String,
    /// The marketplace merchant.
    pub merchant_id: String,
    /// Its WeChat Pay sub-merchant id, if any.
    pub sub_mchid: Option<String>,
    /// Amount.
    pub amount: Money,
    /// Description shown to the buyer.
    pub description: String,
}

/// Create a prepay order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayRequest {
    /// Which API.
    pub mode: PayMode,
    /// `out_trade_no` (JSAPI, partner) or `combine_out_trade_no`: the checkout group id.
    pub out_trade_no: String,
    /// Description.
    pub description: String,
    /// The payer.
    pub payer_openid: String,
    /// Total.
    pub total: Money,
    /// When the prepay order stops accepting payment.
    pub time_expire: DateTime<Utc>,
    /// The sub-merchant, in partner mode.
    pub sub_mchid: Option<String>,
    /// Sub-orders, in combined mode.
    pub sub_orders: Vec<SubOrder>,
}

impl PrepayRequest {
    /// Whether this pays for goods (a checkout) rather than a merchant's deposit (an `out_trade_no`
    /// starting with [`DEPOSIT_TRADE_PREFIX`](crate::market::governance::deposit::DEPOSIT_TRADE_PREFIX)):
    /// only sales are shared out at settlement, so only they are marked for profit sharing.
    pub fn is_sale(&self) -> bool {
        !self.out_trade_no.starts_with(crate::market::governance::deposit::DEPOSIT_TRADE_PREFIX)
    }
}

/// What `wx.requestPayment` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayTicket {
    /// The prepay id.
    pub prepay_id: String,
    /// `{timeStamp, nonceStr, package, signType, paySign}` for the mini-program.
    pub pay_params: serde_json::Value,
}

/// Close an unpaid prepay order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRequest {
    /// Which API.
    pub mode: PayMode,
    /// The group id.
    pub out_trade_no: String,
    /// The sub-merchant, in partner mode.
    pub sub_mchid: Option<String>,
    /// Sub-orders, in combined mode.
    pub sub_orders: Vec<SubOrder>,
}

/// Query a payment's state: a payment is found by the same reference that closes it.
pub type QueryRequest = CloseRequest;

/// What WeChat Pay says about a payment when asked (to reconcile a lost notification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentQuery {
    /// The gateway cannot tell (it has no query).
    Unknown,
    /// Not paid (yet): unpaid, closed, or unknown to WeChat Pay.
    Unpaid,
    /// Paid: the notice to apply, exactly like a notification's. Its `notify_id` is derived from the
    /// transaction id, so two reconcilers of the same payment deduplicate.
    Paid(PaymentNotice),
}

/// The notification id a reconciled payment is applied under.
pub fn query_notify_id(transaction_id: &str) -> String {
    format!("query:{transaction_id}")
}

/// Refund (part of) a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// `out_refund_no`: the refund id.
    pub out_refund_no: String,
    /// The `out_trade_no` refunded.
    pub out_trade_no: String,
    /// Its transaction id, when known.
    pub transaction_id: Option<String>,
    /// The sub-merchant, in partner or combined mode.
    pub sub_mchid: Option<String>,
    /// Amount to refund.
    pub refund: Money,
    /// Amount of the original transaction.
    pub total: Money,
    /// Reason shown to the buyer.
    pub reason: String,
}

/// What WeChat Pay said about a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundTicket {
    /// WeChat Pay's refund id.
    pub refund_id: String,
    /// Already succeeded (otherwise processing; a refund notification concludes it).
    pub succeeded: bool,
}

/// WeChat's logistics types for shipping-info upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogisticsType {
    /// 1: express.
    Express,
    /// 2: same-city delivery.
    SameCity,
    /// 3: virtual goods.
    Virtual,
    /// 4: self pick-up.
    SelfPickup,
}

impl LogisticsType {
    /// WeChat's number.
    pub fn code(self) -> i64 {
        match self {
            LogisticsType::Express => 1,
            LogisticsType::SameCity => 2,
            LogisticsType::Virtual => 3,
            LogisticsType::SelfPickup => 4,
        }
    }
}

/// One parcel of a shipping upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingParcel {
    /// Waybill number.
    pub tracking_no: String,
    /// Carrier code.
    pub express_company: String,
    /// What is in it (≤ 120 characters).
    pub item_desc: String,
    /// The receiver's phone, sent masked (`138****5678`); SF Express requires a contact.
    pub receiver_phone: Option<String>,
}

/// Upload shipping info for one paid order (WeChat's `upload_shipping_info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingUpload {
    /// The `out_trade_no` paid: the group id (JSAPI, partner) or the order id (combined sub-order).
    pub out_trade_no: String,
    /// The transaction id of that payment.
    pub transaction_id: Option<String>,
    /// The sub-merchant, if any.
    pub sub_mchid: Option<String>,
    /// Logistics type.
    pub logistics_type: LogisticsType,
    /// Split delivery (several parcels) rather than one.
    pub split: bool,
    /// Whether this upload completes the order's shipping.
    pub is_all_delivered: bool,
    /// The parcels of this upload.
    pub parcels: Vec<ShippingParcel>,
    /// The payer.
    pub payer_openid: String,
    /// Upload time.
    pub upload_time: DateTime<Utc>,
}

/// One receiver of a profit-sharing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfitShareReceiver {
    /// WeChat's receiver type: `MERCHANT_ID` or `PERSONAL_OPENID`.
    pub receiver_type: String,
    /// The merchant id or openid.
    pub account: String,
    /// Amount.
    pub amount: Money,
    /// Why (shown to the receiver).
    pub description: String,
}

/// Share a paid transaction out to receivers (分账, `POST /v3/profitsharing/orders`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfitShareRequest {
    /// `out_order_no`: idempotent at WeChat Pay.
    pub out_order_no: String,
    /// The transaction shared.
    pub transaction_id: String,
    /// The paying sub-merchant, in partner or combined mode.
    pub sub_mchid: Option<String>,
    /// Receivers other than the merchant (empty: only unfreeze).
    pub receivers: Vec<ProfitShareReceiver>,
    /// Release whatever is not shared to the merchant (`unfreeze_unsplit`).
    pub unfreeze_unsplit: bool,
}

/// What WeChat Pay said about a profit-sharing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfitShareTicket {
    /// WeChat Pay's profit-sharing order id.
    pub order_id: String,
    /// Already finished (otherwise processing; a query concludes it).
    pub finished: bool,
}

/// Pay a buyer compensation that is not a refund of their payment: out of a merchant's deposit
/// (`DEPOSIT_COMPENSATION`) or advanced by the platform (`PLATFORM_AFTER_SALES_COMPENSATION`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationRequest {
    /// Our id (idempotent).
    pub out_no: String,
    /// WeChat Pay's business type.
    pub business_type: String,
    /// The buyer.
    pub payer_openid: String,
    /// The merchant whose deposit pays, if any.
    pub sub_mchid: Option<String>,
    /// Amount.
    pub amount: Money,
    /// Shown to the buyer.
    pub description: String,
}

/// What WeChat Pay said about a compensation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationTicket {
    /// WeChat Pay's id.
    pub id: String,
    /// Already succeeded.
    pub succeeded: bool,
}

/// WeChat Pay, as the marketplace needs it.
#[async_trait]
pub trait PaymentGateway: Send + Sync + fmt::Debug {
    /// Creates (or, for the same `out_trade_no`, returns again) a prepay order.
    async fn prepay(&self, req: &PrepayRequest) -> crate::Result<PrepayTicket>;
    /// Closes an unpaid prepay order (closing an unknown or closed one succeeds).
    async fn close(&self, req: &CloseRequest) -> crate::Result<()>;
    /// Requests a refund (idempotent by `out_refund_no`).
    async fn refund(&self, req: &RefundRequest) -> crate::Result<RefundTicket>;
    /// Shares a transaction out (idempotent by `out_order_no`). Gateways without profit sharing refuse.
    async fn profit_share(&self, req: &ProfitShareRequest) -> crate::Result<ProfitShareTicket> {
        Err(crate::Error::Config(format!("this payment gateway cannot share {} out", req.out_order_no)))
    }
    /// Pays a buyer compensation (idempotent by `out_no`). Gateways without it refuse.
    async fn compensate(&self, req: &CompensationRequest) -> crate::Result<CompensationTicket> {
        Err(crate::Error::Config(format!("this payment gateway cannot pay compensation {}", req.out_no)))
    }
    /// Asks for a payment's state. Gateways without a query answer [`PaymentQuery::Unknown`].
    async fn query(&self, req: &QueryRequest) -> crate::Result<PaymentQuery> {
        let _ = req;
        Ok(PaymentQuery::Unknown)
    }
}

/// WeChat shipping-info management, as the marketplace needs it.
#[async_trait]
pub trait ShippingGateway: Send + Sync + fmt::Debug {
    /// Uploads shipping info for a paid order.
    async fn upload(&self, req: &ShippingUpload) -> crate::Result<()>;
}

/// A recorded gateway call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCall {
    /// `prepay`.
    Prepay(PrepayRequest),
    /// `close`.
    Close(CloseRequest),
    /// `refund`.
    Refund(RefundRequest),
    /// `upload`.
    Ship(ShippingUpload),
    /// `profit_share`.
    ProfitShare(ProfitShareRequest),
    /// `compensate`.
    Compensate(CompensationRequest),
    /// `query`.
    Query(QueryRequest),
}

/// An in-memory gateway that succeeds (unless told to fail) and records every call.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    calls: Mutex<Vec<GatewayCall>>,
    failures: Mutex<Vec<(&'static str, bool)>>,
    paid: Mutex<Vec<PaymentNotice>>,
}

impl RecordingGateway {
    /// Every call so far.
    pub fn calls(&self) -> Vec<GatewayCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `query` answer that `notice.out_trade_no` is paid (as if the buyer paid and the
    /// notification was lost); its `notify_id` is replaced by [`query_notify_id`].
    pub fn set_paid(&self, notice: PaymentNotice) {
        self.paid.lock().unwrap_or_else(|p| p.into_inner()).push(notice);
    }

    /// Makes the next call of `op` (`"prepay"`, `"close"`, `"refund"`, `"ship"`,
    /// `"profit_share"`, `"compensate"`, `"query"`) fail; a `transient`
    /// failure is retryable (WeChat Pay's `SYSTEM_ERROR`), otherwise it is final (`PARAM_ERROR`).
    pub fn fail_next(&self, op: &'static str, transient: bool) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).push((op, transient));
    }

    fn record(&self, op: &'static str, call: GatewayCall) -> crate::Result<()> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = f.iter().position(|(o, _)| *o == op) {
            let (_, transient) = f.remove(i);
            let (status, code) = if transient { (500, "SYSTEM_ERROR") } else { (400, "PARAM_ERROR") };
            return Err(crate::Error::PayApi {
                status,
                code: code.into(),
                message: format!("injected {op} failure"),
                detail: None,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl PaymentGateway for RecordingGateway {
    async fn prepay(&self, req: &PrepayRequest) -> crate::Result<PrepayTicket> {
        self.record("prepay", GatewayCall::Prepay(req.clone()))?;
        let prepay_id = format!("prepay_{}", req.out_trade_no);
        Ok(PrepayTicket {
            pay_params: serde_json::json!({
                "timeStamp": req.time_expire.timestamp().to_string(),
                "nonceStr": req.out_trade_no,
                "package": format!("prepay_id={prepay_id}"),
                "signType": "RSA",
                "paySign": "recorded",
            }),
            prepay_id,
        })
    }

    async fn close(&self, req: &CloseRequest) -> crate::Result<()> {
        self.record("close", GatewayCall::Close(req.clone()))
    }

    async fn refund(&self, req: &RefundRequest) -> crate::Result<RefundTicket> {
        self.record("refund", GatewayCall::Refund(req.clone()))?;
        Ok(RefundTicket { refund_id: format!("wxrefund_{}", req.out_refund_no), succeeded: true })
    }

    async fn profit_share(&self, req: &ProfitShareRequest) -> crate::Result<ProfitShareTicket> {
        self.record("profit_share", GatewayCall::ProfitShare(req.clone()))?;
        Ok(ProfitShareTicket { order_id: format!("wxshare_{}", req.out_order_no), finished: true })
    }

    async fn compensate(&self, req: &CompensationRequest) -> crate::Result<CompensationTicket> {
        self.record("compensate", GatewayCall::Compensate(req.clone()))?;
        Ok(CompensationTicket { id: format!("wxcomp_{}", req.out_no), succeeded: true })
    }

    async fn query(&self, req: &QueryRequest) -> crate::Result<PaymentQuery> {
        self.record("query", GatewayCall::Query(req.clone()))?;
        let paid = self.paid.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match paid.iter().find(|n| n.out_trade_no == req.out_trade_no) {
            Some(n) => PaymentQuery::Paid(PaymentNotice { notify_id: query_notify_id(&n.transaction_id), ..n.clone() }),
            None => PaymentQuery::Unpaid,
        })
    }
}

#[async_trait]
impl ShippingGateway for RecordingGateway {
    async fn upload(&self, req: &ShippingUpload) -> crate::Result<()> {
        self.record("ship", GatewayCall::Ship(req.clone()))
    }
}

/// Uploads shipping info through the mini-program client ([`crate::mp::shipping`]), to WeChat or to
/// the emulator, keyed by the payment's transaction id.
#[derive(Debug, Clone)]
pub struct MpShippingGateway {
    client: crate::mp::Client,
}

impl MpShippingGateway {
    /// A gateway over a mini-program client.
    pub fn new(client: crate::mp::Client) -> Self {
        MpShippingGateway { client }
    }

    /// The upload WeChat receives for `req`.
    pub fn request(req: &ShippingUpload) -> crate::Result<crate::mp::shipping::UploadShippingInfo> {
        use crate::mp::shipping::{Contact, OrderKey, ShippingItem, UploadShippingInfo};
        let txn = req.transaction_id.as_deref().ok_or_else(|| {
            crate::Error::InvalidRequest(format!("{} has no transaction id: is it paid?", req.out_trade_no))
        })?;
        let key = OrderKey::transaction_id(txn);
        let items: Vec<ShippingItem> = req
            .parcels
            .iter()
            .map(|p| {
                let item = match req.logistics_type {
                    LogisticsType::Express => ShippingItem::express(&p.tracking_no, &p.express_company, &p.item_desc),
                    _ => ShippingItem::described(&p.item_desc),
                };
                match &p.receiver_phone {
                    Some(phone) => item.contact(Contact::receiver_phone(phone)),
                    None => item,
                }
            })
            .collect();
        let upload = if req.split {
            UploadShippingInfo::split(key, &req.payer_openid, items, req.is_all_delivered)
        } else {
            let item = items.into_iter().next().ok_or_else(|| crate::Error::InvalidRequest("no parcel".into()))?;
            let logistics = crate::mp::shipping::LogisticsType::from_code(req.logistics_type.code());
            UploadShippingInfo::unified(key, &req.payer_openid, logistics, item)
        };
        let upload = upload.upload_time(req.upload_time);
        upload.validate()?;
        Ok(upload)
    }
}

#[async_trait]
impl ShippingGateway for MpShippingGateway {
    async fn upload(&self, req: &ShippingUpload) -> crate::Result<()> {
        self.client.shipping().upload_shipping_info(&Self::request(req)?).await
    }
}

/// Pays through WeChat Pay API v3 ([`crate::pay::PayClient`]): JSAPI for one direct merchant,
/// partner-mode JSAPI (服务商模式) for one sub-merchant, combined payment (合单) for several. A combined
/// payment's sub-orders (one per merchant order) are all taken by the platform's own merchant id, which
/// also refunds them; merchants are paid out of it by profit sharing at settlement.
#[derive(Debug, Clone)]
pub struct WechatPayGateway {
    client: crate::pay::PayClient,
    appid: String,
    notify_url: std::sync::Arc<std::sync::RwLock<String>>,
    profit_sharing: bool,
}

impl WechatPayGateway {
    /// A gateway paying for mini-program `appid`, with notifications sent to `notify_url`.
    pub fn new(client: crate::pay::PayClient, appid: impl Into<String>, notify_url: impl Into<String>) -> Self {
        WechatPayGateway {
            client,
            appid: appid.into(),
            notify_url: std::sync::Arc::new(std::sync::RwLock::new(notify_url.into())),
            profit_sharing: false,
        }
    }

    /// Marks every sale's prepay order for profit sharing (`settle_info.profit_sharing`: JSAPI and
    /// partner orders, and each sub-order of a combined payment), which WeChat Pay requires before
    /// [`PaymentGateway::profit_share`] can split a payment at settlement. Such funds stay frozen until
    /// shared or unfrozen (WeChat unfreezes them to the payee after 180 days), so enable it only when
    /// settlement shares: the market then shares commission and promoter fees out and unfreezes the
    /// rest when a settlement is released. Deposit pay-ins ([`PrepayRequest::is_sale`]) are never
    /// marked. Receivers must be added beforehand (`POST /v3/profitsharing/receivers/add`, see
    /// [`crate::pay::profitsharing::AddReceiver`]): for a sub-merchant's own payments, the platform's
    /// merchant id under that sub-merchant.
    ///
    /// ```
    /// # fn demo(pay: wxshop::pay::PayClient) {
    /// use wxshop::market::WechatPayGateway;
    /// let gateway = WechatPayGateway::new(pay, "wx_appid", "https://shop.example/wx/pay/notify").with_profit_sharing(true);
    /// # let _ = gateway; }
    /// ```
    pub fn with_profit_sharing(mut self, yes: bool) -> Self {
        self.profit_sharing = yes;
        self
    }

    /// Changes where notifications go (for a server that learns its address after binding).
    pub fn set_notify_url(&self, url: impl Into<String>) {
        *self.notify_url.write().unwrap_or_else(|p| p.into_inner()) = url.into();
    }

    fn notify_url(&self) -> String {
        self.notify_url.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Closing an order WeChat Pay does not know or already closed leaves it closed: success.
fn closed_anyway(r: crate::Result<()>) -> crate::Result<()> {
    match r {
        Err(e) if matches!(e.pay_code(), Some("ORDER_NOT_EXIST" | "ORDER_CLOSED" | "ORDERNOTEXIST")) => Ok(()),
        other => other,
    }
}

#[async_trait]
impl PaymentGateway for WechatPayGateway {
    async fn prepay(&self, req: &PrepayRequest) -> crate::Result<PrepayTicket> {
        use crate::pay::combine::{CombineJsapiPrepay, SubOrder as PaySubOrder};
        use crate::pay::partner::PartnerJsapiPrepay;
        use crate::pay::transactions::JsapiPrepay;
        let total = req.total.as_fen();
        let prepay_id = match req.mode {
            PayMode::Jsapi => {
                let mut r = JsapiPrepay::new(
                    &self.appid,
                    &req.description,
                    &req.out_trade_no,
                    self.notify_url(),
                    total,
                    &req.payer_openid,
                )
                .time_expire(req.time_expire);
                if self.profit_sharing && req.is_sale() {
                    r = r.profit_sharing(true);
                }
                self.client.transactions().jsapi(r).await?.prepay_id
            }
            PayMode::Partner => {
                let sub = req
                    .sub_mchid
                    .as_deref()
                    .ok_or_else(|| crate::Error::InvalidRequest("partner mode needs sub_mchid".into()))?;
                let mut r = PartnerJsapiPrepay::new(
                    &self.appid,
                    sub,
                    &req.description,
                    &req.out_trade_no,
                    self.notify_url(),
                    total,
                )
                .sp_openid(&req.payer_openid)
                .time_expire(req.time_expire);
                if self.profit_sharing && req.is_sale() {
                    r = r.profit_sharing(true);
                }
                self.client.partner().jsapi(r).await?.prepay_id
            }
            PayMode::Combine => {
                let mut r =
                    CombineJsapiPrepay::new(&self.appid, &req.out_trade_no, &req.payer_openid, self.notify_url())
                        .time_expire(req.time_expire);
                let mchid = self.client.mchid();
                for s in &req.sub_orders {
                    let mut sub =
                        PaySubOrder::new(mchid, &s.out_trade_no, s.amount.as_fen(), &s.description, &s.merchant_id);
                    if self.profit_sharing && req.is_sale() {
                        sub = sub.profit_sharing(true);
                    }
                    r = r.sub_order(sub);
                }
                self.client.combine().jsapi(r).await?.prepay_id
            }
        };
        let params = self.client.request_payment(&self.appid, &prepay_id)?;
        Ok(PrepayTicket {
            pay_params: serde_json::json!({
                "timeStamp": params.time_stamp, "nonceStr": params.nonce_str, "package": params.package,
                "signType": params.sign_type, "paySign": params.pay_sign,
            }),
            prepay_id,
        })
    }

    async fn close(&self, req: &CloseRequest) -> crate::Result<()> {
        match req.mode {
            PayMode::Jsapi => closed_anyway(self.client.transactions().close(&req.out_trade_no).await),
            PayMode::Partner => {
                let sub = req
                    .sub_mchid
                    .as_deref()
                    .ok_or_else(|| crate::Error::InvalidRequest("partner mode needs sub_mchid".into()))?;
                closed_anyway(self.client.partner().close(&req.out_trade_no, sub).await)
            }
            PayMode::Combine => {
                let mchid = self.client.mchid();
                let refs: Vec<(&str, &str)> = req.sub_orders.iter().map(|s| (mchid, s.out_trade_no.as_str())).collect();
                closed_anyway(self.client.combine().close(&self.appid, &req.out_trade_no, &refs).await)
            }
        }
    }

    async fn refund(&self, req: &RefundRequest) -> crate::Result<RefundTicket> {
        use crate::pay::refunds::CreateRefund;
        let (refund, total) = (req.refund.as_fen(), req.total.as_fen());
        let mut r = match &req.transaction_id {
            Some(t) => CreateRefund::by_transaction_id(t, &req.out_refund_no, refund, total),
            None => CreateRefund::by_out_trade_no(&req.out_trade_no, &req.out_refund_no, refund, total),
        };
        r = r.reason(&req.reason);
        if let Some(m) = &req.sub_mchid {
            r = r.sub_mchid(m);
        }
        let out = self.client.refunds().create(r).await?;
        Ok(RefundTicket {
            refund_id: out.refund_id,
            succeeded: out.status == crate::pay::refunds::RefundStatus::Success,
        })
    }

    /// `POST /v3/profitsharing/orders` (the receivers must have been added with `add_receiver`), or
    /// `/orders/unfreeze` when nothing is shared.
    async fn profit_share(&self, req: &ProfitShareRequest) -> crate::Result<ProfitShareTicket> {
        use crate::pay::profitsharing::{CreateOrder, OrderReceiver, OrderState};
        let ps = self.client.profit_sharing();
        let order = if req.receivers.is_empty() {
            ps.unfreeze(&req.transaction_id, &req.out_order_no, "解冻给商户", req.sub_mchid.as_deref()).await?
        } else {
            let mut o = CreateOrder::new(&self.appid, &req.transaction_id, &req.out_order_no, req.unfreeze_unsplit);
            if let Some(m) = &req.sub_mchid {
                o = o.sub_mchid(m);
            }
            for r in &req.receivers {
                o = o.receiver(OrderReceiver {
                    kind: r.receiver_type.clone(),
                    account: r.account.clone(),
                    name: None,
                    amount: r.amount.as_fen(),
                    description: r.description.clone(),
                });
            }
            ps.create_order(o).await?
        };
        Ok(ProfitShareTicket { order_id: order.order_id, finished: order.state == OrderState::Finished })
    }

    /// `GET /v3/pay/transactions/out-trade-no/{..}` (JSAPI), its partner form, or
    /// `GET /v3/combine-transactions/out-trade-no/{..}` (combined). An order WeChat Pay does not know
    /// is unpaid.
    async fn query(&self, req: &QueryRequest) -> crate::Result<PaymentQuery> {
        let notice = match req.mode {
            PayMode::Jsapi => self.client.transactions().query_by_out_trade_no(&req.out_trade_no).await.map(|t| {
                t.transaction_id.clone().and_then(|id| PaymentNotice::from_transaction(&query_notify_id(&id), &t))
            }),
            PayMode::Partner => {
                let sub = req
                    .sub_mchid
                    .as_deref()
                    .ok_or_else(|| crate::Error::InvalidRequest("partner mode needs sub_mchid".into()))?;
                self.client.partner().query_by_out_trade_no(&req.out_trade_no, sub).await.map(|t| {
                    t.transaction_id.clone().and_then(|id| PaymentNotice::from_transaction(&query_notify_id(&id), &t))
                })
            }
            PayMode::Combine => self.client.combine().query(&req.out_trade_no).await.map(|c| {
                let first = c.sub_orders.first().and_then(|s| s.transaction_id.clone())?;
                PaymentNotice::from_combine(&query_notify_id(&first), &c)
            }),
        };
        match notice {
            Ok(Some(n)) => Ok(PaymentQuery::Paid(n)),
            Ok(None) => Ok(PaymentQuery::Unpaid),
            Err(e) if matches!(e.pay_code(), Some("ORDER_NOT_EXIST" | "ORDERNOTEXIST")) => Ok(PaymentQuery::Unpaid),
            Err(e) => Err(e),
        }
    }
}
