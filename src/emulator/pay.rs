//! WeChat Pay v3 in the emulator, and its cashier page at `/`.
//!
//! It behaves like WeChat Pay: every `/v3/…` call must carry a valid merchant signature (the
//! emulator verifies it with the merchant public key it was given — `401 SIGN_ERROR` otherwise, and
//! for a timestamp more than 5 minutes off), and every answer is signed with an emulator platform
//! key: a platform certificate in `certificate` mode, the WeChat Pay public key
//! ([`PUBLIC_KEY_ID`]) in `public_key` mode (the default, like new merchants — `/v3/certificates`
//! then answers 404), and either one, alternating, in `migration` mode. Payments and refunds are
//! notified to `notify_url`, signed the same way, and redelivered on failure with the same id on
//! WeChat's schedule (15 s, 15 s, 30 s, 3 m, 10 m, 20 m, 30 m, 30 m, 30 m, 60 m, 3 h, 3 h, 3 h, 6 h,
//! 6 h) divided by a time factor; an answer slower than [`NOTIFY_TIMEOUT`] (adjustable) is a failure.
//!
//! Merchant transfers (`/v3/fund-app/mch-transfer/transfer-bills`) are checked as WeChat checks them
//! (`out_bill_no` of 1–32 `[0-9A-Za-z]`, a remark of at most 32 characters, at least 10 fen, the
//! scene's reports — `活动名称` and `奖励说明` for scene `1000` —, an openid of the appid, the payee's
//! name OAEP-encrypted with the key named by `Wechatpay-Serial` and required from ¥2,000; the same
//! `out_bill_no` with other parameters is `INVALID_REQUEST`). A new bill waits for the user
//! (`WAIT_USER_CONFIRM`, with a `package_info`) until the control API confirms or declines it, or the
//! merchant cancels it. The emulator does not model merchant balances (no `NOT_ENOUGH`).
//!
//! The default merchant ([`DEFAULT_MCHID`]) is registered with a fixed test key
//! ([`DEFAULT_MERCHANT_KEY_PEM`] — public, never use it for real money), bound to the default app.
//! [`EmulatorHandle::pay_client`] returns a client configured for it.
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use wxshop::emulator::Emulator;
//! use wxshop::pay::transactions::JsapiPrepay;
//! let emu = Emulator::start_default().await?;
//! let pay = emu.pay_client()?;
//! let openid = emu.openid_of(wxshop::emulator::DEFAULT_APPID, "alice");
//! pay.transactions()
//!     .jsapi(JsapiPrepay::new(wxshop::emulator::DEFAULT_APPID, "Tea", "ORDER_1001", "http://127.0.0.1:8080/wx/pay/notify", 990, openid))
//!     .await?;
//! emu.cashier_pay(wxshop::emulator::pay::DEFAULT_MCHID, "ORDER_1001").await?; // what the user's Pay tap does
//! assert!(pay.transactions().query_by_out_trade_no("ORDER_1001").await?.is_paid());
//! # Ok(()) }
//! ```
//!
//! # Control API
//!
//! | call | body | effect |
//! |---|---|---|
//! | `GET /` | — | the cashier: prepay orders with Pay / Fail / Refund, and the log (`?autopay=OUT_TRADE_NO` taps Pay once loaded) |
//! | `POST /__emulator/pay/merchants` | `{"mchid","serial_no","public_key" (PEM),"apiv3_key","appids"?}` | registers a merchant and the public key its signatures verify with |
//! | `POST /__emulator/pay/mode` | `{"mode":"certificate"\|"public_key"\|"migration"}` | which key signs answers and notifications |
//! | `POST /__emulator/pay/rotate` | — | issues a new platform certificate that signs from now on → `{"serial_no"}` |
//! | `GET /__emulator/pay/keys` | — | `{"public_key_id","public_key" (PEM),"certificates":[{"serial_no","pem","not_after"}],"mode"}` |
//! | `POST /__emulator/pay/config` | `{"time_factor"?,"timestamp_skew_secs"?,"signtest_probes"?,"notify_timeout_ms"?}` | compresses the redelivery schedule; skews answer timestamps; signs the next N answers as `WECHATPAY/SIGNTEST/` probes; how long a notification waits for the merchant (5 s) |
//! | `GET /__emulator/pay/orders` | — | every order, newest first |
//! | `POST /__emulator/pay/orders/{mchid}/{out_trade_no}/pay` | — | the user pays (a combined sub-order pays the whole combination) → TRANSACTION.SUCCESS |
//! | `POST /__emulator/pay/orders/{mchid}/{out_trade_no}/fail` | — | the payment fails (`PAYERROR`; WeChat sends no notification) |
//! | `POST /__emulator/pay/orders/{mchid}/{out_trade_no}/refund` | `{"amount"?}` | refunds the rest (or `amount`) → REFUND.SUCCESS |
//! | `POST /__emulator/pay/orders/{mchid}/{out_trade_no}/age` | `{"days"}` | moves the payment `days` into the past (refunds close 365 days after payment) |
//! | `GET /__emulator/pay/transfers` | — | every merchant transfer bill (商家转账), newest first |
//! | `POST /__emulator/pay/transfers/{mchid}/{out_bill_no}/confirm` | — | the user confirms a `WAIT_USER_CONFIRM` bill in `wx.requestMerchantTransfer` → `SUCCESS`, MCHTRANSFER.BILL.FINISHED |
//! | `POST /__emulator/pay/transfers/{mchid}/{out_bill_no}/decline` | `{"fail_reason"?}` | the transfer fails (default `PAYEE_ACCOUNT_ABNORMAL`) → `FAIL`, MCHTRANSFER.BILL.FINISHED |
//! | `GET /__emulator/pay/notifications` | — | every notification: id, event, url, attempts, delivered, last status |
//! | `POST /__emulator/pay/notifications/{id}/redeliver` | — | sends it again now, same id |
//! | `GET /__emulator/pay/log` | — | the last 500 API calls and notifications |

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{EmulatorHandle, EmulatorState, Shared, lock};
use crate::crypto::pay::{
    self as paycrypto, ApiV3Key, MerchantKey, PayPublicKey, PlatformCertificate, normalize_serial,
};
use crate::error::{Error, Result};
use crate::http::{Body, Host, Http, HttpConfig, Request, RetryPolicy};
use crate::pay::notify::{sign_body, sign_notification_with_id};
use crate::pay::transactions::wechat_time;
use crate::pay::{EncryptedResource, PayClient, PayConfig};

/// The default merchant number.
pub const DEFAULT_MCHID: &str = "1230000109";
/// The default merchant's API certificate serial.
pub const DEFAULT_MERCHANT_SERIAL: &str = "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C";
/// The default merchant's APIv3 key.
pub const DEFAULT_APIV3_KEY: &str = "wxshop-emulator-apiv3-key-000001";
/// The emulator's WeChat Pay public key id.
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0112300001092025000000000001";
/// The default merchant's private key. A published test key: never use it for real money.
pub const DEFAULT_MERCHANT_KEY_PEM: &str = include_str!("pay_keys/merchant_key.pem");
/// WeChat Pay refunds a payment only within this many days of its success time.
const REFUND_DAYS: i64 = 365;
/// Funds frozen for profit sharing are unfrozen to the payee this many days after payment.
const SHARING_DAYS: i64 = 180;

const PLATFORM_CERT_KEY_PEM: &str = include_str!("pay_keys/platform_cert_key.pem");
const PLATFORM_PUBLIC_KEY_KEY_PEM: &str = include_str!("pay_keys/platform_public_key_key.pem");

/// WeChat Pay's redelivery intervals, in seconds (24 h 4 m in all).
pub const NOTIFY_SCHEDULE_SECS: [u64; 15] =
    [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600];

/// How long WeChat Pay waits for the merchant's answer to a notification.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

const CASHIER_HTML: &str = include_str!("cashier.html");

/// Which key signs answers and notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignMode {
    /// Platform certificates (old merchants).
    Certificate,
    /// The WeChat Pay public key (new merchants; `/v3/certificates` answers 404).
    PublicKey,
    /// Either, alternating (WeChat's migration period).
    Migration,
}

#[derive(Debug, Clone)]
struct Merchant {
    serial: String,
    public_key: PayPublicKey,
    apiv3: ApiV3Key,
    appids: Vec<String>,
}

#[derive(Debug, Clone)]
struct PlatformCert {
    key: Arc<MerchantKey>,
    cert: PlatformCertificate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Direct,
    Partner { sp_appid: String, sp_mchid: String, sub_appid: Option<String> },
    Combine { combine_out_trade_no: String },
}

#[derive(Debug, Clone)]
struct Order {
    owner: String,
    notify_mchid: String,
    kind: Kind,
    appid: String,
    out_trade_no: String,
    description: String,
    attach: Option<String>,
    notify_url: String,
    total: i64,
    payer: Value,
    openid: String,
    prepay_id: String,
    transaction_id: Option<String>,
    state: String,
    created: DateTime<Utc>,
    success_time: Option<DateTime<Utc>>,
    time_expire: Option<DateTime<FixedOffset>>,
    profit_sharing: bool,
    refunded: i64,
    request: Value,
    scene_info: Option<Value>,
}

#[derive(Debug, Clone)]
struct CombineOrder {
    appid: String,
    mchid: String,
    out_trade_no: String,
    notify_url: String,
    openid: String,
    prepay_id: String,
    subs: Vec<(String, String)>,
    request: Value,
    scene_info: Option<Value>,
}

#[derive(Debug, Clone)]
struct RefundRec {
    order: (String, String),
    notify_mchid: String,
    sp_mchid: Option<String>,
    out_refund_no: String,
    refund_id: String,
    transaction_id: String,
    out_trade_no: String,
    total: i64,
    refund: i64,
    status: String,
    created: DateTime<Utc>,
    success_time: Option<DateTime<Utc>>,
    request: Value,
}

#[derive(Debug, Clone)]
struct Sharing {
    transaction_id: String,
    out_order_no: String,
    order_id: String,
    sub_mchid: Option<String>,
    receivers: Vec<(String, String, i64, String)>,
    created: DateTime<Utc>,
    request: Value,
}

#[derive(Debug, Clone)]
struct ReturnRec {
    json: Value,
    amount: i64,
    out_order_no: String,
    return_mchid: String,
}

#[derive(Debug, Clone)]
struct TransferRec {
    mchid: String,
    appid: String,
    out_bill_no: String,
    transfer_bill_no: String,
    openid: String,
    user_name: Option<String>,
    amount: i64,
    remark: String,
    notify_url: Option<String>,
    state: String,
    fail_reason: Option<String>,
    package_info: String,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    /// The request with `user_name` decrypted, to tell a retry from a different bill.
    request: Value,
}

#[derive(Debug, Clone)]
struct Bill {
    mchid: String,
    bytes: Vec<u8>,
    gzip: bool,
    expires: DateTime<Utc>,
}

