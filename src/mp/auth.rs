//! Mini-program login: `code2Session`, session-key checks, phone numbers, paid unionid, and the
//! local checks of open data (`encryptedData` with the watermark, `rawData` signatures).
//!
//! ```no_run
//! # async fn demo(client: wxshop::Client) -> wxshop::Result<()> {
//! let session = client.auth().code2session("0a3Xyz…").await?;
//! let phone = client.auth().phone_number("code-from-getPhoneNumber").await?;
//! println!("{} {}", session.openid, phone.pure_phone_number);
//! # Ok(()) }
//! ```

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use super::Client;
use crate::crypto::{sig, wxa};
use crate::error::{Error, Result};
use crate::http::Request;

/// Login APIs of one [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct Auth<'a> {
    pub(crate) client: &'a Client,
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

/// What `code2Session` answers.
#[derive(Clone, Deserialize)]
pub struct Code2Session {
    /// The user's openid in this mini-program.
    pub openid: String,
    /// The session key: decrypts open data. Never leaves the server, never printed.
    #[serde(deserialize_with = "secret")]
    pub session_key: SecretString,
    /// The unionid, when the app is bound to an open-platform account.
    #[serde(default)]
    pub unionid: Option<String>,
}

impl fmt::Debug for Code2Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code2Session")
            .field("openid", &self.openid)
            .field("session_key", &"[redacted]")
            .field("unionid", &self.unionid)
            .finish()
    }
}

/// A phone number from `getuserphonenumber`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneInfo {
    /// With the country code for foreign numbers.
    pub phone_number: String,
    /// Without the country code.
    pub pure_phone_number: String,
    /// The country code.
    pub country_code: String,
    /// The watermark.
    pub watermark: Option<PhoneWatermark>,
}

/// The watermark of a phone number answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PhoneWatermark {
    /// Unix seconds.
    pub timestamp: i64,
    /// The appid.
    pub appid: String,
}

/// How `getPaidUnionId` finds the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaidOrder {
    /// By WeChat Pay transaction id.
    TransactionId(String),
    /// By merchant id and the merchant's out_trade_no.
    OutTradeNo {
        /// The merchant id (mch_id).
        mch_id: String,
        /// The merchant order number.
        out_trade_no: String,
    },
}

impl Auth<'_> {
    /// Exchanges a `wx.login` code for the openid, session key and unionid.
    pub async fn code2session(&self, js_code: &str) -> Result<Code2Session> {
        if js_code.is_empty() {
            return Err(Error::InvalidRequest("js_code is empty".into()));
        }
        let app = self.client.app();
        let req = Request::mp_get("/sns/jscode2session")
            .query("appid", app.appid.clone())
            .query("secret", app.secret.expose_secret().to_string())
            .query("js_code", js_code.to_string())
            .query("grant_type", "authorization_code")
            // A code is single-use: a replay after a lost answer would fail with 40163 anyway.
            .idempotent(true);
        self.client.call_without_token(&req).await
    }

    /// Checks that `session_key` is still the user's current key (`/wxa/checksession`).
    pub async fn check_session_key(&self, openid: &str, session_key: &SecretString) -> Result<()> {
        let signature = sig::hmac_sha256_hex(session_key.expose_secret().as_bytes(), b"");
        let req = Request::mp_get("/wxa/checksession")
            .query("openid", openid.to_string())
            .query("signature", signature)
            .query("sig_method", "hmac_sha256");
        let _: serde_json::Value = self.client.call(&req).await?;
        Ok(())
    }

    /// Resets the user's session key and returns the new one (`/wxa/resetusersessionkey`).
    pub async fn reset_session_key(&self, openid: &str, session_key: &SecretString) -> Result<Code2Session> {
        let signature = sig::hmac_sha256_hex(session_key.expose_secret().as_bytes(), b"");
        let req = Request::mp_get("/wxa/resetusersessionkey")
            .query("openid", openid.to_string())
            .query("signature", signature)
            .query("sig_method", "hmac_sha256")
            .idempotent(false);
        self.client.call(&req).await
    }

    /// Exchanges a `getPhoneNumber` button code for the phone number.
    pub async fn phone_number(&self, code: &str) -> Result<PhoneInfo> {
        #[derive(Deserialize)]
        struct R {
            phone_info: PhoneInfo,
        }
        if code.is_empty() {
            return Err(Error::InvalidRequest("phone code is empty".into()));
        }
        let req = Request::mp_post("/wxa/business/getuserphonenumber", &serde_json::json!({ "code": code }))?;
        let r: R = self.client.call(&req).await?;
        Ok(r.phone_info)
    }

    /// The user's unionid after a WeChat Pay payment (`/wxa/getpaidunionid`).
    pub async fn paid_unionid(&self, openid: &str, order: &PaidOrder) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            unionid: String,
        }
        let mut req = Request::mp_get("/wxa/getpaidunionid").query("openid", openid.to_string());
        req = match order {
            PaidOrder::TransactionId(t) => req.query("transaction_id", t.clone()),
            PaidOrder::OutTradeNo { mch_id, out_trade_no } => {
                req.query("mch_id", mch_id.clone()).query("out_trade_no", out_trade_no.clone())
            }
        };
        let r: R = self.client.call(&req).await?;
        Ok(r.unionid)
    }

    /// Decrypts `encryptedData` for this app (watermark checked) into `T`.
    pub fn decrypt<T: serde::de::DeserializeOwned>(
        &self,
        session_key: &SecretString,
        iv: &str,
        encrypted_data: &str,
    ) -> Result<T> {
        wxa::decrypt_json(self.client.appid(), session_key.expose_secret(), iv, encrypted_data)
    }

    /// Decrypts `wx.getUserInfo` encryptedData for this app (watermark checked) into
    /// [`wxa::UserInfo`], parsing the JSON once: the fast path of [`Self::decrypt`] for that type.
    pub fn decrypt_user_info(
        &self,
        session_key: &SecretString,
        iv: &str,
        encrypted_data: &str,
    ) -> Result<wxa::UserInfo> {
        wxa::decrypt_user_info(self.client.appid(), session_key.expose_secret(), iv, encrypted_data)
    }

    /// Checks a `rawData` signature: `sha1(rawData + session_key)`, constant-time.
    pub fn verify_raw_data(&self, session_key: &SecretString, raw_data: &[u8], signature: &str) -> Result<()> {
        if sig::verify_raw_data(raw_data, session_key.expose_secret(), signature) {
            Ok(())
        } else {
            Err(Error::Signature("rawData signature does not match sha1(rawData + session_key)".into()))
        }
    }
}
