//! Merchant transfers (商家转账, the 2025 "transfer bills" API): money from the merchant's balance to a
//! user's WeChat change, confirmed by the user in the mini program.
//!
//! | call | endpoint |
//! |---|---|
//! | [`Transfers::create`] | `POST /v3/fund-app/mch-transfer/transfer-bills` (`user_name` OAEP-encrypted, `Wechatpay-Serial` sent) |
//! | [`Transfers::query_by_out_bill_no`] | `GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}` |
//! | [`Transfers::query_by_transfer_bill_no`] | `GET /v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/{transfer_bill_no}` |
//! | [`Transfers::cancel`] | `POST /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}/cancel` |
//!
//! A new bill is usually `WAIT_USER_CONFIRM` with a `package_info`: the mini program calls
//! `wx.requestMerchantTransfer({mchId, appId, package: package_info})` and the user confirms; the
//! outcome arrives as a `MCHTRANSFER.BILL.FINISHED` notification (see
//! [`crate::pay::notify::NotificationResource::TransferBill`]) with the state `SUCCESS`, `FAIL` or
//! `CANCELLED`. The same `out_bill_no` with the same parameters is the same bill (retries are safe);
//! with other parameters WeChat answers `INVALID_REQUEST`.
//!
//! Everything WeChat checks first is checked locally: `out_bill_no` is 1–32 of `[0-9A-Za-z]`, the
//! remark at most 32 characters, the amount at least 10 fen (¥0.1), at least one scene report,
//! and the payee's real name is required from ¥2,000 (200 000 fen) on.
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! use wxshop::pay::transfers::{CreateTransferBill, TransferState};
//! let bill = pay
//!     .transfers()
//!     .create(
//!         CreateTransferBill::new("wx8888888888888888", "COMP20250101001", "1000", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", 330, "售后赔付")
//!             .report("活动名称", "售后赔付")
//!             .report("奖励说明", "商家延迟发货赔付")
//!             .notify_url("https://shop.example/wx/pay/notify"),
//!     )
//!     .await?;
//! if bill.state == TransferState::WaitUserConfirm {
//!     // hand {mchId, appId, package: bill.package_info} to wx.requestMerchantTransfer
//!     println!("{:?}", bill.package_info);
//! }
//! # Ok(()) }
//! ```

use std::fmt;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{PayClient, get, post};
use super::seg;
use crate::error::{Error, Result};
use crate::http::{Host, Request};

/// The smallest transfer WeChat accepts, fen (¥0.1).
pub const MIN_TRANSFER_FEN: i64 = 10;
/// From this amount (fen, ¥2,000) on, the payee's real name (`user_name`) is required.
pub const USER_NAME_REQUIRED_FROM_FEN: i64 = 200_000;
/// The longest `transfer_remark`, in characters.
pub const MAX_REMARK_CHARS: usize = 32;

wire_enum! {
    /// A transfer bill's `state`.
    TransferState(String) {
        /// Accepted; not yet processed.
        Accepted = "ACCEPTED",
        /// Being processed.
        Processing = "PROCESSING",
        /// Waiting for the user to confirm in the mini program (`wx.requestMerchantTransfer`).
        WaitUserConfirm = "WAIT_USER_CONFIRM",
        /// Transferring (WeChat's spelling).
        Transfering = "TRANSFERING",
        /// The money reached the user.
        Success = "SUCCESS",
        /// Failed (see `fail_reason`); the money is back in the merchant's balance.
        Fail = "FAIL",
        /// Being cancelled.
        Canceling = "CANCELING",
        /// Cancelled.
        Cancelled = "CANCELLED",
    }
}

impl TransferState {
    /// `SUCCESS`, `FAIL` or `CANCELLED`: the bill will not change any more.
    pub fn is_final(&self) -> bool {
        matches!(self, TransferState::Success | TransferState::Fail | TransferState::Cancelled)
    }
}

/// One `transfer_scene_report_infos` entry (what the transfer scene asks the merchant to report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneReportInfo {
    /// The report type (for scene 1000: `活动名称`, `奖励说明`).
    pub info_type: String,
    /// Its content.
    pub info_content: String,
}

impl SceneReportInfo {
    /// A report entry.
    pub fn new(info_type: impl Into<String>, info_content: impl Into<String>) -> Self {
        SceneReportInfo { info_type: info_type.into(), info_content: info_content.into() }
    }
}

