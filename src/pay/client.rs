//! [`PayClient`]: signs every request, sends it through the crate's one executor
//! ([`crate::http::Http::execute`]), and verifies every response before decoding it.
//!
//! - Requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,signature=…,
//!   timestamp=…,serial_no=…` over `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`, with a fresh
//!   timestamp and nonce on every attempt.
//! - Responses are verified over the raw bytes with the key named by `Wechatpay-Serial` (see
//!   [`crate::pay::keys`]); an unknown certificate serial triggers one rate-limited certificate
//!   refresh, never in public-key-only mode.
//! - Errors `{code, message, detail}` become [`Error::PayApi`]. Only calls WeChat defines as
//!   idempotent (same `out_trade_no`, `out_refund_no`, `out_order_no`…) are retried.
//! - Requests with encrypted fields send `Wechatpay-Serial` naming the key they were encrypted with.
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! let params = pay.request_payment("wx8888888888888888", "wx201410272009395522657a690389285100")?;
//! assert_eq!(params.sign_type, "RSA");
//! assert_eq!(params.package, "prepay_id=wx201410272009395522657a690389285100");
//! # Ok(()) }
//! ```

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keys::{RefreshPolicy, SignatureHeaders, Verifier, verify_with_key};
use super::{EncryptedResource, PayConfig};
use crate::config::Endpoints;
use crate::crypto::pay::{self as paycrypto, MerchantKey, PayPublicKey, PlatformCertificate, normalize_serial};
use crate::error::{CryptoKind, Error, Result};
use crate::http::{Body, Host, Http, HttpConfig, Request, RequestSigner, Response, pay_error};

/// A clock: the current time as the client sees it (tests align it with the emulator's clock).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The header naming the key sensitive fields were encrypted with.
pub const WECHATPAY_SERIAL: HeaderName = HeaderName::from_static("wechatpay-serial");

/// Signs requests with the merchant key: the [`RequestSigner`] a [`PayClient`] hands the executor
/// (a fresh timestamp and nonce on every attempt).
#[derive(Clone)]
pub struct MerchantSigner {
    mchid: String,
    serial: String,
    key: Arc<MerchantKey>,
    clock: Clock,
}

impl std::fmt::Debug for MerchantSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerchantSigner").field("mchid", &self.mchid).field("serial", &self.serial).finish()
    }
}

impl MerchantSigner {
    /// A signer for `config` using the system clock.
    pub fn new(config: &PayConfig) -> Self {
        MerchantSigner {
            mchid: config.mchid().to_string(),
            serial: config.merchant_serial().to_string(),
            key: config.merchant_key.clone(),
            clock: Arc::new(Utc::now),
        }
    }
}

impl RequestSigner for MerchantSigner {
    fn sign(&self, method: &Method, path_and_query: &str, body: &[u8]) -> Result<Vec<(HeaderName, HeaderValue)>> {
        let ts = (self.clock)().timestamp().to_string();
        let nonce = paycrypto::nonce32();
        let auth = paycrypto::sign_request(
            &self.key,
            &self.mchid,
            &self.serial,
            method.as_str(),
            path_and_query,
            &ts,
            &nonce,
            body,
        )?;
        let auth = HeaderValue::from_str(&auth)
            .map_err(|_| Error::InvalidRequest("the Authorization header has invalid characters".into()))?;
        Ok(vec![(AUTHORIZATION, auth), (ACCEPT, HeaderValue::from_static("application/json"))])
    }
}

/// The parameters of `wx.requestPayment` (serialized with WeChat's camelCase names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestPayment {
    /// The appid the prepay order was made for (signed, not passed to wx.requestPayment).
    pub app_id: String,
    /// Unix seconds, as a string.
    pub time_stamp: String,
    /// A random string.
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// Always `RSA`.
    pub sign_type: String,
    /// base64 RSA-SHA256 over `appId\ntimeStamp\nnonceStr\npackage\n`.
    pub pay_sign: String,
}

/// Encrypts sensitive fields for one request, and names the key in `Wechatpay-Serial`.
#[derive(Debug, Clone)]
pub struct Encryptor {
    serial: String,
    key: PayPublicKey,
}

impl Encryptor {
    /// The serial or public key id to send as `Wechatpay-Serial`.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// RSA-OAEP (SHA-1) encryption, base64.
    pub fn encrypt(&self, plaintext: &str) -> Result<String> {
        self.key.encrypt_oaep(plaintext)
    }

    /// Adds the `Wechatpay-Serial` header to a request.
    pub fn tag(&self, req: Request) -> Result<Request> {
        let v = HeaderValue::from_str(&self.serial)
            .map_err(|_| Error::InvalidRequest("the Wechatpay-Serial value has invalid characters".into()))?;
        Ok(req.header(WECHATPAY_SERIAL, v))
    }
}