/// One notification and its delivery attempts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    /// The notification id (the same on every redelivery).
    pub id: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`…
    pub event_type: String,
    /// Where it goes.
    pub url: String,
    /// The order it is about.
    pub out_trade_no: String,
    /// Attempts so far.
    pub attempts: u32,
    /// A 2xx answer was received.
    pub delivered: bool,
    /// The last HTTP status (0 when the connection failed).
    pub last_status: Option<u16>,
    #[serde(skip)]
    mchid: String,
    #[serde(skip)]
    plaintext: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
struct LogEntry {
    at: String,
    kind: &'static str,
    what: String,
    status: u16,
    detail: String,
}

/// The emulator's WeChat Pay state.
#[derive(Debug)]
pub struct PayState {
    merchants: HashMap<String, Merchant>,
    certs: Vec<PlatformCert>,
    public_key: Arc<MerchantKey>,
    mode: SignMode,
    flip: u64,
    skew_secs: i64,
    probes: u32,
    time_factor: f64,
    notify_timeout: Duration,
    orders: HashMap<(String, String), Order>,
    order_seq: Vec<(String, String)>,
    by_txn: HashMap<String, (String, String)>,
    combines: HashMap<(String, String), CombineOrder>,
    refunds: HashMap<(String, String), RefundRec>,
    receivers: HashMap<(String, String, String), Value>,
    sharing: HashMap<(String, String), Sharing>,
    unfrozen: HashMap<String, bool>,
    returns: HashMap<(String, String), ReturnRec>,
    transfers: HashMap<(String, String), TransferRec>,
    transfer_seq: Vec<(String, String)>,
    bills: HashMap<String, Bill>,
    deliveries: Vec<Delivery>,
    log: VecDeque<LogEntry>,
    seq: u64,
    http: Option<Http>,
}

fn static_key(pem: &str) -> Arc<MerchantKey> {
    Arc::new(MerchantKey::from_pem(pem).expect("the emulator's built-in keys are valid"))
}

/// Issues a self-signed platform certificate for `key` valid from `now − 1 day` for 5 years.
fn issue_certificate(key: &MerchantKey, now: DateTime<Utc>, serial: &[u8]) -> Result<PlatformCertificate> {
    issue_certificate_valid(key, now - chrono::Duration::days(1), now + chrono::Duration::days(5 * 365), serial)
}

fn issue_certificate_valid(
    key: &MerchantKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    serial: &[u8],
) -> Result<PlatformCertificate> {
    let rc_key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key.to_pkcs8_pem(), &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| Error::Config(format!("emulator certificate key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Config(format!("emulator certificate: {e}")))?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let start = not_before.timestamp().max(0) as u64;
    let end = not_after.timestamp().max(0) as u64;
    params.not_before = epoch + Duration::from_secs(start);
    params.not_after = epoch + Duration::from_secs(end);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "wxshop emulator");
    dn.push(rcgen::DnType::CommonName, "WeChat Pay Emulator Platform Certificate");
    params.distinguished_name = dn;
    let cert = params.self_signed(&rc_key).map_err(|e| Error::Config(format!("emulator certificate: {e}")))?;
    PlatformCertificate::from_der(cert.der())
}

/// A 20-byte serial whose hex form has no leading zero (so every SDK prints it the same way).
fn serial_bytes(seed: &[u8]) -> [u8; 20] {
    let mut s: [u8; 20] = sha1::Digest::finalize(<sha1::Sha1 as sha1::Digest>::new_with_prefix(seed)).into();
    s[0] = 0x40 | (s[0] & 0x3F);
    s
}

impl PayState {
    pub(crate) fn new(now: DateTime<Utc>) -> Self {
        let cert_key = static_key(PLATFORM_CERT_KEY_PEM);
        let cert = issue_certificate(&cert_key, now, &serial_bytes(b"wxshop emulator platform certificate 1"))
            .expect("the emulator can issue its certificate");
        let merchant_key = MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).expect("built-in key");
        let mut merchants = HashMap::new();
        merchants.insert(
            DEFAULT_MCHID.to_string(),
            Merchant {
                serial: DEFAULT_MERCHANT_SERIAL.into(),
                public_key: merchant_key.public_key(),
                apiv3: ApiV3Key::new(DEFAULT_APIV3_KEY).expect("32 bytes"),
                appids: vec![super::DEFAULT_APPID.to_string()],
            },
        );
        PayState {
            merchants,
            certs: vec![PlatformCert { key: cert_key, cert }],
            public_key: static_key(PLATFORM_PUBLIC_KEY_KEY_PEM),
            mode: SignMode::PublicKey,
            flip: 0,
            skew_secs: 0,
            probes: 0,
            time_factor: 1.0,
            notify_timeout: NOTIFY_TIMEOUT,
            orders: HashMap::new(),
            order_seq: Vec::new(),
            by_txn: HashMap::new(),
            combines: HashMap::new(),
            refunds: HashMap::new(),
            receivers: HashMap::new(),
            sharing: HashMap::new(),
            unfrozen: HashMap::new(),
            returns: HashMap::new(),
            transfers: HashMap::new(),
            transfer_seq: Vec::new(),
            bills: HashMap::new(),
            deliveries: Vec::new(),
            log: VecDeque::new(),
            seq: 0,
            http: None,
        }
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The key that signs the next answer.
    fn signer(&mut self, force_certificate: bool) -> (String, Arc<MerchantKey>) {
        let use_cert = force_certificate
            || match self.mode {
                SignMode::Certificate => true,
                SignMode::PublicKey => false,
                SignMode::Migration => {
                    self.flip += 1;
                    self.flip.is_multiple_of(2)
                }
            };
        if use_cert {
            let c = self.certs.last().expect("at least one certificate");
            (c.cert.serial_no().to_string(), c.key.clone())
        } else {
            (PUBLIC_KEY_ID.to_string(), self.public_key.clone())
        }
    }

    /// The private key behind a serial or public key id (to decrypt OAEP fields).
    fn private_key_for(&self, serial: &str) -> Option<Arc<MerchantKey>> {
        if serial == PUBLIC_KEY_ID {
            return Some(self.public_key.clone());
        }
        self.certs.iter().find(|c| c.cert.serial_no() == normalize_serial(serial)).map(|c| c.key.clone())
    }

    fn push_log(&mut self, now: DateTime<Utc>, kind: &'static str, what: String, status: u16, detail: String) {
        if self.log.len() >= 500 {
            self.log.pop_front();
        }
        self.log.push_back(LogEntry { at: wechat_time(now), kind, what, status, detail });
    }

    fn http(&mut self) -> Result<Http> {
        if self.http.is_none() {
            let config = HttpConfig { timeout: self.notify_timeout, retry: RetryPolicy::none(), client: None };
            self.http = Some(Http::new(crate::config::Endpoints::default(), config)?);
        }
        Ok(self.http.clone().expect("just set"))
    }

    /// A new wait for the merchant's answer; the client is rebuilt with it.
    fn set_notify_timeout(&mut self, timeout: Duration) {
        self.notify_timeout = timeout;
        self.http = None;
    }

    /// The payer openid of a paid order, for `/wxa/getpaidunionid`.
    pub(crate) fn paid_openid(
        &self,
        transaction_id: Option<&str>,
        mchid_and_no: Option<(&str, &str)>,
    ) -> Option<String> {
        let key = match (transaction_id, mchid_and_no) {
            (Some(t), _) => self.by_txn.get(t)?.clone(),
            (None, Some((m, o))) => (m.to_string(), o.to_string()),
            _ => return None,
        };
        let o = self.orders.get(&key)?;
        matches!(o.state.as_str(), "SUCCESS" | "REFUND").then(|| o.openid.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Answers: signed, logged
// ---------------------------------------------------------------------------------------------

fn sign_headers(s: &EmulatorState, bytes: &[u8], force_certificate: bool) -> HeaderMap {
    let (serial, key, ts, probe) = {
        let mut p = lock(&s.pay);
        let (serial, key) = p.signer(force_certificate);
        let probe = p.probes > 0;
        if probe {
            p.probes -= 1;
        }
        (serial, key, s.now().timestamp() + p.skew_secs, probe)
    };
    let mut h = sign_body(&key, &serial, bytes, ts).unwrap_or_default();
    if probe && let Some(sig) = h.get("wechatpay-signature").and_then(|v| v.to_str().ok()).map(str::to_string) {
        let probe = format!("{}{sig}", paycrypto::SIGNTEST_PREFIX);
        if let Ok(v) = HeaderValue::from_str(&probe) {
            h.insert("wechatpay-signature", v);
        }
    }
    if bytes.is_empty() {
        h.remove("content-type");
    }
    h
}

fn reply_with(s: &EmulatorState, what: &str, status: u16, body: Option<Value>, force_certificate: bool) -> Response {
    let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap_or_default()).unwrap_or_default();
    let mut headers = sign_headers(s, &bytes, force_certificate);
    let rid = format!("08{:016X}", rand::random::<u64>());
    if let Ok(v) = HeaderValue::from_str(&rid) {
        headers.insert("request-id", v);
    }
    let detail = body
        .as_ref()
        .and_then(|b| {
            b.get("code").and_then(Value::as_str).map(|c| format!("{c}: {}", b["message"].as_str().unwrap_or("")))
        })
        .unwrap_or_default();
    let now = s.now();
    lock(&s.pay).push_log(now, "api", what.to_string(), status, detail);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, bytes).into_response()
}

fn reply(s: &EmulatorState, what: &str, status: u16, body: Option<Value>) -> Response {
    reply_with(s, what, status, body, false)
}

fn err(s: &EmulatorState, what: &str, status: u16, code: &str, message: &str) -> Response {
    reply(s, what, status, Some(json!({ "code": code, "message": message })))
}

fn param_err(s: &EmulatorState, what: &str, field: &str, message: &str) -> Response {
    reply(
        s,
        what,
        400,
        Some(json!({ "code": "PARAM_ERROR", "message": message, "detail": { "field": field, "location": "body" } })),
    )
}

/// Verifies the merchant's `Authorization` exactly as WeChat Pay does; `Ok(mchid)`.
fn authenticate(
    s: &EmulatorState,
    what: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<String, Response> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(err(s, what, 401, "SIGN_ERROR", "Authorization header missing"));
    };
    let Some(f) = paycrypto::parse_authorization(auth) else {
        return Err(err(
            s,
            what,
            401,
            "SIGN_ERROR",
            "Authorization is not WECHATPAY2-SHA256-RSA2048 mchid=\"…\",nonce_str=\"…\",signature=\"…\",timestamp=\"…\",serial_no=\"…\"",
        ));
    };
    let (key, serial) = match lock(&s.pay).merchants.get(&f.mchid) {
        Some(m) => (m.public_key.clone(), m.serial.clone()),
        None => {
            return Err(err(s, what, 400, "MCH_NOT_EXISTS", "商户号不存在 (register the merchant with the emulator)"));
        }
    };
    if normalize_serial(&f.serial_no) != normalize_serial(&serial) {
        return Err(err(
            s,
            what,
            401,
            "SIGN_ERROR",
            "serial_no is not the merchant API certificate serial registered for this mchid",
        ));
    }
    if paycrypto::check_timestamp(&f.timestamp, s.now().timestamp(), 300).is_err() {
        return Err(err(s, what, 401, "SIGN_ERROR", "请求的时间戳已过期 (timestamp more than 5 minutes off)"));
    }
    let pq = uri.path_and_query().map(|x| x.as_str()).unwrap_or(uri.path());
    let message = paycrypto::request_message(method.as_str(), pq, &f.timestamp, &f.nonce_str, body);
    if key.verify(&message, &f.signature).is_err() {
        return Err(err(s, what, 401, "SIGN_ERROR", "错误的签名，验签失败"));
    }
    Ok(f.mchid)
}

fn parse_json(s: &EmulatorState, what: &str, body: &[u8]) -> std::result::Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(err(s, what, 400, "PARAM_ERROR", "请求体不是合法的JSON对象")),
    }
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn int_field(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_i64()
}

macro_rules! need_str {
    ($s:expr, $what:expr, $v:expr, $($p:literal).+) => {
        match str_field(&$v, &[$($p),+]) {
            Some(x) => x.to_string(),
            None => {
                let field = [$($p),+].join(".");
                return param_err($s, $what, &field, &format!("输入源“/body/{}”映射到值字段“{}”必填性规则校验失败，此字段为必填项", field.replace('.', "/"), field));
            }
        }
    };
}

fn valid_no(v: &str, min: usize, max: usize) -> bool {
    v.len() >= min && v.len() <= max && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
}

fn state_desc(state: &str) -> &'static str {
    match state {
        "SUCCESS" => "支付成功",
        "NOTPAY" => "订单未支付",
        "CLOSED" => "订单已关闭",
        "REFUND" => "转入退款",
        "PAYERROR" => "支付失败",
        "USERPAYING" => "用户支付中",
        _ => "",
    }
}

fn insert_opt(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.into(), v);
    }
}

fn transaction_json(o: &Order) -> Value {
    let mut m = Map::new();
    match &o.kind {
        Kind::Direct | Kind::Combine { .. } => {
            m.insert("appid".into(), o.appid.clone().into());
            m.insert("mchid".into(), o.owner.clone().into());
        }
        Kind::Partner { sp_appid, sp_mchid, sub_appid } => {
            m.insert("sp_appid".into(), sp_appid.clone().into());
            m.insert("sp_mchid".into(), sp_mchid.clone().into());
            insert_opt(&mut m, "sub_appid", sub_appid.clone().map(Value::from));
            m.insert("sub_mchid".into(), o.owner.clone().into());
        }
    }
    m.insert("out_trade_no".into(), o.out_trade_no.clone().into());
    insert_opt(&mut m, "transaction_id", o.transaction_id.clone().map(Value::from));
    m.insert("trade_type".into(), "JSAPI".into());
    m.insert("trade_state".into(), o.state.clone().into());
    m.insert("trade_state_desc".into(), state_desc(&o.state).into());
    let paid = o.success_time.is_some();
    if paid {
        m.insert("bank_type".into(), "OTHERS".into());
    }
    insert_opt(&mut m, "attach", o.attach.clone().map(Value::from));
    insert_opt(&mut m, "success_time", o.success_time.map(|t| wechat_time(t).into()));
    m.insert("payer".into(), o.payer.clone());
    let mut amount = json!({ "total": o.total, "currency": "CNY", "payer_currency": "CNY" });
    if paid {
        amount["payer_total"] = o.total.into();
    }
    m.insert("amount".into(), amount);
    insert_opt(
        &mut m,
        "scene_info",
        o.scene_info.as_ref().and_then(|s| s.get("device_id")).map(|d| json!({ "device_id": d })),
    );
    if paid {
        m.insert("promotion_detail".into(), json!([]));
    }
    Value::Object(m)
}

fn combine_json(p: &PayState, c: &CombineOrder) -> Value {
    let subs: Vec<Value> = c
        .subs
        .iter()
        .filter_map(|k| p.orders.get(k))
        .map(|o| {
            let mut m = Map::new();
            m.insert("mchid".into(), o.owner.clone().into());
            m.insert("trade_type".into(), "JSAPI".into());
            m.insert("trade_state".into(), o.state.clone().into());
            if o.success_time.is_some() {
                m.insert("bank_type".into(), "OTHERS".into());
            }
            m.insert("attach".into(), o.attach.clone().unwrap_or_default().into());
            insert_opt(&mut m, "success_time", o.success_time.map(|t| wechat_time(t).into()));
            insert_opt(&mut m, "transaction_id", o.transaction_id.clone().map(Value::from));
            m.insert("out_trade_no".into(), o.out_trade_no.clone().into());
            let mut amount = json!({ "total_amount": o.total, "currency": "CNY" });
            if o.success_time.is_some() {
                amount["payer_amount"] = o.total.into();
                amount["payer_currency"] = "CNY".into();
            }
            m.insert("amount".into(), amount);
            Value::Object(m)
        })
        .collect();
    let mut v = json!({
        "combine_appid": c.appid,
        "combine_mchid": c.mchid,
        "combine_out_trade_no": c.out_trade_no,
        "sub_orders": subs,
        "combine_payer_info": { "openid": c.openid },
    });
    if let Some(sc) = &c.scene_info {
        v["scene_info"] = sc.clone();
    }
    v
}

fn refund_json(r: &RefundRec) -> Value {
    let mut v = json!({
        "refund_id": r.refund_id,
        "out_refund_no": r.out_refund_no,
        "transaction_id": r.transaction_id,
        "out_trade_no": r.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": wechat_time(r.created),
        "status": r.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": r.total, "refund": r.refund, "from": [], "payer_total": r.total, "payer_refund": r.refund,
            "settlement_refund": r.refund, "settlement_total": r.total, "discount_refund": 0, "currency": "CNY",
            "refund_fee": 0
        },
        "promotion_detail": []
    });
    if let Some(t) = r.success_time {
        v["success_time"] = wechat_time(t).into();
    }
    v
}

fn refund_notice_json(r: &RefundRec) -> Value {
    let mut v = json!({
        "out_trade_no": r.out_trade_no,
        "transaction_id": r.transaction_id,
        "out_refund_no": r.out_refund_no,
        "refund_id": r.refund_id,
        "refund_status": r.status,
        "user_received_account": "支付用户零钱",
        "amount": { "total": r.total, "refund": r.refund, "payer_total": r.total, "payer_refund": r.refund },
    });
    match &r.sp_mchid {
        Some(sp) => {
            v["sp_mchid"] = sp.clone().into();
            v["sub_mchid"] = r.order.0.clone().into();
        }
        None => v["mchid"] = r.order.0.clone().into(),
    }
    if let Some(t) = r.success_time {
        v["success_time"] = wechat_time(t).into();
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------------

fn queue_notification(s: &Shared, mchid: &str, url: &str, event_type: &str, out_trade_no: &str, resource: &Value) {
    let id = format!("EV-{}", uuid::Uuid::new_v4().simple());
    let plaintext = serde_json::to_vec(resource).unwrap_or_default();
    lock(&s.pay).deliveries.push(Delivery {
        id: id.clone(),
        event_type: event_type.into(),
        url: url.into(),
        out_trade_no: out_trade_no.into(),
        attempts: 0,
        delivered: false,
        last_status: None,
        mchid: mchid.into(),
        plaintext,
    });
    let weak = Arc::downgrade(s);
    tokio::spawn(deliver_with_retries(weak, id));
}

async fn deliver_with_retries(weak: Weak<EmulatorState>, id: String) {
    for attempt in 0..=NOTIFY_SCHEDULE_SECS.len() {
        if attempt > 0 {
            let factor = match weak.upgrade() {
                Some(s) => lock(&s.pay).time_factor,
                None => return,
            };
            let secs = NOTIFY_SCHEDULE_SECS[attempt - 1] as f64 / factor.max(1e-6);
            tokio::time::sleep(Duration::from_secs_f64(secs.min(86_400.0))).await;
        }
        let Some(s) = weak.upgrade() else { return };
        if lock(&s.pay).deliveries.iter().any(|d| d.id == id && d.delivered) {
            return;
        }
        if deliver_once(&s, &id).await {
            return;
        }
    }
}

/// One delivery attempt; true on a 2xx answer.
async fn deliver_once(s: &Shared, id: &str) -> bool {
    let prepared = {
        let mut p = lock(&s.pay);
        let Some(d) = p.deliveries.iter().find(|d| d.id == id).cloned() else { return false };
        let Some(apiv3) = p.merchants.get(&d.mchid).map(|m| m.apiv3.clone()) else { return false };
        let (serial, key) = p.signer(false);
        let ts = s.now().timestamp() + p.skew_secs;
        p.http().ok().map(|http| (d, apiv3, serial, key, ts, http))
    };
    let Some((d, apiv3, serial, key, ts, http)) = prepared else { return false };
    let Ok(n) = sign_notification_with_id(&d.id, &key, &serial, &apiv3, &d.event_type, &d.plaintext, ts) else {
        return false;
    };
    let mut req = Request::new(Method::POST, Host::Absolute, d.url.clone())
        .body(Body::Raw { content_type: "application/json".into(), bytes: n.body.into() });
    for (k, v) in n.headers.iter() {
        if k != "content-type" {
            req = req.header(k.clone(), v.clone());
        }
    }
    let status = match http.execute(&req, None).await {
        Ok(r) => r.status,
        Err(Error::HttpStatus { status, .. }) | Err(Error::PayApi { status, .. }) => status,
        Err(_) => 0,
    };
    let ok = (200..300).contains(&status);
    let now = s.now();
    let mut p = lock(&s.pay);
    if let Some(dd) = p.deliveries.iter_mut().find(|x| x.id == id) {
        dd.attempts += 1;
        dd.last_status = Some(status);
        dd.delivered |= ok;
    }
    let attempts = p.deliveries.iter().find(|x| x.id == id).map(|x| x.attempts).unwrap_or(0);
    p.push_log(
        now,
        "notify",
        format!("{} {} → {}", d.event_type, d.out_trade_no, d.url),
        status,
        format!("id {} attempt {attempts}", d.id),
    );
    drop(p);
    s.bump(if ok { "pay.notify.delivered" } else { "pay.notify.failed" });
    ok
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(cashier))
        .route("/v3/certificates", get(certificates))
        .route("/v3/pay/transactions/jsapi", post(jsapi))
        .route("/v3/pay/transactions/id/{transaction_id}", get(query_by_id))
        .route("/v3/pay/transactions/out-trade-no/{out_trade_no}", get(query_by_out_trade_no))
        .route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close", post(close))
        .route("/v3/pay/partner/transactions/jsapi", post(partner_jsapi))
        .route("/v3/pay/partner/transactions/id/{transaction_id}", get(partner_query_by_id))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}", get(partner_query_by_out_trade_no))
        .route("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close", post(partner_close))
        .route("/v3/combine-transactions/jsapi", post(combine_jsapi))
        .route("/v3/combine-transactions/out-trade-no/{no}", get(combine_query))
        .route("/v3/combine-transactions/out-trade-no/{no}/close", post(combine_close))
        .route("/v3/refund/domestic/refunds", post(create_refund))
        .route("/v3/refund/domestic/refunds/{out_refund_no}", get(query_refund))
        .route("/v3/bill/tradebill", get(trade_bill))
        .route("/v3/bill/fundflowbill", get(fund_flow_bill))
        .route("/v3/billdownload/file", get(bill_download))
        .route("/v3/profitsharing/receivers/add", post(receivers_add))
        .route("/v3/profitsharing/receivers/delete", post(receivers_delete))
        .route("/v3/profitsharing/orders", post(sharing_create))
        .route("/v3/profitsharing/orders/unfreeze", post(sharing_unfreeze))
        .route("/v3/profitsharing/orders/{out_order_no}", get(sharing_query))
        .route("/v3/profitsharing/return-orders", post(return_create))
        .route("/v3/profitsharing/return-orders/{out_return_no}", get(return_query))
        .route("/v3/profitsharing/transactions/{transaction_id}/amounts", get(sharing_amounts))
        .route("/v3/fund-app/mch-transfer/transfer-bills", post(transfer_create))
        .route("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}", get(transfer_query_out))
        .route("/v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/{no}", get(transfer_query_wx))
        .route("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}/cancel", post(transfer_cancel))
        .route("/__emulator/pay/merchants", post(ctl_merchant))
        .route("/__emulator/pay/mode", post(ctl_mode))
        .route("/__emulator/pay/rotate", post(ctl_rotate))
        .route("/__emulator/pay/keys", get(ctl_keys))
        .route("/__emulator/pay/config", post(ctl_config))
        .route("/__emulator/pay/orders", get(ctl_orders))
        .route("/__emulator/pay/orders/{mchid}/{out_trade_no}/{action}", post(ctl_order_action))
        .route("/__emulator/pay/transfers", get(ctl_transfers))
        .route("/__emulator/pay/transfers/{mchid}/{out_bill_no}/{action}", post(ctl_transfer_action))
        .route("/__emulator/pay/notifications", get(ctl_notifications))
        .route("/__emulator/pay/notifications/{id}/redeliver", post(ctl_redeliver))
        .route("/__emulator/pay/log", get(ctl_log))
}

type Q = Query<HashMap<String, String>>;

macro_rules! authed {
    ($s:expr, $what:expr, $method:expr, $uri:expr, $headers:expr, $body:expr) => {
        match authenticate(&$s, $what, &$method, &$uri, &$headers, &$body[..]) {
            Ok(m) => m,
            Err(r) => return r,
        }
    };
}

async fn cashier() -> Html<&'static str> {
    Html(CASHIER_HTML)
}

async fn certificates(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    const W: &str = "GET /v3/certificates";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let (mode, apiv3, certs) = {
        let p = lock(&s.pay);
        let apiv3 = p.merchants.get(&mchid).map(|m| m.apiv3.clone());
        (p.mode, apiv3, p.certs.iter().map(|c| c.cert.clone()).collect::<Vec<_>>())
    };
    if mode == SignMode::PublicKey {
        return err(
            s.as_ref(),
            W,
            404,
            "RESOURCE_NOT_EXISTS",
            "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥",
        );
    }
    let Some(apiv3) = apiv3 else { return err(&s, W, 500, "SYSTEM_ERROR", "merchant vanished") };
    let now = s.now();
    let mut data = Vec::new();
    for c in certs.iter().filter(|c| c.not_after() > now) {
        let Ok(enc) = EncryptedResource::encrypt(&apiv3, "certificate", None, c.pem().as_bytes()) else {
            return err(&s, W, 500, "SYSTEM_ERROR", "encryption failed");
        };
        data.push(json!({
            "serial_no": c.serial_no(),
            "effective_time": wechat_time(c.not_before()),
            "expire_time": wechat_time(c.not_after()),
            "encrypt_certificate": enc,
        }));
    }
    s.bump("pay.certificates");
    // The certificate list is signed with a platform certificate, whatever the mode.
    reply_with(&s, W, 200, Some(json!({ "data": data })), true)
}

/// Checks the order fields common to direct and partner prepay; `Err` is the answer.
fn check_order_fields(s: &EmulatorState, what: &str, v: &Value) -> std::result::Result<(), Response> {
    let no = str_field(v, &["out_trade_no"]).unwrap_or("");
    if !valid_no(no, 6, 32) {
        return Err(param_err(s, what, "out_trade_no", "out_trade_no 须为6-32位数字、大小写字母_-|*@"));
    }
    if int_field(v, &["amount", "total"]).is_none_or(|t| t <= 0) {
        return Err(param_err(s, what, "amount.total", "amount.total 必须为正整数（分）"));
    }
    if let Some(c) = str_field(v, &["amount", "currency"])
        && c != "CNY"
    {
        return Err(param_err(s, what, "amount.currency", "currency 仅支持 CNY"));
    }
    let url = str_field(v, &["notify_url"]).unwrap_or("");
    if url::Url::parse(url).map(|u| u.query().is_some() || !u.scheme().starts_with("http")).unwrap_or(true) {
        return Err(param_err(s, what, "notify_url", "notify_url 需为不带参数的http(s)地址"));
    }
    if let Some(t) = str_field(v, &["time_expire"])
        && DateTime::parse_from_rfc3339(t).is_err()
    {
        return Err(param_err(s, what, "time_expire", "time_expire 格式须为rfc3339"));
    }
    if str_field(v, &["attach"]).is_some_and(|a| a.len() > 128) {
        return Err(param_err(s, what, "attach", "attach 长度不能超过128"));
    }
    Ok(())
}

/// Stores a new order, or answers the prepay_id of the same one (WeChat's idempotency by
/// out_trade_no), or the error for a different one.
fn upsert_order(s: &Shared, what: &str, key: (String, String), mut order: Order) -> Response {
    let now = s.now();
    let mut p = lock(&s.pay);
    if let Some(existing) = p.orders.get(&key) {
        let (state, same, prepay) =
            (existing.state.clone(), existing.request == order.request, existing.prepay_id.clone());
        drop(p);
        return match state.as_str() {
            "SUCCESS" | "REFUND" => err(s, what, 400, "ORDERPAID", "该订单已支付"),
            "CLOSED" => err(s, what, 400, "ORDER_CLOSED", "当前订单已关闭，请重新下单"),
            _ if same => reply(s, what, 200, Some(json!({ "prepay_id": prepay }))),
            _ => {
                err(s, what, 400, "INVALID_REQUEST", "201 商户订单号重复 (same out_trade_no with different parameters)")
            }
        };
    }
    let n = p.next();
    order.prepay_id = format!("wx{}{:012}", now.format("%d%H%M%S"), n);
    order.created = now;
    let prepay = order.prepay_id.clone();
    p.order_seq.push(key.clone());
    p.orders.insert(key, order);
    drop(p);
    s.bump("pay.prepay");
    reply(s, what, 200, Some(json!({ "prepay_id": prepay })))
}

fn order_skeleton(
    v: &Value,
    owner: String,
    notify_mchid: String,
    kind: Kind,
    appid: String,
    payer: Value,
    openid: String,
) -> Order {
    Order {
        owner,
        notify_mchid,
        kind,
        appid,
        out_trade_no: str_field(v, &["out_trade_no"]).unwrap_or("").to_string(),
        description: str_field(v, &["description"]).unwrap_or("").to_string(),
        attach: str_field(v, &["attach"]).map(str::to_string),
        notify_url: str_field(v, &["notify_url"]).unwrap_or("").to_string(),
        total: int_field(v, &["amount", "total"]).unwrap_or(0),
        payer,
        openid,
        prepay_id: String::new(),
        transaction_id: None,
        state: "NOTPAY".into(),
        created: Utc::now(),
        success_time: None,
        time_expire: str_field(v, &["time_expire"]).and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        profit_sharing: v.pointer("/settle_info/profit_sharing").and_then(Value::as_bool).unwrap_or(false),
        refunded: 0,
        request: v.clone(),
        scene_info: v.get("scene_info").cloned(),
    }
}

async fn jsapi(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    const W: &str = "POST /v3/pay/transactions/jsapi";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let appid = need_str!(&s, W, v, "appid");
    let body_mchid = need_str!(&s, W, v, "mchid");
    need_str!(&s, W, v, "description");
    need_str!(&s, W, v, "out_trade_no");
    need_str!(&s, W, v, "notify_url");
    let openid = need_str!(&s, W, v, "payer"."openid");
    if body_mchid != mchid {
        return param_err(&s, W, "mchid", "mchid 与请求头中的商户号不一致");
    }
    if let Err(r) = check_order_fields(&s, W, &v) {
        return r;
    }
    let bound = lock(&s.pay).merchants.get(&mchid).map(|m| m.appids.is_empty() || m.appids.contains(&appid));
    if bound != Some(true) {
        return param_err(&s, W, "appid", "appid和mch_id不匹配");
    }
    let key = (mchid.clone(), str_field(&v, &["out_trade_no"]).unwrap_or("").to_string());
    let order =
        order_skeleton(&v, mchid.clone(), mchid, Kind::Direct, appid, json!({ "openid": openid.clone() }), openid);
    upsert_order(&s, W, key, order)
}

async fn partner_jsapi(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    const W: &str = "POST /v3/pay/partner/transactions/jsapi";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sp_appid = need_str!(&s, W, v, "sp_appid");
    let sp_mchid = need_str!(&s, W, v, "sp_mchid");
    let sub_mchid = need_str!(&s, W, v, "sub_mchid");
    need_str!(&s, W, v, "description");
    need_str!(&s, W, v, "out_trade_no");
    need_str!(&s, W, v, "notify_url");
    if sp_mchid != mchid {
        return param_err(&s, W, "sp_mchid", "sp_mchid 与请求头中的商户号不一致");
    }
    if let Err(r) = check_order_fields(&s, W, &v) {
        return r;
    }
    let sub_appid = str_field(&v, &["sub_appid"]).map(str::to_string);
    let (payer, openid, appid) = match (str_field(&v, &["payer", "sp_openid"]), str_field(&v, &["payer", "sub_openid"]))
    {
        (Some(o), None) => (json!({ "sp_openid": o }), o.to_string(), sp_appid.clone()),
        (None, Some(o)) if sub_appid.is_some() => {
            (json!({ "sub_openid": o }), o.to_string(), sub_appid.clone().unwrap_or_default())
        }
        (None, Some(_)) => return param_err(&s, W, "sub_appid", "传入sub_openid时sub_appid必填"),
        _ => return param_err(&s, W, "payer", "payer.sp_openid 与 payer.sub_openid 须且仅须填写一个"),
    };
    let key = (sub_mchid.clone(), str_field(&v, &["out_trade_no"]).unwrap_or("").to_string());
    let kind = Kind::Partner { sp_appid, sp_mchid, sub_appid };
    let order = order_skeleton(&v, sub_mchid, mchid, kind, appid, payer, openid);
    upsert_order(&s, W, key, order)
}

fn find_order_reply(s: &Shared, what: &str, key: Option<(String, String)>, sp_mchid: Option<&str>) -> Response {
    let p = lock(&s.pay);
    let found = key.and_then(|k| p.orders.get(&k)).filter(|o| match (&o.kind, sp_mchid) {
        (Kind::Partner { sp_mchid: sp, .. }, Some(x)) => sp == x,
        (Kind::Partner { .. }, None) | (_, Some(_)) => false,
        _ => true,
    });
    match found.map(transaction_json) {
        Some(v) => {
            drop(p);
            reply(s, what, 200, Some(v))
        }
        None => {
            drop(p);
            err(s, what, 404, "ORDER_NOT_EXIST", "订单不存在")
        }
    }
}

async fn query_by_id(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/pay/transactions/id/{transaction_id}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    if q.get("mchid") != Some(&mchid) {
        return param_err(&s, W, "mchid", "mchid 必填且须与请求头一致");
    }
    let key = lock(&s.pay).by_txn.get(&id).cloned().filter(|k| k.0 == mchid);
    find_order_reply(&s, W, key, None)
}

async fn query_by_out_trade_no(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/pay/transactions/out-trade-no/{out_trade_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    if q.get("mchid") != Some(&mchid) {
        return param_err(&s, W, "mchid", "mchid 必填且须与请求头一致");
    }
    find_order_reply(&s, W, Some((mchid, no)), None)
}

async fn partner_query_by_id(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/pay/partner/transactions/id/{transaction_id}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    if q.get("sp_mchid") != Some(&mchid) || !q.contains_key("sub_mchid") {
        return param_err(&s, W, "sp_mchid", "sp_mchid 与 sub_mchid 必填");
    }
    let sub = q.get("sub_mchid").cloned().unwrap_or_default();
    let key = lock(&s.pay).by_txn.get(&id).cloned().filter(|k| k.0 == sub);
    find_order_reply(&s, W, key, Some(&mchid))
}

async fn partner_query_by_out_trade_no(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/pay/partner/transactions/out-trade-no/{out_trade_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let Some(sub) = q.get("sub_mchid").filter(|_| q.get("sp_mchid") == Some(&mchid)) else {
        return param_err(&s, W, "sp_mchid", "sp_mchid 与 sub_mchid 必填");
    };
    find_order_reply(&s, W, Some((sub.clone(), no)), Some(&mchid))
}

fn close_order(s: &Shared, what: &str, key: (String, String), sp_mchid: Option<&str>) -> Response {
    let mut p = lock(&s.pay);
    let Some(o) = p.orders.get_mut(&key) else {
        drop(p);
        return err(s, what, 404, "ORDER_NOT_EXIST", "订单不存在");
    };
    let partner_ok = match (&o.kind, sp_mchid) {
        (Kind::Partner { sp_mchid: sp, .. }, Some(x)) => sp == x,
        (Kind::Partner { .. }, None) | (_, Some(_)) => false,
        _ => true,
    };
    if !partner_ok {
        drop(p);
        return err(s, what, 404, "ORDER_NOT_EXIST", "订单不存在");
    }
    match o.state.as_str() {
        "SUCCESS" | "REFUND" => {
            drop(p);
            err(s, what, 400, "ORDERPAID", "订单已支付，不能关单")
        }
        _ => {
            o.state = "CLOSED".into();
            drop(p);
            reply(s, what, 204, None)
        }
    }
}

async fn close(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if str_field(&v, &["mchid"]) != Some(mchid.as_str()) {
        return param_err(&s, W, "mchid", "mchid 必填且须与请求头一致");
    }
    close_order(&s, W, (mchid, no), None)
}

async fn partner_close(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let sub = need_str!(&s, W, v, "sub_mchid");
    if str_field(&v, &["sp_mchid"]) != Some(mchid.as_str()) {
        return param_err(&s, W, "sp_mchid", "sp_mchid 必填且须与请求头一致");
    }
    close_order(&s, W, (sub, no), Some(&mchid))
}

async fn combine_jsapi(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    const W: &str = "POST /v3/combine-transactions/jsapi";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let appid = need_str!(&s, W, v, "combine_appid");
    let cmchid = need_str!(&s, W, v, "combine_mchid");
    let cno = need_str!(&s, W, v, "combine_out_trade_no");
    let openid = need_str!(&s, W, v, "combine_payer_info"."openid");
    let notify_url = need_str!(&s, W, v, "notify_url");
    if cmchid != mchid {
        return param_err(&s, W, "combine_mchid", "combine_mchid 与请求头中的商户号不一致");
    }
    let subs = v.get("sub_orders").and_then(Value::as_array).cloned().unwrap_or_default();
    if !(2..=50).contains(&subs.len()) {
        return param_err(&s, W, "sub_orders", "子单数量须为2-50");
    }
    let mut orders = Vec::new();
    for sub in &subs {
        let (Some(m), Some(no), Some(total)) = (
            str_field(sub, &["mchid"]),
            str_field(sub, &["out_trade_no"]),
            int_field(sub, &["amount", "total_amount"]),
        ) else {
            return param_err(&s, W, "sub_orders", "子单须包含 mchid、out_trade_no、amount.total_amount");
        };
        if !valid_no(no, 6, 32)
            || total <= 0
            || str_field(sub, &["attach"]).is_none()
            || str_field(sub, &["description"]).is_none()
        {
            return param_err(&s, W, "sub_orders", "子单字段不合法");
        }
        let mut o = order_skeleton(
            sub,
            m.to_string(),
            mchid.clone(),
            Kind::Combine { combine_out_trade_no: cno.clone() },
            appid.clone(),
            json!({ "openid": openid.clone() }),
            openid.clone(),
        );
        o.total = total;
        o.notify_url = notify_url.clone();
        o.request = json!({ "combine": cno, "sub": sub });
        orders.push(((m.to_string(), no.to_string()), o));
    }
    let now = s.now();
    let mut p = lock(&s.pay);
    let ckey = (mchid.clone(), cno.clone());
    if let Some(c) = p.combines.get(&ckey) {
        let same = c.request == v;
        let paid = c.subs.iter().any(|k| p.orders.get(k).is_some_and(|o| o.state != "NOTPAY"));
        let prepay = c.prepay_id.clone();
        drop(p);
        return match (same, paid) {
            (_, true) => err(&s, W, 400, "ORDERPAID", "该合单已支付或已关闭"),
            (true, false) => reply(&s, W, 200, Some(json!({ "prepay_id": prepay }))),
            (false, false) => err(&s, W, 400, "INVALID_REQUEST", "201 合单商户订单号重复"),
        };
    }
    if orders.iter().any(|(k, _)| p.orders.contains_key(k)) {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "201 子单商户订单号重复");
    }
    let n = p.next();
    let prepay = format!("wx{}{:012}", now.format("%d%H%M%S"), n);
    let mut subs_keys = Vec::new();
    for (k, mut o) in orders {
        o.prepay_id = prepay.clone();
        o.created = now;
        subs_keys.push(k.clone());
        p.order_seq.push(k.clone());
        p.orders.insert(k, o);
    }
    p.combines.insert(
        ckey,
        CombineOrder {
            appid,
            mchid,
            out_trade_no: cno,
            notify_url,
            openid,
            prepay_id: prepay.clone(),
            subs: subs_keys,
            request: v.clone(),
            scene_info: v.get("scene_info").cloned(),
        },
    );
    drop(p);
    reply(&s, W, 200, Some(json!({ "prepay_id": prepay })))
}

async fn combine_query(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/combine-transactions/out-trade-no/{no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let p = lock(&s.pay);
    let v = p.combines.get(&(mchid, no)).map(|c| combine_json(&p, c));
    drop(p);
    match v {
        Some(v) => reply(&s, W, 200, Some(v)),
        None => err(&s, W, 404, "ORDER_NOT_EXIST", "合单不存在"),
    }
}

async fn combine_close(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/combine-transactions/out-trade-no/{no}/close";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let appid = need_str!(&s, W, v, "combine_appid");
    let mut p = lock(&s.pay);
    let Some(c) = p.combines.get(&(mchid, no)).cloned() else {
        drop(p);
        return err(&s, W, 404, "ORDER_NOT_EXIST", "合单不存在");
    };
    if c.appid != appid {
        drop(p);
        return param_err(&s, W, "combine_appid", "combine_appid 不一致");
    }
    if c.subs.iter().any(|k| p.orders.get(k).is_some_and(|o| matches!(o.state.as_str(), "SUCCESS" | "REFUND"))) {
        drop(p);
        return err(&s, W, 400, "ORDERPAID", "订单已支付，不能关单");
    }
    for k in &c.subs {
        if let Some(o) = p.orders.get_mut(k) {
            o.state = "CLOSED".into();
        }
    }
    drop(p);
    reply(&s, W, 204, None)
}

// ----- refunds -----

async fn create_refund(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    const W: &str = "POST /v3/refund/domestic/refunds";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let out_refund_no = need_str!(&s, W, v, "out_refund_no");
    if !valid_no(&out_refund_no, 1, 64) {
        return param_err(&s, W, "out_refund_no", "out_refund_no 格式错误");
    }
    let (Some(refund), Some(total)) = (int_field(&v, &["amount", "refund"]), int_field(&v, &["amount", "total"]))
    else {
        return param_err(&s, W, "amount", "amount.refund 与 amount.total 必填");
    };
    if refund <= 0 || total <= 0 {
        return param_err(&s, W, "amount", "退款金额须为正整数");
    }
    let sub = str_field(&v, &["sub_mchid"]).map(str::to_string);
    let owner = sub.clone().unwrap_or_else(|| mchid.clone());
    let rkey = (owner.clone(), out_refund_no.clone());
    let now = s.now();
    let mut p = lock(&s.pay);
    if let Some(r) = p.refunds.get(&rkey) {
        let (same, json) = (r.request == v, refund_json(r));
        drop(p);
        return if same {
            reply(&s, W, 200, Some(json))
        } else {
            err(&s, W, 400, "INVALID_REQUEST", "商户退款单号重复且参数不一致")
        };
    }
    let okey = match (str_field(&v, &["transaction_id"]), str_field(&v, &["out_trade_no"])) {
        (Some(t), None) => p.by_txn.get(t).cloned(),
        (None, Some(o)) => Some((owner.clone(), o.to_string())),
        _ => {
            drop(p);
            return param_err(&s, W, "out_trade_no", "transaction_id 与 out_trade_no 须且仅须填写一个");
        }
    };
    let Some(okey) = okey.filter(|k| k.0 == owner) else {
        drop(p);
        return err(&s, W, 404, "RESOURCE_NOT_EXISTS", "订单不存在");
    };
    let Some(o) = p.orders.get_mut(&okey) else {
        drop(p);
        return err(&s, W, 404, "RESOURCE_NOT_EXISTS", "订单不存在");
    };
    let auth_ok = match &o.kind {
        Kind::Partner { sp_mchid, .. } => sub.is_some() && *sp_mchid == mchid,
        _ => sub.is_none(),
    };
    if !auth_ok {
        drop(p);
        return err(&s, W, 404, "RESOURCE_NOT_EXISTS", "订单不存在");
    }
    if !matches!(o.state.as_str(), "SUCCESS" | "REFUND") {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "订单未支付，不能退款");
    }
    if total != o.total {
        drop(p);
        return param_err(&s, W, "amount.total", "订单金额与原订单不一致");
    }
    // WeChat refunds only within a year of payment (支付成功时间 + 365 天).
    if o.success_time.is_some_and(|t| now > t + chrono::Duration::days(REFUND_DAYS)) {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "交易时间超过一年的订单无法提交退款");
    }
    if refund > o.total - o.refunded {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "申请退款金额超过订单可退金额");
    }
    o.refunded += refund;
    o.state = "REFUND".into();
    let (txn, out_trade_no, notify_fallback, notify_mchid) = (
        o.transaction_id.clone().unwrap_or_default(),
        o.out_trade_no.clone(),
        o.notify_url.clone(),
        o.notify_mchid.clone(),
    );
    let sp_mchid = match &o.kind {
        Kind::Partner { sp_mchid, .. } => Some(sp_mchid.clone()),
        _ => None,
    };
    let n = p.next();
    let mut rec = RefundRec {
        order: okey,
        notify_mchid: notify_mchid.clone(),
        sp_mchid,
        out_refund_no,
        refund_id: format!("50300{}{:010}", now.format("%Y%m%d%H%M"), n),
        transaction_id: txn,
        out_trade_no: out_trade_no.clone(),
        total,
        refund,
        status: "PROCESSING".into(),
        created: now,
        success_time: None,
        request: v.clone(),
    };
    let answer = refund_json(&rec);
    // WeChat accepts (PROCESSING) then settles; the emulator settles at once and notifies.
    rec.status = "SUCCESS".into();
    rec.success_time = Some(now);
    let notice = refund_notice_json(&rec);
    p.refunds.insert(rkey, rec);
    drop(p);
    let url = str_field(&v, &["notify_url"]).map(str::to_string).unwrap_or(notify_fallback);
    queue_notification(&s, &notify_mchid, &url, "REFUND.SUCCESS", &out_trade_no, &notice);
    s.bump("pay.refund");
    reply(&s, W, 200, Some(answer))
}

async fn query_refund(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/refund/domestic/refunds/{out_refund_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let owner = q.get("sub_mchid").cloned().unwrap_or_else(|| mchid.clone());
    let p = lock(&s.pay);
    let v = p.refunds.get(&(owner, no)).filter(|r| r.notify_mchid == mchid).map(refund_json);
    drop(p);
    match v {
        Some(v) => reply(&s, W, 200, Some(v)),
        None => err(&s, W, 404, "RESOURCE_NOT_EXISTS", "退款单不存在"),
    }
}

// ----- bills -----

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn beijing_date(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset")).format("%Y-%m-%d").to_string()
}

fn beijing_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset")).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn trade_bill_text(p: &PayState, mchid: &str, date: &str, bill_type: &str) -> String {
    let mut out = String::from(
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n",
    );
    let (mut count, mut paid, mut refunded) = (0i64, 0i64, 0i64);
    let mine = |o: &Order| o.owner == mchid || o.notify_mchid == mchid;
    if bill_type != "REFUND" {
        for k in &p.order_seq {
            let Some(o) = p.orders.get(k).filter(|o| mine(o)) else { continue };
            let Some(t) = o.success_time.filter(|t| beijing_date(*t) == date) else { continue };
            count += 1;
            paid += o.total;
            out.push_str(&format!(
                "`{},`{},`{},`{},`,`{},`{},`{},`JSAPI,`SUCCESS,`OTHERS,`CNY,`{},`0.00,`0,`0,`0.00,`0.00,`,`,`{},`{},`0.00000,`0.60%,`{},`0.00,`\n",
                beijing_time(t),
                o.appid,
                o.notify_mchid,
                if o.owner != o.notify_mchid { o.owner.as_str() } else { "0" },
                o.transaction_id.as_deref().unwrap_or(""),
                o.out_trade_no,
                o.openid,
                yuan(o.total),
                o.description.replace(',', " "),
                o.attach.as_deref().unwrap_or("").replace(',', " "),
                yuan(o.total),
            ));
        }
    }
    if bill_type != "SUCCESS" {
        for r in p.refunds.values().filter(|r| r.notify_mchid == mchid || r.order.0 == mchid) {
            let Some(t) = r.success_time.filter(|t| beijing_date(*t) == date) else { continue };
            let Some(o) = p.orders.get(&r.order) else { continue };
            count += 1;
            refunded += r.refund;
            out.push_str(&format!(
                "`{},`{},`{},`0,`,`{},`{},`{},`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`{},`{},`{},`0.00,`ORIGINAL,`SUCCESS,`{},`,`0.00000,`0.60%,`{},`{},`\n",
                beijing_time(t),
                o.appid,
                r.notify_mchid,
                r.transaction_id,
                r.out_trade_no,
                o.openid,
                r.refund_id,
                r.out_refund_no,
                yuan(r.refund),
                o.description.replace(',', " "),
                yuan(r.total),
                yuan(r.refund),
            ));
        }
    }
    out.push_str("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n");
    out.push_str(&format!(
        "`{count},`{},`{},`0.00,`0.00000,`{},`{}\n",
        yuan(paid),
        yuan(refunded),
        yuan(paid),
        yuan(refunded)
    ));
    out
}

