//! The one HTTP executor of the crate.
//!
//! Every call to WeChat goes through [`Http`]: it resolves the path against the overridable base
//! URL, applies the timeout, opens a tracing span (endpoint, status, errcode, latency — never a
//! query string, header or body, which may carry secrets), and retries transient failures with
//! bounded exponential backoff and jitter, but only for calls that are safe to repeat.
//!
//! On top of it, [`Http::call_mp`] speaks the mini-program dialect: it injects `access_token`,
//! decodes `{errcode, errmsg}` into [`Error::Api`], and when WeChat says the token is invalid
//! (40001, 40014, 42001) it invalidates the token and replays the call exactly once.
//! WeChat Pay calls add their signature through a [`RequestSigner`].
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use wxshop::http::{Http, HttpConfig};
//! use wxshop::config::Endpoints;
//! let http = Http::new(Endpoints::emulator("http://127.0.0.1:9000")?, HttpConfig::default())?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::config::Endpoints;
use crate::error::{Error, Result};

/// Bounded retries with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// The first backoff.
    pub base_delay: Duration,
    /// The cap on one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2) }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy { max_retries: 0, ..Default::default() }
    }

    /// The upper bound of the backoff before retry number `attempt` (1-based):
    /// `min(max_delay, base_delay · 2^(attempt-1))`. The actual sleep is uniform in `[bound/2, bound]`.
    pub fn backoff_bound(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The most time all backoffs together can take.
    pub fn total_backoff_bound(&self) -> Duration {
        (1..=self.max_retries).map(|a| self.backoff_bound(a)).sum()
    }

    fn jittered(&self, attempt: u32) -> Duration {
        let bound = self.backoff_bound(attempt);
        let half = bound / 2;
        let extra = rand::random_range(0..=bound.saturating_sub(half).as_micros() as u64);
        half + Duration::from_micros(extra)
    }
}

/// Settings of the executor.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry policy for idempotent calls.
    pub retry: RetryPolicy,
    /// A caller-supplied `reqwest::Client` (proxy, TLS settings, connection pool).
    pub client: Option<reqwest::Client>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { timeout: Duration::from_secs(10), retry: RetryPolicy::default(), client: None }
    }
}

/// Which host a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The mini-program API host.
    Mp,
    /// The WeChat Pay host.
    Pay,
    /// `path` is already an absolute URL (bill downloads, callbacks to a merchant).
    Absolute,
}

/// A request body.
#[derive(Debug, Clone, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// JSON bytes, sent with `Content-Type: application/json`.
    Json(Bytes),
    /// Raw bytes with a content type.
    Raw {
        /// Content-Type.
        content_type: String,
        /// The bytes.
        bytes: Bytes,
    },
    /// A multipart form of file parts (rebuilt for every attempt).
    Multipart(Vec<Part>),
}

impl Body {
    /// Serializes `value` as a JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        serde_json::to_vec(value)
            .map(|v| Body::Json(v.into()))
            .map_err(|e| Error::InvalidRequest(format!("body does not serialize: {e}")))
    }

    /// The bytes a signature covers (empty for no body; the `meta` part is the caller's job for uploads).
    pub fn signed_bytes(&self) -> &[u8] {
        match self {
            Body::Json(b) | Body::Raw { bytes: b, .. } => b,
            Body::Empty | Body::Multipart(_) => b"",
        }
    }
}

/// One part of a multipart upload.
#[derive(Debug, Clone)]
pub struct Part {
    /// The form field name.
    pub name: String,
    /// The file name, when it is a file.
    pub filename: Option<String>,
    /// The part's content type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Bytes,
}

/// A request as the executor sends it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The host.
    pub host: Host,
    /// The path, without a leading slash requirement (`/cgi-bin/token` or `cgi-bin/token`).
    pub path: String,
    /// Query parameters (values may be secret: they are never traced).
    pub query: Vec<(Cow<'static, str>, String)>,
    /// Extra headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Body,
    /// Safe to repeat: retried on transient failures.
    pub idempotent: bool,
}

impl Request {
    /// A request with no query, headers or body.
    pub fn new(method: Method, host: Host, path: impl Into<String>) -> Self {
        Request {
            method,
            host,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            idempotent: false,
        }
    }

    /// A GET (idempotent) on the mini-program host.
    pub fn mp_get(path: impl Into<String>) -> Self {
        Request::new(Method::GET, Host::Mp, path).idempotent(true)
    }