/// Builds a [`PayClient`].
pub struct PayClientBuilder {
    config: PayConfig,
    endpoints: Endpoints,
    http_config: HttpConfig,
    http: Option<Http>,
    policy: RefreshPolicy,
    clock: Option<Clock>,
}

impl std::fmt::Debug for PayClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayClientBuilder").field("config", &self.config).field("endpoints", &self.endpoints).finish()
    }
}

impl PayClientBuilder {
    transport_setters!();

    /// How platform certificates are refreshed.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The clock for request timestamps and the 300-second window (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the client.
    pub fn build(mut self) -> Result<PayClient> {
        let http = self.transport()?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(Utc::now));
        let verifier = Verifier::with_mode(self.config.platform_certificates(), self.policy);
        if let Some((id, key)) = self.config.public_key() {
            verifier.add_public_key(id, key.clone());
        }
        verifier.add_certificates(self.config.static_certificates().iter().cloned(), clock());
        let signer = MerchantSigner {
            mchid: self.config.mchid().to_string(),
            serial: self.config.merchant_serial().to_string(),
            key: self.config.merchant_key.clone(),
            clock: clock.clone(),
        };
        Ok(PayClient { inner: Arc::new(Inner { config: self.config, http, verifier, signer, clock }) })
    }
}

/// The WeChat Pay v3 client of one merchant (or one service provider). Cheap to clone.
#[derive(Clone)]
pub struct PayClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: PayConfig,
    http: Http,
    verifier: Verifier,
    signer: MerchantSigner,
    clock: Clock,
}

impl std::fmt::Debug for PayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayClient").field("config", &self.inner.config).field("http", &self.inner.http).finish()
    }
}

#[derive(Deserialize)]
struct CertificateList {
    data: Vec<CertificateEntry>,
}

#[derive(Deserialize)]
struct CertificateEntry {
    serial_no: String,
    encrypt_certificate: EncryptedResource,
}