fn fund_flow_text(p: &PayState, mchid: &str, date: &str) -> String {
    let mut out = String::from(
        "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号\n",
    );
    let (mut n_in, mut sum_in, mut n_out, mut sum_out, mut balance) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut events: Vec<(DateTime<Utc>, String, bool, i64, String)> = Vec::new();
    for o in p.orders.values().filter(|o| o.notify_mchid == mchid) {
        if let (Some(t), Some(id)) = (o.success_time, &o.transaction_id) {
            events.push((t, id.clone(), true, o.total, o.out_trade_no.clone()));
        }
    }
    for r in p.refunds.values().filter(|r| r.notify_mchid == mchid) {
        if let Some(t) = r.success_time {
            events.push((t, r.refund_id.clone(), false, r.refund, r.out_refund_no.clone()));
        }
    }
    events.sort_by_key(|e| e.0);
    for (t, id, income, amount, voucher) in events {
        balance += if income { amount } else { -amount };
        if beijing_date(t) != date {
            continue;
        }
        if income {
            n_in += 1;
            sum_in += amount;
        } else {
            n_out += 1;
            sum_out += amount;
        }
        out.push_str(&format!(
            "`{},`{id},`{id}0001,`{},`{},`{},`{},`{},`system,`,`{voucher}\n",
            beijing_time(t),
            if income { "交易" } else { "退款" },
            if income { "交易" } else { "退款" },
            if income { "收入" } else { "支出" },
            yuan(amount),
            yuan(balance),
        ));
    }
    out.push_str("资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额\n");
    out.push_str(&format!("`{},`{n_in},`{},`{n_out},`{}\n", n_in + n_out, yuan(sum_in), yuan(sum_out)));
    out
}

