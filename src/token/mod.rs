//! Access tokens that never thrash a cluster.
//!
//! Three layers, as in the AWS credential providers:
//! - an [`AccessTokenProvider`] fetches a token from WeChat ([`StableTokenProvider`] by default,
//!   [`ClassicTokenProvider`] as an option, or an ISV's own source);
//! - a [`TokenStore`] keeps it where every process sees it ([`MemoryTokenStore`], or
//!   `RedisTokenStore` with feature `redis`), together with a refresh lease;
//! - the [`TokenManager`] refreshes early and once: one upstream call per expiry inside a process
//!   (single-flight) and across processes (the store's lease; a crashed holder's lease expires).
//!
//! After WeChat rejects a token (40001/40014/42001) the manager drops it and, for stable tokens,
//! asks for `force_refresh` — at most once per 30 s across all processes, as WeChat allows.
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use std::sync::Arc;
//! use wxshop::{AppConfig, Endpoints};
//! use wxshop::http::{Http, HttpConfig, TokenSource};
//! use wxshop::token::{MemoryTokenStore, StableTokenProvider, TokenManager};
//! let http = Http::new(Endpoints::emulator("http://127.0.0.1:9000")?, HttpConfig::default())?;
//! let app = AppConfig::new("wx_emulator_app", "emulator-secret");
//! let tokens = TokenManager::new(
//!     Arc::new(StableTokenProvider::new(http, app)),
//!     Arc::new(MemoryTokenStore::new()),
//! );
//! let token = tokens.token().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::AppConfig;
use crate::error::{Error, Result};
use crate::http::{Http, Request, TokenSource};

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::MemoryTokenStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisTokenStore;

/// An access token, when it expires, and when to refresh it (a tenth of its life early, at most
/// five minutes, so callers never hold a token WeChat is about to retire).
#[derive(Clone)]
pub struct AccessToken {
    /// The token. Never printed.
    pub value: SecretString,
    /// When WeChat will stop accepting it.
    pub expires_at: DateTime<Utc>,
    /// When to start refreshing it.
    pub refresh_at: DateTime<Utc>,
}

impl AccessToken {
    /// A token valid for `expires_in` from now.
    pub fn new(value: impl Into<String>, expires_in: Duration) -> Self {
        let now = Utc::now();
        let life = chrono::Duration::from_std(expires_in).unwrap_or(chrono::Duration::zero());
        let margin = chrono::Duration::from_std(Self::refresh_margin(expires_in)).unwrap_or(chrono::Duration::zero());
        AccessToken { value: SecretString::from(value.into()), expires_at: now + life, refresh_at: now + life - margin }
    }

    /// Still usable at `now`, before its early-refresh point.
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        now < self.refresh_at
    }

    /// The same token value (constant-time).
    pub fn same_value(&self, other: &SecretString) -> bool {
        crate::crypto::sig::ct_eq(self.value.expose_secret().as_bytes(), other.expose_secret().as_bytes())
    }

    /// The early-refresh margin for a token of `lifetime`: a tenth of it, at most five minutes.
    pub fn refresh_margin(lifetime: Duration) -> Duration {
        (lifetime / 10).min(Duration::from_secs(300))
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

/// Where a token comes from.
#[async_trait]
pub trait AccessTokenProvider: Send + Sync {
    /// The appid this provider serves (the store key).
    fn appid(&self) -> &str;
    /// Fetches a token from upstream. `force_refresh` asks WeChat for a new one even if the
    /// current one is still valid (stable tokens; classic tokens are always new).
    async fn fetch(&self, force_refresh: bool) -> Result<AccessToken>;
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// `POST /cgi-bin/stable_token`: the default, safe with many processes.
pub struct StableTokenProvider {
    http: Http,
    app: AppConfig,
}

impl StableTokenProvider {
    /// A provider for one app.
    pub fn new(http: Http, app: AppConfig) -> Self {
        StableTokenProvider { http, app }
    }
}

impl fmt::Debug for StableTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StableTokenProvider").field("app", &self.app).finish()
    }
}

#[async_trait]
impl AccessTokenProvider for StableTokenProvider {
    fn appid(&self) -> &str {
        &self.app.appid
    }

