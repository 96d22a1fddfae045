//! The push callback as an axum route (feature `axum`): GET answers URL verification, POST
//! verifies, decrypts, deduplicates and hands a typed [`Incoming`] to your handler, then renders
//! its [`Reply`] (encrypted when the push was).
//!
//! Status codes: 200 with the reply; 400 for a malformed request (missing parameters, bad body,
//! bad base64/padding/length); 401 for a wrong or missing signature, a foreign appid, a stale
//! timestamp or a refused plaintext push; 500 when your handler fails (the claim is released, so
//! WeChat's retry is processed). A retry of a push already handled answers `success` without
//! calling the handler again. Nothing here panics on any input.
//!
//! ```no_run
//! use wxshop::push::{Verifier, Reply, Message};
//! use wxshop::push::axum::{PushEndpoint, handler_fn};
//!
//! # fn demo() -> wxshop::Result<axum::Router> {
//! let verifier = Verifier::with_aes_key("Token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx_appid")?;
//! let endpoint = PushEndpoint::new(verifier, handler_fn(|push| async move {
//!     if let Message::Text { content, .. } = &push.message {
//!         println!("{} says {content}", push.from_user_name);
//!     }
//!     Ok(Reply::Success)
//! }));
//! Ok(axum::Router::new().route("/wx/push", endpoint.method_router()))
//! # }
//! ```
//!
//! Your own handler can take [`VerifiedPush`] instead, with an `Arc<Verifier>` in its state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::axum::body::Bytes;
use ::axum::extract::{FromRef, FromRequest, Request};
use ::axum::http::{StatusCode, header};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::{MethodRouter, get};

use super::{Incoming, PushQuery, Reply, ReplyBody, Verifier};
use crate::dedupe::{Claim, DedupeStore, MemoryDedupe};
use crate::error::{CryptoKind, Error, Result};

/// The HTTP status a verification failure deserves.
pub fn status_for(err: &Error) -> StatusCode {
    match err {
        Error::Signature(_) | Error::StaleTimestamp { .. } => StatusCode::UNAUTHORIZED,
        Error::Crypto { kind: CryptoKind::AppidMismatch, .. } => StatusCode::UNAUTHORIZED,
        Error::Crypto { .. } | Error::Decode { .. } | Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A rejected push: its status and one line of text (never a secret).
#[derive(Debug)]
pub struct PushRejection(pub Error);

impl IntoResponse for PushRejection {
    fn into_response(self) -> Response {
        let status = status_for(&self.0);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "push failed");
        } else {
            tracing::warn!(error = %self.0, status = status.as_u16(), "push rejected");
        }
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.0.to_string()).into_response()
    }
}

impl IntoResponse for ReplyBody {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, self.content_type)], self.body).into_response()
    }
}

/// An extractor for a verified push: the query and raw body of a POST, opened with the
/// `Arc<Verifier>` of the router's state.
#[derive(Debug, Clone)]
pub struct VerifiedPush(pub Incoming);

impl<S> FromRequest<S> for VerifiedPush
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = PushRejection;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        let verifier = Arc::<Verifier>::from_ref(state);
        let query = PushQuery::parse(req.uri().query().unwrap_or(""));
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| PushRejection(Error::InvalidRequest(format!("cannot read the body: {e}"))))?;
        verifier.open(&query, &body).map(VerifiedPush).map_err(PushRejection)
    }
}

/// What the application does with a verified push.
#[async_trait::async_trait]
pub trait PushHandler: Send + Sync + 'static {
    /// Handles one push (called once per push, retries deduplicated). An error answers 500 so
    /// WeChat retries.
    async fn handle(&self, push: Incoming) -> Result<Reply>;
}

/// A [`PushHandler`] from an async closure.
pub struct FnHandler<F>(F);

/// Wraps an async closure as a [`PushHandler`].
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Incoming) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply>> + Send + 'static,
{
    FnHandler(f)
}

#[async_trait::async_trait]
impl<F, Fut> PushHandler for FnHandler<F>
where
    F: Fn(Incoming) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply>> + Send + 'static,
{
    async fn handle(&self, push: Incoming) -> Result<Reply> {
        (self.0)(push).await
    }
}

/// GET + POST for one app's push URL.
#[derive(Clone)]
pub struct PushEndpoint {
    verifier: Arc<Verifier>,
    dedupe: Arc<dyn DedupeStore>,
    dedupe_ttl: Duration,
    handler: Arc<dyn PushHandler>,
}