fn bill_reply(s: &Shared, what: &str, mchid: String, headers: &HeaderMap, text: String, gzip: bool) -> Response {
    let hash = crate::crypto::sig::sha1_hex(text.as_bytes());
    let token = format!("{:032x}", rand::random::<u128>());
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
    let now = s.now();
    lock(&s.pay).bills.insert(
        token.clone(),
        Bill { mchid, bytes: text.into_bytes(), gzip, expires: now + chrono::Duration::minutes(5) },
    );
    reply(
        s,
        what,
        200,
        Some(json!({
            "hash_type": "SHA1",
            "hash_value": hash,
            "download_url": format!("http://{host}/v3/billdownload/file?token={token}"),
        })),
    )
}

fn bill_date(s: &Shared, what: &str, q: &HashMap<String, String>) -> std::result::Result<String, Response> {
    let Some(d) = q.get("bill_date") else {
        return Err(param_err(s, what, "bill_date", "bill_date 必填"));
    };
    match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
        Ok(day) => {
            let today = s.now().with_timezone(&FixedOffset::east_opt(8 * 3600).expect("offset")).date_naive();
            if day > today {
                Err(err(s, what, 400, "INVALID_BILL_DATE", "账单日期不能晚于今天"))
            } else if today - day > chrono::Duration::days(92) {
                Err(err(s, what, 400, "INVALID_BILL_DATE", "仅支持三个月内的账单下载申请"))
            } else {
                Ok(d.clone())
            }
        }
        Err(_) => Err(param_err(s, what, "bill_date", "bill_date 格式须为yyyy-MM-dd")),
    }
}

