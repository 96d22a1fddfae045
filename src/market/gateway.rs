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
    /// WeChat Pay's id (a merchant transfer's `transfer_bill_no`).
    pub id: String,
    /// Already succeeded.
    pub succeeded: bool,
    /// A merchant transfer's bill state (`WAIT_USER_CONFIRM`, `FAIL`…), when the gateway pays by
    /// transfer bills; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// With `WAIT_USER_CONFIRM`: the `package` the buyer's `wx.requestMerchantTransfer` needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_info: Option<String>,
    /// Why it failed, when it failed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
}

impl CompensationTicket {
    /// A compensation the gateway paid at once.
    pub fn paid(id: impl Into<String>) -> Self {
        CompensationTicket { id: id.into(), succeeded: true, state: None, package_info: None, fail_reason: None }
    }
}

/// How a merchant transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferOutcome {
    /// `SUCCESS`: the money reached the buyer.
    Success,
    /// `FAIL`: it did not; the money is back in the merchant's balance.
    Fail,
    /// `CANCELLED`: the merchant withdrew it before the buyer confirmed.
    Cancelled,
}

impl TransferOutcome {
    /// From a final transfer bill state; `None` for a state that is not final.
    pub fn from_state(state: &str) -> Option<Self> {
        match state {
            "SUCCESS" => Some(TransferOutcome::Success),
            "FAIL" => Some(TransferOutcome::Fail),
            "CANCELLED" => Some(TransferOutcome::Cancelled),
            _ => None,
        }
    }

    /// WeChat Pay's state.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferOutcome::Success => "SUCCESS",
            TransferOutcome::Fail => "FAIL",
            TransferOutcome::Cancelled => "CANCELLED",
        }
    }
}

/// A verified `MCHTRANSFER.BILL.FINISHED` notification (or a query's answer), as the marketplace
/// applies it with [`crate::market::Market::handle_transfer_notice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferNotice {
    /// The notification id (the dedupe key); a query's answer uses [`transfer_query_notify_id`].
    pub notify_id: String,
    /// The merchant's bill number.
    pub out_bill_no: String,
    /// WeChat Pay's bill number.
    pub transfer_bill_no: String,
    /// How it ended.
    pub outcome: TransferOutcome,
    /// Amount.
    pub amount: Money,
    /// The payee.
    pub openid: String,
    /// Why it failed.
    pub fail_reason: Option<String>,
}

impl TransferNotice {
    /// From a decrypted transfer bill notification; `None` if its state is not final.
    pub fn from_bill(notify_id: &str, b: &crate::pay::transfers::TransferBillNotice) -> Option<Self> {
        Some(TransferNotice {
            notify_id: notify_id.to_string(),
            out_bill_no: b.out_bill_no.clone(),
            transfer_bill_no: b.transfer_bill_no.clone(),
            outcome: TransferOutcome::from_state(b.state.as_str())?,
            amount: Money::fen(b.transfer_amount),
            openid: b.openid.clone(),
            fail_reason: b.fail_reason.clone(),
        })
    }

    /// From a verified notification: `Some` for `MCHTRANSFER.BILL.FINISHED` in a final state.
    pub fn from_notification(n: &crate::pay::Notification) -> Option<Self> {
        match &n.resource {
            crate::pay::NotificationResource::TransferBill(b) => Self::from_bill(&n.id, b),
            _ => None,
        }
    }
}

/// The notification id a transfer's final state found by a query is applied under.
pub fn transfer_query_notify_id(transfer_bill_no: &str, outcome: TransferOutcome) -> String {
    format!("query:{transfer_bill_no}:{}", outcome.as_str())
}

/// What WeChat Pay says about a merchant transfer when asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferQuery {
    /// The gateway cannot tell (it has no query).
    Unknown,
    /// Not final yet (`WAIT_USER_CONFIRM`, `PROCESSING`…).
    Pending {
        /// WeChat Pay's state.
        state: String,
    },
    /// Final: the notice to apply, exactly like a notification's.
    Finished(TransferNotice),
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
    /// Asks for a refund's state. Gateways without a refund query answer [`RefundQuery::Unknown`].
    async fn query_refund(&self, req: &RefundQueryRequest) -> crate::Result<RefundQuery> {
        let _ = req;
        Ok(RefundQuery::Unknown)
    }
    /// Asks for a compensation transfer's state by `out_bill_no`. Gateways without transfers answer
    /// [`TransferQuery::Unknown`].
    async fn query_transfer(&self, out_bill_no: &str) -> crate::Result<TransferQuery> {
        let _ = out_bill_no;
        Ok(TransferQuery::Unknown)
    }
}

/// Ask WeChat Pay about a refund (to reconcile a lost refund notification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQueryRequest {
    /// The `out_refund_no`.
    pub out_refund_no: String,
    /// The sub-merchant, in partner mode.
    pub sub_mchid: Option<String>,
}

