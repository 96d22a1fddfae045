//! The login-session helper: a `wx.login` code becomes an opaque session token that the
//! mini-program sends back on every request. The server keeps openid, unionid and session_key;
//! the session_key never leaves the server and is never logged. Tokens are 256 random bits, and
//! stores key sessions by the token's SHA-256, so a leaked store does not leak usable tokens.
//!
//! ```no_run
//! # async fn demo(client: wxshop::Client) -> wxshop::Result<()> {
//! use std::sync::Arc;
//! use wxshop::mp::session::{MemorySessionStore, Sessions};
//! let sessions = Sessions::new(client, Arc::new(MemorySessionStore::default()));
//! let (token, session) = sessions.login("code-from-wx.login").await?;
//! let again = sessions.get(token.expose()).await?.expect("still valid");
//! assert_eq!(again.openid, session.openid);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::Client;
use crate::error::Result;

/// What the server remembers of a logged-in user.
#[derive(Clone)]
pub struct LoginSession {
    /// The openid.
    pub openid: String,
    /// The unionid, when known.
    pub unionid: Option<String>,
    /// The session key (decrypts open data). Never printed.
    pub session_key: SecretString,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for LoginSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginSession")
            .field("openid", &self.openid)
            .field("unionid", &self.unionid)
            .field("session_key", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The opaque token handed to the mini-program. Never printed.
#[derive(Clone)]
pub struct SessionToken(SecretString);

impl SessionToken {
    /// A new token of 256 random bits, base64url.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        SessionToken(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The token text, to send to the mini-program.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The key a store files the session under: hex SHA-256 of the token.
    pub fn store_key(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// Keeps login sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a session under `key` (the token's hash).
    async fn put(&self, key: &str, session: &LoginSession) -> Result<()>;
    /// The session under `key`, if any (expired ones may be returned; the caller checks).
    async fn get(&self, key: &str) -> Result<Option<LoginSession>>;
    /// Removes a session.
    async fn remove(&self, key: &str) -> Result<()>;
}

/// Sessions in this process's memory.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<HashMap<String, LoginSession>>,
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn put(&self, key: &str, session: &LoginSession) -> Result<()> {
        let mut m = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Utc::now();
        m.retain(|_, s| s.expires_at > now);
        m.insert(key.to_string(), session.clone());
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<LoginSession>> {
        Ok(self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        Ok(())
    }
}

/// Logs users in and resolves their session tokens.
#[derive(Clone)]
pub struct Sessions {
    client: Client,
    store: Arc<dyn SessionStore>,
    ttl: Duration,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions that last 7 days.
    pub fn new(client: Client, store: Arc<dyn SessionStore>) -> Self {
        Sessions { client, store, ttl: Duration::from_secs(7 * 24 * 3600) }
    }

    /// Changes the session lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Exchanges a `wx.login` code and opens a session.
    pub async fn login(&self, js_code: &str) -> Result<(SessionToken, LoginSession)> {
        let c2s = self.client.auth().code2session(js_code).await?;
        let session = LoginSession {
            openid: c2s.openid,
            unionid: c2s.unionid,
            session_key: c2s.session_key,
            expires_at: Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(7)),
        };
        let token = SessionToken::generate();
        self.store.put(&SessionToken::store_key(token.expose()), &session).await?;
        tracing::info!(openid = %session.openid, "login session opened");
        Ok((token, session))
    }

    /// The live session of a token, or `None` for an unknown or expired one.
    pub async fn get(&self, token: &str) -> Result<Option<LoginSession>> {
        let key = SessionToken::store_key(token);
        match self.store.get(&key).await? {
            Some(s) if s.expires_at > Utc::now() => Ok(Some(s)),
            Some(_) => {
                self.store.remove(&key).await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Ends a session.
    pub async fn logout(&self, token: &str) -> Result<()> {
        self.store.remove(&SessionToken::store_key(token)).await
    }
}