async fn trade_bill(State(s): State<Shared>, Query(q): Q, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    const W: &str = "GET /v3/bill/tradebill";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let date = match bill_date(&s, W, &q) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let bill_type = q.get("bill_type").map(String::as_str).unwrap_or("ALL");
    if !matches!(bill_type, "ALL" | "SUCCESS" | "REFUND") {
        return param_err(&s, W, "bill_type", "bill_type 取值错误");
    }
    let gzip = q.get("tar_type").map(String::as_str) == Some("GZIP");
    let text = trade_bill_text(&lock(&s.pay), &mchid, &date, bill_type);
    bill_reply(&s, W, mchid, &headers, text, gzip)
}

async fn fund_flow_bill(
    State(s): State<Shared>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/bill/fundflowbill";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let date = match bill_date(&s, W, &q) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if !matches!(q.get("account_type").map(String::as_str).unwrap_or("BASIC"), "BASIC" | "OPERATION" | "FEES") {
        return param_err(&s, W, "account_type", "account_type 取值错误");
    }
    let gzip = q.get("tar_type").map(String::as_str) == Some("GZIP");
    let text = fund_flow_text(&lock(&s.pay), &mchid, &date);
    bill_reply(&s, W, mchid, &headers, text, gzip)
}

async fn bill_download(State(s): State<Shared>, Query(q): Q, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    const W: &str = "GET /v3/billdownload/file";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let now = s.now();
    let bill = q.get("token").and_then(|t| lock(&s.pay).bills.get(t).cloned());
    let Some(bill) = bill.filter(|b| b.mchid == mchid && b.expires > now) else {
        return err(&s, W, 400, "INVALID_REQUEST", "下载链接已失效或不存在");
    };
    let bytes = if bill.gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        if std::io::Write::write_all(&mut enc, &bill.bytes).is_err() {
            return err(&s, W, 500, "SYSTEM_ERROR", "gzip failed");
        }
        enc.finish().unwrap_or_default()
    } else {
        bill.bytes
    };
    lock(&s.pay).push_log(now, "api", W.to_string(), 200, format!("{} bytes, unsigned", bytes.len()));
    // Bill files are the one answer WeChat Pay does not sign.
    let ct = if bill.gzip { "application/octet-stream" } else { "text/plain; charset=utf-8" };
    ([(axum::http::header::CONTENT_TYPE, ct)], bytes).into_response()
}

// ----- profit sharing -----

/// Decrypts an OAEP field with the platform key named by `Wechatpay-Serial`.
fn decrypt_sensitive(s: &Shared, what: &str, headers: &HeaderMap, ct: &str) -> std::result::Result<String, Response> {
    let Some(serial) = headers.get("wechatpay-serial").and_then(|v| v.to_str().ok()) else {
        return Err(param_err(s, what, "Wechatpay-Serial", "请求包含敏感信息时，HTTP头Wechatpay-Serial必填"));
    };
    let Some(key) = lock(&s.pay).private_key_for(serial) else {
        return Err(param_err(
            s,
            what,
            "Wechatpay-Serial",
            "Wechatpay-Serial 不是有效的平台证书序列号或微信支付公钥ID",
        ));
    };
    key.decrypt_oaep(ct)
        .map(|z| z.to_string())
        .map_err(|_| param_err(s, what, "name", "敏感信息解密失败，请使用Wechatpay-Serial对应的公钥以RSAES-OAEP加密"))
}

async fn receivers_add(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    const W: &str = "POST /v3/profitsharing/receivers/add";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    need_str!(&s, W, v, "appid");
    let kind = need_str!(&s, W, v, "type");
    let account = need_str!(&s, W, v, "account");
    let relation = need_str!(&s, W, v, "relation_type");
    if !matches!(kind.as_str(), "MERCHANT_ID" | "PERSONAL_OPENID" | "PERSONAL_SUB_OPENID") {
        return param_err(&s, W, "type", "type 取值错误");
    }
    let name = match str_field(&v, &["name"]) {
        Some(ct) => match decrypt_sensitive(&s, W, &headers, ct) {
            Ok(n) => Some(n),
            Err(r) => return r,
        },
        None if kind == "MERCHANT_ID" => return param_err(&s, W, "name", "分账接收方类型为MERCHANT_ID时name必填"),
        None => None,
    };
    let owner = str_field(&v, &["sub_mchid"]).map(str::to_string).unwrap_or(mchid);
    let mut stored = json!({ "type": kind, "account": account, "relation_type": relation });
    if let Some(c) = str_field(&v, &["custom_relation"]) {
        stored["custom_relation"] = c.into();
    }
    let mut answer = stored.clone();
    if let Some(n) = &name {
        stored["name_plain"] = n.clone().into();
        answer["name"] = str_field(&v, &["name"]).unwrap_or_default().into();
    }
    lock(&s.pay).receivers.insert((owner, kind, account), stored);
    reply(&s, W, 200, Some(answer))
}

async fn receivers_delete(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/profitsharing/receivers/delete";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let kind = need_str!(&s, W, v, "type");
    let account = need_str!(&s, W, v, "account");
    let owner = str_field(&v, &["sub_mchid"]).map(str::to_string).unwrap_or(mchid);
    lock(&s.pay).receivers.remove(&(owner, kind.clone(), account.clone()));
    reply(&s, W, 200, Some(json!({ "type": kind, "account": account })))
}

fn sharing_json(sh: &Sharing) -> Value {
    let receivers: Vec<Value> = sh
        .receivers
        .iter()
        .enumerate()
        .map(|(i, (kind, account, amount, desc))| {
            json!({
                "amount": amount, "description": desc, "type": kind, "account": account, "result": "SUCCESS",
                "detail_id": format!("3600{}{:04}", &sh.order_id[4..], i),
                "create_time": wechat_time(sh.created), "finish_time": wechat_time(sh.created)
            })
        })
        .collect();
    let mut v = json!({
        "transaction_id": sh.transaction_id, "out_order_no": sh.out_order_no, "order_id": sh.order_id,
        "state": "FINISHED", "receivers": receivers,
    });
    if let Some(sub) = &sh.sub_mchid {
        v["sub_mchid"] = sub.clone().into();
    }
    v
}

/// What may still be shared: 30% of the order (WeChat's default maximum ratio) minus what was shared.
fn sharing_cap(p: &PayState, transaction_id: &str, total: i64) -> i64 {
    let shared: i64 = p
        .sharing
        .values()
        .filter(|sh| sh.transaction_id == transaction_id)
        .flat_map(|sh| sh.receivers.iter().map(|r| r.2))
        .sum();
    total * 30 / 100 - shared
}

