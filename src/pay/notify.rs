//! Payment and refund notifications: one entry point that verifies and decrypts, a dedupe store so
//! WeChat's redeliveries (same `id`) are processed once, an axum handler, and a test helper that
//! signs fixtures the way WeChat Pay does.
//!
//! [`PayClient::verify_and_decrypt`] rejects by default, in this order: the signature type, a
//! `WECHATPAY/SIGNTEST/` probe, a timestamp outside 300 s, an unknown `Wechatpay-Serial`, a bad
//! RSA signature over the raw body, an unsupported resource algorithm, a failed AES-GCM tag; then it
//! parses `TRANSACTION.SUCCESS` into [`Transaction`] (or [`CombineTransaction`]), `REFUND.*`
//! into [`RefundNotice`] and `MCHTRANSFER.BILL.FINISHED` into [`TransferBillNotice`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> wxshop::Result<()> {
//! use wxshop::crypto::pay::{ApiV3Key, MerchantKey};
//! use wxshop::pay::{NotificationResource, PayClient, PayConfig};
//! use wxshop::pay::notify::sign_notification;
//! let wechat = MerchantKey::generate()?; // WeChat Pay's key, in a test
//! let apiv3 = "0123456789abcdef0123456789abcdef";
//! let config = PayConfig::new("1900009191", "5157F09EFDC096DE15EBE81A47057A7232F1B8E1", MerchantKey::generate()?, apiv3)?
//!     .with_public_key("PUB_KEY_ID_01", wechat.public_key())?;
//! let pay = PayClient::builder(config).build()?;
//! let resource = serde_json::json!({"mchid": "1900009191", "out_trade_no": "ORDER_1001",
//!     "transaction_id": "4200001", "trade_state": "SUCCESS", "amount": {"total": 100}});
//! let n = sign_notification(&wechat, "PUB_KEY_ID_01", &ApiV3Key::new(apiv3)?, "TRANSACTION.SUCCESS",
//!     &serde_json::to_vec(&resource).unwrap(), chrono::Utc::now().timestamp())?;
//! let got = pay.verify_and_decrypt(&n.headers, &n.body).await?;
//! assert!(matches!(got.resource, NotificationResource::Transaction(ref t) if t.is_paid()));
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::client::PayClient;
use super::combine::CombineTransaction;
use super::keys::{SignatureHeaders, Verifier};
use super::refunds::RefundStatus;
use super::transactions::Transaction;
use super::transfers::TransferBillNotice;
use crate::crypto::pay::{self as paycrypto, AEAD_AES_256_GCM, ApiV3Key, MerchantKey, SCHEME};
use crate::dedupe::{DedupeStore, MemoryDedupe};
use crate::error::{CryptoKind, Error, Result};

/// The resource of a refund notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNotice {
    /// The merchant (direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mchid: Option<String>,
    /// The service provider (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp_mchid: Option<String>,
    /// The sub-merchant (partner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_mchid: Option<String>,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// WeChat's order number.
    pub transaction_id: String,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// WeChat's refund id.
    pub refund_id: String,
    /// Status.
    pub refund_status: RefundStatus,
    /// When it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    /// Where the money went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_received_account: Option<String>,
    /// Amounts.
    pub amount: RefundNoticeAmount,
}

/// The amount of a refund notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RefundNoticeAmount {
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
}

/// The decrypted, typed resource of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// One value per notification, moved once: boxing the big variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum NotificationResource {
    /// `TRANSACTION.SUCCESS` of a JSAPI or partner payment.
    Transaction(Transaction),
    /// `TRANSACTION.SUCCESS` of a combined payment.
    CombineTransaction(CombineTransaction),
    /// `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    Refund(RefundNotice),
    /// `MCHTRANSFER.BILL.FINISHED`: a merchant transfer bill reached `SUCCESS`, `FAIL` or `CANCELLED`.
    TransferBill(TransferBillNotice),
    /// Any other event, as JSON.
    Other(serde_json::Value),
}

