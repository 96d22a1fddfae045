//! WeChat Pay API v3: a signed, verifying client for JSAPI (mini-program) payments, refunds, bills,
//! profit sharing, partner (service-provider) and combined payments, and verified, deduplicated
//! payment notifications.
//!
//! - [`PayConfig`]: the merchant's identity and keys (merchant key and certificate serial, APIv3
//!   key, and the WeChat Pay public key and/or platform certificates that verify WeChat's side).
//! - [`PayClient`]: every call is signed (`Authorization: WECHATPAY2-SHA256-RSA2048 …`), sent through
//!   the crate's one executor, and its response verified before it is decoded.
//! - [`keys`]: the verifier holding platform certificates and `PUB_KEY_ID_…` public keys.
//! - [`notify`]: `verify_and_decrypt` for notifications, dedupe, and an axum handler.
//! - [`transactions`], [`refunds`], [`bills`], [`profitsharing`], [`partner`], [`combine`],
//!   [`transfers`] (商家转账 transfer bills): the calls.
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use wxshop::crypto::pay::{MerchantKey, PayPublicKey};
//! use wxshop::pay::{PayClient, PayConfig};
//! use wxshop::pay::transactions::JsapiPrepay;
//! let key = MerchantKey::from_pem(&std::fs::read_to_string("apiclient_key.pem").unwrap())?;
//! let wechat_key = PayPublicKey::from_pem(&std::fs::read_to_string("pub_key.pem").unwrap())?;
//! let config = PayConfig::new("1900009191", "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C", key, "APIv3-key-of-exactly-32-bytes!!!")?
//!     .with_public_key("PUB_KEY_ID_0114232134912410000000000000", wechat_key)?;
//! let pay = PayClient::builder(config).build()?;
//! let prepay = pay
//!     .transactions()
//!     .jsapi(JsapiPrepay::new("wx8888888888888888", "T-shirt", "ORDER20240101001", "https://shop.example/wx/pay/notify", 1999, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"))
//!     .await?;
//! let params = pay.request_payment("wx8888888888888888", &prepay.prepay_id)?; // hand to wx.requestPayment
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::crypto::pay::{ApiV3Key, MerchantKey, PayPublicKey, PlatformCertificate};
use crate::error::{Error, Result};

pub mod bills;
pub mod client;
pub mod combine;
pub mod keys;
pub mod notify;
pub mod partner;
pub mod profitsharing;
pub mod refunds;
pub mod transactions;
pub mod transfers;

pub use client::{PayClient, PayClientBuilder, RequestPayment};
pub use notify::{Notification, NotificationResource};

/// A merchant's WeChat Pay identity and keys. `Debug` never shows a key.
#[derive(Clone)]
pub struct PayConfig {
    mchid: String,
    merchant_serial: String,
    merchant_key: Arc<MerchantKey>,
    apiv3_key: ApiV3Key,
    public_key: Option<(String, PayPublicKey)>,
    platform_certificates: bool,
    static_certificates: Vec<PlatformCertificate>,
}

impl fmt::Debug for PayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayConfig")
            .field("mchid", &self.mchid)
            .field("merchant_serial", &self.merchant_serial)
            .field("merchant_key", &"[redacted]")
            .field("apiv3_key", &"[redacted]")
            .field("public_key_id", &self.public_key.as_ref().map(|(id, _)| id))
            .field("platform_certificates", &self.platform_certificates)
            .finish()
    }
}

impl PayConfig {
    /// A merchant (`mchid`), its API certificate serial, its private key (`apiclient_key.pem`)
    /// and its APIv3 key (32 bytes). Starts in platform-certificate mode; call
    /// [`PayConfig::with_public_key`] for the WeChat Pay public key (all new merchants).
    pub fn new(
        mchid: impl Into<String>,
        merchant_serial: impl Into<String>,
        merchant_key: MerchantKey,
        apiv3_key: &str,
    ) -> Result<Self> {
        let mchid = mchid.into();
        let merchant_serial = merchant_serial.into();
        if mchid.trim().is_empty() {
            return Err(Error::Config("PayConfig.mchid is empty".into()));
        }
        if merchant_serial.trim().is_empty() {
            return Err(Error::Config(
                "PayConfig.merchant_serial is empty — it is the serial of apiclient_cert.pem (openssl x509 -noout \
                 -serial)"
                    .into(),
            ));
        }
        if merchant_serial.starts_with(keys::PUBLIC_KEY_ID_PREFIX) {
            return Err(Error::Config(
                "PayConfig.merchant_serial is a WeChat Pay public key id; it must be your merchant API certificate \
                 serial"
                    .into(),
            ));
        }
        Ok(PayConfig {
            mchid,
            merchant_serial,
            merchant_key: Arc::new(merchant_key),
            apiv3_key: ApiV3Key::new(apiv3_key)?,
            public_key: None,
            platform_certificates: true,
            static_certificates: Vec::new(),
        })
    }

    /// Like [`PayConfig::new`] with the merchant key as PEM text.
    pub fn from_pem(mchid: &str, merchant_serial: &str, merchant_key_pem: &str, apiv3_key: &str) -> Result<Self> {
        Self::new(mchid, merchant_serial, MerchantKey::from_pem(merchant_key_pem)?, apiv3_key)
    }