async fn sharing_create(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/profitsharing/orders";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let txn = need_str!(&s, W, v, "transaction_id");
    let out_order_no = need_str!(&s, W, v, "out_order_no");
    let Some(unfreeze) = v.get("unfreeze_unsplit").and_then(Value::as_bool) else {
        return param_err(&s, W, "unfreeze_unsplit", "unfreeze_unsplit 必填");
    };
    let sub = str_field(&v, &["sub_mchid"]).map(str::to_string);
    let owner = sub.clone().unwrap_or_else(|| mchid.clone());
    let list = v.get("receivers").and_then(Value::as_array).cloned().unwrap_or_default();
    if list.is_empty() || list.len() > 50 {
        return param_err(&s, W, "receivers", "分账接收方列表须为1-50个");
    }
    let mut receivers = Vec::new();
    for r in &list {
        let (Some(kind), Some(account), Some(amount), Some(desc)) = (
            str_field(r, &["type"]),
            str_field(r, &["account"]),
            int_field(r, &["amount"]),
            str_field(r, &["description"]),
        ) else {
            return param_err(&s, W, "receivers", "接收方须包含 type、account、amount、description");
        };
        if amount <= 0 {
            return param_err(&s, W, "receivers.amount", "分账金额须为正整数");
        }
        if let Some(ct) = str_field(r, &["name"])
            && let Err(resp) = decrypt_sensitive(&s, W, &headers, ct)
        {
            return resp;
        }
        receivers.push((kind.to_string(), account.to_string(), amount, desc.to_string()));
    }
    let now = s.now();
    let mut p = lock(&s.pay);
    let skey = (owner.clone(), out_order_no.clone());
    if let Some(sh) = p.sharing.get(&skey) {
        let (same, json) = (sh.request == v, sharing_json(sh));
        drop(p);
        return if same {
            reply(&s, W, 200, Some(json))
        } else {
            err(&s, W, 400, "INVALID_REQUEST", "商户分账单号重复")
        };
    }
    let order = p.by_txn.get(&txn).and_then(|k| p.orders.get(k)).filter(|o| o.owner == owner).cloned();
    let Some(order) = order else {
        drop(p);
        return err(&s, W, 404, "RESOURCE_NOT_EXISTS", "订单不存在");
    };
    if !order.profit_sharing {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "该订单不是分账订单 (settle_info.profit_sharing 未设置)");
    }
    if p.unfrozen.get(&txn).copied().unwrap_or(false) {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "订单剩余资金已解冻，不能再分账");
    }
    // The backstop: 180 days after payment WeChat unfreezes what was not shared to the payee.
    if order.success_time.is_some_and(|t| now > t + chrono::Duration::days(SHARING_DAYS)) {
        p.unfrozen.insert(txn.clone(), true);
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "订单已超过分账期限（支付成功后 180 天），剩余资金已自动解冻");
    }
    if let Some((k, a, _, _)) =
        receivers.iter().find(|(k, a, _, _)| !p.receivers.contains_key(&(owner.clone(), k.clone(), a.clone())))
    {
        let msg = format!("分账接收方 {k} {a} 未添加");
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", &msg);
    }
    let wanted: i64 = receivers.iter().map(|r| r.2).sum();
    let cap = sharing_cap(&p, &txn, order.total);
    if wanted > cap {
        let msg = format!("分账金额超出最大分账比例 30%：本次 {wanted} 分，剩余可分 {} 分", cap.max(0));
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", &msg);
    }
    let n = p.next();
    let sh = Sharing {
        transaction_id: txn.clone(),
        out_order_no,
        order_id: format!("3008{}{:010}", now.format("%Y%m%d%H%M"), n),
        sub_mchid: sub,
        receivers,
        created: now,
        request: v.clone(),
    };
    let json = sharing_json(&sh);
    p.sharing.insert(skey, sh);
    if unfreeze {
        p.unfrozen.insert(txn, true);
    }
    drop(p);
    s.bump("pay.profitsharing");
    reply(&s, W, 200, Some(json))
}

async fn sharing_query(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/profitsharing/orders/{out_order_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let Some(txn) = q.get("transaction_id") else {
        return param_err(&s, W, "transaction_id", "transaction_id 必填");
    };
    let owner = q.get("sub_mchid").cloned().unwrap_or(mchid);
    let v = lock(&s.pay).sharing.get(&(owner, no)).filter(|sh| &sh.transaction_id == txn).map(sharing_json);
    match v {
        Some(v) => reply(&s, W, 200, Some(v)),
        None => err(&s, W, 404, "RESOURCE_NOT_EXISTS", "分账单不存在"),
    }
}

async fn sharing_unfreeze(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/profitsharing/orders/unfreeze";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let txn = need_str!(&s, W, v, "transaction_id");
    let out_order_no = need_str!(&s, W, v, "out_order_no");
    need_str!(&s, W, v, "description");
    let sub = str_field(&v, &["sub_mchid"]).map(str::to_string);
    let owner = sub.clone().unwrap_or(mchid);
    let now = s.now();
    let mut p = lock(&s.pay);
    let skey = (owner.clone(), out_order_no.clone());
    if let Some(sh) = p.sharing.get(&skey) {
        let json = sharing_json(sh);
        drop(p);
        return reply(&s, W, 200, Some(json));
    }
    let order =
        p.by_txn.get(&txn).and_then(|k| p.orders.get(k)).filter(|o| o.owner == owner && o.profit_sharing).cloned();
    if order.is_none() {
        drop(p);
        return err(&s, W, 404, "RESOURCE_NOT_EXISTS", "分账订单不存在");
    }
    if p.unfrozen.get(&txn).copied().unwrap_or(false) {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "订单剩余资金已解冻");
    }
    let n = p.next();
    let sh = Sharing {
        transaction_id: txn.clone(),
        out_order_no,
        order_id: format!("3008{}{:010}", now.format("%Y%m%d%H%M"), n),
        sub_mchid: sub,
        receivers: Vec::new(),
        created: now,
        request: v.clone(),
    };
    let json = sharing_json(&sh);
    p.sharing.insert(skey, sh);
    p.unfrozen.insert(txn, true);
    drop(p);
    reply(&s, W, 200, Some(json))
}

async fn sharing_amounts(
    State(s): State<Shared>,
    Path(txn): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/profitsharing/transactions/{transaction_id}/amounts";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let p = lock(&s.pay);
    let order = p.by_txn.get(&txn).and_then(|k| p.orders.get(k)).filter(|o| o.notify_mchid == mchid).cloned();
    let Some(order) = order else {
        drop(p);
        return err(&s, W, 404, "RESOURCE_NOT_EXISTS", "订单不存在");
    };
    let unsplit = if !order.profit_sharing || p.unfrozen.get(&txn).copied().unwrap_or(false) {
        0
    } else {
        let shared: i64 = p
            .sharing
            .values()
            .filter(|sh| sh.transaction_id == txn)
            .flat_map(|sh| sh.receivers.iter().map(|r| r.2))
            .sum();
        order.total - shared
    };
    drop(p);
    reply(&s, W, 200, Some(json!({ "transaction_id": txn, "unsplit_amount": unsplit })))
}

async fn return_create(State(s): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    const W: &str = "POST /v3/profitsharing/return-orders";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let out_return_no = need_str!(&s, W, v, "out_return_no");
    let return_mchid = need_str!(&s, W, v, "return_mchid");
    let description = need_str!(&s, W, v, "description");
    let Some(amount) = int_field(&v, &["amount"]).filter(|a| *a > 0) else {
        return param_err(&s, W, "amount", "amount 须为正整数");
    };
    let owner = str_field(&v, &["sub_mchid"]).map(str::to_string).unwrap_or(mchid);
    let now = s.now();
    let mut p = lock(&s.pay);
    let rkey = (owner.clone(), out_return_no.clone());
    if let Some(r) = p.returns.get(&rkey) {
        let json = r.json.clone();
        drop(p);
        return reply(&s, W, 200, Some(json));
    }
    let sh = match (str_field(&v, &["out_order_no"]), str_field(&v, &["order_id"])) {
        (Some(o), _) => p.sharing.get(&(owner.clone(), o.to_string())).cloned(),
        (None, Some(id)) => p.sharing.values().find(|sh| sh.order_id == id).cloned(),
        _ => None,
    };
    let Some(sh) = sh else {
        drop(p);
        return err(&s, W, 404, "RESOURCE_NOT_EXISTS", "分账单不存在");
    };
    let shared_to: i64 = sh.receivers.iter().filter(|r| r.0 == "MERCHANT_ID" && r.1 == return_mchid).map(|r| r.2).sum();
    let returned: i64 = p
        .returns
        .values()
        .filter(|r| r.out_order_no == sh.out_order_no && r.return_mchid == return_mchid)
        .map(|r| r.amount)
        .sum();
    if amount > shared_to - returned {
        drop(p);
        return err(&s, W, 400, "INVALID_REQUEST", "回退金额超过该接收方已分得且未回退的金额");
    }
    let n = p.next();
    let json = json!({
        "order_id": sh.order_id, "out_order_no": sh.out_order_no, "out_return_no": out_return_no,
        "return_id": format!("3008{}{:010}", now.format("%Y%m%d%H%M"), n), "return_mchid": return_mchid,
        "amount": amount, "description": description, "result": "SUCCESS",
        "create_time": wechat_time(now), "finish_time": wechat_time(now),
    });
    p.returns.insert(rkey, ReturnRec { json: json.clone(), amount, out_order_no: sh.out_order_no, return_mchid });
    drop(p);
    reply(&s, W, 200, Some(json))
}

async fn return_query(
    State(s): State<Shared>,
    Path(no): Path<String>,
    Query(q): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/profitsharing/return-orders/{out_return_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let owner = q.get("sub_mchid").cloned().unwrap_or(mchid);
    let out_order_no = q.get("out_order_no").cloned().unwrap_or_default();
    let v = lock(&s.pay).returns.get(&(owner, no)).filter(|r| r.out_order_no == out_order_no).map(|r| r.json.clone());
    match v {
        Some(v) => reply(&s, W, 200, Some(v)),
        None => err(&s, W, 404, "RESOURCE_NOT_EXISTS", "回退单不存在"),
    }
}

// ----- merchant transfers (商家转账) -----

/// The reports a transfer scene requires (scene 1000 现金营销: 活动名称 and 奖励说明).
fn required_reports(scene: &str) -> &'static [&'static str] {
    match scene {
        "1000" => &["活动名称", "奖励说明"],
        _ => &[],
    }
}

fn transfer_created_json(t: &TransferRec) -> Value {
    let mut v = json!({
        "out_bill_no": t.out_bill_no,
        "transfer_bill_no": t.transfer_bill_no,
        "create_time": wechat_time(t.created),
        "state": t.state,
    });
    if t.state == "WAIT_USER_CONFIRM" {
        v["package_info"] = t.package_info.clone().into();
    }
    if let Some(r) = &t.fail_reason {
        v["fail_reason"] = r.clone().into();
    }
    v
}

fn transfer_json(p: &PayState, t: &TransferRec) -> Value {
    let mut v = json!({
        "mch_id": t.mchid,
        "out_bill_no": t.out_bill_no,
        "transfer_bill_no": t.transfer_bill_no,
        "appid": t.appid,
        "state": t.state,
        "transfer_amount": t.amount,
        "transfer_remark": t.remark,
        "openid": t.openid,
        "create_time": wechat_time(t.created),
        "update_time": wechat_time(t.updated),
    });
    if let Some(r) = &t.fail_reason {
        v["fail_reason"] = r.clone().into();
    }
    // WeChat returns the name encrypted with the merchant's public key.
    if let Some(n) = &t.user_name
        && let Some(ct) = p.merchants.get(&t.mchid).and_then(|m| m.public_key.encrypt_oaep(n).ok())
    {
        v["user_name"] = ct.into();
    }
    v
}

fn transfer_notice_json(t: &TransferRec) -> Value {
    let mut v = json!({
        "out_bill_no": t.out_bill_no,
        "transfer_bill_no": t.transfer_bill_no,
        "state": t.state,
        "mch_id": t.mchid,
        "transfer_amount": t.amount,
        "openid": t.openid,
        "create_time": wechat_time(t.created),
        "update_time": wechat_time(t.updated),
    });
    if let Some(r) = &t.fail_reason {
        v["fail_reason"] = r.clone().into();
    }
    v
}

async fn transfer_create(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/fund-app/mch-transfer/transfer-bills";
    let mchid = authed!(s, W, method, uri, headers, body);
    let v = match parse_json(&s, W, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let appid = need_str!(&s, W, v, "appid");
    let out_bill_no = need_str!(&s, W, v, "out_bill_no");
    let scene = need_str!(&s, W, v, "transfer_scene_id");
    let openid = need_str!(&s, W, v, "openid");
    let remark = need_str!(&s, W, v, "transfer_remark");
    if out_bill_no.len() > 32 || !out_bill_no.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return param_err(&s, W, "out_bill_no", "out_bill_no 须为1-32位数字、大小写字母");
    }
    let Some(amount) = int_field(&v, &["transfer_amount"]) else {
        return param_err(&s, W, "transfer_amount", "transfer_amount 必填，单位为分");
    };
    if amount < 10 {
        return param_err(&s, W, "transfer_amount", "转账金额不能低于0.1元 (transfer_amount >= 10)");
    }
    if remark.chars().count() > 32 {
        return param_err(&s, W, "transfer_remark", "transfer_remark 不能超过32个字符");
    }
    let reports = v.get("transfer_scene_report_infos").and_then(Value::as_array).cloned().unwrap_or_default();
    let valid_reports = !reports.is_empty()
        && reports.iter().all(|r| str_field(r, &["info_type"]).is_some() && str_field(r, &["info_content"]).is_some());
    if !valid_reports {
        return param_err(
            &s,
            W,
            "transfer_scene_report_infos",
            "transfer_scene_report_infos 必填，且每项须含 info_type 与 info_content",
        );
    }
    for need in required_reports(&scene) {
        if !reports.iter().any(|r| str_field(r, &["info_type"]) == Some(need)) {
            return param_err(&s, W, "transfer_scene_report_infos", &format!("转账场景 {scene} 须报备“{need}”"));
        }
    }
    if let Some(u) = str_field(&v, &["notify_url"])
        && url::Url::parse(u).map(|u| u.query().is_some() || !u.scheme().starts_with("http")).unwrap_or(true)
    {
        return param_err(&s, W, "notify_url", "notify_url 需为不带参数的http(s)地址");
    }
    let bound = lock(&s.pay).merchants.get(&mchid).map(|m| m.appids.is_empty() || m.appids.contains(&appid));
    if bound != Some(true) {
        return param_err(&s, W, "appid", "appid和mch_id不匹配");
    }
    if !lock(&s.mp).openid_in_app(&appid, &openid) {
        return param_err(&s, W, "openid", "openid与appid不匹配");
    }
    let user_name = match str_field(&v, &["user_name"]) {
        Some(ct) => {
            let Some(serial) = headers.get("wechatpay-serial").and_then(|h| h.to_str().ok()) else {
                return param_err(&s, W, "Wechatpay-Serial", "请求包含敏感信息时，HTTP头Wechatpay-Serial必填");
            };
            let Some(key) = lock(&s.pay).private_key_for(serial) else {
                return param_err(
                    &s,
                    W,
                    "Wechatpay-Serial",
                    "Wechatpay-Serial 不是有效的平台证书序列号或微信支付公钥ID",
                );
            };
            match key.decrypt_oaep(ct) {
                Ok(n) if !n.trim().is_empty() => Some(n.to_string()),
                _ => {
                    return param_err(
                        &s,
                        W,
                        "user_name",
                        "user_name 解密失败，请使用Wechatpay-Serial对应的公钥以RSAES-OAEP加密",
                    );
                }
            }
        }
        None => None,
    };
    if amount >= 200_000 && user_name.is_none() {
        return param_err(&s, W, "user_name", "转账金额>=2000元时，收款用户姓名必填");
    }
    let mut request = v.clone();
    if let Some(n) = &user_name {
        request["user_name"] = n.clone().into();
    }
    let now = s.now();
    let key = (mchid.clone(), out_bill_no.clone());
    let mut p = lock(&s.pay);
    if let Some(t) = p.transfers.get(&key) {
        let (same, answer) = (t.request == request, transfer_created_json(t));
        drop(p);
        return if same {
            reply(&s, W, 200, Some(answer))
        } else {
            err(&s, W, 400, "INVALID_REQUEST", "商户单号重复且参数不一致 (same out_bill_no with different parameters)")
        };
    }
    let n = p.next();
    let t = TransferRec {
        mchid: mchid.clone(),
        appid,
        out_bill_no: out_bill_no.clone(),
        transfer_bill_no: format!("1330000{}{:012}", now.format("%Y%m%d%H%M%S"), n),
        openid,
        user_name,
        amount,
        remark,
        notify_url: str_field(&v, &["notify_url"]).map(str::to_string),
        state: "WAIT_USER_CONFIRM".into(),
        fail_reason: None,
        package_info: format!("ABBQO+oYAAABAAAAAAAk{}", uuid::Uuid::new_v4().simple()),
        created: now,
        updated: now,
        request,
    };
    let answer = transfer_created_json(&t);
    p.transfer_seq.push(key.clone());
    p.transfers.insert(key, t);
    drop(p);
    s.bump("pay.transfer");
    reply(&s, W, 200, Some(answer))
}

