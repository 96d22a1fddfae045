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
    /// What it pays for (a sale unless said otherwise).
    #[serde(default)]
    pub purpose: crate::market::payment::PaymentPurpose,
}

impl PrepayRequest {
    /// Whether this pays for goods (a checkout) rather than a merchant's deposit: only sales are shared
    /// out at settlement, so only they are marked for profit sharing.
    pub fn is_sale(&self) -> bool {
        self.purpose == crate::market::payment::PaymentPurpose::Sale
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
/// applies it with [`Transfers::handle_transfer_notice`](crate::market::handles::Transfers::handle_transfer_notice).
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

/// One line of a trade bill (交易账单), as [`PaymentGateway::trade_bill`](super::PaymentGateway::trade_bill) reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BillLine {
    /// A successful payment.
    Paid {
        /// `out_trade_no`.
        out_trade_no: String,
        /// WeChat Pay's transaction id.
        transaction_id: String,
        /// Amount paid.
        amount: Money,
    },
    /// A successful refund.
    Refunded {
        /// `out_trade_no` of the payment refunded.
        out_trade_no: String,
        /// Its transaction id.
        transaction_id: String,
        /// `out_refund_no`.
        out_refund_no: String,
        /// WeChat Pay's refund id.
        refund_id: String,
        /// Amount refunded.
        amount: Money,
    },
}

impl BillLine {
    /// The payment and refund lines of a parsed trade bill (`pay::bills::BillTable` of type ALL), found
    /// by WeChat's column names; lines in other states, or whose amounts do not parse, are skipped.
    pub fn from_trade_bill(t: &crate::pay::bills::BillTable) -> Vec<BillLine> {
        let col = |name: &str| t.header.iter().position(|h| h == name);
        let (Some(state), Some(txn), Some(otn)) = (col("交易状态"), col("微信订单号"), col("商户订单号"))
        else {
            return Vec::new();
        };
        let (paid, refund_no, out_refund_no, refunded) =
            (col("应结订单金额"), col("微信退款单号"), col("商户退款单号"), col("退款金额"));
        let get = |row: &[String], i: Option<usize>| i.and_then(|i| row.get(i)).cloned().unwrap_or_default();
        let fen = |v: String| yuan_to_fen(&v).map(Money::fen);
        t.rows
            .iter()
            .filter_map(|row| match row.get(state).map(String::as_str) {
                Some("SUCCESS") => Some(BillLine::Paid {
                    out_trade_no: get(row, Some(otn)),
                    transaction_id: get(row, Some(txn)),
                    amount: fen(get(row, paid))?,
                }),
                Some("REFUND") => Some(BillLine::Refunded {
                    out_trade_no: get(row, Some(otn)),
                    transaction_id: get(row, Some(txn)),
                    out_refund_no: get(row, out_refund_no),
                    refund_id: get(row, refund_no),
                    amount: fen(get(row, refunded))?,
                }),
                _ => None,
            })
            .collect()
    }
}

/// "12.34" yuan → 1234 fen; `None` unless it has at most two decimals.
fn yuan_to_fen(v: &str) -> Option<i64> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, "0"));
    if whole.is_empty() || frac.len() > 2 || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.parse::<i64>().ok()?.checked_mul(100)?.checked_add(frac)
}

#[cfg(test)]
mod bill_tests {
    use super::*;

    #[test]
    fn a_prepay_is_a_sale_by_its_purpose_not_its_id() {
        let req = |no: &str, purpose| PrepayRequest {
            mode: crate::market::PayMode::Jsapi,
            out_trade_no: no.into(),
            description: "x".into(),
            payer_openid: "o".into(),
            total: Money::fen(1),
            time_expire: chrono::DateTime::UNIX_EPOCH,
            sub_mchid: None,
            sub_orders: vec![],
            purpose,
        };
        use crate::market::payment::PaymentPurpose::{Deposit, Sale};
        assert!(req("dep0123", Sale).is_sale());
        assert!(!req("0123", Deposit).is_sale());
        let parsed: PrepayRequest = serde_json::from_value(serde_json::json!({
            "mode": "Jsapi", "out_trade_no": "g", "description": "d", "payer_openid": "o", "total": 1,
            "time_expire": "2026-01-01T00:00:00Z", "sub_mchid": null, "sub_orders": []
        }))
        .unwrap();
        assert_eq!(parsed.purpose, Sale);
    }

    #[test]
    fn a_trade_bill_yields_its_payments_and_refunds() {
        let text = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n\
`2026-12-03 10:00:00,`wx1,`1230000109,`0,`,`4200001,`g1,`o1,`JSAPI,`SUCCESS,`OTHERS,`CNY,`66.00,`0.00,`0,`0,`0.00,`0.00,`,`,`tea,`,`0.00000,`0.60%,`66.00,`0.00,`\n\
`2026-12-03 11:00:00,`wx1,`1230000109,`0,`,`4200001,`g1,`o1,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5001,`r1,`10.5,`0.00,`ORIGINAL,`SUCCESS,`tea,`,`0.00000,`0.60%,`66.00,`10.50,`\n\
`2026-12-03 12:00:00,`wx1,`1230000109,`0,`,`4200002,`g2,`o1,`JSAPI,`SUCCESS,`OTHERS,`CNY,`1.234,`0.00,`0,`0,`0.00,`0.00,`,`,`tea,`,`0.00000,`0.60%,`1.23,`0.00,`\n\
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n\
`3,`67.23,`10.50,`0.00,`0.00000,`67.23,`10.50\n";
        let lines = BillLine::from_trade_bill(&crate::pay::bills::BillTable::parse(text));
        assert_eq!(
            lines,
            vec![
                BillLine::Paid {
                    out_trade_no: "g1".into(),
                    transaction_id: "4200001".into(),
                    amount: Money::fen(6600)
                },
                BillLine::Refunded {
                    out_trade_no: "g1".into(),
                    transaction_id: "4200001".into(),
                    out_refund_no: "r1".into(),
                    refund_id: "5001".into(),
                    amount: Money::fen(1050)
                },
            ]
        );
        assert_eq!(
            [yuan_to_fen("0.01"), yuan_to_fen("7"), yuan_to_fen("-1"), yuan_to_fen("1.")],
            [Some(1), Some(700), None, Some(100)]
        );
    }
}
