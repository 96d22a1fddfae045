//! Access tokens and login, with WeChat's semantics:
//! - classic `/cgi-bin/token`: every fetch issues a new token; the previous one stays valid for a
//!   5-minute grace;
//! - `/cgi-bin/stable_token`: the same token while valid (rotated in its last 5 minutes);
//!   `force_refresh` issues a new one and retires the previous at once, at most once per 30 s;
//! - `jscode2session`: codes minted by the control API stand in for `wx.login` (single use,
//!   5-minute life); a new login gives the user a new session_key;
//! - phone-number codes, session-key checks (HMAC-SHA256) and resets.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{Authorized, WxError, WxResult, wx_ok};
use crate::config::AppConfig;
use crate::crypto::sig;
use crate::emulator::{Shared, lock};
use crate::error::{Error, Result};

const CODE_LIFETIME_SECS: i64 = 300;
const CLASSIC_GRACE_SECS: i64 = 300;
const STABLE_ROTATE_BEFORE_SECS: i64 = 300;
const FORCE_REFRESH_INTERVAL_SECS: i64 = 30;

#[derive(Debug, Clone)]
struct IssuedToken {
    appid: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct LoginCode {
    appid: String,
    user: String,
    expires_at: DateTime<Utc>,
    used: bool,
}

#[derive(Debug, Clone)]
struct PhoneCode {
    appid: String,
    phone: String,
    expires_at: DateTime<Utc>,
}

/// The emulator's mini-program state.
#[derive(Debug, Default)]
pub struct MpState {
    apps: HashMap<String, String>,
    tokens: HashMap<String, IssuedToken>,
    latest_classic: HashMap<String, String>,
    stable: HashMap<String, String>,
    last_force: HashMap<String, DateTime<Utc>>,
    codes: HashMap<String, LoginCode>,
    phone_codes: HashMap<String, PhoneCode>,
    /// (appid, openid) → current session_key (base64).
    session_keys: HashMap<(String, String), String>,
    /// openid → the user behind it (for unionids of paid orders).
    users: HashMap<String, String>,
}

/// The openid the emulator gives `user` in `appid`: stable, 28 characters like WeChat's.
pub fn openid_for(appid: &str, user: &str) -> String {
    let h = sig::sha1(format!("openid:{appid}:{user}").as_bytes());
    format!("o{}", &URL_SAFE_NO_PAD.encode(h)[..27])
}

/// The unionid the emulator gives `user` (the same across apps, like an open-platform account).
pub fn unionid_for(user: &str) -> String {
    let h = sig::sha1(format!("unionid:{user}").as_bytes());
    format!("u{}", &URL_SAFE_NO_PAD.encode(h)[..27])
}

/// The original id (`gh_…`) the emulator gives an app: the `ToUserName` of its pushes, one per app
/// across capabilities.
pub fn original_id(appid: &str) -> String {
    format!("gh_{}", &sig::sha1_hex(appid.as_bytes())[..12])
}

fn random_token(prefix: &str, bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(raw))
}

impl MpState {
    /// Registers an app.
    pub fn add_app(&mut self, app: &AppConfig) {
        self.apps.insert(app.appid.clone(), app.secret.expose_secret().to_string());
    }

    fn check_app(&self, appid: Option<&str>, secret: Option<&str>) -> std::result::Result<(), (i64, &'static str)> {
        let appid = appid.filter(|a| !a.is_empty()).ok_or((41002, "appid missing"))?;
        let known = self.apps.get(appid).ok_or((40013, "invalid appid"))?;
        let secret = secret.filter(|s| !s.is_empty()).ok_or((41004, "appsecret missing"))?;
        if !sig::ct_eq(known.as_bytes(), secret.as_bytes()) {
            return Err((40125, "invalid appsecret"));
        }
        Ok(())
    }