impl PayClient {
    /// Starts a builder.
    pub fn builder(config: PayConfig) -> PayClientBuilder {
        PayClientBuilder {
            config,
            endpoints: Endpoints::default(),
            http_config: HttpConfig::default(),
            http: None,
            policy: RefreshPolicy::default(),
            clock: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PayConfig {
        &self.inner.config
    }

    /// The merchant number.
    pub fn mchid(&self) -> &str {
        self.inner.config.mchid()
    }

    /// The verifier (platform certificates and public keys).
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The executor.
    pub fn http(&self) -> &Http {
        &self.inner.http
    }

    /// The client's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.inner.clock)()
    }

    /// Sends a signed request and returns the verified response (2xx), or the typed error.
    pub async fn send(&self, req: &Request) -> Result<Response> {
        let resp = self.inner.http.execute(req, Some(&self.inner.signer)).await?;
        if resp.status >= 400 && !resp.headers.contains_key("wechatpay-signature") {
            return Err(pay_error(req.endpoint(), &resp));
        }
        self.verify_signed(&resp.headers, &resp.body).await?;
        if resp.status >= 400 {
            return Err(pay_error(req.endpoint(), &resp));
        }
        Ok(resp)
    }

    /// Sends, verifies, and decodes a JSON answer.
    pub async fn send_json<T: DeserializeOwned>(&self, req: &Request) -> Result<T> {
        let resp = self.send(req).await?;
        serde_json::from_slice(&resp.body).map_err(|e| Error::decode(req.endpoint(), e))
    }

    /// Sends and verifies a call that answers `204 No Content`.
    pub async fn send_no_content(&self, req: &Request) -> Result<()> {
        self.send(req).await.map(|_| ())
    }

    /// Sends a signed request whose answer WeChat does not sign (bill file downloads).
    pub(crate) async fn send_unsigned_response(&self, req: &Request) -> Result<Response> {
        let resp = self.inner.http.execute(req, Some(&self.inner.signer)).await?;
        if resp.status >= 400 {
            return Err(pay_error(req.endpoint(), &resp));
        }
        Ok(resp)
    }

    /// Verifies `Wechatpay-*` headers against raw body bytes: refreshes certificates when due,
    /// and once (rate-limited) on an unknown certificate serial.
    pub async fn verify_signed(&self, headers: &HeaderMap, body: &[u8]) -> Result<()> {
        let h = SignatureHeaders::from_headers(headers)?;
        self.verify_headers(&h, body).await
    }

    /// [`PayClient::verify_signed`] with the headers already read.
    pub async fn verify_headers(&self, h: &SignatureHeaders<'_>, body: &[u8]) -> Result<()> {
        let verifier = &self.inner.verifier;
        let now = self.now();
        if verifier.certificates_enabled()
            && verifier.refresh_due(now).await
            && let Err(e) = self.refresh_certificates().await
        {
            tracing::warn!(error = %e, "platform certificate refresh failed");
        }
        match verifier.verify(h, body, now.timestamp()) {
            Err(Error::UnknownSerial { .. }) if verifier.may_download_for(h.serial) => {
                self.refresh_certificates().await?;
                verifier.verify(h, body, now.timestamp())
            }
            other => other,
        }
    }

    /// Downloads platform certificates unless a download ran within the policy's minimum
    /// interval. Returns whether it downloaded. Does nothing in public-key-only mode.
    pub async fn refresh_certificates(&self) -> Result<bool> {
        let now = self.now();
        self.inner.verifier.refresh_with(now, || self.download_certificates()).await
    }

    /// `GET /v3/certificates`: downloads, decrypts and parses the platform certificates, and
    /// verifies the answer with them (it is signed by one of them). Does not install them.
    pub async fn download_certificates(&self) -> Result<Vec<PlatformCertificate>> {
        let req = Request::new(Method::GET, Host::Pay, "/v3/certificates").idempotent(true);
        let resp = self.inner.http.execute(&req, Some(&self.inner.signer)).await?;
        if resp.status == 404 {
            let e = pay_error("/v3/certificates", &resp);
            return Err(Error::Config(format!(
                "/v3/certificates answered 404 ({e}): this merchant has no platform certificates — configure the \
                 WeChat Pay public key (PayConfig::with_public_key) instead"
            )));
        }
        if resp.status >= 400 {
            return Err(pay_error("/v3/certificates", &resp));
        }
        let list: CertificateList =
            serde_json::from_slice(&resp.body).map_err(|e| Error::decode("/v3/certificates", e))?;
        let cfg = &self.inner.config;
        let merchant_public = cfg.merchant_key().public_key();
        let mut certs = Vec::with_capacity(list.data.len());
        for entry in list.data {
            let pem = entry.encrypt_certificate.decrypt(cfg.apiv3_key())?;
            let pem = String::from_utf8(pem)
                .map_err(|_| Error::crypto(CryptoKind::Plaintext, "a decrypted certificate is not PEM text"))?;
            let cert = PlatformCertificate::from_pem(&pem)?;
            if normalize_serial(&entry.serial_no) != cert.serial_no() {
                return Err(Error::crypto(
                    CryptoKind::Key,
                    format!("certificate serial {} does not match its entry {}", cert.serial_no(), entry.serial_no),
                ));
            }
            cert.check_not_merchant(cfg.merchant_serial(), Some(&merchant_public))?;
            certs.push(cert);
        }
        let h = SignatureHeaders::from_headers(&resp.headers)?;
        let now = self.now().timestamp();
        match certs.iter().find(|c| c.serial_no() == normalize_serial(h.serial)) {
            Some(c) => verify_with_key(c.public_key(), &h, &resp.body, now)?,
            None => self.inner.verifier.verify(&h, &resp.body, now)?,
        }
        Ok(certs)
    }

    /// The key to encrypt sensitive fields with (downloading certificates first if needed).
    pub async fn encryptor(&self) -> Result<Encryptor> {
        let verifier = &self.inner.verifier;
        if verifier.encryption_key().is_none() && verifier.certificates_enabled() {
            self.refresh_certificates().await?;
        }
        let (serial, key) = verifier.encryption_key().ok_or_else(|| {
            Error::Config("no WeChat Pay public key or platform certificate to encrypt sensitive fields with".into())
        })?;
        Ok(Encryptor { serial, key })
    }

    /// Decrypts a sensitive field WeChat encrypted with the merchant's public key.
    pub fn decrypt_sensitive(&self, ciphertext_b64: &str) -> Result<Zeroizing<String>> {
        self.inner.config.merchant_key().decrypt_oaep(ciphertext_b64)
    }

    /// The `wx.requestPayment` parameters for a prepay id (paySign with the merchant key).
    pub fn request_payment(&self, appid: &str, prepay_id: &str) -> Result<RequestPayment> {
        if appid.is_empty() || prepay_id.is_empty() {
            return Err(Error::InvalidRequest("request_payment needs an appid and a prepay_id".into()));
        }
        let time_stamp = self.now().timestamp().to_string();
        let nonce_str = paycrypto::nonce32();
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = self.inner.config.merchant_key().sign(&paycrypto::pay_sign_message(
            appid,
            &time_stamp,
            &nonce_str,
            &package,
        ))?;
        Ok(RequestPayment {
            app_id: appid.to_string(),
            time_stamp,
            nonce_str,
            package,
            sign_type: "RSA".into(),
            pay_sign,
        })
    }
}

/// A POST with a JSON body on the Pay host, idempotent by WeChat's rule for keyed calls.
pub(crate) fn post<T: Serialize + ?Sized>(path: impl Into<String>, body: &T) -> Result<Request> {
    Ok(Request::new(Method::POST, Host::Pay, path).body(Body::json(body)?).idempotent(true))
}

/// A GET on the Pay host.
pub(crate) fn get(path: impl Into<String>) -> Request {
    Request::new(Method::GET, Host::Pay, path).idempotent(true)
}