/// A verified, decrypted notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notification id — the same on every redelivery.
    pub id: String,
    /// When WeChat created it.
    pub create_time: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, …
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: String,
    /// WeChat's summary.
    pub summary: String,
    /// The typed resource.
    pub resource: NotificationResource,
    /// The decrypted resource exactly as WeChat encrypted it.
    pub plaintext: Vec<u8>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    create_time: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow, default)]
    resource_type: Cow<'a, str>,
    #[serde(borrow, default)]
    summary: Cow<'a, str>,
    #[serde(borrow)]
    resource: ResourceRef<'a>,
}

#[derive(Deserialize)]
struct ResourceRef<'a> {
    #[serde(borrow)]
    algorithm: Cow<'a, str>,
    #[serde(borrow)]
    ciphertext: Cow<'a, str>,
    #[serde(borrow, default)]
    associated_data: Cow<'a, str>,
    #[serde(borrow)]
    nonce: Cow<'a, str>,
}

/// Decrypts an already verified notification body and parses its resource.
pub fn decrypt_notification(apiv3_key: &ApiV3Key, body: &[u8]) -> Result<Notification> {
    let env: Envelope<'_> = crate::json::from_bytes(body).map_err(|e| Error::decode("notification", e))?;
    if env.resource.algorithm != AEAD_AES_256_GCM {
        return Err(Error::crypto(
            CryptoKind::Key,
            format!("unsupported resource algorithm {:?} (expected AEAD_AES_256_GCM)", env.resource.algorithm),
        ));
    }
    let plaintext = apiv3_key.decrypt(&env.resource.nonce, &env.resource.associated_data, &env.resource.ciphertext)?;
    let resource = parse_resource(&env.event_type, &plaintext)?;
    Ok(Notification {
        id: env.id.into_owned(),
        create_time: env.create_time.into_owned(),
        event_type: env.event_type.into_owned(),
        resource_type: env.resource_type.into_owned(),
        summary: env.summary.into_owned(),
        resource,
        plaintext,
    })
}

/// Decrypts an already verified notification body's resource without parsing it (the exact
/// plaintext, whatever its shape).
pub fn decrypt_resource(apiv3_key: &ApiV3Key, body: &[u8]) -> Result<Vec<u8>> {
    let env: Envelope<'_> = crate::json::from_bytes(body).map_err(|e| Error::decode("notification", e))?;
    if env.resource.algorithm != AEAD_AES_256_GCM {
        return Err(Error::crypto(
            CryptoKind::Key,
            format!("unsupported resource algorithm {:?} (expected AEAD_AES_256_GCM)", env.resource.algorithm),
        ));
    }
    apiv3_key.decrypt(&env.resource.nonce, &env.resource.associated_data, &env.resource.ciphertext)
}

fn parse_resource(event_type: &str, plaintext: &[u8]) -> Result<NotificationResource> {
    let bad = |e: serde_json::Error| Error::crypto(CryptoKind::Plaintext, format!("{event_type} resource: {e}"));
    if event_type.starts_with("TRANSACTION.") {
        // A combined payment has no top-level out_trade_no, so the common case parses once.
        return match crate::json::from_bytes(plaintext) {
            Ok(t) => Ok(NotificationResource::Transaction(t)),
            Err(e) => {
                serde_json::from_slice(plaintext).map(NotificationResource::CombineTransaction).map_err(|_| bad(e))
            }
        };
    }
    if event_type.starts_with("REFUND.") {
        return crate::json::from_bytes(plaintext).map(NotificationResource::Refund).map_err(bad);
    }
    if event_type.starts_with("MCHTRANSFER.") {
        return crate::json::from_bytes(plaintext).map(NotificationResource::TransferBill).map_err(bad);
    }
    serde_json::from_slice(plaintext).map(NotificationResource::Other).map_err(bad)
}

/// Verifies with the keys held by `verifier` (no certificate download), then decrypts and parses.
pub fn verify_and_decrypt_with(
    verifier: &Verifier,
    apiv3_key: &ApiV3Key,
    headers: &SignatureHeaders<'_>,
    raw_body: &[u8],
    now: i64,
) -> Result<Notification> {
    verifier.verify(headers, raw_body, now)?;
    decrypt_notification(apiv3_key, raw_body)
}