/// `POST /v3/fund-app/mch-transfer/transfer-bills`. `Debug` never shows the payee's name.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct CreateTransferBill {
    /// The appid the `openid` belongs to.
    pub appid: String,
    /// The merchant's bill number: 1–32 of `[0-9A-Za-z]`, the idempotency key.
    pub out_bill_no: String,
    /// The transfer scene WeChat granted the merchant (`1000` 现金营销, …).
    pub transfer_scene_id: String,
    /// The payee.
    pub openid: String,
    /// The payee's real name, plain text here; the client encrypts it (RSA-OAEP) before sending.
    /// Required from ¥2,000 on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Fen.
    pub transfer_amount: i64,
    /// Shown to the user (at most 32 characters).
    pub transfer_remark: String,
    /// Where WeChat Pay posts `MCHTRANSFER.BILL.FINISHED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// What the user sees as the kind of money received (`现金奖励`, …), when the scene allows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_recv_perception: Option<String>,
    /// The scene's reports.
    pub transfer_scene_report_infos: Vec<SceneReportInfo>,
}

impl fmt::Debug for CreateTransferBill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTransferBill")
            .field("appid", &self.appid)
            .field("out_bill_no", &self.out_bill_no)
            .field("transfer_scene_id", &self.transfer_scene_id)
            .field("openid", &self.openid)
            .field("user_name", &self.user_name.as_ref().map(|_| "[redacted]"))
            .field("transfer_amount", &self.transfer_amount)
            .field("transfer_remark", &self.transfer_remark)
            .field("notify_url", &self.notify_url)
            .field("user_recv_perception", &self.user_recv_perception)
            .field("transfer_scene_report_infos", &self.transfer_scene_report_infos)
            .finish()
    }
}

impl CreateTransferBill {
    /// A transfer of `transfer_amount` fen to `openid` (of `appid`) under `transfer_scene_id`; add
    /// the scene's reports with [`CreateTransferBill::report`].
    pub fn new(
        appid: impl Into<String>,
        out_bill_no: impl Into<String>,
        transfer_scene_id: impl Into<String>,
        openid: impl Into<String>,
        transfer_amount: i64,
        transfer_remark: impl Into<String>,
    ) -> Self {
        CreateTransferBill {
            appid: appid.into(),
            out_bill_no: out_bill_no.into(),
            transfer_scene_id: transfer_scene_id.into(),
            openid: openid.into(),
            user_name: None,
            transfer_amount,
            transfer_remark: transfer_remark.into(),
            notify_url: None,
            user_recv_perception: None,
            transfer_scene_report_infos: Vec::new(),
        }
    }

    /// Adds a scene report.
    pub fn report(mut self, info_type: impl Into<String>, info_content: impl Into<String>) -> Self {
        self.transfer_scene_report_infos.push(SceneReportInfo::new(info_type, info_content));
        self
    }

    /// The payee's real name (encrypted by the client; required from ¥2,000).
    pub fn user_name(mut self, name: impl Into<String>) -> Self {
        self.user_name = Some(name.into());
        self
    }

    /// The notification URL.
    pub fn notify_url(mut self, url: impl Into<String>) -> Self {
        self.notify_url = Some(url.into());
        self
    }

    /// The user's perception of the money (`user_recv_perception`).
    pub fn user_recv_perception(mut self, p: impl Into<String>) -> Self {
        self.user_recv_perception = Some(p.into());
        self
    }

    /// Checks what WeChat checks before sending.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidRequest(m));
        if self.appid.trim().is_empty() {
            return invalid("appid is empty".into());
        }
        check_bill_no("out_bill_no", &self.out_bill_no)?;
        if self.transfer_scene_id.trim().is_empty() {
            return invalid(
                "transfer_scene_id is empty — use the transfer scene WeChat Pay granted the merchant".into(),
            );
        }
        if self.openid.trim().is_empty() {
            return invalid("openid is empty".into());
        }
        if self.transfer_amount < MIN_TRANSFER_FEN {
            return invalid(format!(
                "transfer_amount {} fen is below WeChat's minimum of {MIN_TRANSFER_FEN} fen (¥0.1)",
                self.transfer_amount
            ));
        }
        let remark = self.transfer_remark.chars().count();
        if remark == 0 || remark > MAX_REMARK_CHARS {
            return invalid(format!(
                "transfer_remark must be 1–{MAX_REMARK_CHARS} characters (it is shown to the user), got {remark}"
            ));
        }
        match &self.user_name {
            Some(n) if n.trim().is_empty() => return invalid("user_name is empty".into()),
            None if self.transfer_amount >= USER_NAME_REQUIRED_FROM_FEN => {
                return invalid(format!(
                    "user_name (the payee's real name) is required for transfers of {USER_NAME_REQUIRED_FROM_FEN} fen \
                     (¥2,000) or more; got {} fen",
                    self.transfer_amount
                ));
            }
            _ => {}
        }
        if self.transfer_scene_report_infos.is_empty() {
            return invalid("transfer_scene_report_infos is empty — every transfer scene requires its reports".into());
        }
        if self.transfer_scene_report_infos.iter().any(|r| r.info_type.is_empty() || r.info_content.is_empty()) {
            return invalid("every transfer_scene_report_infos entry needs info_type and info_content".into());
        }
        if let Some(u) = &self.notify_url {
            let ok = url::Url::parse(u).is_ok_and(|x| matches!(x.scheme(), "http" | "https") && x.query().is_none());
            if !ok {
                return invalid(format!("notify_url {u:?} must be an http(s) URL without a query string"));
            }
        }
        Ok(())
    }
}