    async fn fetch(&self, force_refresh: bool) -> Result<AccessToken> {
        #[derive(Serialize)]
        struct Body<'a> {
            grant_type: &'static str,
            appid: &'a str,
            secret: &'a str,
            force_refresh: bool,
        }
        let body = Body {
            grant_type: "client_credential",
            appid: &self.app.appid,
            secret: self.app.secret.expose_secret(),
            force_refresh,
        };
        // Normal mode is idempotent (same token while valid); a forced refresh is not.
        let req = Request::mp_post("/cgi-bin/stable_token", &body)?.idempotent(!force_refresh);
        let r: TokenResponse = self.http.call_mp_json(&req, None).await?;
        Ok(AccessToken::new(r.access_token, Duration::from_secs(r.expires_in)))
    }
}

/// Classic `GET /cgi-bin/token`: each fetch retires the previous token after ~5 minutes.
pub struct ClassicTokenProvider {
    http: Http,
    app: AppConfig,
}

impl ClassicTokenProvider {
    /// A provider for one app.
    pub fn new(http: Http, app: AppConfig) -> Self {
        ClassicTokenProvider { http, app }
    }
}

impl fmt::Debug for ClassicTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassicTokenProvider").field("app", &self.app).finish()
    }
}

#[async_trait]
impl AccessTokenProvider for ClassicTokenProvider {
    fn appid(&self) -> &str {
        &self.app.appid
    }

    async fn fetch(&self, _force_refresh: bool) -> Result<AccessToken> {
        let req = Request::mp_get("/cgi-bin/token")
            .query("grant_type", "client_credential")
            .query("appid", self.app.appid.clone())
            .query("secret", self.app.secret.expose_secret().to_string())
            // Every call issues a new token: never repeat one blindly.
            .idempotent(false);
        let r: TokenResponse = self.http.call_mp_json(&req, None).await?;
        Ok(AccessToken::new(r.access_token, Duration::from_secs(r.expires_in)))
    }
}

/// Keeps tokens where every process can see them, with a refresh lease.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The token stored under `key`.
    async fn get(&self, key: &str) -> Result<Option<AccessToken>>;
    /// Stores `token` under `key` (expiring with it).
    async fn set(&self, key: &str, token: &AccessToken) -> Result<()>;
    /// Removes the token under `key` only if it still is `rejected` (compare-and-delete).
    async fn invalidate(&self, key: &str, rejected: &SecretString) -> Result<()>;
    /// Takes the refresh lease for `key` for `ttl` if nobody holds it. `holder` identifies the taker.
    async fn try_lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Releases the lease if `holder` still holds it.
    async fn release_lease(&self, key: &str, holder: &str) -> Result<()>;
    /// Records a forced refresh unless one happened within `min_interval`; true when allowed.
    async fn try_mark_forced(&self, key: &str, min_interval: Duration) -> Result<bool>;
}

/// Tuning of the [`TokenManager`].
#[derive(Debug, Clone)]
pub struct TokenManagerConfig {
    /// How long a refresh lease lasts (a crashed holder's lease frees itself after this).
    pub lease_ttl: Duration,
    /// How often a waiter polls the store for the holder's new token.
    pub poll_interval: Duration,
    /// How long a waiter waits for another process before giving up.
    pub wait_timeout: Duration,
    /// WeChat's minimum interval between forced stable-token refreshes.
    pub force_refresh_interval: Duration,
    /// Key prefix in the store.
    pub key_prefix: String,
}

impl Default for TokenManagerConfig {
    fn default() -> Self {
        TokenManagerConfig {
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
            wait_timeout: Duration::from_secs(30),
            force_refresh_interval: Duration::from_secs(30),
            key_prefix: "wxshop:access_token:".into(),
        }
    }
}

/// Caches, refreshes early and single-flights a provider's tokens through a store.
pub struct TokenManager {
    provider: Arc<dyn AccessTokenProvider>,
    store: Arc<dyn TokenStore>,
    config: TokenManagerConfig,
    key: String,
    holder: String,
    local: RwLock<Option<AccessToken>>,
    flight: tokio::sync::Mutex<()>,
    /// The token WeChat last rejected: never handed out again, and the next fetch is forced.
    rejected: std::sync::Mutex<Option<SecretString>>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager").field("key", &self.key).field("config", &self.config).finish()
    }
}