impl PayClient {
    /// Verifies a notification (headers and raw body exactly as received), decrypts its
    /// resource with the APIv3 key, and parses it. An unknown certificate serial triggers one
    /// rate-limited certificate refresh (never in public-key-only mode).
    pub async fn verify_and_decrypt(&self, headers: &HeaderMap, raw_body: &[u8]) -> Result<Notification> {
        self.verify_signed(headers, raw_body).await?;
        decrypt_notification(self.config().apiv3_key(), raw_body)
    }
}

// ---------------------------------------------------------------------------------------------
// Deduplication
// ---------------------------------------------------------------------------------------------

pub use crate::dedupe::Claim;

/// How long a processed notification id is remembered by default: 48 h, longer than WeChat Pay's
/// redelivery schedule (24 h 4 min).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(48 * 3600);

// ---------------------------------------------------------------------------------------------
// The service (framework-neutral) and its axum handler
// ---------------------------------------------------------------------------------------------

/// The merchant's code that acts on a notification.
pub type Callback = Arc<dyn Fn(Notification) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// What to answer WeChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 204 on success (first delivery or duplicate); 4xx/5xx on failure, so WeChat retries.
    pub status: u16,
    /// `{code, message}` on failure.
    pub body: Option<serde_json::Value>,
    /// The callback ran for this delivery.
    pub processed: bool,
    /// The notification id, when the body could be verified.
    pub id: Option<String>,
}

impl Outcome {
    fn fail(status: u16, message: String, id: Option<String>) -> Self {
        Outcome { status, body: Some(serde_json::json!({ "code": "FAIL", "message": message })), processed: false, id }
    }
}

/// Verifies, decrypts, dedupes and dispatches notifications.
#[derive(Clone)]
pub struct NotifyService {
    client: PayClient,
    store: Arc<dyn DedupeStore>,
    retention: Duration,
    callback: Callback,
}

impl std::fmt::Debug for NotifyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyService").field("client", &self.client).field("retention", &self.retention).finish()
    }
}

impl NotifyService {
    /// A service calling `callback` once per notification id, with an in-memory store remembering
    /// ids for [`DEFAULT_RETENTION`].
    pub fn new<F, Fut>(client: PayClient, callback: F) -> Self
    where
        F: Fn(Notification) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        NotifyService {
            client,
            store: Arc::new(MemoryDedupe::new()),
            retention: DEFAULT_RETENTION,
            callback: Arc::new(move |n| Box::pin(callback(n))),
        }
    }

    /// Uses another dedupe store (the marketplace's `market.ops().claims`, Redis…).
    pub fn with_store(mut self, store: Arc<dyn DedupeStore>) -> Self {
        self.store = store;
        self
    }

    /// How long a notification id is remembered (claimed, then processed); keep it longer than
    /// WeChat Pay's redelivery schedule.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The client.
    pub fn client(&self) -> &PayClient {
        &self.client
    }

    /// Handles one delivery (headers and raw body exactly as received).
    pub async fn process(&self, headers: &HeaderMap, raw_body: &[u8]) -> Outcome {
        let n = match self.client.verify_and_decrypt(headers, raw_body).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "WeChat Pay notification rejected");
                let status = match e {
                    Error::Transport { .. } | Error::HttpStatus { .. } | Error::PayApi { .. } | Error::Store(_) => 500,
                    Error::Signature(_) | Error::UnknownSerial { .. } | Error::StaleTimestamp { .. } => 401,
                    _ => 400,
                };
                return Outcome::fail(status, e.to_string(), None);
            }
        };
        // WeChat Pay drops the connection after 5 s and the server then drops this future: the
        // claimed part runs in its own task so a slow callback finishes (and completes or
        // releases its claim) instead of being cut mid-way and leaving the id claimed forever.
        let svc = self.clone();
        let id = n.id.clone();
        match tokio::spawn(async move { svc.dispatch(n).await }).await {
            Ok(out) => out,
            Err(e) => Outcome::fail(500, format!("notification task failed: {e}"), Some(id)),
        }
    }

    /// Claims, calls back, and completes or releases (a panicking callback releases too).
    async fn dispatch(&self, n: Notification) -> Outcome {
        use futures_util::FutureExt;
        let id = n.id.clone();
        match self.store.claim(&id, self.retention).await {
            Ok(Claim::Done) => return Outcome { status: 204, body: None, processed: false, id: Some(id) },
            Ok(Claim::InProgress) => {
                return Outcome::fail(503, "this notification is being processed".into(), Some(id));
            }
            Ok(Claim::Fresh) => {}
            Err(e) => return Outcome::fail(500, format!("dedupe store: {e}"), Some(id)),
        }
        let result = match std::panic::AssertUnwindSafe((self.callback)(n)).catch_unwind().await {
            Ok(r) => r,
            Err(_) => Err(Error::Store("the notification callback panicked".into())),
        };
        match result {
            Ok(()) => match self.store.complete(&id).await {
                Ok(()) => Outcome { status: 204, body: None, processed: true, id: Some(id) },
                Err(e) => Outcome::fail(500, format!("dedupe store: {e}"), Some(id)),
            },
            Err(e) => {
                if let Err(e2) = self.store.release(&id).await {
                    tracing::error!(error = %e2, "could not release a notification claim");
                }
                tracing::warn!(error = %e, id = %id, "notification callback failed; WeChat will redeliver");
                Outcome::fail(500, e.to_string(), Some(id))
            }
        }
    }

    /// An axum router answering `POST path`.
    #[cfg(feature = "axum")]
    pub fn router(self, path: &str) -> axum::Router {
        axum::Router::new().route(path, axum::routing::post(handle)).with_state(self)
    }
}