/// Checks a transfer bill number: 1–32 of `[0-9A-Za-z]` (stricter than other merchant numbers).
pub fn check_bill_no(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 32 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::InvalidRequest(format!("{field} {value:?} must be 1–32 characters of 0-9 A-Z a-z only")));
    }
    Ok(())
}

/// The answer to [`Transfers::create`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferBillCreated {
    /// The merchant's bill number.
    pub out_bill_no: String,
    /// WeChat's bill number.
    pub transfer_bill_no: String,
    /// When it was created.
    pub create_time: String,
    /// Its state.
    pub state: TransferState,
    /// Why it failed (with `FAIL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// With `WAIT_USER_CONFIRM`: the `package` of `wx.requestMerchantTransfer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_info: Option<String>,
}

/// A transfer bill as the queries answer it. `Debug` never shows the (encrypted) payee name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferBill {
    /// The merchant.
    pub mch_id: String,
    /// The merchant's bill number.
    pub out_bill_no: String,
    /// WeChat's bill number.
    pub transfer_bill_no: String,
    /// The appid.
    pub appid: String,
    /// Its state.
    pub state: TransferState,
    /// Fen.
    pub transfer_amount: i64,
    /// The remark shown to the user.
    pub transfer_remark: String,
    /// Why it failed (with `FAIL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// The payee.
    pub openid: String,
    /// The payee's name, encrypted with the merchant's key (decrypt with
    /// [`PayClient::decrypt_sensitive`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Created.
    pub create_time: String,
    /// Last change.
    pub update_time: String,
}

impl fmt::Debug for TransferBill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferBill")
            .field("mch_id", &self.mch_id)
            .field("out_bill_no", &self.out_bill_no)
            .field("transfer_bill_no", &self.transfer_bill_no)
            .field("appid", &self.appid)
            .field("state", &self.state)
            .field("transfer_amount", &self.transfer_amount)
            .field("transfer_remark", &self.transfer_remark)
            .field("fail_reason", &self.fail_reason)
            .field("openid", &self.openid)
            .field("user_name", &self.user_name.as_ref().map(|_| "[redacted]"))
            .field("create_time", &self.create_time)
            .field("update_time", &self.update_time)
            .finish()
    }
}

/// The answer to [`Transfers::cancel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferBillCancelled {
    /// The merchant's bill number.
    pub out_bill_no: String,
    /// WeChat's bill number.
    pub transfer_bill_no: String,
    /// `CANCELING` or `CANCELLED`.
    pub state: TransferState,
    /// When.
    pub update_time: String,
}

/// The decrypted resource of a `MCHTRANSFER.BILL.FINISHED` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferBillNotice {
    /// The merchant's bill number.
    pub out_bill_no: String,
    /// WeChat's bill number.
    pub transfer_bill_no: String,
    /// `SUCCESS`, `FAIL` or `CANCELLED`.
    pub state: TransferState,
    /// The merchant.
    pub mch_id: String,
    /// Fen.
    pub transfer_amount: i64,
    /// The payee.
    pub openid: String,
    /// Why it failed (with `FAIL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// Created.
    pub create_time: String,
    /// Last change.
    pub update_time: String,
}

impl PayClient {
    /// Merchant transfers (商家转账 transfer bills).
    pub fn transfers(&self) -> Transfers<'_> {
        Transfers { client: self }
    }
}

/// Merchant transfers. From [`PayClient::transfers`].
#[derive(Debug, Clone, Copy)]
pub struct Transfers<'a> {
    pub(crate) client: &'a PayClient,
}

