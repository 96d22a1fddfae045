//! Refunds: `POST /v3/refund/domestic/refunds` and `GET /v3/refund/domestic/refunds/{out_refund_no}`.
//!
//! The amount rules are checked before the call: `0 < refund ≤ total − already refunded`.
//! Repeating the same `out_refund_no` is the same refund, so creation is retried on transient
//! failures without refunding twice.
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! use wxshop::pay::refunds::CreateRefund;
//! let refund = pay
//!     .refunds()
//!     .create(CreateRefund::by_out_trade_no("ORDER_1001", "REFUND_1001", 500, 1800).reason("size").already_refunded(0))
//!     .await?;
//! println!("{} {}", refund.refund_id, refund.status);
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use super::client::{PayClient, get, post};
use super::{check_no, seg};
use crate::error::{Error, Result};

/// Where refunded money comes from (`amount.from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundsFrom {
    /// `AVAILABLE` or `UNAVAILABLE`.
    pub account: String,
    /// Fen.
    pub amount: i64,
}

/// The amount of a refund request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequestAmount {
    /// Refund, fen.
    pub refund: i64,
    /// Sources of the refund.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<FundsFrom>,
    /// The original order total, fen.
    pub total: i64,
    /// `CNY`.
    pub currency: String,
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateRefund {
    /// The sub-merchant (partner mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// WeChat's order number (this or `out_trade_no`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The merchant's order number (this or `transaction_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// The merchant's refund number (1–64 of `[0-9A-Za-z_-|*@]`): the idempotency key.
    pub out_refund_no: String,
    /// Shown to the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where WeChat Pay posts the refund notification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// `AVAILABLE` to refund from the available balance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub funds_account: Option<String>,
    /// Amount.
    pub amount: RefundRequestAmount,
    /// Refunded goods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_detail: Option<Vec<serde_json::Value>>,
    /// What was already refunded on this order (not sent; used for the local amount check).
    #[serde(skip)]
    pub already_refunded: i64,
}

impl CreateRefund {
    fn new(out_refund_no: impl Into<String>, refund: i64, total: i64) -> Self {
        CreateRefund {
            sub_mchid: None,
            transaction_id: None,
            out_trade_no: None,
            out_refund_no: out_refund_no.into(),
            reason: None,
            notify_url: None,
            funds_account: None,
            amount: RefundRequestAmount { refund, from: Vec::new(), total, currency: "CNY".into() },
            goods_detail: None,
            already_refunded: 0,
        }
    }

    /// Refunds `refund` fen of an order of `total` fen, by merchant order number.
    pub fn by_out_trade_no(
        out_trade_no: impl Into<String>,
        out_refund_no: impl Into<String>,
        refund: i64,
        total: i64,
    ) -> Self {
        CreateRefund { out_trade_no: Some(out_trade_no.into()), ..Self::new(out_refund_no, refund, total) }
    }

    /// Refunds `refund` fen of an order of `total` fen, by WeChat order number.
    pub fn by_transaction_id(
        transaction_id: impl Into<String>,
        out_refund_no: impl Into<String>,
        refund: i64,
        total: i64,
    ) -> Self {
        CreateRefund { transaction_id: Some(transaction_id.into()), ..Self::new(out_refund_no, refund, total) }
    }

    /// The reason shown to the user.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The refund notification URL.
    pub fn notify_url(mut self, url: impl Into<String>) -> Self {
        self.notify_url = Some(url.into());
        self
    }

    /// Refund from the available balance (`AVAILABLE`).
    pub fn funds_account(mut self, account: impl Into<String>) -> Self {
        self.funds_account = Some(account.into());
        self
    }

    /// What was already refunded on this order, for the local check `refund ≤ total − refunded`.
    pub fn already_refunded(mut self, fen: i64) -> Self {
        self.already_refunded = fen;
        self
    }

    /// The sub-merchant (partner mode).
    pub fn sub_mchid(mut self, sub_mchid: impl Into<String>) -> Self {
        self.sub_mchid = Some(sub_mchid.into());
        self
    }

    /// Checks the amount rules and numbers before sending.
    pub fn validate(&self) -> Result<()> {
        match (&self.transaction_id, &self.out_trade_no) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Error::InvalidRequest("give exactly one of transaction_id and out_trade_no".into()));
            }
            (None, Some(no)) => check_no("out_trade_no", no, 6, 32)?,
            (Some(id), None) if id.is_empty() => return Err(Error::InvalidRequest("transaction_id is empty".into())),
            _ => {}
        }
        check_no("out_refund_no", &self.out_refund_no, 1, 64)?;
        let a = &self.amount;
        if a.total <= 0 {
            return Err(Error::InvalidRequest(format!("amount.total must be positive, got {}", a.total)));
        }
        if a.refund <= 0 {
            return Err(Error::InvalidRequest(format!("amount.refund must be positive, got {}", a.refund)));
        }
        if self.already_refunded < 0 || self.already_refunded > a.total {
            return Err(Error::InvalidRequest(format!(
                "already_refunded {} is outside 0..={}",
                self.already_refunded, a.total
            )));
        }
        let refundable = a.total - self.already_refunded;
        if a.refund > refundable {
            return Err(Error::InvalidRequest(format!(
                "refund {} exceeds what is refundable: total {} − already refunded {} = {refundable}",
                a.refund, a.total, self.already_refunded
            )));
        }
        if let Some(from) = (!a.from.is_empty()).then_some(&a.from)
            && from.iter().map(|f| f.amount).sum::<i64>() != a.refund
        {
            return Err(Error::InvalidRequest("amount.from must add up to amount.refund".into()));
        }
        if self.reason.as_ref().is_some_and(|r| r.chars().count() > 80) {
            return Err(Error::InvalidRequest("reason must be at most 80 characters".into()));
        }
        Ok(())
    }
}