    /// A POST with a JSON body on the mini-program host.
    pub fn mp_post<T: serde::Serialize + ?Sized>(path: impl Into<String>, body: &T) -> Result<Self> {
        Ok(Request::new(Method::POST, Host::Mp, path).body(Body::json(body)?))
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Marks the call safe (or not) to repeat.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// The path as traced (no query).
    pub fn endpoint(&self) -> &str {
        &self.path
    }

    /// `PATH?QUERY` as it goes on the wire (what WeChat Pay signs).
    pub fn path_and_query(&self) -> String {
        let mut s = if self.path.starts_with('/') || self.host == Host::Absolute {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        if !self.query.is_empty() {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(self.query.iter().map(|(k, v)| (k.as_ref(), v.as_str())))
                .finish();
            s.push(if s.contains('?') { '&' } else { '?' });
            s.push_str(&q);
        }
        s
    }
}

/// A response as received: status, headers and the raw body bytes (verification needs them raw).
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The body exactly as received.
    pub body: Bytes,
}

impl Response {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The content type without parameters, lowercased.
    pub fn content_type(&self) -> String {
        self.header(CONTENT_TYPE.as_str())
            .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// Adds per-attempt headers to a request (WeChat Pay's Authorization signature: a fresh
/// timestamp and nonce on every attempt) and checks the response before it is accepted.
pub trait RequestSigner: Send + Sync {
    /// Headers for this attempt.
    fn sign(&self, method: &Method, path_and_query: &str, body: &[u8]) -> Result<Vec<(HeaderName, HeaderValue)>>;
}

/// Where the mini-program layer gets its access token from (see [`crate::token`]).
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid token.
    async fn token(&self) -> Result<SecretString>;
    /// WeChat rejected `rejected`; the next [`TokenSource::token`] must not return it.
    async fn invalidate(&self, rejected: &SecretString) -> Result<()>;
}

/// The executor. Cheap to clone.
#[derive(Clone)]
pub struct Http {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    endpoints: Endpoints,
    retry: RetryPolicy,
    timeout: Duration,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("endpoints", &self.inner.endpoints)
            .field("retry", &self.inner.retry)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// The `{errcode, errmsg}` envelope every mini-program JSON answer carries.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// What a mini-program call answers on success.
#[derive(Debug, Clone)]
pub enum MpBody {
    /// A JSON body (errcode 0 or absent).
    Json(Bytes),
    /// A binary body (an image from the wxacode endpoints).
    Binary {
        /// Content-Type.
        content_type: String,
        /// The bytes.
        bytes: Bytes,
    },
}

impl Http {
    /// A new executor.
    pub fn new(endpoints: Endpoints, config: HttpConfig) -> Result<Self> {
        let client = match config.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .user_agent(concat!("wxshop/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))?,
        };
        Ok(Http { inner: Arc::new(Inner { client, endpoints, retry: config.retry, timeout: config.timeout }) })
    }

    /// The endpoints in use.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    fn url(&self, req: &Request) -> Result<url::Url> {
        let base = match req.host {
            Host::Mp => &self.inner.endpoints.mp,
            Host::Pay => &self.inner.endpoints.pay,
            Host::Absolute => {
                return url::Url::parse(&req.path_and_query())
                    .map_err(|e| Error::InvalidRequest(format!("bad URL: {e}")));
            }
        };
        base.join(req.path_and_query().trim_start_matches('/'))
            .map_err(|e| Error::InvalidRequest(format!("bad path {}: {e}", req.path)))
    }

    /// Sends one attempt. Transport failures become [`Error::Transport`]; any status is returned.
    async fn send_once(&self, req: &Request, signer: Option<&dyn RequestSigner>) -> Result<Response> {
        let url = self.url(req)?;
        let mut rb = self.inner.client.request(req.method.clone(), url).timeout(self.inner.timeout);
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(signer) = signer {
            for (k, v) in signer.sign(&req.method, &req.path_and_query(), req.body.signed_bytes())? {
                rb = rb.header(k, v);
            }
        }
        rb = match &req.body {
            Body::Empty => rb,
            Body::Json(b) => rb.header(CONTENT_TYPE, "application/json").body(b.clone()),
            Body::Raw { content_type, bytes } => rb.header(CONTENT_TYPE, content_type.as_str()).body(bytes.clone()),
            Body::Multipart(parts) => {
                let mut form = reqwest::multipart::Form::new();
                for p in parts {
                    let mut part = reqwest::multipart::Part::bytes(p.bytes.to_vec());
                    if let Some(f) = &p.filename {
                        part = part.file_name(f.clone());
                    }
                    part = part
                        .mime_str(&p.content_type)
                        .map_err(|e| Error::InvalidRequest(format!("bad content type: {e}")))?;
                    form = form.part(p.name.clone(), part);
                }
                rb.multipart(form)
            }
        };
        let endpoint = req.endpoint().to_string();
        let resp = rb.send().await.map_err(|source| Error::Transport { endpoint: endpoint.clone(), source })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|source| Error::Transport { endpoint, source })?;
        Ok(Response { status, headers, body })
    }