async fn transfer_query_out(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let p = lock(&s.pay);
    let v = p.transfers.get(&(mchid, no)).map(|t| transfer_json(&p, t));
    drop(p);
    match v {
        Some(v) => reply(&s, W, 200, Some(v)),
        None => err(&s, W, 404, "NOT_FOUND", "记录不存在"),
    }
}

async fn transfer_query_wx(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const W: &str = "GET /v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/{transfer_bill_no}";
    let mchid = authed!(s, W, method, uri, headers, b"");
    let p = lock(&s.pay);
    let v = p.transfers.values().find(|t| t.mchid == mchid && t.transfer_bill_no == no).map(|t| transfer_json(&p, t));
    drop(p);
    match v {
        Some(v) => reply(&s, W, 200, Some(v)),
        None => err(&s, W, 404, "NOT_FOUND", "记录不存在"),
    }
}

/// Moves a bill to a final state and queues its MCHTRANSFER.BILL.FINISHED notification.
fn finish_transfer(
    s: &Shared,
    mchid: &str,
    out_bill_no: &str,
    from: &[&str],
    to: &str,
    fail_reason: Option<String>,
) -> std::result::Result<Value, String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let key = (mchid.to_string(), out_bill_no.to_string());
    let t = p.transfers.get_mut(&key).ok_or_else(|| format!("no transfer bill {out_bill_no} of merchant {mchid}"))?;
    if !from.contains(&t.state.as_str()) {
        return Err(format!("transfer bill {out_bill_no} is {}, not {}", t.state, from.join(" or ")));
    }
    t.state = to.into();
    t.fail_reason = fail_reason;
    t.updated = now;
    let (notice, url, answer) = (transfer_notice_json(t), t.notify_url.clone(), transfer_created_json(t));
    p.push_log(now, "transfer", format!("{to} {out_bill_no}"), 200, String::new());
    drop(p);
    if let Some(url) = url {
        queue_notification(s, mchid, &url, "MCHTRANSFER.BILL.FINISHED", out_bill_no, &notice);
    }
    s.bump("pay.transfer.finished");
    Ok(answer)
}

async fn transfer_cancel(
    State(s): State<Shared>,
    Path(no): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const W: &str = "POST /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}/cancel";
    let mchid = authed!(s, W, method, uri, headers, body);
    let state = lock(&s.pay).transfers.get(&(mchid.clone(), no.clone())).map(|t| t.state.clone());
    let answer = |s: &Shared| {
        let p = lock(&s.pay);
        p.transfers.get(&(mchid.clone(), no.clone())).map(|t| {
            json!({ "out_bill_no": t.out_bill_no, "transfer_bill_no": t.transfer_bill_no, "state": t.state,
                    "update_time": wechat_time(t.updated) })
        })
    };
    match state.as_deref() {
        None => err(&s, W, 404, "NOT_FOUND", "记录不存在"),
        Some("CANCELLED") => reply(&s, W, 200, answer(&s)),
        Some("ACCEPTED" | "PROCESSING" | "WAIT_USER_CONFIRM") => {
            match finish_transfer(&s, &mchid, &no, &["ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM"], "CANCELLED", None)
            {
                Ok(_) => reply(&s, W, 200, answer(&s)),
                Err(e) => err(&s, W, 400, "INVALID_REQUEST", &e),
            }
        }
        Some(other) => err(&s, W, 400, "INVALID_REQUEST", &format!("单据状态为{other}，不支持撤销")),
    }
}

fn transfers_json(p: &PayState) -> Value {
    Value::Array(
        p.transfer_seq
            .iter()
            .rev()
            .filter_map(|k| p.transfers.get(k))
            .map(|t| {
                let mut v = transfer_notice_json(t);
                v["appid"] = t.appid.clone().into();
                v["transfer_remark"] = t.remark.clone().into();
                v["package_info"] = t.package_info.clone().into();
                v
            })
            .collect(),
    )
}

async fn ctl_transfers(State(s): State<Shared>) -> Response {
    axum::Json(transfers_json(&lock(&s.pay))).into_response()
}

#[derive(Deserialize, Default)]
struct TransferActionBody {
    fail_reason: Option<String>,
}

async fn ctl_transfer_action(
    State(s): State<Shared>,
    Path((mchid, no, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let b: TransferActionBody = serde_json::from_slice(&body).unwrap_or_default();
    let r = match action.as_str() {
        "confirm" => confirm_transfer(&s, &mchid, &no),
        "decline" => decline_transfer(&s, &mchid, &no, b.fail_reason),
        other => Err(format!("unknown action {other} (confirm, decline)")),
    };
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({ "error": e }))).into_response(),
    }
}

fn confirm_transfer(s: &Shared, mchid: &str, out_bill_no: &str) -> std::result::Result<Value, String> {
    finish_transfer(s, mchid, out_bill_no, &["WAIT_USER_CONFIRM"], "SUCCESS", None)
}

fn decline_transfer(
    s: &Shared,
    mchid: &str,
    out_bill_no: &str,
    reason: Option<String>,
) -> std::result::Result<Value, String> {
    let reason = reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "PAYEE_ACCOUNT_ABNORMAL".into());
    finish_transfer(
        s,
        mchid,
        out_bill_no,
        &["ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM", "TRANSFERING"],
        "FAIL",
        Some(reason),
    )
}

// ---------------------------------------------------------------------------------------------
// The cashier's actions (what the user does in WeChat) and the control API
// ---------------------------------------------------------------------------------------------

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": msg }))).into_response()
}

/// The user pays; `Ok(transaction_id)`.
fn pay_order(s: &Shared, mchid: &str, out_trade_no: &str) -> std::result::Result<String, String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let key = (mchid.to_string(), out_trade_no.to_string());
    let order = p.orders.get(&key).cloned().ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    let keys = match &order.kind {
        Kind::Combine { combine_out_trade_no } => p
            .combines
            .get(&(order.notify_mchid.clone(), combine_out_trade_no.clone()))
            .map(|c| c.subs.clone())
            .unwrap_or_else(|| vec![key.clone()]),
        _ => vec![key.clone()],
    };
    for k in &keys {
        let o = p.orders.get(k).ok_or("sub-order missing")?;
        if !matches!(o.state.as_str(), "NOTPAY" | "PAYERROR" | "USERPAYING") {
            return Err(format!("order {} is {}, not payable", o.out_trade_no, o.state));
        }
        if o.time_expire.is_some_and(|t| t < now) {
            return Err(format!(
                "order {} expired at {}",
                o.out_trade_no,
                o.time_expire.map(|t| t.to_rfc3339()).unwrap_or_default()
            ));
        }
    }
    let mut txn_of_key = String::new();
    for k in &keys {
        let n = p.next();
        let txn = format!("42000{}{:011}", now.format("%Y%m%d"), n);
        if let Some(o) = p.orders.get_mut(k) {
            o.state = "SUCCESS".into();
            o.transaction_id = Some(txn.clone());
            o.success_time = Some(now);
        }
        p.by_txn.insert(txn.clone(), k.clone());
        if *k == key {
            txn_of_key = txn;
        }
    }
    let (resource, url, notify_mchid) = match &order.kind {
        Kind::Combine { combine_out_trade_no } => {
            let c = p.combines.get(&(order.notify_mchid.clone(), combine_out_trade_no.clone())).cloned();
            match c {
                Some(c) => (combine_json(&p, &c), c.notify_url.clone(), c.mchid.clone()),
                None => return Err("combined order missing".into()),
            }
        }
        _ => {
            let o = p.orders.get(&key).ok_or("order missing")?;
            (transaction_json(o), o.notify_url.clone(), o.notify_mchid.clone())
        }
    };
    p.push_log(now, "cashier", format!("pay {out_trade_no}"), 200, format!("transaction_id {txn_of_key}"));
    // Every JSAPI payment comes under shipping-info management (发货信息管理), waiting to ship.
    let shippable: Vec<super::shipping::PaidTransaction> = keys
        .iter()
        .filter_map(|k| p.orders.get(k))
        .map(|o| {
            let (mchid, sub) = match &o.kind {
                Kind::Partner { sp_mchid, .. } => (sp_mchid.clone(), Some(o.owner.clone())),
                _ => (o.owner.clone(), None),
            };
            let mut tx = super::shipping::PaidTransaction::new(mchid, &o.out_trade_no, &o.openid, o.total)
                .transaction_id(o.transaction_id.clone().unwrap_or_default())
                .appid(&o.appid)
                .description(&o.description);
            tx.sub_mchid = sub;
            tx
        })
        .collect();
    drop(p);
    for tx in shippable {
        if let Err(e) = super::shipping::register_paid_transaction(s, tx) {
            tracing::warn!(error = %e, "could not put a payment under shipping management");
        }
    }
    s.bump("pay.paid");
    queue_notification(s, &notify_mchid, &url, "TRANSACTION.SUCCESS", out_trade_no, &resource);
    Ok(txn_of_key)
}

fn fail_order(s: &Shared, mchid: &str, out_trade_no: &str) -> std::result::Result<(), String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let o = p
        .orders
        .get_mut(&(mchid.to_string(), out_trade_no.to_string()))
        .ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    if o.state != "NOTPAY" && o.state != "USERPAYING" {
        return Err(format!("order is {}, cannot fail", o.state));
    }
    o.state = "PAYERROR".into();
    p.push_log(now, "cashier", format!("fail {out_trade_no}"), 200, "PAYERROR (no notification, like WeChat)".into());
    Ok(())
}

/// Moves a paid order's payment `days` into the past (the emulator's clock also signs every request,
/// so time limits on one order — the one-year refund window — are tested by ageing the order instead).
fn age_order(s: &Shared, mchid: &str, out_trade_no: &str, days: i64) -> std::result::Result<DateTime<Utc>, String> {
    if days <= 0 {
        return Err("days must be positive".into());
    }
    let mut p = lock(&s.pay);
    let o = p
        .orders
        .get_mut(&(mchid.to_string(), out_trade_no.to_string()))
        .ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    let t = o.success_time.ok_or_else(|| format!("order {out_trade_no} is not paid"))?;
    let aged = t - chrono::Duration::days(days);
    o.success_time = Some(aged);
    Ok(aged)
}

/// The merchant refunds from the merchant platform; `Ok(out_refund_no)`.
fn refund_order(
    s: &Shared,
    mchid: &str,
    out_trade_no: &str,
    amount: Option<i64>,
) -> std::result::Result<String, String> {
    let now = s.now();
    let mut p = lock(&s.pay);
    let okey = (mchid.to_string(), out_trade_no.to_string());
    let n = p.next();
    let o = p.orders.get_mut(&okey).ok_or_else(|| format!("no order {out_trade_no} of merchant {mchid}"))?;
    if !matches!(o.state.as_str(), "SUCCESS" | "REFUND") {
        return Err(format!("order is {}, not paid", o.state));
    }
    if o.success_time.is_some_and(|t| now > t + chrono::Duration::days(REFUND_DAYS)) {
        return Err(format!("order {out_trade_no} was paid more than {REFUND_DAYS} days ago: no refund"));
    }
    let refundable = o.total - o.refunded;
    let refund = amount.unwrap_or(refundable);
    if refund <= 0 || refund > refundable {
        return Err(format!("refund must be 1..={refundable} fen"));
    }
    o.refunded += refund;
    o.state = "REFUND".into();
    let sp_mchid = match &o.kind {
        Kind::Partner { sp_mchid, .. } => Some(sp_mchid.clone()),
        _ => None,
    };
    let rec = RefundRec {
        order: okey.clone(),
        notify_mchid: o.notify_mchid.clone(),
        sp_mchid,
        out_refund_no: format!("EMUREFUND{n}"),
        refund_id: format!("50300{}{:010}", now.format("%Y%m%d%H%M"), n),
        transaction_id: o.transaction_id.clone().unwrap_or_default(),
        out_trade_no: o.out_trade_no.clone(),
        total: o.total,
        refund,
        status: "SUCCESS".into(),
        created: now,
        success_time: Some(now),
        request: Value::Null,
    };
    let (url, nm) = (o.notify_url.clone(), o.notify_mchid.clone());
    let notice = refund_notice_json(&rec);
    let no = rec.out_refund_no.clone();
    p.refunds.insert((okey.0, no.clone()), rec);
    p.push_log(now, "cashier", format!("refund {out_trade_no}"), 200, format!("{refund} fen as {no}"));
    drop(p);
    queue_notification(s, &nm, &url, "REFUND.SUCCESS", out_trade_no, &notice);
    Ok(no)
}

#[derive(Deserialize)]
struct MerchantBody {
    mchid: String,
    serial_no: String,
    public_key: String,
    apiv3_key: String,
    #[serde(default)]
    appids: Vec<String>,
}

async fn ctl_merchant(State(s): State<Shared>, axum::Json(b): axum::Json<MerchantBody>) -> Response {
    match register(&s, &b.mchid, &b.serial_no, &b.public_key, &b.apiv3_key, b.appids) {
        Ok(()) => axum::Json(json!({ "ok": true })).into_response(),
        Err(e) => bad(&e.to_string()),
    }
}