wire_enum! {
    /// A refund's `status` (`refund_status` in notifications).
    RefundStatus(String) {
        /// Refunded.
        Success = "SUCCESS",
        /// Closed.
        Closed = "CLOSED",
        /// In progress.
        Processing = "PROCESSING",
        /// Failed (the user's card is gone…); handle it in the merchant platform.
        Abnormal = "ABNORMAL",
    }
}

/// The amount of a refund as WeChat returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RefundAmount {
    /// Order total.
    pub total: i64,
    /// Refund.
    pub refund: i64,
    /// What the user paid.
    #[serde(default)]
    pub payer_total: i64,
    /// What the user gets back.
    #[serde(default)]
    pub payer_refund: i64,
    /// Settlement refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_refund: Option<i64>,
    /// Settlement total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_total: Option<i64>,
    /// Discount refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_refund: Option<i64>,
    /// `CNY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Fee refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_fee: Option<i64>,
}

/// A refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// WeChat's refund id.
    pub refund_id: String,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// WeChat's order number.
    pub transaction_id: String,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// `ORIGINAL`, `BALANCE`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Where the money went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_received_account: Option<String>,
    /// When it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    /// Status.
    pub status: RefundStatus,
    /// The funds account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funds_account: Option<String>,
    /// Amounts.
    pub amount: RefundAmount,
    /// Coupons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_detail: Option<Vec<serde_json::Value>>,
}

impl PayClient {
    /// Refunds.
    pub fn refunds(&self) -> Refunds<'_> {
        Refunds { client: self }
    }
}

/// Refunds. From [`PayClient::refunds`].
#[derive(Debug, Clone, Copy)]
pub struct Refunds<'a> {
    pub(crate) client: &'a PayClient,
}

impl Refunds<'_> {
    /// `POST /v3/refund/domestic/refunds`, after the local amount check.
    pub async fn create(self, req: CreateRefund) -> Result<Refund> {
        req.validate()?;
        self.client.send_json(&post("/v3/refund/domestic/refunds", &req)?).await
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub async fn query(self, out_refund_no: &str) -> Result<Refund> {
        check_no("out_refund_no", out_refund_no, 1, 64)?;
        self.client.send_json(&get(format!("/v3/refund/domestic/refunds/{}", seg(out_refund_no)))).await
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}?sub_mchid=` (partner mode).
    pub async fn query_for_sub_merchant(self, out_refund_no: &str, sub_mchid: &str) -> Result<Refund> {
        check_no("out_refund_no", out_refund_no, 1, 64)?;
        let req = get(format!("/v3/refund/domestic/refunds/{}", seg(out_refund_no))).query("sub_mchid", sub_mchid);
        self.client.send_json(&req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_amount_rules() {
        CreateRefund::by_out_trade_no("ORD1", "R1", 500, 1800).validate().unwrap_err(); // out_trade_no too short
        CreateRefund::by_out_trade_no("ORDER_1001", "R1", 1800, 1800).validate().unwrap();
        let over = CreateRefund::by_out_trade_no("ORDER_1001", "R2", 1000, 1800).already_refunded(900);
        let e = over.validate().unwrap_err().to_string();
        assert!(e.contains("total 1800 − already refunded 900 = 900"), "{e}");
        assert!(CreateRefund::by_out_trade_no("ORDER_1001", "R3", 0, 1800).validate().is_err());
        assert!(CreateRefund::by_transaction_id("", "R3", 1, 1800).validate().is_err());
        let mut both = CreateRefund::by_out_trade_no("ORDER_1001", "R4", 1, 1800);
        both.transaction_id = Some("42".into());
        assert!(both.validate().is_err());
    }

    #[test]
    fn refund_serializes_without_local_fields() {
        let r = CreateRefund::by_out_trade_no("ORDER_1001", "R1", 500, 1800).reason("size").already_refunded(100);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"out_trade_no": "ORDER_1001", "out_refund_no": "R1", "reason": "size",
                "amount": {"refund": 500, "total": 1800, "currency": "CNY"}})
        );
    }
}