    fn issue(&mut self, appid: &str, now: DateTime<Utc>, ttl: i64) -> String {
        let token = random_token("EMU_", 96);
        self.tokens
            .insert(token.clone(), IssuedToken { appid: appid.to_string(), expires_at: now + Duration::seconds(ttl) });
        token
    }

    fn expires_in(&self, token: &str, now: DateTime<Utc>) -> i64 {
        self.tokens.get(token).map(|t| (t.expires_at - now).num_seconds().max(0)).unwrap_or(0)
    }

    /// Mints a `wx.login` code.
    pub fn mint_login_code(&mut self, appid: &str, user: &str, now: DateTime<Utc>) -> Result<(String, String)> {
        if !self.apps.contains_key(appid) {
            return Err(Error::Config(format!("the emulator does not know appid {appid}")));
        }
        if user.is_empty() {
            return Err(Error::Config("user is empty".into()));
        }
        let code = random_token("", 24);
        self.codes.insert(
            code.clone(),
            LoginCode {
                appid: appid.into(),
                user: user.into(),
                expires_at: now + Duration::seconds(CODE_LIFETIME_SECS),
                used: false,
            },
        );
        let openid = openid_for(appid, user);
        self.users.insert(openid.clone(), user.to_string());
        Ok((code, openid))
    }

    /// Remembers the user behind an openid (the emulator handle's `openid_of` does this too).
    pub fn remember_user(&mut self, appid: &str, user: &str) -> String {
        let openid = openid_for(appid, user);
        self.users.insert(openid.clone(), user.to_string());
        openid
    }

    /// Whether `openid` is a user's openid in `appid` (payments and transfers to a user check it).
    pub fn openid_in_app(&self, appid: &str, openid: &str) -> bool {
        self.users.get(openid).is_some_and(|user| openid_for(appid, user) == openid)
    }

    /// Mints a getPhoneNumber code.
    pub fn mint_phone_code(&mut self, appid: &str, phone: &str, now: DateTime<Utc>) -> Result<String> {
        if !self.apps.contains_key(appid) {
            return Err(Error::Config(format!("the emulator does not know appid {appid}")));
        }
        let code = random_token("", 24);
        self.phone_codes.insert(
            code.clone(),
            PhoneCode {
                appid: appid.into(),
                phone: phone.into(),
                expires_at: now + Duration::seconds(CODE_LIFETIME_SECS),
            },
        );
        Ok(code)
    }