impl std::fmt::Debug for PushEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushEndpoint").field("verifier", &self.verifier).field("dedupe_ttl", &self.dedupe_ttl).finish()
    }
}

impl PushEndpoint {
    /// An endpoint with an in-memory dedupe store holding keys for 10 minutes.
    pub fn new(verifier: Verifier, handler: impl PushHandler) -> Self {
        PushEndpoint {
            verifier: Arc::new(verifier),
            dedupe: Arc::new(MemoryDedupe::new()),
            dedupe_ttl: Duration::from_secs(600),
            handler: Arc::new(handler),
        }
    }

    /// A shared dedupe store (several processes behind one push URL).
    pub fn dedupe(mut self, store: Arc<dyn DedupeStore>) -> Self {
        self.dedupe = store;
        self
    }

    /// How long a processed push's key is remembered.
    pub fn dedupe_ttl(mut self, ttl: Duration) -> Self {
        self.dedupe_ttl = ttl;
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// Handles a GET: URL verification.
    pub fn verify_url(&self, raw_query: &str) -> Response {
        match self.verifier.verify_url(&PushQuery::parse(raw_query)) {
            Ok(echostr) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], echostr).into_response(),
            Err(e) => PushRejection(e).into_response(),
        }
    }

    /// Handles a POST: verify, dedupe, handle, reply.
    pub async fn receive(&self, raw_query: &str, body: &[u8]) -> Response {
        let push = match self.verifier.open(&PushQuery::parse(raw_query), body) {
            Ok(p) => p,
            Err(e) => return PushRejection(e).into_response(),
        };
        // WeChat gives up after 5 s and the server then drops this future; the claimed part runs
        // in its own task so a slow handler finishes (or releases its claim) instead of being cut
        // mid-way with its key claimed, which would acknowledge WeChat's retries unprocessed.
        let ep = self.clone();
        match tokio::spawn(async move { ep.dispatch(push).await }).await {
            Ok(response) => response,
            Err(e) => PushRejection(Error::Store(format!("push task failed: {e}"))).into_response(),
        }
    }

    /// Claims the push's key, runs the handler (releasing the key when it fails or panics), replies.
    async fn dispatch(&self, push: Incoming) -> Response {
        use futures_util::FutureExt;
        let key = push.dedupe_key();
        match self.dedupe.claim(&key, self.dedupe_ttl).await {
            Ok(Claim::Fresh) => {}
            Ok(Claim::Done | Claim::InProgress) => {
                tracing::debug!(key, "duplicate push acknowledged");
                return ReplyBody { content_type: "text/plain; charset=utf-8", body: "success".into() }.into_response();
            }
            Err(e) => return PushRejection(e).into_response(),
        }
        let handled = match std::panic::AssertUnwindSafe(self.handler.handle(push.clone())).catch_unwind().await {
            Ok(r) => r,
            Err(_) => Err(Error::Store("the push handler panicked".into())),
        };
        let reply = match handled {
            Ok(r) => r,
            Err(e) => {
                if let Err(re) = self.dedupe.release(&key).await {
                    tracing::error!(error = %re, "could not release a dedupe claim");
                }
                return PushRejection(e).into_response();
            }
        };
        if let Err(e) = self.dedupe.complete(&key).await {
            // The claim still holds until its ttl, so WeChat's retries are still acknowledged.
            tracing::error!(error = %e, "could not complete a dedupe claim");
        }
        match self.verifier.reply(&push, &reply) {
            Ok(body) => body.into_response(),
            Err(e) => PushRejection(e).into_response(),
        }
    }

    /// The GET + POST route, for any router state.
    pub fn method_router<S: Clone + Send + Sync + 'static>(self) -> MethodRouter<S> {
        let get_ep = self.clone();
        let post_ep = self;
        get(move |req: Request| {
            let ep = get_ep.clone();
            async move { ep.verify_url(req.uri().query().unwrap_or("")) }
        })
        .post(move |req: Request| {
            let ep = post_ep.clone();
            async move {
                let query = req.uri().query().unwrap_or("").to_string();
                match ::axum::body::to_bytes(req.into_body(), MAX_BODY).await {
                    Ok(body) => ep.receive(&query, &body).await,
                    Err(e) => {
                        PushRejection(Error::InvalidRequest(format!("cannot read the body: {e}"))).into_response()
                    }
                }
            }
        })
    }
}