/// What WeChat Pay says about a refund when asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundQuery {
    /// The gateway cannot tell (it has no refund query).
    Unknown,
    /// WeChat Pay does not know this refund.
    NotFound,
    /// Accepted, not settled yet.
    Processing,
    /// The money reached the payer.
    Succeeded {
        /// WeChat Pay's refund id.
        refund_id: String,
    },
    /// Closed or abnormal: the money did not arrive.
    Failed {
        /// WeChat Pay's refund id.
        refund_id: String,
        /// WeChat Pay's status (`CLOSED`, `ABNORMAL`).
        status: String,
    },
}

/// WeChat shipping-info management, as the marketplace needs it.
#[async_trait]
pub trait ShippingGateway: Send + Sync + fmt::Debug {
    /// Uploads shipping info for a paid order.
    async fn upload(&self, req: &ShippingUpload) -> crate::Result<()>;

    /// Replaces the shipping info of a shipped, unconfirmed payment with `req` (every parcel of the
    /// order, one of them corrected): WeChat allows this once per payment. `Ok(false)`: WeChat has no
    /// correction left for it (already corrected, or no longer shipped and unconfirmed), and nothing
    /// was sent. The default refuses: a gateway that cannot correct says so.
    async fn correct(&self, req: &ShippingUpload) -> crate::Result<bool> {
        Err(crate::Error::InvalidRequest(format!(
            "this shipping gateway cannot correct the shipping info of {}",
            req.out_trade_no
        )))
    }
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
    /// `correct` (shipping info).
    CorrectShipping(ShippingUpload),
    /// `profit_share`.
    ProfitShare(ProfitShareRequest),
    /// `compensate`.
    Compensate(CompensationRequest),
    /// `query`.
    Query(QueryRequest),
    /// `query_refund`.
    QueryRefund(RefundQueryRequest),
    /// `query_transfer` (the `out_bill_no`).
    QueryTransfer(String),
}

