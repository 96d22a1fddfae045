//! Combined payments (合单支付): one `wx.requestPayment` pays several sub-orders, possibly of
//! different merchants. The client's merchant is the `combine_mchid`.
//!
//! | call | endpoint |
//! |---|---|
//! | [`Combine::jsapi`] | `POST /v3/combine-transactions/jsapi` |
//! | [`Combine::query`] | `GET /v3/combine-transactions/out-trade-no/{combine_out_trade_no}` |
//! | [`Combine::close`] | `POST /v3/combine-transactions/out-trade-no/{combine_out_trade_no}/close` |
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! use wxshop::pay::combine::{CombineJsapiPrepay, SubOrder};
//! let req = CombineJsapiPrepay::new("wx1", "COMBINE_3001", "o-openid", "https://shop.example/wx/pay/notify")
//!     .sub_order(SubOrder::new("1900009191", "ORDER_3001_A", 1000, "Tea", "a"))
//!     .sub_order(SubOrder::new("1900009192", "ORDER_3001_B", 500, "Cake", "b"));
//! let params = pay.combine().jsapi_request_payment(req).await?;
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{PayClient, RequestPayment, get, post};
use super::transactions::{OrderDetail, PrepayResponse, SettleInfo, TradeState, wechat_time};
use super::{check_no, seg};
use crate::error::{Error, Result};

/// The amount of a sub-order (note `total_amount`, not `total`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOrderAmount {
    /// Fen.
    pub total_amount: i64,
    /// `CNY`.
    pub currency: String,
    /// What the user paid (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_amount: Option<i64>,
    /// The user's currency (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// One sub-order of a combined payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubOrder {
    /// The merchant that receives this sub-order.
    pub mchid: String,
    /// Merchant data (required by WeChat for sub-orders).
    pub attach: String,
    /// Amount.
    pub amount: SubOrderAmount,
    /// The sub-order number.
    pub out_trade_no: String,
    /// The sub-merchant (partner combined payments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// Goods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<OrderDetail>,
    /// Coupon tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_tag: Option<String>,
    /// What is bought.
    pub description: String,
    /// Settlement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_info: Option<SettleInfo>,
}

impl SubOrder {
    /// A sub-order of `total` fen for merchant `mchid`.
    pub fn new(
        mchid: impl Into<String>,
        out_trade_no: impl Into<String>,
        total: i64,
        description: impl Into<String>,
        attach: impl Into<String>,
    ) -> Self {
        SubOrder {
            mchid: mchid.into(),
            attach: attach.into(),
            amount: SubOrderAmount {
                total_amount: total,
                currency: "CNY".into(),
                payer_amount: None,
                payer_currency: None,
            },
            out_trade_no: out_trade_no.into(),
            sub_mchid: None,
            detail: None,
            goods_tag: None,
            description: description.into(),
            settle_info: None,
        }
    }

    /// Freeze for profit sharing.
    pub fn profit_sharing(mut self, yes: bool) -> Self {
        self.settle_info = Some(SettleInfo { profit_sharing: Some(yes) });
        self
    }

    /// The sub-merchant.
    pub fn sub_mchid(mut self, sub_mchid: impl Into<String>) -> Self {
        self.sub_mchid = Some(sub_mchid.into());
        self
    }
}

/// The payer of a combined payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CombinePayer {
    /// openid under combine_appid.
    pub openid: String,
}

/// `POST /v3/combine-transactions/jsapi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CombineJsapiPrepay {
    /// The appid.
    pub combine_appid: String,
    /// Filled from the client's configuration.
    pub combine_mchid: String,
    /// The combined order number.
    pub combine_out_trade_no: String,
    /// Scene.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<serde_json::Value>,
    /// 2 to 50 sub-orders.
    pub sub_orders: Vec<SubOrder>,
    /// The payer.
    pub combine_payer_info: CombinePayer,
    /// Start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_start: Option<String>,
    /// Deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    /// Notification URL.
    pub notify_url: String,
}

impl CombineJsapiPrepay {
    /// A combined payment with no sub-orders yet.
    pub fn new(
        combine_appid: impl Into<String>,
        combine_out_trade_no: impl Into<String>,
        openid: impl Into<String>,
        notify_url: impl Into<String>,
    ) -> Self {
        CombineJsapiPrepay {
            combine_appid: combine_appid.into(),
            combine_mchid: String::new(),
            combine_out_trade_no: combine_out_trade_no.into(),
            scene_info: None,
            sub_orders: Vec::new(),
            combine_payer_info: CombinePayer { openid: openid.into() },
            time_start: None,
            time_expire: None,
            notify_url: notify_url.into(),
        }
    }