    /// Runs `attempt` with the retry policy: a retryable error of an idempotent call is retried
    /// up to `max_retries` times with jittered exponential backoff.
    pub async fn with_retries<T, F, Fut>(&self, idempotent: bool, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let policy = self.inner.retry;
        let mut n = 0;
        loop {
            match attempt().await {
                Err(e) if idempotent && n < policy.max_retries && e.is_retryable() => {
                    n += 1;
                    let sleep = policy.jittered(n);
                    tracing::debug!(retry = n, backoff_ms = sleep.as_millis() as u64, error = %e, "retrying");
                    tokio::time::sleep(sleep).await;
                }
                other => return other,
            }
        }
    }

    /// Sends a request with retries (transport errors and 5xx/429 on idempotent calls) and returns
    /// the raw response, whatever its status. `signer` adds per-attempt headers.
    pub async fn execute(&self, req: &Request, signer: Option<&dyn RequestSigner>) -> Result<Response> {
        let span = tracing::info_span!(
            "wxshop.http",
            endpoint = %req.endpoint(),
            method = %req.method,
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let result = self
                .with_retries(req.idempotent, || async {
                    let resp = self.send_once(req, signer).await?;
                    if resp.status >= 500 || resp.status == 429 {
                        // A WeChat Pay error body keeps its code; anything else is a bare status.
                        return Err(pay_error(req.endpoint(), &resp));
                    }
                    Ok(resp)
                })
                .await;
            let span = tracing::Span::current();
            span.record("latency_ms", started.elapsed().as_millis() as u64);
            if let Ok(r) = &result {
                span.record("status", r.status);
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Calls a mini-program API: injects the access token (when `tokens` is given), retries
    /// `-1` and transport errors on idempotent calls, decodes errcodes, and on a token error
    /// invalidates the token and replays exactly once.
    pub async fn call_mp(&self, req: &Request, tokens: Option<&dyn TokenSource>) -> Result<MpBody> {
        let Some(tokens) = tokens else {
            return self.with_retries(req.idempotent, || self.mp_attempt(req, None)).await;
        };
        let token = tokens.token().await?;
        match self.with_retries(req.idempotent, || self.mp_attempt(req, Some(&token))).await {
            Err(e) if e.is_token_invalid() => {
                tracing::warn!(endpoint = %req.endpoint(), errcode = ?e.errcode(), "access token rejected; refreshing and replaying once");
                tokens.invalidate(&token).await?;
                let fresh = tokens.token().await?;
                self.with_retries(req.idempotent, || self.mp_attempt(req, Some(&fresh))).await
            }
            other => other,
        }
    }

    /// Like [`Http::call_mp`], decoding a JSON answer into `T`.
    pub async fn call_mp_json<T: DeserializeOwned>(
        &self,
        req: &Request,
        tokens: Option<&dyn TokenSource>,
    ) -> Result<T> {
        match self.call_mp(req, tokens).await? {
            MpBody::Json(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::decode(req.endpoint(), e)),
            MpBody::Binary { content_type, .. } => {
                Err(Error::decode(req.endpoint(), format!("expected JSON, got {content_type}")))
            }
        }
    }

    async fn mp_attempt(&self, req: &Request, token: Option<&SecretString>) -> Result<MpBody> {
        let mut req = Cow::Borrowed(req);
        if let Some(t) = token {
            req.to_mut().query.push(("access_token".into(), t.expose_secret().to_string()));
        }
        let span = tracing::info_span!(
            "wxshop.mp",
            endpoint = %req.endpoint(),
            errcode = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let resp = self.send_once(&req, None).await?;
            let result = decode_mp(req.endpoint(), &resp);
            let span = tracing::Span::current();
            if let Err(Error::Api { errcode, .. }) = &result {
                span.record("errcode", errcode.code());
            }
            tracing::debug!(status = resp.status, latency_ms = started.elapsed().as_millis() as u64, "mp call");
            result
        }
        .instrument(span)
        .await
    }
}

/// Decodes a mini-program answer: errcode ≠ 0 → [`Error::Api`]; a non-JSON 200 → binary.
fn decode_mp(endpoint: &str, resp: &Response) -> Result<MpBody> {
    let ct = resp.content_type();
    let looks_json = ct.contains("json") || ct.starts_with("text/") || resp.body.first() == Some(&b'{');
    if resp.status >= 400 && !looks_json {
        return Err(Error::HttpStatus { endpoint: endpoint.to_string(), status: resp.status });
    }
    if !looks_json {
        return Ok(MpBody::Binary { content_type: ct, bytes: resp.body.clone() });
    }
    let env: Envelope = serde_json::from_slice(&resp.body).map_err(|e| {
        if resp.status >= 400 {
            Error::HttpStatus { endpoint: endpoint.to_string(), status: resp.status }
        } else {
            Error::decode(endpoint, e)
        }
    })?;
    if env.errcode != 0 {
        let rid = extract_rid(&env.errmsg);
        return Err(Error::api(env.errcode, env.errmsg, rid));
    }
    if resp.status >= 400 {
        return Err(Error::HttpStatus { endpoint: endpoint.to_string(), status: resp.status });
    }
    Ok(MpBody::Json(resp.body.clone()))
}

/// WeChat appends `rid: <id>` to errmsg; keep it for support tickets.
fn extract_rid(errmsg: &str) -> Option<String> {
    let i = errmsg.rfind("rid:")?;
    let rid = errmsg[i + 4..].split_whitespace().next()?.trim_end_matches(['.', ',']);
    (!rid.is_empty()).then(|| rid.to_string())
}

/// A WeChat Pay error response → [`Error::PayApi`] (or [`Error::HttpStatus`] without a body).
pub fn pay_error(endpoint: &str, resp: &Response) -> Error {
    #[derive(Deserialize)]
    struct PayErr {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<PayErr>(&resp.body) {
        Ok(p) => Error::PayApi { status: resp.status, code: p.code, message: p.message, detail: p.detail },
        Err(_) => Error::HttpStatus { endpoint: endpoint.to_string(), status: resp.status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rid_is_extracted_from_errmsg() {
        assert_eq!(
            extract_rid("invalid credential, access_token is invalid or not latest rid: 65fa6f7e-1e6f0e20-5b7c6c56"),
            Some("65fa6f7e-1e6f0e20-5b7c6c56".to_string())
        );
        assert_eq!(extract_rid("ok"), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        assert_eq!(p.backoff_bound(1), Duration::from_millis(100));
        assert_eq!(p.backoff_bound(2), Duration::from_millis(200));
        assert_eq!(p.backoff_bound(3), Duration::from_millis(400));
        assert_eq!(p.backoff_bound(4), Duration::from_millis(500));
        assert_eq!(p.total_backoff_bound(), Duration::from_millis(1700));
        for a in 1..=5 {
            let j = p.jittered(a);
            assert!(j >= p.backoff_bound(a) / 2 && j <= p.backoff_bound(a));
        }
    }

    #[test]
    fn path_and_query_encodes_in_order() {
        let r = Request::mp_get("/sns/jscode2session").query("appid", "wx1").query("js_code", "a b&c");
        assert_eq!(r.path_and_query(), "/sns/jscode2session?appid=wx1&js_code=a+b%26c");
    }

    #[test]
    fn errcode_body_becomes_typed_error() {
        let resp = Response {
            status: 200,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"errcode":40029,"errmsg":"invalid code, rid: 1-2-3"}"#),
        };
        match decode_mp("/sns/jscode2session", &resp) {
            Err(Error::Api { errcode, rid, .. }) => {
                assert_eq!(errcode, crate::ErrCode::InvalidCode);
                assert_eq!(rid.as_deref(), Some("1-2-3"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn image_body_is_binary() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
        let resp = Response { status: 200, headers, body: Bytes::from_static(b"\x89PNG\r\n") };
        match decode_mp("/wxa/getwxacode", &resp).unwrap() {
            MpBody::Binary { content_type, bytes } => {
                assert_eq!(content_type, "image/png");
                assert_eq!(&bytes[..], b"\x89PNG\r\n");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
