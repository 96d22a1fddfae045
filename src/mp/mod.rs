//! Mini-program server APIs, one module per WeChat API family.
//!
//! [`Client`] holds one app's configuration, the executor and its token source. Build it once
//! and share it (it is cheap to clone).
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use wxshop::{AppConfig, Client, Endpoints};
//! let client = Client::builder(AppConfig::new("wx_emulator_app", "emulator-secret"))
//!     .endpoints(Endpoints::emulator("http://127.0.0.1:9000")?)
//!     .build()?;
//! let session = client.auth().code2session("code-from-wx.login").await?;
//! println!("openid {}", session.openid);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use secrecy::SecretString;
use serde::de::DeserializeOwned;

use crate::config::{AppConfig, Endpoints, TokenMode};
use crate::error::Result;
use crate::http::{Http, HttpConfig, MpBody, Request, TokenSource};
use crate::token::{
    AccessTokenProvider, ClassicTokenProvider, MemoryTokenStore, StableTokenProvider, TokenManager, TokenManagerConfig,
    TokenStore,
};

pub mod auth;
pub mod link;
pub mod message;
pub mod referral;
pub mod security;
pub mod session;
pub mod shipping;
pub mod wxacode;

/// A mini-program API client for one app.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    app: AppConfig,
    http: Http,
    tokens: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("app", &self.inner.app).field("http", &self.inner.http).finish()
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    app: AppConfig,
    endpoints: Endpoints,
    http_config: HttpConfig,
    http: Option<Http>,
    store: Option<Arc<dyn TokenStore>>,
    provider: Option<Arc<dyn AccessTokenProvider>>,
    tokens: Option<Arc<dyn TokenSource>>,
    token_config: TokenManagerConfig,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").field("app", &self.app).field("endpoints", &self.endpoints).finish()
    }
}

impl ClientBuilder {
    transport_setters!();

    /// Where tokens are kept (default: this process's memory). Share one Redis store across processes.
    pub fn token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A custom token provider (an ISV's authorizer tokens, say).
    pub fn token_provider(mut self, provider: Arc<dyn AccessTokenProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// A complete token source, replacing the manager entirely.
    pub fn token_source(mut self, tokens: Arc<dyn TokenSource>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Tuning of the token manager.
    pub fn token_config(mut self, config: TokenManagerConfig) -> Self {
        self.token_config = config;
        self
    }

    /// Builds the client.
    pub fn build(mut self) -> Result<Client> {
        self.app.validate()?;
        let http = self.transport()?;
        let tokens = match self.tokens {
            Some(t) => t,
            None => {
                let provider: Arc<dyn AccessTokenProvider> = match self.provider {
                    Some(p) => p,
                    None => match self.app.token_mode {
                        TokenMode::Stable => Arc::new(StableTokenProvider::new(http.clone(), self.app.clone())),
                        TokenMode::Classic => Arc::new(ClassicTokenProvider::new(http.clone(), self.app.clone())),
                    },
                };
                let store = self.store.unwrap_or_else(|| Arc::new(MemoryTokenStore::new()));
                Arc::new(TokenManager::with_config(provider, store, self.token_config))
            }
        };
        Ok(Client { inner: Arc::new(Inner { app: self.app, http, tokens }) })
    }
}

impl Client {
    /// Starts a builder.
    pub fn builder(app: AppConfig) -> ClientBuilder {
        ClientBuilder {
            app,
            endpoints: Endpoints::default(),
            http_config: HttpConfig::default(),
            http: None,
            store: None,
            provider: None,
            tokens: None,
            token_config: TokenManagerConfig::default(),
        }
    }

    /// The app's configuration.
    pub fn app(&self) -> &AppConfig {
        &self.inner.app
    }

    /// The appid.
    pub fn appid(&self) -> &str {
        &self.inner.app.appid
    }

    /// The executor.
    pub fn http(&self) -> &Http {
        &self.inner.http
    }

    /// The token source.
    pub fn tokens(&self) -> &Arc<dyn TokenSource> {
        &self.inner.tokens
    }

    /// A valid access token (cached; refreshed early and once).
    pub async fn access_token(&self) -> Result<SecretString> {
        self.inner.tokens.token().await
    }

    /// Calls an API that takes `access_token`, decoding the JSON answer.
    pub async fn call<T: DeserializeOwned>(&self, req: &Request) -> Result<T> {
        self.inner.http.call_mp_json(req, Some(self.inner.tokens.as_ref())).await
    }

    /// Calls an API that takes `access_token`, returning JSON or binary as WeChat answered.
    pub async fn call_raw(&self, req: &Request) -> Result<MpBody> {
        self.inner.http.call_mp(req, Some(self.inner.tokens.as_ref())).await
    }

    /// Calls an API that does not take `access_token` (jscode2session).
    pub async fn call_without_token<T: DeserializeOwned>(&self, req: &Request) -> Result<T> {
        self.inner.http.call_mp_json(req, None).await
    }

    /// Login APIs.
    pub fn auth(&self) -> auth::Auth<'_> {
        auth::Auth { client: self }
    }

    /// Share links: URL Scheme, URL Link, Short Link.
    pub fn links(&self) -> link::Links<'_> {
        link::Links { client: self }
    }

    /// Mini-program codes: `getwxacode`, `getwxacodeunlimit`, `createwxaqrcode`.
    pub fn wxacode(&self) -> wxacode::WxaCodes<'_> {
        wxacode::WxaCodes { client: self }
    }

    /// Order shipping-info management (发货信息管理).
    pub fn shipping(&self) -> shipping::Shipping<'_> {
        shipping::Shipping { client: self }
    }

    /// Subscribe and customer-service messages, typing, temporary media.
    pub fn messages(&self) -> message::Messages<'_> {
        message::Messages { client: self }
    }

    /// Content security (msg_sec_check, media_check_async).
    pub fn security(&self) -> security::Security<'_> {
        security::Security { client: self }
    }
}
