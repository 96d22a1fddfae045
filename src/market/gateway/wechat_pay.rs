//! The adapters onto WeChat: [`WechatPayGateway`] (WeChat Pay v3 through [`crate::pay::PayClient`])
//! and [`MpShippingGateway`] (shipping-info management through [`crate::mp::shipping`]).

use async_trait::async_trait;

use super::types::*;
use super::{PaymentGateway, ShippingGateway};
use crate::market::money::Money;
use crate::market::payment::{PayMode, PaymentNotice};

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

    async fn trade_bill(&self, date: chrono::NaiveDate) -> crate::Result<Vec<BillLine>> {
        use crate::pay::bills::{BillTable, TradeBillType};
        let day = date.format("%Y-%m-%d").to_string();
        let bytes = match self.client.bills().trade_bill_file(&day, TradeBillType::All).await {
            Ok(b) => b,
            // A day without trades has no bill.
            Err(e) if e.pay_code() == Some("NO_STATEMENT_EXIST") => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(BillLine::from_trade_bill(&BillTable::parse(&text)))
    }
}
