//! The Redis token store: one token and one refresh lease per appid, shared by every process.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};

use serde::{Deserialize, Serialize};

use super::{AccessToken, TokenStore};
use crate::error::{Error, Result};

/// Tokens in Redis. The lease is `SET key holder NX PX ttl`, released by compare-and-delete, so a
/// crashed holder's lease expires by itself and nobody releases a lease they do not hold.
#[derive(Clone)]
pub struct RedisTokenStore {
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenStore").finish_non_exhaustive()
    }
}

/// The stored form of a token (the store serializes it; the value stays secret in memory).
#[derive(Serialize, Deserialize)]
struct StoredToken {
    value: String,
    expires_at_ms: i64,
    refresh_at_ms: i64,
}

fn store_err(e: redis::RedisError) -> Error {
    Error::Store(format!("redis: {e}"))
}

const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

const INVALIDATE_IF_VALUE: &str = r"
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, t = pcall(cjson.decode, raw)
if ok and t['value'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

impl RedisTokenStore {
    /// Connects to `url` (`redis://127.0.0.1:6379`).
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(store_err)?;
        let conn = ConnectionManager::new(client).await.map_err(store_err)?;
        Ok(RedisTokenStore { conn })
    }

    fn lease_key(key: &str) -> String {
        format!("{key}:lease")
    }

    fn forced_key(key: &str) -> String {
        format!("{key}:forced")
    }
}

#[async_trait]
impl TokenStore for RedisTokenStore {
    async fn get(&self, key: &str) -> Result<Option<AccessToken>> {
        let mut c = self.conn.clone();
        let raw: Option<String> = c.get(key).await.map_err(store_err)?;
        let Some(raw) = raw else { return Ok(None) };
        let stored: StoredToken =
            serde_json::from_str(&raw).map_err(|e| Error::Store(format!("stored token is corrupt: {e}")))?;
        let expires_at = Utc
            .timestamp_millis_opt(stored.expires_at_ms)
            .single()
            .ok_or_else(|| Error::Store("stored token has a bad expiry".into()))?;
        let refresh_at = Utc.timestamp_millis_opt(stored.refresh_at_ms).single().unwrap_or(expires_at);
        Ok(Some(AccessToken { value: SecretString::from(stored.value), expires_at, refresh_at }))
    }

    async fn set(&self, key: &str, token: &AccessToken) -> Result<()> {
        let now = Utc::now();
        let ttl_ms = (token.expires_at - now).num_milliseconds();
        if ttl_ms <= 0 {
            return Ok(());
        }
        let stored = StoredToken {
            value: token.value.expose_secret().to_string(),
            expires_at_ms: token.expires_at.timestamp_millis(),
            refresh_at_ms: token.refresh_at.timestamp_millis(),
        };
        let raw = serde_json::to_string(&stored).map_err(|e| Error::Store(e.to_string()))?;
        let mut c = self.conn.clone();
        let _: () = c.pset_ex(key, raw, ttl_ms as u64).await.map_err(store_err)?;
        Ok(())
    }

    async fn invalidate(&self, key: &str, rejected: &SecretString) -> Result<()> {
        let mut c = self.conn.clone();
        let _: i64 = redis::Script::new(INVALIDATE_IF_VALUE)
            .key(key)
            .arg(rejected.expose_secret())
            .invoke_async(&mut c)
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn try_lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(Self::lease_key(key))
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut c)
            .await
            .map_err(store_err)?;
        Ok(set.is_some())
    }

    async fn release_lease(&self, key: &str, holder: &str) -> Result<()> {
        let mut c = self.conn.clone();
        let _: i64 = redis::Script::new(COMPARE_AND_DELETE)
            .key(Self::lease_key(key))
            .arg(holder)
            .invoke_async(&mut c)
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn try_mark_forced(&self, key: &str, min_interval: Duration) -> Result<bool> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(Self::forced_key(key))
            .arg(Utc::now().timestamp_millis())
            .arg("NX")
            .arg("PX")
            .arg(min_interval.as_millis().max(1) as u64)
            .query_async(&mut c)
            .await
            .map_err(store_err)?;
        Ok(set.is_some())
    }
}