    /// Verifies with this WeChat Pay public key (`PUB_KEY_ID_…`) and turns certificate downloads
    /// off; add [`PayConfig::with_platform_certificates`] to accept both during migration.
    pub fn with_public_key(mut self, id: impl Into<String>, key: PayPublicKey) -> Result<Self> {
        let id = id.into();
        if !id.starts_with(keys::PUBLIC_KEY_ID_PREFIX) {
            return Err(Error::Config(format!(
                "WeChat Pay public key ids start with {}; got {id:?} (a certificate serial goes in merchant_serial)",
                keys::PUBLIC_KEY_ID_PREFIX
            )));
        }
        if key == self.merchant_key.public_key() {
            return Err(Error::Config(
                "the WeChat Pay public key given is your own merchant public key — download WeChat Pay's \
                 pub_key.pem from the merchant platform"
                    .into(),
            ));
        }
        self.public_key = Some((id, key));
        self.platform_certificates = false;
        Ok(self)
    }

    /// Like [`PayConfig::with_public_key`] from PEM text.
    pub fn with_public_key_pem(self, id: impl Into<String>, pem: &str) -> Result<Self> {
        let key = PayPublicKey::from_pem(pem)?;
        self.with_public_key(id, key)
    }

    /// Downloads and refreshes platform certificates (`true`) or never calls `/v3/certificates`.
    pub fn with_platform_certificates(mut self, on: bool) -> Self {
        self.platform_certificates = on;
        self
    }

    /// Adds a platform certificate by hand (no download needed for it). The merchant's own
    /// certificate is refused.
    pub fn with_platform_certificate(mut self, cert: PlatformCertificate) -> Result<Self> {
        cert.check_not_merchant(&self.merchant_serial, Some(&self.merchant_key.public_key()))?;
        self.static_certificates.push(cert);
        Ok(self)
    }

    /// The merchant number.
    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The merchant API certificate serial.
    pub fn merchant_serial(&self) -> &str {
        &self.merchant_serial
    }

    /// The merchant private key.
    pub fn merchant_key(&self) -> &MerchantKey {
        &self.merchant_key
    }

    /// The APIv3 key.
    pub fn apiv3_key(&self) -> &ApiV3Key {
        &self.apiv3_key
    }

    /// The WeChat Pay public key, when configured.
    pub fn public_key(&self) -> Option<(&str, &PayPublicKey)> {
        self.public_key.as_ref().map(|(id, k)| (id.as_str(), k))
    }

    /// Whether platform certificates are downloaded.
    pub fn platform_certificates(&self) -> bool {
        self.platform_certificates
    }

    /// Certificates configured by hand.
    pub fn static_certificates(&self) -> &[PlatformCertificate] {
        &self.static_certificates
    }
}

/// An `AEAD_AES_256_GCM` resource (notifications, certificates): decrypt it with the APIv3 key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncryptedResource {
    /// Always `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// base64 ciphertext with the 16-byte tag appended.
    pub ciphertext: String,
    /// The associated data (`transaction`, `refund`, `certificate`…); may be empty.
    #[serde(default)]
    pub associated_data: String,
    /// The 12-character nonce.
    pub nonce: String,
    /// The type of the plaintext (`transaction`, `refund`), when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_type: Option<String>,
}

impl EncryptedResource {
    /// Decrypts with the APIv3 key; another algorithm is refused.
    pub fn decrypt(&self, key: &ApiV3Key) -> Result<Vec<u8>> {
        if self.algorithm != crate::crypto::pay::AEAD_AES_256_GCM {
            return Err(Error::crypto(
                crate::error::CryptoKind::Key,
                format!("unsupported resource algorithm {:?} (expected AEAD_AES_256_GCM)", self.algorithm),
            ));
        }
        key.decrypt(&self.nonce, &self.associated_data, &self.ciphertext)
    }

    /// Encrypts `plaintext` as WeChat does (the emulator and fixtures).
    pub fn encrypt(
        key: &ApiV3Key,
        associated_data: &str,
        original_type: Option<&str>,
        plaintext: &[u8],
    ) -> Result<Self> {
        let nonce = crate::crypto::pay::nonce12();
        Ok(EncryptedResource {
            algorithm: crate::crypto::pay::AEAD_AES_256_GCM.into(),
            ciphertext: key.encrypt(&nonce, associated_data, plaintext)?,
            associated_data: associated_data.into(),
            nonce,
            original_type: original_type.map(Into::into),
        })
    }
}

/// Checks a merchant number (out_trade_no, out_refund_no, out_order_no…): WeChat allows
/// `[0-9A-Za-z_-|*@]`, within a length range.
pub(crate) fn check_no(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let ok_chars = value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b));
    if value.len() < min || value.len() > max || !ok_chars {
        return Err(Error::InvalidRequest(format!(
            "{field} {value:?} must be {min}–{max} characters of 0-9 A-Z a-z _ - | * @"
        )));
    }
    Ok(())
}

/// Percent-encodes one path segment (ids go into paths; the signature covers the encoded form).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_numbers_are_checked() {
        check_no("out_trade_no", "ORDER_2024-01|*@x", 6, 32).unwrap();
        assert!(check_no("out_trade_no", "abc", 6, 32).is_err());
        assert!(check_no("out_trade_no", "order 1234", 6, 32).is_err());
        assert!(check_no("out_trade_no", &"a".repeat(33), 6, 32).is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("A-1_b*@"), "A-1_b*@");
        assert_eq!(seg("a|b/c"), "a%7Cb%2Fc");
    }
}
