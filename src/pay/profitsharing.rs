//! Profit sharing (分账): receivers, orders, returns, unfreezing and the remaining amount.
//!
//! | call | endpoint |
//! |---|---|
//! | [`ProfitSharing::add_receiver`] | `POST /v3/profitsharing/receivers/add` (name OAEP-encrypted, `Wechatpay-Serial` sent) |
//! | [`ProfitSharing::delete_receiver`] | `POST /v3/profitsharing/receivers/delete` |
//! | [`ProfitSharing::create_order`] | `POST /v3/profitsharing/orders` |
//! | [`ProfitSharing::query_order`] | `GET /v3/profitsharing/orders/{out_order_no}?transaction_id=` |
//! | [`ProfitSharing::create_return`] | `POST /v3/profitsharing/return-orders` |
//! | [`ProfitSharing::query_return`] | `GET /v3/profitsharing/return-orders/{out_return_no}?out_order_no=` |
//! | [`ProfitSharing::unfreeze`] | `POST /v3/profitsharing/orders/unfreeze` |
//! | [`ProfitSharing::remaining`] | `GET /v3/profitsharing/transactions/{transaction_id}/amounts` |
//!
//! The order must have been paid with `settle_info.profit_sharing = true`; WeChat caps what can be
//! shared at the merchant's maximum ratio (30% by default).
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! use wxshop::pay::profitsharing::{AddReceiver, CreateOrder, OrderReceiver};
//! pay.profit_sharing().add_receiver(AddReceiver::merchant("wx1", "1900000109", "PARTNER").name("示例商户")).await?;
//! let order = pay
//!     .profit_sharing()
//!     .create_order(CreateOrder::new("wx1", "4208450740201411110007820472", "PS_1001", true)
//!         .receiver(OrderReceiver::merchant("1900000109", 300, "platform fee")))
//!     .await?;
//! println!("{}", order.state);
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use super::client::{PayClient, get, post};
use super::{check_no, seg};
use crate::error::{Error, Result};

/// `POST /v3/profitsharing/receivers/add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddReceiver {
    /// The sub-merchant (partner mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// The appid.
    pub appid: String,
    /// `MERCHANT_ID` or `PERSONAL_OPENID`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The merchant number or openid.
    pub account: String,
    /// The receiver's name in plain text; encrypted (RSA-OAEP) by the client before sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `STORE`, `STAFF`, `PARTNER`, `SERVICE_PROVIDER`, `USER`, `CUSTOM`, …
    pub relation_type: String,
    /// With `CUSTOM`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_relation: Option<String>,
}

impl AddReceiver {
    /// A merchant receiver.
    pub fn merchant(appid: impl Into<String>, mchid: impl Into<String>, relation_type: impl Into<String>) -> Self {
        Self::new(appid, "MERCHANT_ID", mchid, relation_type)
    }

    /// A personal receiver (openid under `appid`).
    pub fn person(appid: impl Into<String>, openid: impl Into<String>, relation_type: impl Into<String>) -> Self {
        Self::new(appid, "PERSONAL_OPENID", openid, relation_type)
    }

    fn new(appid: impl Into<String>, kind: &str, account: impl Into<String>, relation: impl Into<String>) -> Self {
        AddReceiver {
            sub_mchid: None,
            appid: appid.into(),
            kind: kind.into(),
            account: account.into(),
            name: None,
            relation_type: relation.into(),
            custom_relation: None,
        }
    }

    /// The receiver's name (required for merchants: the merchant's full name), plain text.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A custom relation (with `relation_type = CUSTOM`).
    pub fn custom_relation(mut self, relation: impl Into<String>) -> Self {
        self.custom_relation = Some(relation.into());
        self
    }

    /// The sub-merchant (partner mode).
    pub fn sub_mchid(mut self, sub_mchid: impl Into<String>) -> Self {
        self.sub_mchid = Some(sub_mchid.into());
        self
    }
}

