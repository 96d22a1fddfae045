//! Message push and outbound messages, with WeChat's rules:
//!
//! - `subscribeMessage.send`: the template must be registered (40037), every template key present
//!   and valid for its type (47003, `argument invalid! data.thing1.value is empty`), and the user
//!   must hold an unused consent for the template (43101) — each consent is consumed by one send,
//!   like WeChat's one-shot subscriptions;
//! - customer-service send: only within 48 hours of the user's last message (45015), at most 5
//!   messages per user message (45047), media ids must exist (40007);
//! - typing: needs an exchange within 30 s (45080), not twice (45081), a valid command (45072);
//! - temporary media: `type=image` (40004), JPG/PNG/GIF (40005), at most 2 MB (40006);
//! - `msg_sec_check`: version 2 answers a verdict (risky when the text holds a word of the control
//!   list), version 1 answers 87014 for risky text; `media_check_async` answers a `trace_id` and
//!   later pushes `wxa_media_check`;
//! - the push sender: signs and encrypts a message or event exactly as WeChat does (query
//!   `signature`, `timestamp`, `nonce`, `openid`, and `encrypt_type=aes` + `msg_signature` in the
//!   encrypted modes), POSTs it to the configured URL with a 5 s timeout and up to 3 retries (after a timeout, a
//!   transport error or a 5xx), and
//!   checks the reply like WeChat (an encrypted reply must decrypt and verify).
//!
//! Every message sent and every push delivered is recorded for assertions.
//!
//! # Control API
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /__emulator/push/config` | `{"appid","url","token","encoding_aes_key"?,"mode":"plaintext"\|"compatible"\|"secure","format":"xml"\|"json","retries"?}` | where and how pushes go (the console's 消息推送配置) |
//! | `POST /__emulator/push/send` | `{"appid","message":{…},"user"?,"repeat"?}` | pushes `message` (WeChat's JSON shape; `ToUserName`, `CreateTime` and, from `user`, `FromUserName` filled in) `repeat` times → `[delivery]` |
//! | `POST /__emulator/push/verify_url` | `{"appid"}` | sends the GET URL verification → `{"status","body","ok"}` |
//! | `GET /__emulator/push/deliveries` | — | every push delivered, with status and (decrypted) reply |
//! | `POST /__emulator/messages/templates` | `{"appid","template_id","keys":["thing1",…]}` | registers a subscribe-message template |
//! | `POST /__emulator/messages/consent` | `{"appid","openid"\|"user","template_id","count"?,"push"?}` | the user accepts the template `count` times (and, with `push`, WeChat's `subscribe_msg_popup_event` is pushed) |
//! | `GET /__emulator/messages/sent` | — | every subscribe / customer-service / typing call accepted |
//! | `POST /__emulator/security/risky_words` | `{"words":[…]}` | the words content checks judge risky |

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Authorized, WxError, WxJson, WxResult, wx_ok};
use crate::config::Endpoints;
use crate::emulator::{EmulatorHandle, Shared, lock};
use crate::http::{Body, Host, Http, HttpConfig, Request, RetryPolicy};
use crate::mp::message::DataKind;
use crate::push::{Format, Mode, PushQuery, Verifier};

/// Customer-service messages allowed per user message.
const REPLIES_PER_USER_MESSAGE: u32 = 5;
/// The customer-service window after a user message.
const REPLY_WINDOW_HOURS: i64 = 48;
/// Typing needs an exchange this recent.
const TYPING_WINDOW_SECS: i64 = 30;
/// Temporary media lifetime.
const MEDIA_TTL_DAYS: i64 = 3;
/// Largest temporary image.
const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;
/// WeChat waits this long for a push answer.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how an app's pushes go. `Debug` redacts the token and key.
#[derive(Clone, Serialize, Deserialize)]
pub struct PushConfig {
    /// The app.
    pub appid: String,
    /// The merchant's push URL.
    pub url: String,
    /// The console Token.
    pub token: String,
    /// The console EncodingAESKey (compatible and secure modes).
    #[serde(default)]
    pub encoding_aes_key: Option<String>,
    /// The mode.
    pub mode: Mode,
    /// The format.
    pub format: Format,
    /// Retries after a failed attempt (WeChat: 3).
    #[serde(default = "three")]
    pub retries: u32,
}

fn three() -> u32 {
    3
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig")
            .field("appid", &self.appid)
            .field("url", &self.url)
            .field("token", &"[redacted]")
            .field("encoding_aes_key", &self.encoding_aes_key.as_ref().map(|_| "[redacted]"))
            .field("mode", &self.mode)
            .field("format", &self.format)
            .field("retries", &self.retries)
            .finish()
    }
}

/// A message the emulator accepted from the merchant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    /// `subscribe`, `custom` or `typing`.
    pub kind: String,
    /// The app.
    pub appid: String,
    /// The recipient.
    pub touser: String,
    /// The request body as received.
    pub body: Value,
    /// When (emulator clock, unix seconds).
    pub at: i64,
}

/// One push delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The app.
    pub appid: String,
    /// The mode used.
    pub mode: Mode,
    /// The format used.
    pub format: Format,
    /// `MsgType` of the message.
    pub msg_type: String,
    /// `Event`, for events.
    pub event: Option<String>,
    /// The query string sent.
    pub query: String,
    /// The body sent.
    pub body: String,
    /// Attempts made (1 + retries used).
    pub attempts: u32,
    /// The final HTTP status, when one arrived.
    pub status: Option<u16>,
    /// The final transport or HTTP error.
    pub error: Option<String>,
    /// The reply body as received.
    pub reply: String,
    /// The reply as WeChat reads it: decrypted and verified when encrypted.
    pub reply_plaintext: Option<String>,
    /// Why an encrypted reply did not verify.
    pub reply_error: Option<String>,
}

impl Delivery {
    /// The merchant answered 200 with a reply WeChat accepts.
    pub fn ok(&self) -> bool {
        self.status == Some(200) && self.reply_error.is_none()
    }
}

#[derive(Debug, Clone)]
struct Media {
    appid: String,
    expires_at: DateTime<Utc>,
}

/// The push and message state of the emulator.
#[derive(Debug, Default)]
pub struct PushState {
    pub(super) configs: HashMap<String, PushConfig>,
    /// (appid, template_id) → keys.
    templates: HashMap<(String, String), Vec<String>>,
    /// (appid, openid, template_id) → unused consents.
    consents: HashMap<(String, String, String), u32>,
    /// (appid, openid) → the user's last message.
    last_user_message: HashMap<(String, String), DateTime<Utc>>,
    /// (appid, openid) → the last message either way.
    last_exchange: HashMap<(String, String), DateTime<Utc>>,
    /// (appid, openid) → customer-service messages since the user's last message.
    replies: HashMap<(String, String), u32>,
    typing: HashMap<(String, String), bool>,
    media: HashMap<String, Media>,
    pub(super) risky_words: Vec<String>,
    sent: Vec<SentMessage>,
    deliveries: Vec<Delivery>,
}

/// The push capability's share of [`crate::emulator::EmulatorState`].
#[derive(Debug, Default)]
pub struct PushShared {
    pub(crate) state: std::sync::Mutex<PushState>,
    http: OnceLock<Http>,
}

impl PushShared {
    fn http(&self) -> Result<Http, String> {
        if let Some(h) = self.http.get() {
            return Ok(h.clone());
        }
        let config = HttpConfig { timeout: PUSH_TIMEOUT, retry: RetryPolicy::none(), client: None };
        let h = Http::new(Endpoints::default(), config).map_err(|e| e.to_string())?;
        Ok(self.http.get_or_init(|| h).clone())
    }
}

/// The `gh_…` original id the emulator gives an app (the `ToUserName` of its pushes); one per app
/// across capabilities.
pub fn gh_id(appid: &str) -> String {
    super::auth::original_id(appid)
}

pub(super) fn valid_openid(s: &str) -> bool {
    s.len() == 28 && s.starts_with('o')
}

fn bad_control(msg: impl Into<String>) -> Response {
    let msg: String = msg.into();
    (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({ "error": msg }))).into_response()
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/cgi-bin/message/subscribe/send", post(subscribe_send))
        .route("/cgi-bin/message/custom/send", post(custom_send))
        .route("/cgi-bin/message/custom/typing", post(typing))
        .route("/cgi-bin/message/custom/business/typing", post(typing))
        .route("/cgi-bin/media/upload", post(media_upload))
        .route("/__emulator/push/config", post(push_config))
        .route("/__emulator/push/send", post(push_send))
        .route("/__emulator/push/verify_url", post(push_verify_url))
        .route("/__emulator/push/deliveries", get(push_deliveries))
        .route("/__emulator/messages/templates", post(add_template))
        .route("/__emulator/messages/consent", post(consent))
        .route("/__emulator/messages/sent", get(sent_messages))
}

type Q = Query<HashMap<String, String>>;

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

async fn subscribe_send(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<Map<String, Value>>,
) -> WxResult {
    let touser = str_of(&b, "touser").to_string();
    if !valid_openid(&touser) {
        return Err(WxError::new(40003, "invalid openid"));
    }
    let template_id = str_of(&b, "template_id").to_string();
    let now = s.now();
    let mut st = lock(&s.push.state);
    let Some(keys) = st.templates.get(&(appid.clone(), template_id.clone())).cloned() else {
        return Err(WxError::new(40037, "invalid template_id"));
    };
    if let Some(state) = b.get("miniprogram_state")
        && !matches!(state.as_str(), Some("developer" | "trial" | "formal"))
    {
        return Err(WxError::new(47003, "argument invalid! miniprogram_state invalid"));
    }
    let data = b.get("data").and_then(Value::as_object);
    for key in &keys {
        let value = data.and_then(|d| d.get(key)).and_then(|v| v.get("value")).and_then(Value::as_str).unwrap_or("");
        if value.trim().is_empty() {
            return Err(WxError::new(47003, format!("argument invalid! data.{key}.value is empty")));
        }
        if let Some(kind) = DataKind::of_key(key)
            && kind.check(value).is_err()
        {
            return Err(WxError::new(47003, format!("argument invalid! data.{key}.value invalid")));
        }
    }
    let consent_key = (appid.clone(), touser.clone(), template_id);
    match st.consents.get_mut(&consent_key) {
        Some(n) if *n > 0 => *n -= 1,
        _ => return Err(WxError::new(43101, "user refuse to accept the msg")),
    }
    st.sent.push(SentMessage { kind: "subscribe".into(), appid, touser, body: Value::Object(b), at: now.timestamp() });
    drop(st);
    s.bump("message.subscribe.sent");
    wx_ok(json!({}))
}

async fn custom_send(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<Map<String, Value>>,
) -> WxResult {
    let touser = str_of(&b, "touser").to_string();
    if !valid_openid(&touser) {
        return Err(WxError::new(40003, "invalid openid"));
    }
    let msgtype = str_of(&b, "msgtype");
    let required: &[&str] = match msgtype {
        "text" => &["content"],
        "image" => &["media_id"],
        "link" => &["title", "url"],
        "miniprogrampage" => &["title", "pagepath", "thumb_media_id"],
        _ => return Err(WxError::new(40008, "invalid message type")),
    };
    let inner = b.get(msgtype).and_then(Value::as_object);
    for field in required {
        if inner.map(|i| str_of(i, field)).unwrap_or("").is_empty() {
            return Err(WxError::new(47001, format!("data format error: {msgtype}.{field} is missing")));
        }
    }
    let now = s.now();
    let mut st = lock(&s.push.state);
    let media_field = match msgtype {
        "image" => Some("media_id"),
        "miniprogrampage" => Some("thumb_media_id"),
        _ => None,
    };
    if let Some(f) = media_field {
        let id = inner.map(|i| str_of(i, f)).unwrap_or("");
        if !st.media.get(id).is_some_and(|m| m.appid == appid && m.expires_at > now) {
            return Err(WxError::new(40007, "invalid media_id"));
        }
    }
    let user = (appid.clone(), touser.clone());
    let open = st.last_user_message.get(&user).is_some_and(|t| now - *t <= chrono::Duration::hours(REPLY_WINDOW_HOURS));
    if !open {
        return Err(WxError::new(45015, "response out of time limit or subscription is canceled"));
    }
    let replies = st.replies.entry(user.clone()).or_default();
    if *replies >= REPLIES_PER_USER_MESSAGE {
        return Err(WxError::new(45047, "out of response count limit"));
    }
    *replies += 1;
    st.last_exchange.insert(user.clone(), now);
    st.typing.remove(&user);
    st.sent.push(SentMessage { kind: "custom".into(), appid, touser, body: Value::Object(b), at: now.timestamp() });
    drop(st);
    s.bump("message.custom.sent");
    wx_ok(json!({}))
}

async fn typing(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<Map<String, Value>>,
) -> WxResult {
    let touser = str_of(&b, "touser").to_string();
    if !valid_openid(&touser) {
        return Err(WxError::new(40003, "invalid openid"));
    }
    let command = str_of(&b, "command");
    let typing = match command {
        "Typing" => true,
        "CancelTyping" => false,
        _ => return Err(WxError::new(45072, "invalid command")),
    };
    let now = s.now();
    let mut st = lock(&s.push.state);
    let user = (appid.clone(), touser.clone());
    let recent = st.last_exchange.get(&user).is_some_and(|t| now - *t <= chrono::Duration::seconds(TYPING_WINDOW_SECS));
    if !recent {
        return Err(WxError::new(
            45080,
            "need sending message to user, or recving message from user in the last 30 seconds",
        ));
    }
    if typing && st.typing.get(&user).copied().unwrap_or(false) {
        return Err(WxError::new(45081, "already in typing state"));
    }
    st.typing.insert(user, typing);
    st.sent.push(SentMessage { kind: "typing".into(), appid, touser, body: Value::Object(b), at: now.timestamp() });
    wx_ok(json!({}))
}

/// The `name` part of a multipart body: (filename, content type, bytes).
fn multipart_part<'a>(content_type: &str, body: &'a [u8], name: &str) -> Option<(Option<String>, &'a [u8])> {
    let boundary =
        content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).map(|b| b.trim_matches('"'))?;
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?.windows(delim.len()).position(|w| w == delim).map(|p| p + from)
    };
    let mut at = find(body, 0)? + delim.len();
    loop {
        let next = find(body, at)?;
        let part = body.get(at..next)?;
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let split = part.windows(4).position(|w| w == b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&part[..split]).ok()?;
        let data = &part[split + 4..];
        let disposition = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_string())
            })
        };
        if param("name").as_deref() == Some(name) {
            return Some((param("filename"), data));
        }
        at = next + delim.len();
    }
}

fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("gif")
    } else {
        None
    }
}

async fn media_upload(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    Query(q): Q,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> WxResult {
    if q.get("type").map(String::as_str) != Some("image") {
        return Err(WxError::new(40004, "invalid media type"));
    }
    let ct = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some((_filename, data)) = multipart_part(ct, &body, "media") else {
        return Err(WxError::new(41005, "media data missing"));
    };
    if data.len() > MAX_IMAGE_BYTES {
        return Err(WxError::new(40006, "invalid meida size"));
    }
    if image_kind(data).is_none() {
        return Err(WxError::new(40005, "invalid file type"));
    }
    let now = s.now();
    let media_id = format!("EMU_MEDIA_{}", hex::encode(rand::random::<[u8; 16]>()));
    lock(&s.push.state)
        .media
        .insert(media_id.clone(), Media { appid, expires_at: now + chrono::Duration::days(MEDIA_TTL_DAYS) });
    s.bump("media.uploaded");
    wx_ok(json!({ "type": "image", "media_id": media_id, "created_at": now.timestamp() }))
}

fn verifier_for(cfg: &PushConfig) -> Result<Verifier, String> {
    match &cfg.encoding_aes_key {
        Some(k) => Verifier::with_aes_key(cfg.token.clone(), k, cfg.appid.clone())
            .map(|v| v.accept_plaintext(true))
            .map_err(|e| e.to_string()),
        None if cfg.mode.encrypted() => Err("compatible and secure modes need encoding_aes_key".into()),
        None => Ok(Verifier::new(cfg.token.clone())),
    }
}

fn with_query(url: &str, query: &str) -> String {
    format!("{url}{}{query}", if url.contains('?') { '&' } else { '?' })
}

/// Whether `appid` has a push URL configured.
pub(crate) fn has_config(s: &Shared, appid: &str) -> bool {
    lock(&s.push.state).configs.contains_key(appid)
}

/// Signs, encrypts and POSTs one push for `appid`, `repeat` times (WeChat retries that lost their answer).
pub(crate) async fn deliver(
    s: &Shared,
    appid: &str,
    mut fields: Map<String, Value>,
    repeat: u32,
) -> Result<Vec<Delivery>, String> {
    let cfg = lock(&s.push.state).configs.get(appid).cloned().ok_or_else(|| format!("no push config for {appid}"))?;
    let verifier = verifier_for(&cfg)?;
    let now = s.now();
    fields.entry("ToUserName").or_insert_with(|| gh_id(appid).into());
    fields.entry("CreateTime").or_insert_with(|| now.timestamp().into());
    let msg_type = fields.get("MsgType").and_then(Value::as_str).unwrap_or("").to_string();
    if msg_type.is_empty() {
        return Err("the message has no MsgType".into());
    }
    let event = fields.get("Event").and_then(Value::as_str).map(str::to_string);
    let from = fields.get("FromUserName").and_then(Value::as_str).unwrap_or("").to_string();
    if matches!(msg_type.as_str(), "text" | "image" | "miniprogrampage") {
        fields.entry("MsgId").or_insert_with(|| Value::from(rand::random_range(1u64 << 60..1u64 << 62)));
        // The user wrote: the customer-service window opens, the reply count restarts.
        let mut st = lock(&s.push.state);
        let user = (appid.to_string(), from.clone());
        st.last_user_message.insert(user.clone(), now);
        st.last_exchange.insert(user.clone(), now);
        st.replies.insert(user, 0);
    }
    let ts = now.timestamp().to_string();
    let nonce = rand::random_range(100_000_000u64..10_000_000_000).to_string();
    let signed = verifier.sign_push(cfg.mode, cfg.format, &fields, &ts, &nonce).map_err(|e| e.to_string())?;
    let query = signed.query.to_query_string();
    let http = s.push.http()?;
    let mut out = Vec::new();
    for _ in 0..repeat.max(1) {
        let req = Request::new(Method::POST, Host::Absolute, with_query(&cfg.url, &query))
            .body(Body::Raw { content_type: signed.content_type.to_string(), bytes: signed.body.clone().into() })
            .idempotent(false);
        let mut d = Delivery {
            appid: appid.to_string(),
            mode: cfg.mode,
            format: cfg.format,
            msg_type: msg_type.clone(),
            event: event.clone(),
            query: query.clone(),
            body: signed.body.clone(),
            attempts: 0,
            status: None,
            error: None,
            reply: String::new(),
            reply_plaintext: None,
            reply_error: None,
        };
        for _ in 0..=cfg.retries {
            d.attempts += 1;
            match http.execute(&req, None).await {
                Ok(resp) => {
                    d.status = Some(resp.status);
                    d.error = None;
                    d.reply = String::from_utf8_lossy(&resp.body).into_owned();
                    // A 4xx will not change on retry; WeChat retries what looks transient.
                    if resp.status < 500 {
                        break;
                    }
                }
                Err(e) => {
                    d.status = match &e {
                        crate::Error::HttpStatus { status, .. } | crate::Error::PayApi { status, .. } => Some(*status),
                        _ => None,
                    };
                    d.error = Some(e.to_string());
                }
            }
        }
        if d.status == Some(200) {
            let reply = d.reply.trim();
            if reply.is_empty() || reply.eq_ignore_ascii_case("success") || !cfg.mode.encrypted() {
                d.reply_plaintext = Some(d.reply.clone());
            } else {
                match verifier.open_reply(d.reply.as_bytes()) {
                    Ok(p) => d.reply_plaintext = Some(String::from_utf8_lossy(&p).into_owned()),
                    Err(e) => d.reply_error = Some(e.to_string()),
                }
            }
        }
        s.bump("push.delivered");
        lock(&s.push.state).deliveries.push(d.clone());
        out.push(d);
    }
    Ok(out)
}

async fn push_config(State(s): State<Shared>, axum::Json(cfg): axum::Json<PushConfig>) -> Response {
    if let Err(e) = verifier_for(&cfg) {
        return bad_control(e);
    }
    if url::Url::parse(&cfg.url).is_err() {
        return bad_control(format!("invalid url {:?}", cfg.url));
    }
    lock(&s.push.state).configs.insert(cfg.appid.clone(), cfg);
    axum::Json(json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
struct SendBody {
    appid: String,
    message: Map<String, Value>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    repeat: Option<u32>,
}

async fn push_send(State(s): State<Shared>, axum::Json(b): axum::Json<SendBody>) -> Response {
    let mut fields = b.message;
    if let Some(user) = &b.user {
        fields.insert("FromUserName".into(), super::auth::openid_for(&b.appid, user).into());
    }
    match deliver(&s, &b.appid, fields, b.repeat.unwrap_or(1)).await {
        Ok(d) => axum::Json(d).into_response(),
        Err(e) => bad_control(e),
    }
}

#[derive(Deserialize)]
struct AppidBody {
    appid: String,
}

async fn push_verify_url(State(s): State<Shared>, axum::Json(b): axum::Json<AppidBody>) -> Response {
    let Some(cfg) = lock(&s.push.state).configs.get(&b.appid).cloned() else {
        return bad_control(format!("no push config for {}", b.appid));
    };
    let verifier = match verifier_for(&cfg) {
        Ok(v) => v,
        Err(e) => return bad_control(e),
    };
    let ts = s.now().timestamp().to_string();
    let nonce = rand::random_range(100_000_000u64..10_000_000_000).to_string();
    let echostr = rand::random_range(1u64 << 60..u64::MAX).to_string();
    let q = PushQuery {
        signature: Some(verifier.signature(&ts, &nonce)),
        timestamp: Some(ts),
        nonce: Some(nonce),
        echostr: Some(echostr.clone()),
        ..Default::default()
    };
    let http = match s.push.http() {
        Ok(h) => h,
        Err(e) => return bad_control(e),
    };
    let req = Request::new(Method::GET, Host::Absolute, with_query(&cfg.url, &q.to_query_string()));
    match http.execute(&req, None).await {
        Ok(resp) => {
            let body = String::from_utf8_lossy(&resp.body).into_owned();
            axum::Json(json!({ "status": resp.status, "ok": resp.status == 200 && body == echostr, "body": body }))
                .into_response()
        }
        Err(e) => axum::Json(json!({ "status": null, "ok": false, "error": e.to_string() })).into_response(),
    }
}

async fn push_deliveries(State(s): State<Shared>) -> Response {
    axum::Json(lock(&s.push.state).deliveries.clone()).into_response()
}

#[derive(Deserialize)]
struct TemplateBody {
    appid: String,
    template_id: String,
    keys: Vec<String>,
}

async fn add_template(State(s): State<Shared>, axum::Json(b): axum::Json<TemplateBody>) -> Response {
    if b.template_id.is_empty() || b.keys.is_empty() {
        return bad_control("a template needs an id and keys");
    }
    lock(&s.push.state).templates.insert((b.appid, b.template_id), b.keys);
    axum::Json(json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
struct ConsentBody {
    appid: String,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    user: Option<String>,
    template_id: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    push: bool,
}

async fn consent(State(s): State<Shared>, axum::Json(b): axum::Json<ConsentBody>) -> Response {
    let openid = match (&b.openid, &b.user) {
        (Some(o), _) => o.clone(),
        (None, Some(u)) => super::auth::openid_for(&b.appid, u),
        (None, None) => return bad_control("consent needs openid or user"),
    };
    {
        let mut st = lock(&s.push.state);
        if !st.templates.contains_key(&(b.appid.clone(), b.template_id.clone())) {
            return bad_control(format!("template {} is not registered for {}", b.template_id, b.appid));
        }
        *st.consents.entry((b.appid.clone(), openid.clone(), b.template_id.clone())).or_default() +=
            b.count.unwrap_or(1);
    }
    let mut deliveries = Vec::new();
    if b.push {
        let fields = json!({
            "FromUserName": openid, "MsgType": "event", "Event": "subscribe_msg_popup_event",
            "List": [{"TemplateId": b.template_id, "SubscribeStatusString": "accept", "PopupScene": "0"}]
        });
        match deliver(&s, &b.appid, fields.as_object().cloned().unwrap_or_default(), 1).await {
            Ok(d) => deliveries = d,
            Err(e) => return bad_control(e),
        }
    }
    axum::Json(json!({ "ok": true, "openid": openid, "deliveries": deliveries })).into_response()
}

async fn sent_messages(State(s): State<Shared>) -> Response {
    axum::Json(lock(&s.push.state).sent.clone()).into_response()
}

/// Rust-side control of the push capability (the same effects as the control API).
impl EmulatorHandle {
    /// Configures pushes for an app.
    pub fn configure_push(&self, config: PushConfig) -> crate::Result<()> {
        verifier_for(&config).map_err(crate::Error::Config)?;
        lock(&self.state().push.state).configs.insert(config.appid.clone(), config);
        Ok(())
    }

    /// Pushes a message or event (WeChat's JSON shape) to the app's configured URL.
    pub async fn send_push(&self, appid: &str, message: Value) -> crate::Result<Delivery> {
        let fields =
            message.as_object().cloned().ok_or_else(|| crate::Error::Config("a push is a JSON object".into()))?;
        let mut d = deliver(self.state(), appid, fields, 1).await.map_err(crate::Error::Config)?;
        d.pop().ok_or_else(|| crate::Error::Config("nothing delivered".into()))
    }

    /// Registers a subscribe-message template with its keys.
    pub fn register_template(&self, appid: &str, template_id: &str, keys: &[&str]) {
        lock(&self.state().push.state)
            .templates
            .insert((appid.into(), template_id.into()), keys.iter().map(|k| k.to_string()).collect());
    }

    /// The user accepts `template_id` once (one subscribe message may be sent).
    pub fn grant_consent(&self, appid: &str, openid: &str, template_id: &str) {
        *lock(&self.state().push.state)
            .consents
            .entry((appid.into(), openid.into(), template_id.into()))
            .or_default() += 1;
    }

    /// Replaces the words content checks judge risky.
    pub fn set_risky_words(&self, words: &[&str]) {
        lock(&self.state().push.state).risky_words = words.iter().map(|w| w.to_string()).collect();
    }

    /// Every subscribe, customer-service and typing call accepted.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        lock(&self.state().push.state).sent.clone()
    }

    /// Every push delivered.
    pub fn push_deliveries(&self) -> Vec<Delivery> {
        lock(&self.state().push.state).deliveries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_finds_the_media_part() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--XyZ\r\nContent-Disposition: form-data; name=\"media\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\nDATA\r\n--XyZ--\r\n";
        let (filename, data) = multipart_part("multipart/form-data; boundary=XyZ", body, "media").unwrap();
        assert_eq!(filename.as_deref(), Some("a.png"));
        assert_eq!(data, b"\x89PNG\r\n\x1a\nDATA");
        assert_eq!(image_kind(data), Some("png"));
        assert!(multipart_part("multipart/form-data; boundary=XyZ", body, "nope").is_none());
        assert!(multipart_part("multipart/form-data", body, "media").is_none());
        assert!(multipart_part("multipart/form-data; boundary=XyZ", b"garbage", "media").is_none());
    }

    #[test]
    fn gh_ids_are_stable() {
        assert_eq!(gh_id("wx_emulator_app"), gh_id("wx_emulator_app"));
        assert!(gh_id("wx1").starts_with("gh_") && gh_id("wx1").len() == 15);
    }
}
