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
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Method;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::control::{age_order, pay_order, refund_order, register};
use self::keys::{issue_certificate, issue_certificate_valid, rotate, serial_bytes, static_key};
use self::notify::deliver_once;
use self::transfers::{confirm_transfer, decline_transfer};
use crate::crypto::pay::{ApiV3Key, MerchantKey, PayPublicKey, PlatformCertificate, normalize_serial};
use crate::emulator::{EmulatorHandle, Shared, lock};
use crate::error::{Error, Result};
use crate::http::{Body, Host, Http, HttpConfig, Request, RetryPolicy};
use crate::pay::transactions::wechat_time;
use crate::pay::{PayClient, PayConfig};

mod bills;
mod combine;
mod control;
mod extract;
mod keys;
mod notify;
mod partner;
mod profitsharing;
mod refunds;
mod transactions;
mod transfers;
/// The default merchant number.
pub const DEFAULT_MCHID: &str = "1230000109";
/// The default merchant's API certificate serial.
pub const DEFAULT_MERCHANT_SERIAL: &str = "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C";
/// The default merchant's APIv3 key.
pub const DEFAULT_APIV3_KEY: &str = "wxshop-emulator-apiv3-key-000001";
/// The emulator's WeChat Pay public key id.
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0112300001092025000000000001";
/// The default merchant's private key. A published test key: never use it for real money.
pub const DEFAULT_MERCHANT_KEY_PEM: &str = include_str!("pem/merchant_key.pem");
/// WeChat Pay refunds a payment only within this many days of its success time.
const REFUND_DAYS: i64 = 365;
/// Funds frozen for profit sharing are unfrozen to the payee this many days after payment.
const SHARING_DAYS: i64 = 180;

const PLATFORM_CERT_KEY_PEM: &str = include_str!("pem/platform_cert_key.pem");
const PLATFORM_PUBLIC_KEY_KEY_PEM: &str = include_str!("pem/platform_public_key_key.pem");

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
                appids: vec![crate::emulator::DEFAULT_APPID.to_string()],
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
// Routes
// ---------------------------------------------------------------------------------------------

pub(super) fn routes(state: Shared) -> Router<Shared> {
    Router::new()
        .merge(control::routes())
        .merge(keys::routes())
        .merge(transactions::routes())
        .merge(partner::routes())
        .merge(combine::routes())
        .merge(refunds::routes())
        .merge(bills::routes())
        .merge(profitsharing::routes())
        .merge(transfers::routes())
        .route_layer(axum::middleware::from_fn_with_state(state, extract::sign_errors))
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