/// A receiver as WeChat echoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    /// `MERCHANT_ID` / `PERSONAL_OPENID`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account.
    pub account: String,
    /// The encrypted name, when echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The relation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation_type: Option<String>,
    /// The custom relation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_relation: Option<String>,
}

/// One receiver of a profit-sharing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderReceiver {
    /// `MERCHANT_ID` / `PERSONAL_OPENID`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account.
    pub account: String,
    /// The receiver's name, plain text (encrypted by the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fen.
    pub amount: i64,
    /// Why (≤ 80 characters).
    pub description: String,
}

impl OrderReceiver {
    /// Shares `amount` fen with a merchant.
    pub fn merchant(mchid: impl Into<String>, amount: i64, description: impl Into<String>) -> Self {
        OrderReceiver {
            kind: "MERCHANT_ID".into(),
            account: mchid.into(),
            name: None,
            amount,
            description: description.into(),
        }
    }

    /// Shares `amount` fen with a person (openid).
    pub fn person(openid: impl Into<String>, amount: i64, description: impl Into<String>) -> Self {
        OrderReceiver {
            kind: "PERSONAL_OPENID".into(),
            account: openid.into(),
            name: None,
            amount,
            description: description.into(),
        }
    }
}

/// `POST /v3/profitsharing/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateOrder {
    /// The sub-merchant (partner mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// The appid.
    pub appid: String,
    /// The paid order.
    pub transaction_id: String,
    /// The merchant's sharing number (the idempotency key).
    pub out_order_no: String,
    /// Receivers.
    pub receivers: Vec<OrderReceiver>,
    /// Unfreeze what is left to the merchant (no further sharing on this order).
    pub unfreeze_unsplit: bool,
}

impl CreateOrder {
    /// A sharing order with no receivers yet.
    pub fn new(
        appid: impl Into<String>,
        transaction_id: impl Into<String>,
        out_order_no: impl Into<String>,
        unfreeze_unsplit: bool,
    ) -> Self {
        CreateOrder {
            sub_mchid: None,
            appid: appid.into(),
            transaction_id: transaction_id.into(),
            out_order_no: out_order_no.into(),
            receivers: Vec::new(),
            unfreeze_unsplit,
        }
    }

    /// Adds a receiver.
    pub fn receiver(mut self, r: OrderReceiver) -> Self {
        self.receivers.push(r);
        self
    }

    /// The sub-merchant (partner mode).
    pub fn sub_mchid(mut self, sub_mchid: impl Into<String>) -> Self {
        self.sub_mchid = Some(sub_mchid.into());
        self
    }

    fn validate(&self) -> Result<()> {
        check_no("out_order_no", &self.out_order_no, 1, 64)?;
        if self.transaction_id.is_empty() {
            return Err(Error::InvalidRequest("transaction_id is empty".into()));
        }
        if self.receivers.is_empty() || self.receivers.len() > 50 {
            return Err(Error::InvalidRequest("a sharing order has 1 to 50 receivers".into()));
        }
        if let Some(r) = self.receivers.iter().find(|r| r.amount <= 0) {
            return Err(Error::InvalidRequest(format!("receiver {} amount must be positive", r.account)));
        }
        Ok(())
    }
}

wire_enum! {
    /// A sharing order's `state`.
    OrderState(String) {
        /// Being processed.
        Processing = "PROCESSING",
        /// Done.
        Finished = "FINISHED",
    }
}

wire_enum! {
    /// One receiver's `result`.
    DetailResult(String) {
        /// Waiting.
        Pending = "PENDING",
        /// Shared.
        Success = "SUCCESS",
        /// Failed.
        Closed = "CLOSED",
    }
}

/// One receiver's outcome in a sharing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReceiverResult {
    /// Fen.
    pub amount: i64,
    /// Why.
    pub description: String,
    /// `MERCHANT_ID` / `PERSONAL_OPENID`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account.
    pub account: String,
    /// Outcome.
    pub result: DetailResult,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// WeChat's detail id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_id: Option<String>,
    /// Created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    /// Finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
}