const BILLS: &str = "/v3/fund-app/mch-transfer/transfer-bills";

impl Transfers<'_> {
    /// `POST /v3/fund-app/mch-transfer/transfer-bills`, after the local checks; `user_name` is
    /// encrypted with WeChat Pay's key and `Wechatpay-Serial` sent. Safe to retry with the same
    /// `out_bill_no` and parameters.
    pub async fn create(self, mut req: CreateTransferBill) -> Result<TransferBillCreated> {
        req.validate()?;
        let mut encryptor = None;
        if let Some(name) = req.user_name.take() {
            let enc = self.client.encryptor().await?;
            req.user_name = Some(enc.encrypt(&name)?);
            encryptor = Some(enc);
        }
        let mut http = post(BILLS, &req)?;
        if let Some(enc) = encryptor {
            http = enc.tag(http)?;
        }
        self.client.send_json(&http).await
    }

    /// `GET …/transfer-bills/out-bill-no/{out_bill_no}`.
    pub async fn query_by_out_bill_no(self, out_bill_no: &str) -> Result<TransferBill> {
        check_bill_no("out_bill_no", out_bill_no)?;
        self.client.send_json(&get(format!("{BILLS}/out-bill-no/{}", seg(out_bill_no)))).await
    }

    /// `GET …/transfer-bills/transfer-bill-no/{transfer_bill_no}`.
    pub async fn query_by_transfer_bill_no(self, transfer_bill_no: &str) -> Result<TransferBill> {
        if transfer_bill_no.is_empty() || transfer_bill_no.len() > 64 {
            return Err(Error::InvalidRequest("transfer_bill_no must be 1–64 characters".into()));
        }
        self.client.send_json(&get(format!("{BILLS}/transfer-bill-no/{}", seg(transfer_bill_no)))).await
    }

    /// `POST …/transfer-bills/out-bill-no/{out_bill_no}/cancel`: withdraws a bill the user has not
    /// confirmed yet (`CANCELING`, then `CANCELLED` with a notification).
    pub async fn cancel(self, out_bill_no: &str) -> Result<TransferBillCancelled> {
        check_bill_no("out_bill_no", out_bill_no)?;
        let req = Request::new(Method::POST, Host::Pay, format!("{BILLS}/out-bill-no/{}/cancel", seg(out_bill_no)))
            .idempotent(true);
        self.client.send_json(&req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bill(amount: i64) -> CreateTransferBill {
        CreateTransferBill::new("wx1", "COMP1", "1000", "o1", amount, "售后赔付").report("活动名称", "售后赔付")
    }

    #[test]
    fn local_checks() {
        bill(10).validate().unwrap();
        let e = bill(9).validate().unwrap_err().to_string();
        assert!(e.contains("below WeChat's minimum of 10 fen"), "{e}");
        let mut b = bill(100);
        b.out_bill_no = "COMP_1".into();
        assert!(b.validate().unwrap_err().to_string().contains("0-9 A-Z a-z only"));
        b.out_bill_no = "A".repeat(33);
        assert!(b.validate().is_err());
        b.out_bill_no = "A".repeat(32);
        b.validate().unwrap();
        let e = bill(200_000).validate().unwrap_err().to_string();
        assert!(e.contains("user_name (the payee's real name) is required"), "{e}");
        bill(200_000).user_name("张三").validate().unwrap();
        bill(199_999).validate().unwrap();
        let mut b = bill(100);
        b.transfer_remark = "赔".repeat(33);
        assert!(b.validate().unwrap_err().to_string().contains("1–32 characters"));
        b.transfer_remark = "赔".repeat(32);
        b.validate().unwrap();
        let no_reports = CreateTransferBill::new("wx1", "COMP1", "1000", "o1", 100, "r");
        assert!(no_reports.validate().unwrap_err().to_string().contains("transfer_scene_report_infos"));
        assert!(bill(100).notify_url("https://x.example/n?a=1").validate().is_err());
    }

    #[test]
    fn debug_redacts_the_name() {
        let b = bill(200_000).user_name("张三");
        let d = format!("{b:?}");
        assert!(!d.contains("张三") && d.contains("[redacted]"), "{d}");
    }

    #[test]
    fn unknown_states_stay_typed() {
        let s: TransferState = serde_json::from_str("\"SOMETHING_NEW\"").unwrap();
        assert_eq!(s, TransferState::Other("SOMETHING_NEW".into()));
        assert!(!s.is_final());
        assert!(TransferState::from("CANCELLED").is_final());
    }
}