    /// Adds a sub-order.
    pub fn sub_order(mut self, s: SubOrder) -> Self {
        self.sub_orders.push(s);
        self
    }

    /// Deadline.
    pub fn time_expire(mut self, at: DateTime<Utc>) -> Self {
        self.time_expire = Some(wechat_time(at));
        self
    }

    fn validate(&self) -> Result<()> {
        check_no("combine_out_trade_no", &self.combine_out_trade_no, 1, 32)?;
        if !(2..=50).contains(&self.sub_orders.len()) {
            return Err(Error::InvalidRequest("a combined payment has 2 to 50 sub-orders".into()));
        }
        for s in &self.sub_orders {
            check_no("sub_orders.out_trade_no", &s.out_trade_no, 6, 32)?;
            if s.amount.total_amount <= 0 {
                return Err(Error::InvalidRequest(format!("sub-order {} amount must be positive", s.out_trade_no)));
            }
            if s.attach.is_empty() || s.description.is_empty() {
                return Err(Error::InvalidRequest(format!(
                    "sub-order {} needs attach and description",
                    s.out_trade_no
                )));
            }
        }
        Ok(())
    }
}

/// A sub-order as the query answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOrderState {
    /// The merchant.
    pub mchid: String,
    /// `JSAPI`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    /// State.
    pub trade_state: TradeState,
    /// Bank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_type: Option<String>,
    /// Merchant data.
    #[serde(default)]
    pub attach: String,
    /// Paid at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// WeChat's order number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The sub-order number.
    pub out_trade_no: String,
    /// The sub-merchant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// Amount.
    pub amount: SubOrderAmount,
}

/// A combined payment as the query (and its notification) describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CombineTransaction {
    /// The appid.
    pub combine_appid: String,
    /// The combining merchant.
    pub combine_mchid: String,
    /// The combined order number.
    pub combine_out_trade_no: String,
    /// Scene.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<serde_json::Value>,
    /// Sub-orders.
    pub sub_orders: Vec<SubOrderState>,
    /// The payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combine_payer_info: Option<CombinePayer>,
}

impl PayClient {
    /// Combined payments (合单).
    pub fn combine(&self) -> Combine<'_> {
        Combine { client: self }
    }
}

/// Combined payments. From [`PayClient::combine`].
#[derive(Debug, Clone, Copy)]
pub struct Combine<'a> {
    pub(crate) client: &'a PayClient,
}

impl Combine<'_> {
    /// `POST /v3/combine-transactions/jsapi`.
    pub async fn jsapi(self, mut req: CombineJsapiPrepay) -> Result<PrepayResponse> {
        req.combine_mchid = self.client.mchid().to_string();
        req.validate()?;
        self.client.send_json(&post("/v3/combine-transactions/jsapi", &req)?).await
    }

    /// Prepay, then the `wx.requestPayment` parameters.
    pub async fn jsapi_request_payment(self, req: CombineJsapiPrepay) -> Result<RequestPayment> {
        let appid = req.combine_appid.clone();
        let prepay = self.jsapi(req).await?;
        self.client.request_payment(&appid, &prepay.prepay_id)
    }

    /// `GET /v3/combine-transactions/out-trade-no/{combine_out_trade_no}`.
    pub async fn query(self, combine_out_trade_no: &str) -> Result<CombineTransaction> {
        check_no("combine_out_trade_no", combine_out_trade_no, 1, 32)?;
        self.client
            .send_json(&get(format!("/v3/combine-transactions/out-trade-no/{}", seg(combine_out_trade_no))))
            .await
    }

    /// `POST /v3/combine-transactions/out-trade-no/{combine_out_trade_no}/close` (204): closes
    /// every sub-order listed as `(mchid, out_trade_no)`.
    pub async fn close(
        &self,
        combine_appid: &str,
        combine_out_trade_no: &str,
        sub_orders: &[(&str, &str)],
    ) -> Result<()> {
        check_no("combine_out_trade_no", combine_out_trade_no, 1, 32)?;
        let subs: Vec<_> =
            sub_orders.iter().map(|(m, o)| serde_json::json!({ "mchid": m, "out_trade_no": o })).collect();
        let body = serde_json::json!({ "combine_appid": combine_appid, "sub_orders": subs });
        let req = post(format!("/v3/combine-transactions/out-trade-no/{}/close", seg(combine_out_trade_no)), &body)?;
        self.client.send_no_content(&req).await
    }
}