/// A sharing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingOrder {
    /// The sub-merchant (partner mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// The paid order.
    pub transaction_id: String,
    /// The merchant's sharing number.
    pub out_order_no: String,
    /// WeChat's sharing id.
    pub order_id: String,
    /// State.
    pub state: OrderState,
    /// Receivers (the merchant itself appears for the unfrozen rest).
    #[serde(default)]
    pub receivers: Vec<OrderReceiverResult>,
}

/// `POST /v3/profitsharing/return-orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateReturn {
    /// The sub-merchant (partner mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// WeChat's sharing id (this or `out_order_no`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The merchant's sharing number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_order_no: Option<String>,
    /// The merchant's return number (the idempotency key).
    pub out_return_no: String,
    /// The merchant that gives the money back.
    pub return_mchid: String,
    /// Fen.
    pub amount: i64,
    /// Why.
    pub description: String,
}

impl CreateReturn {
    /// Returns `amount` fen from `return_mchid` for sharing order `out_order_no`.
    pub fn new(
        out_order_no: impl Into<String>,
        out_return_no: impl Into<String>,
        return_mchid: impl Into<String>,
        amount: i64,
        description: impl Into<String>,
    ) -> Self {
        CreateReturn {
            sub_mchid: None,
            order_id: None,
            out_order_no: Some(out_order_no.into()),
            out_return_no: out_return_no.into(),
            return_mchid: return_mchid.into(),
            amount,
            description: description.into(),
        }
    }

    /// The sub-merchant (partner mode).
    pub fn sub_mchid(mut self, sub_mchid: impl Into<String>) -> Self {
        self.sub_mchid = Some(sub_mchid.into());
        self
    }
}

wire_enum! {
    /// A return's `result`.
    ReturnResult(String) {
        /// Being processed.
        Processing = "PROCESSING",
        /// Returned.
        Success = "SUCCESS",
        /// Failed.
        Failed = "FAILED",
    }
}

/// A return order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnOrder {
    /// The sub-merchant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// WeChat's sharing id.
    pub order_id: String,
    /// The merchant's sharing number.
    pub out_order_no: String,
    /// The merchant's return number.
    pub out_return_no: String,
    /// WeChat's return id.
    pub return_id: String,
    /// Who gives back.
    pub return_mchid: String,
    /// Fen.
    pub amount: i64,
    /// Why.
    pub description: String,
    /// Outcome.
    pub result: ReturnResult,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// Created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    /// Finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
}

/// `GET /v3/profitsharing/transactions/{transaction_id}/amounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemainingAmount {
    /// The paid order.
    pub transaction_id: String,
    /// What can still be shared, fen.
    pub unsplit_amount: i64,
}

impl PayClient {
    /// Profit sharing (分账).
    pub fn profit_sharing(&self) -> ProfitSharing<'_> {
        ProfitSharing { client: self }
    }
}

/// Profit sharing. From [`PayClient::profit_sharing`].
#[derive(Debug, Clone, Copy)]
pub struct ProfitSharing<'a> {
    pub(crate) client: &'a PayClient,
}

