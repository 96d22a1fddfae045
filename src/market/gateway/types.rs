//! The data the gateway ports exchange: prepay, close, query, refund, shipping, profit-sharing,
//! compensation and transfer requests and their answers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::market::money::Money;
use crate::market::payment::{PayMode, PaymentNotice};

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