/// The largest push body accepted (WeChat's are a few KB).
pub const MAX_BODY: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::{Format, Message, Mode};
    use ::axum::Router;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn text_fields() -> serde_json::Map<String, serde_json::Value> {
        serde_json::json!({"ToUserName":"gh_1","FromUserName":"oU","CreateTime":1,"MsgType":"text","Content":"hi","MsgId":"9"})
            .as_object()
            .cloned()
            .unwrap()
    }

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (u16, String) {
        let req = Request::builder().method(method).uri(uri).body(::axum::body::Body::from(body.to_string())).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = ::axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn handles_once_rejects_with_the_right_status() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let verifier = Verifier::with_aes_key("tok", KEY, "wxapp").unwrap();
        let ep = PushEndpoint::new(
            verifier.clone(),
            handler_fn(move |p: Incoming| {
                let s = s.clone();
                async move {
                    assert!(matches!(p.message, Message::Text { .. }));
                    s.fetch_add(1, Ordering::SeqCst);
                    Ok(Reply::Success)
                }
            }),
        );
        let app: Router = Router::new().route("/wx/push", ep.method_router());
        let p = verifier.sign_push(Mode::Secure, Format::Xml, &text_fields(), "1", "n").unwrap();
        let uri = format!("/wx/push?{}", p.query.to_query_string());
        assert_eq!(call(&app, "POST", &uri, &p.body).await, (200, "success".into()));
        assert_eq!(call(&app, "POST", &uri, &p.body).await, (200, "success".into()));
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        let bad_sig = uri.replace("msg_signature=", "msg_signature=0");
        assert_eq!(call(&app, "POST", &bad_sig, &p.body).await.0, 401);
        assert_eq!(call(&app, "POST", "/wx/push?timestamp=1", "").await.0, 400);
        // Tampered ciphertext with a valid signature over it (only the token holder can do this):
        // the decryption checks still reject it.
        let tampered = p.body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[%", 1);
        let fields = crate::push::body::parse_xml(tampered.as_bytes()).unwrap();
        let q = PushQuery {
            msg_signature: Some(verifier.crypt().unwrap().signature("1", "n", fields["Encrypt"].as_str().unwrap())),
            ..p.query.clone()
        };
        assert_eq!(call(&app, "POST", &format!("/wx/push?{}", q.to_query_string()), &tampered).await.0, 400);
        // Malformed before anything can be verified: 400.
        assert_eq!(call(&app, "POST", &uri, "\u{0}garbage").await.0, 400);
        let get_uri = format!("/wx/push?signature={}&timestamp=5&nonce=6&echostr=hello", verifier.signature("5", "6"));
        assert_eq!(call(&app, "GET", &get_uri, "").await, (200, "hello".into()));
        assert_eq!(call(&app, "GET", "/wx/push?signature=00&timestamp=5&nonce=6&echostr=hello", "").await.0, 401);
    }

    #[tokio::test]
    async fn a_failed_handler_lets_the_retry_through() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let verifier = Verifier::new("tok");
        let ep = PushEndpoint::new(
            verifier.clone(),
            handler_fn(move |_p: Incoming| {
                let c = c.clone();
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(Error::Store("database down".into()))
                    } else {
                        Ok(Reply::Success)
                    }
                }
            }),
        );
        let app: Router = Router::new().route("/p", ep.method_router());
        let p = verifier.sign_push(Mode::Plaintext, Format::Json, &text_fields(), "1", "n").unwrap();
        let uri = format!("/p?{}", p.query.to_query_string());
        assert_eq!(call(&app, "POST", &uri, &p.body).await.0, 500);
        assert_eq!(call(&app, "POST", &uri, &p.body).await, (200, "success".into()));
        assert_eq!(call(&app, "POST", &uri, &p.body).await, (200, "success".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_extractor_opens_with_the_state_verifier() {
        let verifier = Arc::new(Verifier::new("tok"));
        let app: Router = Router::new()
            .route("/p", ::axum::routing::post(|VerifiedPush(p): VerifiedPush| async move { p.from_user_name }))
            .with_state(verifier.clone());
        let p = verifier.sign_push(Mode::Plaintext, Format::Xml, &text_fields(), "1", "n").unwrap();
        assert_eq!(call(&app, "POST", &format!("/p?{}", p.query.to_query_string()), &p.body).await, (200, "oU".into()));
        assert_eq!(call(&app, "POST", "/p?timestamp=1&nonce=2&signature=00", &p.body).await.0, 401);
    }
}