impl ProfitSharing<'_> {
    /// `POST /v3/profitsharing/receivers/add`; the name is encrypted and `Wechatpay-Serial` sent.
    pub async fn add_receiver(self, mut req: AddReceiver) -> Result<Receiver> {
        if req.account.is_empty() || req.appid.is_empty() {
            return Err(Error::InvalidRequest("appid and account are required".into()));
        }
        if req.kind == "MERCHANT_ID" && req.name.is_none() {
            return Err(Error::InvalidRequest("a MERCHANT_ID receiver needs the merchant's full name".into()));
        }
        let mut encryptor = None;
        if let Some(name) = req.name.take() {
            let enc = self.client.encryptor().await?;
            req.name = Some(enc.encrypt(&name)?);
            encryptor = Some(enc);
        }
        let mut http = post("/v3/profitsharing/receivers/add", &req)?;
        if let Some(enc) = encryptor {
            http = enc.tag(http)?;
        }
        self.client.send_json(&http).await
    }

    /// `POST /v3/profitsharing/receivers/delete`.
    pub async fn delete_receiver(
        &self,
        appid: &str,
        kind: &str,
        account: &str,
        sub_mchid: Option<&str>,
    ) -> Result<Receiver> {
        let mut body = serde_json::json!({ "appid": appid, "type": kind, "account": account });
        if let Some(s) = sub_mchid {
            body["sub_mchid"] = s.into();
        }
        self.client.send_json(&post("/v3/profitsharing/receivers/delete", &body)?).await
    }

    /// `POST /v3/profitsharing/orders`; receiver names are encrypted and `Wechatpay-Serial` sent.
    pub async fn create_order(self, mut req: CreateOrder) -> Result<SharingOrder> {
        req.validate()?;
        let mut encryptor = None;
        if req.receivers.iter().any(|r| r.name.is_some()) {
            let enc = self.client.encryptor().await?;
            for r in &mut req.receivers {
                if let Some(n) = r.name.take() {
                    r.name = Some(enc.encrypt(&n)?);
                }
            }
            encryptor = Some(enc);
        }
        let mut http = post("/v3/profitsharing/orders", &req)?;
        if let Some(enc) = encryptor {
            http = enc.tag(http)?;
        }
        self.client.send_json(&http).await
    }

    /// `GET /v3/profitsharing/orders/{out_order_no}?transaction_id=`.
    pub async fn query_order(
        &self,
        out_order_no: &str,
        transaction_id: &str,
        sub_mchid: Option<&str>,
    ) -> Result<SharingOrder> {
        check_no("out_order_no", out_order_no, 1, 64)?;
        let mut req =
            get(format!("/v3/profitsharing/orders/{}", seg(out_order_no))).query("transaction_id", transaction_id);
        if let Some(s) = sub_mchid {
            req = req.query("sub_mchid", s);
        }
        self.client.send_json(&req).await
    }

    /// `POST /v3/profitsharing/return-orders`.
    pub async fn create_return(self, req: CreateReturn) -> Result<ReturnOrder> {
        check_no("out_return_no", &req.out_return_no, 1, 64)?;
        if req.amount <= 0 {
            return Err(Error::InvalidRequest("a return amount must be positive".into()));
        }
        self.client.send_json(&post("/v3/profitsharing/return-orders", &req)?).await
    }

    /// `GET /v3/profitsharing/return-orders/{out_return_no}?out_order_no=`.
    pub async fn query_return(
        &self,
        out_return_no: &str,
        out_order_no: &str,
        sub_mchid: Option<&str>,
    ) -> Result<ReturnOrder> {
        check_no("out_return_no", out_return_no, 1, 64)?;
        let mut req =
            get(format!("/v3/profitsharing/return-orders/{}", seg(out_return_no))).query("out_order_no", out_order_no);
        if let Some(s) = sub_mchid {
            req = req.query("sub_mchid", s);
        }
        self.client.send_json(&req).await
    }

    /// `POST /v3/profitsharing/orders/unfreeze`: gives what is left back to the merchant.
    pub async fn unfreeze(
        &self,
        transaction_id: &str,
        out_order_no: &str,
        description: &str,
        sub_mchid: Option<&str>,
    ) -> Result<SharingOrder> {
        check_no("out_order_no", out_order_no, 1, 64)?;
        let mut body = serde_json::json!({ "transaction_id": transaction_id, "out_order_no": out_order_no, "description": description });
        if let Some(s) = sub_mchid {
            body["sub_mchid"] = s.into();
        }
        self.client.send_json(&post("/v3/profitsharing/orders/unfreeze", &body)?).await
    }

    /// `GET /v3/profitsharing/transactions/{transaction_id}/amounts`.
    pub async fn remaining(self, transaction_id: &str) -> Result<RemainingAmount> {
        if transaction_id.is_empty() {
            return Err(Error::InvalidRequest("transaction_id is empty".into()));
        }
        self.client.send_json(&get(format!("/v3/profitsharing/transactions/{}/amounts", seg(transaction_id)))).await
    }
}