/// The axum handler: mount with `.route("/wx/pay/notify", post(handle)).with_state(service)`.
#[cfg(feature = "axum")]
pub async fn handle(
    axum::extract::State(svc): axum::extract::State<NotifyService>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let out = svc.process(&headers, &body).await;
    let status = axum::http::StatusCode::from_u16(out.status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    match out.body {
        Some(b) => (status, axum::Json(b)).into_response(),
        None => status.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Signing notifications (the emulator, `wxshop trigger`, and tests)
// ---------------------------------------------------------------------------------------------

/// A notification as WeChat Pay sends it: headers and body.
#[derive(Debug, Clone)]
pub struct SignedNotification {
    /// The notification id.
    pub id: String,
    /// `Wechatpay-Serial`, `-Signature`, `-Timestamp`, `-Nonce`, `-Signature-Type`, `Content-Type`.
    pub headers: HeaderMap,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The summary WeChat writes for an event type.
pub fn summary_of(event_type: &str) -> &'static str {
    match event_type {
        "TRANSACTION.SUCCESS" => "支付成功",
        "REFUND.SUCCESS" => "退款成功",
        "REFUND.ABNORMAL" => "退款异常",
        "REFUND.CLOSED" => "退款关闭",
        "MCHTRANSFER.BILL.FINISHED" => "商家转账单据终态通知",
        _ => "通知",
    }
}

/// The resource's `original_type` (and associated data) WeChat uses for an event type:
/// `refund`, `mch_payment` (merchant transfers) or `transaction`.
pub fn original_type_of(event_type: &str) -> &'static str {
    if event_type.starts_with("REFUND.") {
        "refund"
    } else if event_type.starts_with("MCHTRANSFER.") {
        "mch_payment"
    } else {
        "transaction"
    }
}

/// Builds a notification body with a fresh id, encrypted with `apiv3_key` and signed with
/// `platform_key` as `serial` at `timestamp`.
pub fn sign_notification(
    platform_key: &MerchantKey,
    serial: &str,
    apiv3_key: &ApiV3Key,
    event_type: &str,
    resource_plaintext: &[u8],
    timestamp: i64,
) -> Result<SignedNotification> {
    let id = format!("EV-{}", uuid::Uuid::new_v4().simple());
    sign_notification_with_id(&id, platform_key, serial, apiv3_key, event_type, resource_plaintext, timestamp)
}

/// [`sign_notification`] with a given id (redeliveries keep their id).
pub fn sign_notification_with_id(
    id: &str,
    platform_key: &MerchantKey,
    serial: &str,
    apiv3_key: &ApiV3Key,
    event_type: &str,
    resource_plaintext: &[u8],
    timestamp: i64,
) -> Result<SignedNotification> {
    let original_type = original_type_of(event_type);
    let resource =
        super::EncryptedResource::encrypt(apiv3_key, original_type, Some(original_type), resource_plaintext)?;
    let create_time = chrono::DateTime::<chrono::Utc>::from_timestamp(timestamp, 0)
        .map(super::transactions::wechat_time)
        .unwrap_or_default();
    let body = serde_json::to_vec(&serde_json::json!({
        "id": id,
        "create_time": create_time,
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary_of(event_type),
        "resource": resource,
    }))
    .map_err(|e| Error::decode("notification", e))?;
    let headers = sign_body(platform_key, serial, &body, timestamp)?;
    Ok(SignedNotification { id: id.to_string(), headers, body })
}

/// The `Wechatpay-*` headers WeChat Pay puts on a response or notification with `body`.
pub fn sign_body(platform_key: &MerchantKey, serial: &str, body: &[u8], timestamp: i64) -> Result<HeaderMap> {
    let ts = timestamp.to_string();
    let nonce = paycrypto::nonce32();
    let signature = platform_key.sign(&paycrypto::response_message(&ts, &nonce, body))?;
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, v: &str| -> Result<()> {
        let v = HeaderValue::from_str(v).map_err(|_| Error::InvalidRequest(format!("bad {name} header value")))?;
        h.insert(HeaderName::from_static(name), v);
        Ok(())
    };
    put("wechatpay-serial", serial)?;
    put("wechatpay-signature", &signature)?;
    put("wechatpay-timestamp", &ts)?;
    put("wechatpay-nonce", &nonce)?;
    put("wechatpay-signature-type", SCHEME)?;
    put("content-type", "application/json")?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_resource_parses() {
        let p = r#"{"mchid":"1900000100","transaction_id":"4200000001","out_trade_no":"ORDER_1001","refund_id":"50000000382019052709732678859","out_refund_no":"R1","refund_status":"SUCCESS","success_time":"2018-06-08T10:34:56+08:00","user_received_account":"招商银行信用卡0403","amount":{"total":999,"refund":1,"payer_total":999,"payer_refund":1}}"#.as_bytes();
        match parse_resource("REFUND.SUCCESS", p).unwrap() {
            NotificationResource::Refund(r) => {
                assert_eq!(r.refund_status, RefundStatus::Success);
                assert_eq!(r.amount.refund, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_resource("REFUND.SUCCESS", b"{}"),
            Err(Error::Crypto { kind: CryptoKind::Plaintext, .. })
        ));
    }

    #[test]
    fn transfer_bill_resource_parses() {
        let p = r#"{"out_bill_no":"plfk2020042013","transfer_bill_no":"1330000071100999991182020050700019480001","state":"SUCCESS","mch_id":"1900001109","transfer_amount":2000,"openid":"o-MYE42l80oelYMDE34nYD456Xoy","create_time":"2015-05-20T13:29:35.120+08:00","update_time":"2015-05-20T13:29:35.120+08:00"}"#.as_bytes();
        match parse_resource("MCHTRANSFER.BILL.FINISHED", p).unwrap() {
            NotificationResource::TransferBill(t) => {
                assert_eq!(t.state, super::super::transfers::TransferState::Success);
                assert_eq!(t.transfer_amount, 2000);
                assert_eq!(t.fail_reason, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_resource("MCHTRANSFER.BILL.FINISHED", br#"{"out_bill_no":1}"#),
            Err(Error::Crypto { kind: CryptoKind::Plaintext, .. })
        ));
        assert_eq!(original_type_of("MCHTRANSFER.BILL.FINISHED"), "mch_payment");
    }
}