impl TokenManager {
    /// A manager with the default tuning.
    pub fn new(provider: Arc<dyn AccessTokenProvider>, store: Arc<dyn TokenStore>) -> Self {
        Self::with_config(provider, store, TokenManagerConfig::default())
    }

    /// A manager with explicit tuning.
    pub fn with_config(
        provider: Arc<dyn AccessTokenProvider>,
        store: Arc<dyn TokenStore>,
        config: TokenManagerConfig,
    ) -> Self {
        let key = format!("{}{}", config.key_prefix, provider.appid());
        TokenManager {
            provider,
            store,
            key,
            holder: uuid::Uuid::new_v4().to_string(),
            config,
            local: RwLock::new(None),
            flight: tokio::sync::Mutex::new(()),
            rejected: std::sync::Mutex::new(None),
        }
    }

    /// The appid served.
    pub fn appid(&self) -> &str {
        self.provider.appid()
    }

    fn local_fresh(&self) -> Option<SecretString> {
        let guard = self.local.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(t) if t.is_fresh(Utc::now()) => Some(t.value.clone()),
            _ => None,
        }
    }

    fn set_local(&self, token: &AccessToken) {
        *self.local.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
    }

    fn is_rejected(&self, token: &AccessToken) -> bool {
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        rejected.as_ref().is_some_and(|r| token.same_value(r))
    }

    /// A fresh token from the store that WeChat has not rejected.
    async fn usable_stored(&self) -> Result<Option<AccessToken>> {
        Ok(self.store.get(&self.key).await?.filter(|t| t.is_fresh(Utc::now()) && !self.is_rejected(t)))
    }

    async fn refresh(&self) -> Result<SecretString> {
        let _flight = self.flight.lock().await;
        if let Some(t) = self.local_fresh() {
            return Ok(t);
        }
        let deadline = tokio::time::Instant::now() + self.config.wait_timeout;
        loop {
            if let Some(t) = self.usable_stored().await? {
                self.set_local(&t);
                return Ok(t.value);
            }
            if self.store.try_lease(&self.key, &self.holder, self.config.lease_ttl).await? {
                let result = self.refresh_as_holder().await;
                let _ = self.store.release_lease(&self.key, &self.holder).await;
                return result;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Store(format!(
                    "timed out after {:?} waiting for another process to refresh the access token",
                    self.config.wait_timeout
                )));
            }
            // Another process holds the lease: it stores the new token, or its lease expires.
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn refresh_as_holder(&self) -> Result<SecretString> {
        // Someone may have refreshed between our read and our lease.
        if let Some(t) = self.usable_stored().await? {
            self.set_local(&t);
            return Ok(t.value);
        }
        let after_rejection = self.rejected.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        let force =
            after_rejection && self.store.try_mark_forced(&self.key, self.config.force_refresh_interval).await?;
        let token = self.provider.fetch(force).await?;
        tracing::info!(appid = %self.provider.appid(), force_refresh = force, "access token refreshed");
        self.store.set(&self.key, &token).await?;
        self.set_local(&token);
        if !self.is_rejected(&token) {
            *self.rejected.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        Ok(token.value)
    }
}

#[async_trait]
impl TokenSource for TokenManager {
    async fn token(&self) -> Result<SecretString> {
        if let Some(t) = self.local_fresh() {
            return Ok(t);
        }
        self.refresh().await
    }

    async fn invalidate(&self, rejected: &SecretString) -> Result<()> {
        {
            let mut local = self.local.write().unwrap_or_else(|p| p.into_inner());
            if local.as_ref().is_some_and(|t| t.same_value(rejected)) {
                *local = None;
            }
        }
        self.store.invalidate(&self.key, rejected).await?;
        *self.rejected.lock().unwrap_or_else(|p| p.into_inner()) = Some(rejected.clone());
        Ok(())
    }
}
