//! Service-provider (服务商) payments: the client's merchant is the `sp_mchid`; each call names the
//! `sub_mchid` it acts for.
//!
//! | call | endpoint |
//! |---|---|
//! | [`Partner::jsapi`] | `POST /v3/pay/partner/transactions/jsapi` |
//! | [`Partner::query_by_id`] | `GET /v3/pay/partner/transactions/id/{transaction_id}?sp_mchid=&sub_mchid=` |
//! | [`Partner::query_by_out_trade_no`] | `GET /v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid=&sub_mchid=` |
//! | [`Partner::close`] | `POST /v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close` |
//! | [`Partner::refund`] | `POST /v3/refund/domestic/refunds` with `sub_mchid` |
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! use wxshop::pay::partner::PartnerJsapiPrepay;
//! let req = PartnerJsapiPrepay::new("wx_sp_app", "1900000109", "Tea", "ORDER_2001", "https://isv.example/notify", 990)
//!     .sub_openid("wx_sub_app", "o-sub-openid");
//! let params = pay.partner().jsapi_request_payment(req).await?; // appId = the sub_appid
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::client::{PayClient, RequestPayment, get, post};
use super::refunds::{CreateRefund, Refund};
use super::transactions::{
    Amount, OrderDetail, PrepayResponse, SceneInfo, SettleInfo, Transaction, validate_order, wechat_time,
};
use super::{check_no, seg};
use crate::error::{Error, Result};

/// The payer of a partner order: an openid under `sp_appid` or under `sub_appid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PartnerPayer {
    /// openid under sp_appid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sp_openid: Option<String>,
    /// openid under sub_appid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_openid: Option<String>,
}

/// `POST /v3/pay/partner/transactions/jsapi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartnerJsapiPrepay {
    /// The service provider's appid.
    pub sp_appid: String,
    /// Filled from the client's configuration.
    pub sp_mchid: String,
    /// The sub-merchant's appid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_appid: Option<String>,
    /// The sub-merchant.
    pub sub_mchid: String,
    /// What is bought.
    pub description: String,
    /// The order number.
    pub out_trade_no: String,
    /// Deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    /// Merchant data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// Notification URL.
    pub notify_url: String,
    /// Coupon tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goods_tag: Option<String>,
    /// Settlement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_info: Option<SettleInfo>,
    /// Amount.
    pub amount: Amount,
    /// The payer.
    pub payer: PartnerPayer,
    /// Goods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<OrderDetail>,
    /// Scene.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<SceneInfo>,
}

impl PartnerJsapiPrepay {
    /// A partner order; set the payer with [`Self::sp_openid`] or [`Self::sub_openid`].
    pub fn new(
        sp_appid: impl Into<String>,
        sub_mchid: impl Into<String>,
        description: impl Into<String>,
        out_trade_no: impl Into<String>,
        notify_url: impl Into<String>,
        total: i64,
    ) -> Self {
        PartnerJsapiPrepay {
            sp_appid: sp_appid.into(),
            sp_mchid: String::new(),
            sub_appid: None,
            sub_mchid: sub_mchid.into(),
            description: description.into(),
            out_trade_no: out_trade_no.into(),
            time_expire: None,
            attach: None,
            notify_url: notify_url.into(),
            goods_tag: None,
            settle_info: None,
            amount: Amount { total, currency: Some("CNY".into()) },
            payer: PartnerPayer::default(),
            detail: None,
            scene_info: None,
        }
    }

    /// The payer by openid under sp_appid.
    pub fn sp_openid(mut self, openid: impl Into<String>) -> Self {
        self.payer = PartnerPayer { sp_openid: Some(openid.into()), sub_openid: None };
        self
    }

    /// The payer by openid under the sub-merchant's appid.
    pub fn sub_openid(mut self, sub_appid: impl Into<String>, openid: impl Into<String>) -> Self {
        self.sub_appid = Some(sub_appid.into());
        self.payer = PartnerPayer { sp_openid: None, sub_openid: Some(openid.into()) };
        self
    }

    /// Deadline.
    pub fn time_expire(mut self, at: DateTime<Utc>) -> Self {
        self.time_expire = Some(wechat_time(at));
        self
    }

    /// Merchant data.
    pub fn attach(mut self, attach: impl Into<String>) -> Self {
        self.attach = Some(attach.into());
        self
    }

    /// Coupon tag.
    pub fn goods_tag(mut self, tag: impl Into<String>) -> Self {
        self.goods_tag = Some(tag.into());
        self
    }