/// An in-memory gateway that succeeds (unless told to fail) and records every call.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    calls: Mutex<Vec<GatewayCall>>,
    failures: Mutex<Vec<(&'static str, bool)>>,
    paid: Mutex<Vec<PaymentNotice>>,
    hold_refunds: Mutex<bool>,
    refunds: Mutex<Vec<(String, RefundQuery)>>,
    transfers: Mutex<Option<std::collections::HashMap<String, TransferQuery>>>,
    corrected: Mutex<Vec<String>>,
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

    /// While `hold` is true, `refund` answers processing (WeChat Pay's usual answer) instead of
    /// succeeded: a notification or [`settle_refund`](Self::settle_refund) then concludes it.
    pub fn hold_refunds(&self, hold: bool) {
        *self.hold_refunds.lock().unwrap_or_else(|p| p.into_inner()) = hold;
    }

    /// Makes `query_refund` answer `state` for `out_refund_no` (unset: [`RefundQuery::Unknown`]).
    pub fn settle_refund(&self, out_refund_no: &str, state: RefundQuery) {
        let mut r = self.refunds.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|(no, _)| no != out_refund_no);
        r.push((out_refund_no.to_string(), state));
    }

    /// Makes `compensate` answer like WeChat Pay's merchant transfers: a bill waiting for the buyer
    /// (`WAIT_USER_CONFIRM`, id `wxtransfer_{out_no}`, package `package_{out_no}`), concluded later by a
    /// [`TransferNotice`] or by what [`RecordingGateway::set_transfer`] makes `query_transfer` answer.
    pub fn pay_by_transfer(&self) {
        let mut t = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
        t.get_or_insert_with(Default::default);
    }

    /// What `query_transfer` answers for `out_bill_no` (after [`RecordingGateway::pay_by_transfer`]).
    pub fn set_transfer(&self, out_bill_no: &str, answer: TransferQuery) {
        let mut t = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
        t.get_or_insert_with(Default::default).insert(out_bill_no.to_string(), answer);
    }

    /// Makes the next call of `op` (`"prepay"`, `"close"`, `"refund"`, `"ship"`, `"correct_shipping"`,
    /// `"profit_share"`, `"compensate"`, `"query"`, `"query_refund"`, `"query_transfer"`) fail; a `transient`
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
        let held = *self.hold_refunds.lock().unwrap_or_else(|p| p.into_inner());
        Ok(RefundTicket { refund_id: format!("wxrefund_{}", req.out_refund_no), succeeded: !held })
    }

    async fn query_refund(&self, req: &RefundQueryRequest) -> crate::Result<RefundQuery> {
        self.record("query_refund", GatewayCall::QueryRefund(req.clone()))?;
        let r = self.refunds.lock().unwrap_or_else(|p| p.into_inner());
        Ok(r.iter().find(|(no, _)| *no == req.out_refund_no).map_or(RefundQuery::Unknown, |(_, q)| q.clone()))
    }

    async fn profit_share(&self, req: &ProfitShareRequest) -> crate::Result<ProfitShareTicket> {
        self.record("profit_share", GatewayCall::ProfitShare(req.clone()))?;
        Ok(ProfitShareTicket { order_id: format!("wxshare_{}", req.out_order_no), finished: true })
    }

    async fn compensate(&self, req: &CompensationRequest) -> crate::Result<CompensationTicket> {
        self.record("compensate", GatewayCall::Compensate(req.clone()))?;
        if self.transfers.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(CompensationTicket {
                id: format!("wxtransfer_{}", req.out_no),
                succeeded: false,
                state: Some("WAIT_USER_CONFIRM".into()),
                package_info: Some(format!("package_{}", req.out_no)),
                fail_reason: None,
            });
        }
        Ok(CompensationTicket::paid(format!("wxcomp_{}", req.out_no)))
    }

    async fn query_transfer(&self, out_bill_no: &str) -> crate::Result<TransferQuery> {
        self.record("query_transfer", GatewayCall::QueryTransfer(out_bill_no.to_string()))?;
        let t = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(t.as_ref().and_then(|m| m.get(out_bill_no).cloned()).unwrap_or(TransferQuery::Unknown))
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

    /// Like WeChat: one correction per payment (by `out_trade_no`); the second answers `false`.
    async fn correct(&self, req: &ShippingUpload) -> crate::Result<bool> {
        self.record("correct_shipping", GatewayCall::CorrectShipping(req.clone()))?;
        let mut done = self.corrected.lock().unwrap_or_else(|p| p.into_inner());
        if done.contains(&req.out_trade_no) {
            return Ok(false);
        }
        done.push(req.out_trade_no.clone());
        Ok(true)
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

    /// Asks WeChat first (`get_order`): a payment that is not shipped-and-unconfirmed, or whose one
    /// correction is spent (`finish_shipping_count` 2), answers `false` without an upload; otherwise
    /// the upload is the correction, and WeChat's 10060003 (spent meanwhile) is `false` too.
    async fn correct(&self, req: &ShippingUpload) -> crate::Result<bool> {
        let upload = Self::request(req)?;
        let shipping = self.client.shipping();
        if !shipping.get_order(&upload.order_key.to_ref()).await?.correction_allowed() {
            return Ok(false);
        }
        match shipping.upload_shipping_info(&upload).await {
            Ok(()) => Ok(true),
            Err(e) if e.errcode().is_some_and(|c| c.code() == 10_060_003) => Ok(false),
            Err(e) => Err(e),
        }
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
    transfer_scene: std::sync::Arc<(String, Vec<crate::pay::transfers::SceneReportInfo>)>,
}

/// The relation (`relation_type`) under which [`WechatPayGateway`] adds a promoter as a personal
/// profit-sharing receiver: `DISTRIBUTOR` (分销商).
pub const PROMOTER_RELATION: &str = "DISTRIBUTOR";

/// The transfer scene [`WechatPayGateway`] pays compensation under unless told otherwise: `1000`
/// (现金营销), with the two reports that scene requires.
pub const DEFAULT_TRANSFER_SCENE: &str = "1000";

impl WechatPayGateway {
    /// A gateway paying for mini-program `appid`, with notifications sent to `notify_url`.
    pub fn new(client: crate::pay::PayClient, appid: impl Into<String>, notify_url: impl Into<String>) -> Self {
        WechatPayGateway {
            client,
            appid: appid.into(),
            notify_url: std::sync::Arc::new(std::sync::RwLock::new(notify_url.into())),
            profit_sharing: false,
            transfer_scene: std::sync::Arc::new((
                DEFAULT_TRANSFER_SCENE.to_string(),
                vec![
                    crate::pay::transfers::SceneReportInfo::new("活动名称", "售后赔付"),
                    crate::pay::transfers::SceneReportInfo::new("奖励说明", "商家违规或售后纠纷的赔付"),
                ],
            )),
        }
    }

    /// The transfer scene (转账场景) compensation is paid under and its reports
    /// (`transfer_scene_report_infos`). The default is scene `1000` with `活动名称` and `奖励说明`, which
    /// the emulator accepts; against WeChat Pay use the scene WeChat granted the merchant (商户平台 →
    /// 商家转账 → 转账场景) and the reports that scene requires.
    pub fn with_transfer_scene(
        mut self,
        scene_id: impl Into<String>,
        report_infos: Vec<crate::pay::transfers::SceneReportInfo>,
    ) -> Self {
        self.transfer_scene = std::sync::Arc::new((scene_id.into(), report_infos));
        self
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

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`: a refund WeChat Pay does not know is
    /// [`RefundQuery::NotFound`].
    async fn query_refund(&self, req: &RefundQueryRequest) -> crate::Result<RefundQuery> {
        use crate::pay::refunds::RefundStatus;
        let refunds = self.client.refunds();
        let r = match &req.sub_mchid {
            Some(sub) => refunds.query_for_sub_merchant(&req.out_refund_no, sub).await,
            None => refunds.query(&req.out_refund_no).await,
        };
        match r {
            Ok(r) => Ok(match r.status {
                RefundStatus::Success => RefundQuery::Succeeded { refund_id: r.refund_id },
                RefundStatus::Processing => RefundQuery::Processing,
                other => RefundQuery::Failed { refund_id: r.refund_id, status: other.as_str().to_string() },
            }),
            Err(e) if matches!(e.pay_code(), Some("RESOURCE_NOT_EXISTS")) => Ok(RefundQuery::NotFound),
            Err(e) => Err(e),
        }
    }

    /// `POST /v3/profitsharing/orders`, or `/orders/unfreeze` when nothing is shared. WeChat Pay shares
    /// only to receivers added beforehand under the sharing merchant: merchant receivers (the platform
    /// under a sub-merchant) are added once at onboarding, but personal ones (promoters, by openid)
    /// appear with each attribution and under whichever merchant collected the payment, so each is
    /// added here first (`POST /v3/profitsharing/receivers/add`, relation [`PROMOTER_RELATION`],
    /// under `sub_mchid` when set); adding an existing receiver is harmless at WeChat Pay.
    async fn profit_share(&self, req: &ProfitShareRequest) -> crate::Result<ProfitShareTicket> {
        use crate::pay::profitsharing::{AddReceiver, CreateOrder, OrderReceiver, OrderState};
        let ps = self.client.profit_sharing();
        for r in req.receivers.iter().filter(|r| r.receiver_type == "PERSONAL_OPENID") {
            let mut add = AddReceiver::person(&self.appid, &r.account, PROMOTER_RELATION);
            if let Some(m) = &req.sub_mchid {
                add = add.sub_mchid(m);
            }
            ps.add_receiver(add).await?;
        }
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

    /// A merchant transfer (商家转账, `POST /v3/fund-app/mch-transfer/transfer-bills`) of the amount to
    /// the buyer, with `out_bill_no` = `out_no` (idempotent) and notifications to the pay notify URL.
    /// The bill usually waits for the buyer (`WAIT_USER_CONFIRM`): the ticket is not succeeded and
    /// carries the `package_info` for `wx.requestMerchantTransfer`; `MCHTRANSFER.BILL.FINISHED`
    /// concludes it.
    async fn compensate(&self, req: &CompensationRequest) -> crate::Result<CompensationTicket> {
        use crate::pay::transfers::{CreateTransferBill, TransferState};
        let remark: String = req.description.chars().take(crate::pay::transfers::MAX_REMARK_CHARS).collect();
        let (scene, reports) = &*self.transfer_scene;
        let mut r = CreateTransferBill::new(
            &self.appid,
            &req.out_no,
            scene,
            &req.payer_openid,
            req.amount.as_fen(),
            if remark.is_empty() { "赔付".to_string() } else { remark },
        )
        .notify_url(self.notify_url());
        r.transfer_scene_report_infos = reports.clone();
        let bill = self.client.transfers().create(r).await?;
        Ok(CompensationTicket {
            succeeded: bill.state == TransferState::Success,
            state: Some(bill.state.as_str().to_string()),
            package_info: bill.package_info,
            fail_reason: bill.fail_reason,
            id: bill.transfer_bill_no,
        })
    }

    /// `GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}`. A bill WeChat Pay does
    /// not know is still pending (the create call may not have arrived yet).
    async fn query_transfer(&self, out_bill_no: &str) -> crate::Result<TransferQuery> {
        match self.client.transfers().query_by_out_bill_no(out_bill_no).await {
            Ok(b) => Ok(match TransferOutcome::from_state(b.state.as_str()) {
                Some(outcome) => TransferQuery::Finished(TransferNotice {
                    notify_id: transfer_query_notify_id(&b.transfer_bill_no, outcome),
                    out_bill_no: b.out_bill_no,
                    transfer_bill_no: b.transfer_bill_no,
                    outcome,
                    amount: Money::fen(b.transfer_amount),
                    openid: b.openid,
                    fail_reason: b.fail_reason,
                }),
                None => TransferQuery::Pending { state: b.state.as_str().to_string() },
            }),
            Err(e) if matches!(e.pay_code(), Some("NOT_FOUND")) => {
                Ok(TransferQuery::Pending { state: "NOT_FOUND".into() })
            }
            Err(e) => Err(e),
        }
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