fn register(
    s: &EmulatorState,
    mchid: &str,
    serial: &str,
    public_key_pem: &str,
    apiv3: &str,
    appids: Vec<String>,
) -> Result<()> {
    let m = Merchant {
        serial: serial.to_string(),
        public_key: PayPublicKey::from_pem(public_key_pem)?,
        apiv3: ApiV3Key::new(apiv3)?,
        appids,
    };
    if mchid.is_empty() || serial.is_empty() {
        return Err(Error::Config("mchid and serial_no are required".into()));
    }
    lock(&s.pay).merchants.insert(mchid.to_string(), m);
    Ok(())
}

#[derive(Deserialize)]
struct ModeBody {
    mode: SignMode,
}

async fn ctl_mode(State(s): State<Shared>, axum::Json(b): axum::Json<ModeBody>) -> Response {
    lock(&s.pay).mode = b.mode;
    axum::Json(json!({ "mode": b.mode })).into_response()
}

async fn ctl_rotate(State(s): State<Shared>) -> Response {
    match rotate(&s) {
        Ok(serial) => axum::Json(json!({ "serial_no": serial })).into_response(),
        Err(e) => bad(&e.to_string()),
    }
}

fn rotate(s: &EmulatorState) -> Result<String> {
    let key = MerchantKey::generate()?;
    let now = s.now();
    let seed = format!("rotation {} {}", now.timestamp_nanos_opt().unwrap_or_default(), rand::random::<u64>());
    let cert = issue_certificate(&key, now, &serial_bytes(seed.as_bytes()))?;
    let serial = cert.serial_no().to_string();
    let mut p = lock(&s.pay);
    p.certs.push(PlatformCert { key: Arc::new(key), cert });
    p.push_log(now, "control", "rotate platform certificate".into(), 200, serial.clone());
    Ok(serial)
}

fn keys_json(p: &PayState) -> Value {
    let certs: Vec<Value> = p
        .certs
        .iter()
        .map(|c| json!({ "serial_no": c.cert.serial_no(), "pem": c.cert.pem(), "not_after": wechat_time(c.cert.not_after()) }))
        .collect();
    json!({
        "public_key_id": PUBLIC_KEY_ID,
        "public_key": p.public_key.public_key().to_pem(),
        "certificates": certs,
        "mode": p.mode,
    })
}

async fn ctl_keys(State(s): State<Shared>) -> Response {
    axum::Json(keys_json(&lock(&s.pay))).into_response()
}

#[derive(Deserialize)]
struct ConfigBody {
    time_factor: Option<f64>,
    timestamp_skew_secs: Option<i64>,
    signtest_probes: Option<u32>,
    notify_timeout_ms: Option<u64>,
}

async fn ctl_config(State(s): State<Shared>, axum::Json(b): axum::Json<ConfigBody>) -> Response {
    let mut p = lock(&s.pay);
    if let Some(f) = b.time_factor.filter(|f| *f > 0.0) {
        p.time_factor = f;
    }
    if let Some(k) = b.timestamp_skew_secs {
        p.skew_secs = k;
    }
    if let Some(n) = b.signtest_probes {
        p.probes = n;
    }
    if let Some(ms) = b.notify_timeout_ms.filter(|ms| *ms > 0) {
        p.set_notify_timeout(Duration::from_millis(ms));
    }
    axum::Json(json!({
        "time_factor": p.time_factor,
        "timestamp_skew_secs": p.skew_secs,
        "signtest_probes": p.probes,
        "notify_timeout_ms": p.notify_timeout.as_millis() as u64,
    }))
    .into_response()
}

fn orders_json(p: &PayState) -> Value {
    let list: Vec<Value> = p
        .order_seq
        .iter()
        .rev()
        .filter_map(|k| p.orders.get(k))
        .map(|o| {
            json!({
                "mchid": o.owner,
                "merchant": o.notify_mchid,
                "kind": match &o.kind { Kind::Direct => "jsapi".to_string(), Kind::Partner { .. } => "partner".to_string(), Kind::Combine { combine_out_trade_no } => format!("combine {combine_out_trade_no}") },
                "appid": o.appid,
                "out_trade_no": o.out_trade_no,
                "description": o.description,
                "total": o.total,
                "refunded": o.refunded,
                "openid": o.openid,
                "state": o.state,
                "transaction_id": o.transaction_id,
                "prepay_id": o.prepay_id,
                "notify_url": o.notify_url,
                "created": wechat_time(o.created),
            })
        })
        .collect();
    Value::Array(list)
}

async fn ctl_orders(State(s): State<Shared>) -> Response {
    axum::Json(orders_json(&lock(&s.pay))).into_response()
}

#[derive(Deserialize, Default)]
struct ActionBody {
    amount: Option<i64>,
    days: Option<i64>,
}

async fn ctl_order_action(
    State(s): State<Shared>,
    Path((mchid, no, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let b: ActionBody = serde_json::from_slice(&body).unwrap_or_default();
    let r = match action.as_str() {
        "pay" => pay_order(&s, &mchid, &no).map(|t| json!({ "transaction_id": t })),
        "fail" => fail_order(&s, &mchid, &no).map(|()| json!({ "state": "PAYERROR" })),
        "refund" => refund_order(&s, &mchid, &no, b.amount).map(|r| json!({ "out_refund_no": r })),
        "age" => age_order(&s, &mchid, &no, b.days.unwrap_or(0)).map(|t| json!({ "success_time": wechat_time(t) })),
        other => Err(format!("unknown action {other} (pay, fail, refund, age)")),
    };
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::CONFLICT, axum::Json(json!({ "error": e }))).into_response(),
    }
}

async fn ctl_notifications(State(s): State<Shared>) -> Response {
    axum::Json(lock(&s.pay).deliveries.clone()).into_response()
}

async fn ctl_redeliver(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    if !lock(&s.pay).deliveries.iter().any(|d| d.id == id) {
        return bad("no such notification");
    }
    let ok = deliver_once(&s, &id).await;
    axum::Json(json!({ "delivered": ok })).into_response()
}

async fn ctl_log(State(s): State<Shared>) -> Response {
    axum::Json(lock(&s.pay).log.iter().rev().cloned().collect::<Vec<_>>()).into_response()
}

// ---------------------------------------------------------------------------------------------
// From Rust
// ---------------------------------------------------------------------------------------------

/// A self-signed platform certificate for `key`, valid for five years from yesterday, with a
/// serial derived from `seed` (tests that need a platform certificate and its key).
pub fn test_certificate(key: &MerchantKey, seed: &str) -> Result<PlatformCertificate> {
    issue_certificate(key, Utc::now(), &serial_bytes(seed.as_bytes()))
}

/// [`test_certificate`] with a chosen validity.
pub fn test_certificate_valid(
    key: &MerchantKey,
    seed: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<PlatformCertificate> {
    issue_certificate_valid(key, not_before, not_after, &serial_bytes(seed.as_bytes()))
}

/// The emulator's WeChat Pay public key (for `wxshop trigger` and tests): its id and private key.
pub fn platform_public_key_signer() -> (&'static str, MerchantKey) {
    (PUBLIC_KEY_ID, MerchantKey::from_pem(PLATFORM_PUBLIC_KEY_KEY_PEM).expect("built-in key"))
}

/// The default merchant's configuration in public-key mode (the emulator's default mode).
pub fn default_pay_config() -> Result<PayConfig> {
    let (id, key) = platform_public_key_signer();
    PayConfig::from_pem(DEFAULT_MCHID, DEFAULT_MERCHANT_SERIAL, DEFAULT_MERCHANT_KEY_PEM, DEFAULT_APIV3_KEY)?
        .with_public_key(id, key.public_key())
}

impl EmulatorHandle {
    /// A WeChat Pay client for the default merchant, in public-key mode, pointed at this
    /// emulator and using its clock.
    pub fn pay_client(&self) -> Result<PayClient> {
        self.pay_client_with(default_pay_config()?)
    }

    /// A WeChat Pay client for `config`, pointed at this emulator and using its clock.
    pub fn pay_client_with(&self, config: PayConfig) -> Result<PayClient> {
        let state = self.state().clone();
        PayClient::builder(config).endpoints(self.endpoints()).clock(Arc::new(move || state.now())).build()
    }

    /// Registers a merchant and the public key its signatures verify with.
    pub fn register_merchant(
        &self,
        mchid: &str,
        serial_no: &str,
        public_key: &PayPublicKey,
        apiv3_key: &str,
    ) -> Result<()> {
        register(self.state(), mchid, serial_no, &public_key.to_pem(), apiv3_key, Vec::new())
    }

    /// Chooses which key signs answers and notifications.
    pub fn set_pay_mode(&self, mode: SignMode) {
        lock(&self.state().pay).mode = mode;
    }

    /// Issues a new platform certificate that signs from now on; returns its serial.
    pub fn rotate_platform_certificate(&self) -> Result<String> {
        rotate(self.state())
    }

    /// The current platform certificates, oldest first.
    pub fn platform_certificates(&self) -> Vec<PlatformCertificate> {
        lock(&self.state().pay).certs.iter().map(|c| c.cert.clone()).collect()
    }

    /// Divides WeChat's redelivery schedule by `factor` (1000: 15 s → 15 ms).
    pub fn set_notify_time_factor(&self, factor: f64) {
        if factor > 0.0 {
            lock(&self.state().pay).time_factor = factor;
        }
    }

    /// How long notifications wait for the merchant's answer before the attempt counts as failed
    /// (WeChat: [`NOTIFY_TIMEOUT`], 5 s).
    pub fn set_notify_timeout(&self, timeout: Duration) {
        if !timeout.is_zero() {
            lock(&self.state().pay).set_notify_timeout(timeout);
        }
    }

    /// Signs the next `n` answers as `WECHATPAY/SIGNTEST/` probes.
    pub fn send_signtest_probes(&self, n: u32) {
        lock(&self.state().pay).probes = n;
    }

    /// Skews the timestamps of answers and notifications by `secs`.
    pub fn set_pay_timestamp_skew(&self, secs: i64) {
        lock(&self.state().pay).skew_secs = secs;
    }

    /// The user pays an order (what tapping Pay in the cashier does); returns the transaction id.
    pub async fn cashier_pay(&self, mchid: &str, out_trade_no: &str) -> Result<String> {
        pay_order(self.state(), mchid, out_trade_no).map_err(Error::InvalidRequest)
    }

    /// Moves a paid order's payment `days` into the past (to test WeChat's time limits on it, such as
    /// refunds only within 365 days of payment).
    pub async fn age_order(&self, mchid: &str, out_trade_no: &str, days: i64) -> Result<()> {
        age_order(self.state(), mchid, out_trade_no, days).map(|_| ()).map_err(Error::InvalidRequest)
    }

    /// The merchant refunds an order from the merchant platform (all that is left, or `amount`).
    pub async fn cashier_refund(&self, mchid: &str, out_trade_no: &str, amount: Option<i64>) -> Result<String> {
        refund_order(self.state(), mchid, out_trade_no, amount).map_err(Error::InvalidRequest)
    }

    /// The user confirms a `WAIT_USER_CONFIRM` transfer bill in `wx.requestMerchantTransfer`: it
    /// succeeds and `MCHTRANSFER.BILL.FINISHED` is sent to its notify URL.
    pub async fn transfer_confirm(&self, mchid: &str, out_bill_no: &str) -> Result<()> {
        confirm_transfer(self.state(), mchid, out_bill_no).map(|_| ()).map_err(Error::InvalidRequest)
    }

    /// The transfer fails (`FAIL` with `fail_reason`, default `PAYEE_ACCOUNT_ABNORMAL`), notified.
    pub async fn transfer_decline(&self, mchid: &str, out_bill_no: &str, fail_reason: Option<&str>) -> Result<()> {
        decline_transfer(self.state(), mchid, out_bill_no, fail_reason.map(str::to_string))
            .map(|_| ())
            .map_err(Error::InvalidRequest)
    }

    /// The state of a transfer bill (`WAIT_USER_CONFIRM`, `SUCCESS`…), as WeChat Pay would answer it.
    pub fn transfer_state(&self, mchid: &str, out_bill_no: &str) -> Option<String> {
        lock(&self.state().pay).transfers.get(&(mchid.to_string(), out_bill_no.to_string())).map(|t| t.state.clone())
    }

    /// The state of an order as WeChat Pay's query would answer it.
    pub fn pay_order_state(&self, mchid: &str, out_trade_no: &str) -> Option<String> {
        lock(&self.state().pay).orders.get(&(mchid.to_string(), out_trade_no.to_string())).map(|o| o.state.clone())
    }

    /// Every notification and its delivery attempts.
    pub fn notifications(&self) -> Vec<Delivery> {
        lock(&self.state().pay).deliveries.clone()
    }

    /// Sends notification `id` again now (same id); true when answered 2xx.
    pub async fn redeliver(&self, id: &str) -> bool {
        deliver_once(self.state(), id).await
    }
}

/// Sends one notification signed with the emulator's WeChat Pay public key and the default
/// merchant's APIv3 key to `url` (what `wxshop trigger` does); returns the HTTP status.
pub async fn trigger(url: &str, event_type: &str, resource: &Value) -> Result<u16> {
    let (serial, key) = platform_public_key_signer();
    let apiv3 = ApiV3Key::new(DEFAULT_APIV3_KEY)?;
    let plaintext = serde_json::to_vec(resource).map_err(|e| Error::decode("trigger", e))?;
    let n =
        crate::pay::notify::sign_notification(&key, serial, &apiv3, event_type, &plaintext, Utc::now().timestamp())?;
    let http = Http::new(
        crate::config::Endpoints::default(),
        HttpConfig { timeout: Duration::from_secs(10), retry: RetryPolicy::none(), client: None },
    )?;
    let mut req = Request::new(Method::POST, Host::Absolute, url)
        .body(Body::Raw { content_type: "application/json".into(), bytes: n.body.into() });
    for (k, v) in n.headers.iter() {
        if k != "content-type" {
            req = req.header(k.clone(), v.clone());
        }
    }
    match http.execute(&req, None).await {
        Ok(r) => Ok(r.status),
        Err(Error::HttpStatus { status, .. }) | Err(Error::PayApi { status, .. }) => Ok(status),
        Err(e) => Err(e),
    }
}