    /// Freeze for profit sharing.
    pub fn profit_sharing(mut self, yes: bool) -> Self {
        self.settle_info = Some(SettleInfo { profit_sharing: Some(yes) });
        self
    }

    /// Goods.
    pub fn detail(mut self, detail: OrderDetail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Scene.
    pub fn scene_info(mut self, scene: SceneInfo) -> Self {
        self.scene_info = Some(scene);
        self
    }

    fn validate(&self) -> Result<()> {
        validate_order(
            &self.description,
            &self.out_trade_no,
            &self.notify_url,
            self.amount.total,
            self.attach.as_deref(),
        )?;
        if self.sub_mchid.is_empty() || self.sp_appid.is_empty() {
            return Err(Error::InvalidRequest("sp_appid and sub_mchid are required".into()));
        }
        match (&self.payer.sp_openid, &self.payer.sub_openid) {
            (Some(_), None) => Ok(()),
            (None, Some(_)) if self.sub_appid.is_some() => Ok(()),
            (None, Some(_)) => Err(Error::InvalidRequest("payer.sub_openid needs sub_appid".into())),
            _ => Err(Error::InvalidRequest("give exactly one of payer.sp_openid and payer.sub_openid".into())),
        }
    }
}

impl PayClient {
    /// Service-provider (服务商) payments.
    pub fn partner(&self) -> Partner<'_> {
        Partner { client: self }
    }
}

/// Partner payments. From [`PayClient::partner`].
#[derive(Debug, Clone, Copy)]
pub struct Partner<'a> {
    pub(crate) client: &'a PayClient,
}

impl Partner<'_> {
    /// `POST /v3/pay/partner/transactions/jsapi`.
    pub async fn jsapi(self, mut req: PartnerJsapiPrepay) -> Result<PrepayResponse> {
        req.sp_mchid = self.client.mchid().to_string();
        req.validate()?;
        self.client.send_json(&post("/v3/pay/partner/transactions/jsapi", &req)?).await
    }

    /// Prepay, then the `wx.requestPayment` parameters, signed for the appid the payer's openid
    /// belongs to (sub_appid for a sub_openid, else sp_appid).
    pub async fn jsapi_request_payment(self, req: PartnerJsapiPrepay) -> Result<RequestPayment> {
        let appid = match (&req.payer.sub_openid, &req.sub_appid) {
            (Some(_), Some(sub)) => sub.clone(),
            _ => req.sp_appid.clone(),
        };
        let prepay = self.jsapi(req).await?;
        self.client.request_payment(&appid, &prepay.prepay_id)
    }

    /// `GET /v3/pay/partner/transactions/id/{transaction_id}?sp_mchid=&sub_mchid=`.
    pub async fn query_by_id(self, transaction_id: &str, sub_mchid: &str) -> Result<Transaction> {
        let req = get(format!("/v3/pay/partner/transactions/id/{}", seg(transaction_id)))
            .query("sp_mchid", self.client.mchid())
            .query("sub_mchid", sub_mchid);
        self.client.send_json(&req).await
    }

    /// `GET /v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid=&sub_mchid=`.
    pub async fn query_by_out_trade_no(self, out_trade_no: &str, sub_mchid: &str) -> Result<Transaction> {
        check_no("out_trade_no", out_trade_no, 6, 32)?;
        let req = get(format!("/v3/pay/partner/transactions/out-trade-no/{}", seg(out_trade_no)))
            .query("sp_mchid", self.client.mchid())
            .query("sub_mchid", sub_mchid);
        self.client.send_json(&req).await
    }

    /// `POST /v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close` (204).
    pub async fn close(self, out_trade_no: &str, sub_mchid: &str) -> Result<()> {
        check_no("out_trade_no", out_trade_no, 6, 32)?;
        let body = serde_json::json!({ "sp_mchid": self.client.mchid(), "sub_mchid": sub_mchid });
        let req = post(format!("/v3/pay/partner/transactions/out-trade-no/{}/close", seg(out_trade_no)), &body)?;
        self.client.send_no_content(&req).await
    }

    /// A refund for a sub-merchant (`sub_mchid` required).
    pub async fn refund(self, req: CreateRefund) -> Result<Refund> {
        if req.sub_mchid.as_deref().is_none_or(str::is_empty) {
            return Err(Error::InvalidRequest("a partner refund needs sub_mchid".into()));
        }
        self.client.refunds().create(req).await
    }
}
