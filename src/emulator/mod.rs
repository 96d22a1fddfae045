//! The local WeChat + WeChat Pay emulator.
//!
//! WeChat has no sandbox, so wxshop ships one: an axum server that answers the mini-program and
//! WeChat Pay APIs with WeChat's semantics — it verifies what WeChat verifies, rejects what WeChat
//! rejects with WeChat's errcodes, and signs what WeChat signs. Tests start it in-process on
//! `127.0.0.1:0`; developers run `wxshop emulator`.
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use wxshop::emulator::Emulator;
//! let emu = Emulator::start_default().await?;
//! let client = emu.client()?;                  // a Client pointed at the emulator
//! let code = emu.login_code(client.appid(), "alice").await?; // stands in for wx.login
//! let session = client.auth().code2session(&code).await?;
//! assert_eq!(emu.counter("token.issued"), 0);
//! # Ok(()) }
//! ```
//!
//! # Control API
//!
//! Everything under `/__emulator/` drives the emulator; WeChat has no such paths.
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /__emulator/apps` | `{"appid","secret"}` | registers a mini-program |
//! | `POST /__emulator/login` | `{"appid","user"}` | mints a `wx.login` code for a user (single use, 5 min) → `{"code","openid"}` |
//! | `POST /__emulator/phone_code` | `{"appid","phone"}` | mints a getPhoneNumber code → `{"code"}` |
//! | `POST /__emulator/faults` | `{"path","count","errcode"?,"status"?,"reset"?,"delay_ms"?,"after"?}` | the next `count` calls to `path` answer the fault (with `after`, once the call has taken effect) |
//! | `DELETE /__emulator/faults` | — | clears faults |
//! | `GET /__emulator/calls` | — | `{path: count}` of every call served |
//! | `GET /__emulator/counters` | — | named counters (`token.issued`, …) |
//! | `POST /__emulator/reset_counters` | — | zeroes calls and counters |
//! | `POST /__emulator/clock/advance` | `{"seconds"}` | moves the emulator's clock forward |
//! | `POST /__emulator/token_ttl` | `{"seconds"}` | lifetime of tokens issued from now on |
//! | `GET /__emulator/last_body?path=P` | — | the last request body served on `P`, as received |
//!
//!
//! Capabilities document their own control calls, in modules laid out like the SDK's: the
//! mini-program side in [`mp`] — [`mp::link`] (links and quotas), [`mp::wxacode`] (codes),
//! [`mp::shipping`] (transactions, receipt, timers, trade_manage events), [`mp::message`] (message
//! push, templates and consent), [`mp::security`] (risky words) — and [`pay`] (WeChat Pay:
//! merchants, signing mode, certificate rotation, the cashier's actions). The cashier — the list of
//! prepay orders with Pay / Fail / Refund and a log of calls and notifications — is at `/`.

// Handlers short-circuit with a ready WeChat error response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::{AppConfig, Endpoints};
use crate::error::{Error, Result};

mod control;
pub mod mp;
pub mod pay;

/// Configuration of an emulator instance.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Mini-programs known at start.
    pub apps: Vec<AppConfig>,
    /// Lifetime of issued access tokens.
    pub token_ttl: Duration,
}

/// The appid of the app every default emulator knows.
pub const DEFAULT_APPID: &str = "wx_emulator_app";
/// Its appsecret.
pub const DEFAULT_SECRET: &str = "emulator-secret";

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            apps: vec![AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET)],
            token_ttl: Duration::from_secs(7200),
        }
    }
}

/// A fault to inject.
#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    /// The path it applies to (`/cgi-bin/stable_token`).
    pub path: String,
    /// How many calls it affects.
    #[serde(default = "one")]
    pub count: u32,
    /// Answer this errcode (HTTP 200, WeChat's envelope).
    #[serde(default)]
    pub errcode: Option<i64>,
    /// Answer this HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Drop the connection mid-answer.
    #[serde(default)]
    pub reset: bool,
    /// Delay before answering (then serve normally unless another fault field is set).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Strike after the call was served: it takes effect, and its answer is delayed, replaced or
    /// lost (what a retry after a lost answer must not duplicate).
    #[serde(default)]
    pub after: bool,
}

fn one() -> u32 {
    1
}

/// The emulator's whole state, shared by its handlers.
#[derive(Debug)]
pub struct EmulatorState {
    pub(crate) faults: Mutex<Vec<Fault>>,
    pub(crate) calls: Mutex<HashMap<String, u64>>,
    pub(crate) counters: Mutex<HashMap<String, u64>>,
    clock_offset_ms: AtomicI64,
    pub(crate) token_ttl_secs: AtomicI64,
    pub(crate) mp: Mutex<mp::auth::MpState>,
    /// The last request body served per path (for assertions on what a client sent).
    pub(crate) last_bodies: Mutex<HashMap<String, bytes::Bytes>>,
    pub(crate) links: Mutex<mp::link::LinksState>,
    pub(crate) shipping: Mutex<mp::shipping::ShippingState>,
    pub(crate) pay: Mutex<pay::PayState>,
    pub(crate) push: mp::message::PushShared,
}

/// Shared handle to the state.
pub type Shared = Arc<EmulatorState>;

impl EmulatorState {
    fn new(config: &EmulatorConfig) -> Self {
        let mut mp = mp::auth::MpState::default();
        for app in &config.apps {
            mp.add_app(app);
        }
        EmulatorState {
            faults: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            clock_offset_ms: AtomicI64::new(0),
            token_ttl_secs: AtomicI64::new(config.token_ttl.as_secs() as i64),
            mp: Mutex::new(mp),
            last_bodies: Mutex::new(HashMap::new()),
            links: Mutex::new(mp::link::LinksState::default()),
            shipping: Mutex::new(mp::shipping::ShippingState::default()),
            pay: Mutex::new(pay::PayState::new(Utc::now())),
            push: mp::message::PushShared::default(),
        }
    }

    /// The last request body a path was served with.
    pub fn last_body(&self, path: &str) -> Option<bytes::Bytes> {
        lock(&self.last_bodies).get(path).cloned()
    }

    /// The emulator's clock (system time plus any advance).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Sets the lifetime of access tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.token_ttl_secs.store(ttl.as_secs().max(1) as i64, Ordering::Relaxed);
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock_offset_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// Adds one to a named counter.
    pub fn bump(&self, name: &str) {
        *lock(&self.counters).entry(name.to_string()).or_default() += 1;
    }

    /// A named counter.
    pub fn counter(&self, name: &str) -> u64 {
        lock(&self.counters).get(name).copied().unwrap_or(0)
    }

    /// Calls served on a path.
    pub fn calls(&self, path: &str) -> u64 {
        lock(&self.calls).get(path).copied().unwrap_or(0)
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|f| f.path == path && f.count > 0)?;
        faults[i].count -= 1;
        let f = faults[i].clone();
        if faults[i].count == 0 {
            faults.remove(i);
        }
        Some(f)
    }
}

/// Locks a mutex, surviving a poisoned one (a panicking handler must not wedge the emulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// WeChat's error envelope, with a request id like WeChat's.
pub(crate) fn wx_error(errcode: i64, errmsg: &str) -> Response {
    let rid = format!("{:08x}-{:08x}", rand::random::<u32>(), rand::random::<u32>());
    axum::Json(serde_json::json!({ "errcode": errcode, "errmsg": format!("{errmsg} rid: {rid}") })).into_response()
}

/// A success envelope merged with `fields`.
pub(crate) fn wx_ok(fields: serde_json::Value) -> Response {
    let mut v = serde_json::json!({ "errcode": 0, "errmsg": "ok" });
    if let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), fields) {
        obj.extend(extra);
    }
    axum::Json(v).into_response()
}

/// Bodies above this are refused (JSON documents, and media uploads of up to 10 MB).
const MAX_BODY_BYTES: usize = 16 << 20;

async fn count_and_inject(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with("/__emulator") {
        *lock(&state.calls).entry(path.clone()).or_default() += 1;
    }
    // Keep the body WeChat would have received, so tests can assert the exact bytes sent.
    let req = if path.starts_with("/__emulator") {
        req
    } else {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
            return wx_error(47001, "data format error: body too large or unreadable");
        };
        lock(&state.last_bodies).insert(path.clone(), bytes.clone());
        Request::from_parts(parts, Body::from(bytes))
    };
    let fault = state.take_fault(&path);
    if let Some(f) = fault.as_ref().filter(|f| !f.after)
        && let Some(faulted) = strike(f).await
    {
        return faulted;
    }
    let response = next.run(req).await;
    // Shipping timers fire lazily during requests; their trade_manage events go out through the push sender.
    mp::shipping::flush_events(&state);
    match fault.filter(|f| f.after) {
        Some(f) => strike(&f).await.unwrap_or(response),
        None => response,
    }
}

/// Waits out a fault's delay and builds its answer (`None` when it only delays).
async fn strike(fault: &Fault) -> Option<Response> {
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.reset {
        // A body that fails mid-stream makes hyper drop the connection: the client sees a reset.
        let stream = futures_util::stream::once(async {
            Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected reset",
            ))
        });
        return Some(Response::builder().status(200).body(Body::from_stream(stream)).unwrap_or_default());
    }
    if let Some(code) = fault.errcode {
        return Some(wx_error(code, "injected fault"));
    }
    let status = fault.status?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "code": "SYSTEM_ERROR", "message": "injected fault" });
    Some((status, axum::Json(body)).into_response())
}

/// Builds and runs emulators.
#[derive(Debug)]
pub struct Emulator;

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Emulator {
    /// The emulator's router over `state`, for embedding in another server.
    pub fn router(state: Shared) -> Router {
        Router::new()
            .merge(control::routes())
            .merge(mp::routes())
            .merge(pay::routes(state.clone()))
            .layer(middleware::from_fn_with_state(state.clone(), count_and_inject))
            .with_state(state)
    }

    /// Fresh state for `config`.
    pub fn state(config: &EmulatorConfig) -> Shared {
        Arc::new(EmulatorState::new(config))
    }

    /// Starts an emulator with the default app on `127.0.0.1:0`.
    pub async fn start_default() -> Result<EmulatorHandle> {
        Self::start("127.0.0.1:0", EmulatorConfig::default()).await
    }

    /// Starts an emulator on `addr`.
    pub async fn start(addr: &str, config: EmulatorConfig) -> Result<EmulatorHandle> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("emulator cannot bind {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::Config(e.to_string()))?;
        let state = Self::state(&config);
        let app = Self::router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        tracing::info!(%addr, "emulator listening");
        Ok(EmulatorHandle { addr, state, shutdown: Some(tx) })
    }
}

impl EmulatorHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Endpoints pointing both hosts at this emulator.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints::emulator(&self.base_url()).expect("emulator URL is valid")
    }

    /// The state, for assertions and control from Rust.
    pub fn state(&self) -> &Shared {
        &self.state
    }

    /// A named counter (`token.issued`, …).
    pub fn counter(&self, name: &str) -> u64 {
        self.state.counter(name)
    }

    /// Calls served on a path.
    pub fn calls(&self, path: &str) -> u64 {
        self.state.calls(path)
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.inject(fault)
    }

    /// A client for the default app, pointed at this emulator.
    pub fn client(&self) -> Result<crate::Client> {
        crate::Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET)).endpoints(self.endpoints()).build()
    }

    /// Mints a `wx.login` code for `user` in `appid` (what `wx.login` returns in the mini-program).
    pub async fn login_code(&self, appid: &str, user: &str) -> Result<String> {
        lock(&self.state.mp).mint_login_code(appid, user, self.state.now()).map(|(code, _)| code)
    }

    /// The openid the emulator gives `user` in `appid`.
    pub fn openid_of(&self, appid: &str, user: &str) -> String {
        lock(&self.state.mp).remember_user(appid, user)
    }

    /// The last request body a path was served with (`/wxa/generatescheme`, …).
    pub fn last_body(&self, path: &str) -> Option<bytes::Bytes> {
        self.state.last_body(path)
    }

    /// The last request body of a path, as JSON.
    pub fn last_json(&self, path: &str) -> Option<serde_json::Value> {
        self.last_body(path).and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Registers another mini-program.
    pub fn add_app(&self, app: &AppConfig) {
        lock(&self.state.mp).add_app(app);
    }

    /// Mints a getPhoneNumber code.
    pub fn phone_code(&self, appid: &str, phone: &str) -> Result<String> {
        lock(&self.state.mp).mint_phone_code(appid, phone, self.state.now())
    }

    /// Stops the server.
    pub fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