    /// Checks an access token: the appid it belongs to, or WeChat's errcode.
    pub fn check_token(
        &self,
        token: Option<&str>,
        now: DateTime<Utc>,
    ) -> std::result::Result<String, (i64, &'static str)> {
        let token = token.filter(|t| !t.is_empty()).ok_or((41001, "access_token missing"))?;
        let issued =
            self.tokens.get(token).ok_or((40001, "invalid credential, access_token is invalid or not latest"))?;
        if issued.expires_at <= now {
            return Err((42001, "access_token expired"));
        }
        Ok(issued.appid.clone())
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/cgi-bin/token", get(classic_token))
        .route("/cgi-bin/stable_token", post(stable_token))
        .route("/sns/jscode2session", get(jscode2session))
        .route("/wxa/checksession", get(check_session))
        .route("/wxa/resetusersessionkey", get(reset_session_key))
        .route("/wxa/business/getuserphonenumber", post(phone_number))
        .route("/wxa/getpaidunionid", get(paid_unionid))
}

type Q = Query<HashMap<String, String>>;

async fn classic_token(State(s): State<Shared>, Query(q): Q) -> WxResult {
    if q.get("grant_type").map(String::as_str) != Some("client_credential") {
        return Err(WxError::new(40002, "invalid grant_type"));
    }
    let now = s.now();
    let ttl = s.token_ttl_secs.load(std::sync::atomic::Ordering::Relaxed);
    let mut mp = lock(&s.mp);
    let appid = q.get("appid").cloned().unwrap_or_default();
    mp.check_app(Some(&appid), q.get("secret").map(String::as_str))?;
    // The previous classic token lives on for a short grace period only.
    if let Some(prev) = mp.latest_classic.get(&appid).cloned()
        && let Some(t) = mp.tokens.get_mut(&prev)
    {
        t.expires_at = t.expires_at.min(now + Duration::seconds(CLASSIC_GRACE_SECS));
    }
    let token = mp.issue(&appid, now, ttl);
    mp.latest_classic.insert(appid, token.clone());
    drop(mp);
    s.bump("token.issued");
    wx_ok(serde_json::json!({ "access_token": token, "expires_in": ttl }))
}

#[derive(Deserialize)]
struct StableBody {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

async fn stable_token(State(s): State<Shared>, body: axum::body::Bytes) -> WxResult {
    let b: StableBody = serde_json::from_slice(&body).map_err(|_| WxError::new(47001, "data format error"))?;
    if b.grant_type.as_deref() != Some("client_credential") {
        return Err(WxError::new(40002, "invalid grant_type"));
    }
    let now = s.now();
    let ttl = s.token_ttl_secs.load(std::sync::atomic::Ordering::Relaxed);
    let mut mp = lock(&s.mp);
    mp.check_app(b.appid.as_deref(), b.secret.as_deref())?;
    let appid = b.appid.unwrap_or_default();
    let current = mp.stable.get(&appid).cloned();
    let rotate_at = Duration::seconds(STABLE_ROTATE_BEFORE_SECS.min(ttl / 2));
    let reusable = current.as_ref().filter(|t| mp.tokens.get(*t).is_some_and(|i| i.expires_at - rotate_at > now));
    if b.force_refresh {
        if let Some(last) = mp.last_force.get(&appid)
            && now - *last < Duration::seconds(FORCE_REFRESH_INTERVAL_SECS)
        {
            return Err(WxError::new(45011, "api minute-quota reach limit, force_refresh at most once per 30 seconds"));
        }
        mp.last_force.insert(appid.clone(), now);
        if let Some(prev) = &current {
            mp.tokens.remove(prev);
        }
    } else if let Some(t) = reusable {
        let t = t.clone();
        let expires_in = mp.expires_in(&t, now);
        return wx_ok(serde_json::json!({ "access_token": t, "expires_in": expires_in }));
    }
    let token = mp.issue(&appid, now, ttl);
    mp.stable.insert(appid, token.clone());
    drop(mp);
    s.bump("token.issued");
    wx_ok(serde_json::json!({ "access_token": token, "expires_in": ttl }))
}

async fn jscode2session(State(s): State<Shared>, Query(q): Q) -> WxResult {
    let now = s.now();
    let mut mp = lock(&s.mp);
    let appid = q.get("appid").cloned().unwrap_or_default();
    mp.check_app(Some(&appid), q.get("secret").map(String::as_str))?;
    if q.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err(WxError::new(40002, "invalid grant_type"));
    }
    let code = q.get("js_code").cloned().unwrap_or_default();
    let Some(entry) = mp.codes.get_mut(&code) else {
        return Err(WxError::new(40029, "invalid code"));
    };
    if entry.appid != appid || entry.expires_at <= now {
        return Err(WxError::new(40029, "invalid code"));
    }
    if entry.used {
        return Err(WxError::new(40163, "code been used"));
    }
    entry.used = true;
    let user = entry.user.clone();
    let openid = openid_for(&appid, &user);
    let key: [u8; 16] = rand::random();
    let session_key = STANDARD.encode(key);
    mp.session_keys.insert((appid, openid.clone()), session_key.clone());
    drop(mp);
    s.bump("login.code2session");
    wx_ok(serde_json::json!({ "openid": openid, "session_key": session_key, "unionid": unionid_for(&user) }))
}

fn check_signature(mp: &MpState, appid: &str, q: &HashMap<String, String>) -> WxResult<String> {
    if q.get("sig_method").map(String::as_str) != Some("hmac_sha256") {
        return Err(WxError::new(40097, "invalid sig_method"));
    }
    let openid = q.get("openid").cloned().unwrap_or_default();
    let Some(key) = mp.session_keys.get(&(appid.to_string(), openid.clone())) else {
        return Err(WxError::new(40003, "invalid openid"));
    };
    let expected = sig::hmac_sha256_hex(key.as_bytes(), b"");
    if !sig::ct_eq_hex(&expected, q.get("signature").map(String::as_str).unwrap_or("")) {
        return Err(WxError::new(87009, "invalid signature"));
    }
    Ok(openid)
}

async fn check_session(State(s): State<Shared>, Authorized(appid): Authorized, Query(q): Q) -> WxResult {
    check_signature(&lock(&s.mp), &appid, &q)?;
    wx_ok(serde_json::json!({}))
}

async fn reset_session_key(State(s): State<Shared>, Authorized(appid): Authorized, Query(q): Q) -> WxResult {
    let mut mp = lock(&s.mp);
    let openid = check_signature(&mp, &appid, &q)?;
    let key: [u8; 16] = rand::random();
    let session_key = STANDARD.encode(key);
    mp.session_keys.insert((appid, openid.clone()), session_key.clone());
    wx_ok(serde_json::json!({ "openid": openid, "session_key": session_key }))
}

#[derive(Deserialize)]
struct PhoneBody {
    code: Option<String>,
}

async fn phone_number(State(s): State<Shared>, Authorized(appid): Authorized, body: axum::body::Bytes) -> WxResult {
    let b: PhoneBody = serde_json::from_slice(&body).map_err(|_| WxError::new(47001, "data format error"))?;
    let now = s.now();
    let mut mp = lock(&s.mp);
    let code = b.code.unwrap_or_default();
    // Phone codes are single use, like WeChat's.
    let Some(entry) = mp.phone_codes.remove(&code) else {
        return Err(WxError::new(40029, "invalid code"));
    };
    if entry.appid != appid || entry.expires_at <= now {
        return Err(WxError::new(40029, "invalid code"));
    }
    let (country, pure) = match entry.phone.strip_prefix('+') {
        Some(rest) if rest.len() > 11 => (rest[..rest.len() - 11].to_string(), rest[rest.len() - 11..].to_string()),
        _ => ("86".to_string(), entry.phone.clone()),
    };
    // Mainland numbers come without the country code, foreign ones with it (WeChat's format).
    let phone_number = if country == "86" { pure.clone() } else { entry.phone.clone() };
    wx_ok(serde_json::json!({
        "phone_info": {
            "phoneNumber": phone_number,
            "purePhoneNumber": pure,
            "countryCode": country,
            "watermark": { "timestamp": now.timestamp(), "appid": appid }
        }
    }))
}

async fn paid_unionid(State(s): State<Shared>, _: Authorized, Query(q): Q) -> WxResult {
    let order = match (q.get("transaction_id"), q.get("mch_id"), q.get("out_trade_no")) {
        (Some(t), _, _) => (Some(t.as_str()), None),
        (None, Some(m), Some(o)) => (None, Some((m.as_str(), o.as_str()))),
        _ => return Err(WxError::new(40097, "invalid args: transaction_id or mch_id+out_trade_no required")),
    };
    let Some(openid) = q.get("openid").filter(|o| !o.is_empty()) else {
        return Err(WxError::new(40003, "invalid openid"));
    };
    // The order must be paid (within WeChat's window) by this very openid.
    let payer = lock(&s.pay).paid_openid(order.0, order.1);
    if payer.as_ref() != Some(openid) {
        return Err(WxError::new(89300, "订单无效 (no paid order of this openid)"));
    }
    match lock(&s.mp).users.get(openid) {
        Some(user) => wx_ok(serde_json::json!({ "unionid": unionid_for(user) })),
        None => Err(WxError::new(40003, "invalid openid")),
    }
}
