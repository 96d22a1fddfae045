//! The in-process token store (the default).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use secrecy::SecretString;

use super::{AccessToken, TokenStore};
use crate::error::Result;

/// Tokens and leases in this process's memory. Shared by every manager that holds the same `Arc`.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, AccessToken>,
    leases: HashMap<String, (String, Instant)>,
    forced: HashMap<String, Instant>,
}

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn get(&self, key: &str) -> Result<Option<AccessToken>> {
        let now = Utc::now();
        Ok(self.state().tokens.get(key).filter(|t| t.expires_at > now).cloned())
    }

    async fn set(&self, key: &str, token: &AccessToken) -> Result<()> {
        self.state().tokens.insert(key.to_string(), token.clone());
        Ok(())
    }

    async fn invalidate(&self, key: &str, rejected: &SecretString) -> Result<()> {
        let mut s = self.state();
        if s.tokens.get(key).is_some_and(|t| t.same_value(rejected)) {
            s.tokens.remove(key);
        }
        Ok(())
    }

    async fn try_lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut s = self.state();
        let now = Instant::now();
        match s.leases.get(key) {
            Some((h, until)) if *until > now && h != holder => Ok(false),
            _ => {
                s.leases.insert(key.to_string(), (holder.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, key: &str, holder: &str) -> Result<()> {
        let mut s = self.state();
        if s.leases.get(key).is_some_and(|(h, _)| h == holder) {
            s.leases.remove(key);
        }
        Ok(())
    }

    async fn try_mark_forced(&self, key: &str, min_interval: Duration) -> Result<bool> {
        let mut s = self.state();
        let now = Instant::now();
        match s.forced.get(key) {
            Some(at) if now.duration_since(*at) < min_interval => Ok(false),
            _ => {
                s.forced.insert(key.to_string(), now);
                Ok(true)
            }
        }
    }
}
