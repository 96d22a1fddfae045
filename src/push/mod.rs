//! Inbound message push (消息推送): URL verification, plaintext, compatible and secure modes, XML
//! and JSON bodies, typed messages, encrypted replies, and processing each push once.
//!
//! One [`Verifier`] per app holds the console's Token (and EncodingAESKey for the encrypted
//! modes). [`Verifier::verify_url`] answers the console's GET check; [`Verifier::open`] takes the
//! query string and the raw POST body and returns a verified, decrypted, typed [`Incoming`], or a
//! typed error — it rejects by default:
//!
//! - a missing or wrong `signature` / `msg_signature` ([`Error::Signature`], checked in constant time);
//! - a plaintext push when an EncodingAESKey is configured (a downgrade: plaintext bodies are not
//!   covered by any signature), unless [`Verifier::accept_plaintext`] allows it;
//! - a timestamp outside the window, when one is set ([`Error::StaleTimestamp`]);
//! - bad base64, padding, length field or appid ([`Error::Crypto`]);
//! - a body that is neither WeChat XML nor a JSON object ([`Error::Decode`]).
//!
//! [`Verifier::reply`] renders the answer: `success`, or a transfer to customer service, encrypted
//! when the push was. [`Verifier::sign_push`] does WeChat's side (the emulator and tests use it).
//! With feature `axum`, [`axum::PushEndpoint`] mounts all of it on a route, with deduplication.
//!
//! ```
//! use wxshop::push::{Verifier, PushQuery, Mode, Message, Reply};
//! use wxshop::push::body::Format;
//!
//! let verifier = Verifier::new("AAAAA");
//! // WeChat's published URL-verification example.
//! let q = PushQuery::parse("signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249&timestamp=1714036504&nonce=1514711492");
//! assert_eq!(verifier.verify_url(&q).unwrap(), "4375120948345356249");
//!
//! // And its plaintext-mode push.
//! let q = PushQuery::parse("signature=899cf89e464efb63f54ddac96b0a0a235f53aa78&timestamp=1714037059&nonce=486452656");
//! let body = br#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714037059,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#;
//! let push = verifier.open(&q, body).unwrap();
//! assert_eq!((push.mode, push.format), (Mode::Plaintext, Format::Json));
//! assert!(matches!(push.message, Message::Unknown { .. }));
//! assert_eq!(verifier.reply(&push, &Reply::Success).unwrap().body, "success");
//! ```

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::crypto::msgcrypt::MsgCrypt;
use crate::crypto::sig;
use crate::error::{Error, Result};

pub mod body;
mod flat;
pub mod message;

#[cfg(feature = "axum")]
pub mod axum;

pub use crate::dedupe::{DedupeStore, MemoryDedupe};
pub use body::Format;
pub use message::{MediaCheckResult, Message};

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the push was protected, chosen in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// 明文模式: the body in clear; only the query is signed.
    Plaintext,
    /// 兼容模式: clear fields and `Encrypt` side by side.
    Compatible,
    /// 安全模式: `Encrypt` only.
    Secure,
}

impl Mode {
    /// The body is encrypted (compatible or secure).
    pub fn encrypted(self) -> bool {
        self != Mode::Plaintext
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Mode::Plaintext),
            "compatible" => Ok(Mode::Compatible),
            "secure" => Ok(Mode::Secure),
            other => Err(Error::InvalidRequest(format!("unknown push mode {other:?} (plaintext, compatible, secure)"))),
        }
    }
}

/// The query string of a push or URL verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct PushQuery {
    /// sha1 of the sorted token, timestamp and nonce.
    pub signature: Option<String>,
    /// Unix seconds, as sent.
    pub timestamp: Option<String>,
    /// The nonce.
    pub nonce: Option<String>,
    /// URL verification only: the string to echo.
    pub echostr: Option<String>,
    /// The user's openid (sent with pushes).
    pub openid: Option<String>,
    /// `aes` in the encrypted modes.
    pub encrypt_type: Option<String>,
    /// Encrypted modes: sha1 of the sorted token, timestamp, nonce and `Encrypt`.
    pub msg_signature: Option<String>,
}

impl PushQuery {
    /// Parses a raw query string (without the `?`). Unknown keys are ignored; later duplicates win.
    pub fn parse(query: &str) -> Self {
        let mut q = PushQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "signature" => &mut q.signature,
                "timestamp" => &mut q.timestamp,
                "nonce" => &mut q.nonce,
                "echostr" => &mut q.echostr,
                "openid" => &mut q.openid,
                "encrypt_type" => &mut q.encrypt_type,
                "msg_signature" => &mut q.msg_signature,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        q
    }

    /// The query as key-value pairs, in WeChat's order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("signature", &self.signature),
            ("echostr", &self.echostr),
            ("timestamp", &self.timestamp),
            ("nonce", &self.nonce),
            ("openid", &self.openid),
            ("encrypt_type", &self.encrypt_type),
            ("msg_signature", &self.msg_signature),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }

    /// The query string.
    pub fn to_query_string(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(self.pairs()).finish()
    }
}

/// A verified push.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// How it was protected.
    pub mode: Mode,
    /// Its format.
    pub format: Format,
    /// The mini-program's original id (`gh_…`).
    pub to_user_name: String,
    /// The user's openid (empty for a few platform events).
    pub from_user_name: String,
    /// When WeChat created it (unix seconds).
    pub create_time: i64,
    /// `MsgType`.
    pub msg_type: String,
    /// `Event`, for events.
    pub event: Option<String>,
    /// The typed message.
    pub message: Message,
    /// The message bytes exactly: the body in plaintext mode, the decrypted message otherwise.
    pub plaintext: Vec<u8>,
}

impl Incoming {
    /// Builds from a parsed message.
    pub fn from_fields(mode: Mode, format: Format, mut fields: Map<String, Value>, plaintext: Vec<u8>) -> Result<Self> {
        let msg_type = message::text(&fields, "MsgType")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::decode("push body", "no MsgType"))?;
        let create_time = message::int(&fields, "CreateTime").unwrap_or(0);
        let event = message::text(&fields, "Event");
        let (to_user_name, from_user_name) = if Message::user_message_ready(&fields) {
            // A user message keeps no raw fields: move the header out instead of copying it.
            (message::take_text(&mut fields, "ToUserName"), message::take_text(&mut fields, "FromUserName"))
        } else {
            (
                message::text(&fields, "ToUserName").unwrap_or_default(),
                message::text(&fields, "FromUserName").unwrap_or_default(),
            )
        };
        Ok(Incoming {
            mode,
            format,
            to_user_name,
            from_user_name,
            create_time,
            event,
            message: Message::from_map(fields),
            msg_type,
            plaintext,
        })
    }

    /// Every field of the message, parsed again from [`Incoming::plaintext`] (the typed
    /// [`Incoming::message`] keeps only what it names).
    pub fn fields(&self) -> Map<String, Value> {
        body::parse(&self.plaintext).map(|(_, m)| m).unwrap_or_default()
    }

    /// The key that identifies this push across WeChat's retries (see [`crate::dedupe`]).
    pub fn dedupe_key(&self) -> String {
        let raw = match &self.message {
            Message::Unknown { raw: Value::Object(m), .. } => Some(m),
            _ => None,
        };
        if let Some(id) =
            self.message.msg_id().map(str::to_string).or_else(|| raw.and_then(|m| message::text(m, "MsgId")))
        {
            return format!("msg:{id}");
        }
        let order = |o: &message::TradeOrder| o.transaction_id.clone().or_else(|| o.merchant_trade_no.clone());
        let refine = match &self.message {
            Message::MediaCheck(r) => Some(r.trace_id.clone()),
            Message::TradeRemindShipping(o) => order(o),
            Message::TradeOrderSettlement(s) => order(&s.order),
            _ => raw.and_then(|m| {
                ["trace_id", "transaction_id", "merchant_trade_no"]
                    .iter()
                    .find_map(|k| message::text(m, k).filter(|s| !s.is_empty()))
            }),
        }
        .unwrap_or_default();
        format!(
            "event:{}:{}:{}:{}",
            self.from_user_name,
            self.create_time,
            self.event.as_deref().unwrap_or(&self.msg_type),
            refine
        )
    }
}

/// An answer to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// `success`: received, nothing to say (also sent in clear in the encrypted modes, as WeChat documents).
    Success,
    /// An empty body (WeChat treats it like `success`).
    Empty,
    /// Hand the conversation to the customer-service desk (`transfer_customer_service`).
    TransferCustomerService {
        /// A specific agent account, if any.
        kf_account: Option<String>,
    },
}

/// A rendered reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyBody {
    /// The Content-Type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// A push as WeChat sends it: the query string and the body ([`Verifier::sign_push`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPush {
    /// The query parameters.
    pub query: PushQuery,
    /// The body.
    pub body: String,
    /// Its Content-Type.
    pub content_type: &'static str,
}

/// Types message bytes: user messages through the flat fast path, everything else through the
/// field tree.
fn typed(mode: Mode, plaintext: Vec<u8>) -> Result<Incoming> {
    if let Some((_, mut incoming)) = flat::user_message(mode, &plaintext) {
        incoming.plaintext = plaintext;
        return Ok(incoming);
    }
    let (format, fields) = body::parse(&plaintext)?;
    Incoming::from_fields(mode, format, fields, plaintext)
}

/// `transfer_customer_service` in WeChat's documented field order, rendered directly.
fn transfer_body(incoming: &Incoming, create_time: i64, kf_account: Option<&str>) -> String {
    let (to, from) = (&incoming.from_user_name, &incoming.to_user_name);
    match incoming.format {
        Format::Xml => {
            let cdata = |s: &str| s.replace("]]>", "]]]]><![CDATA[>");
            let trans = kf_account
                .map(|kf| format!("<TransInfo><KfAccount><![CDATA[{}]]></KfAccount></TransInfo>", cdata(kf)))
                .unwrap_or_default();
            format!(
                "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[transfer_customer_service]]></MsgType>{trans}</xml>",
                cdata(to),
                cdata(from)
            )
        }
        Format::Json => {
            let js = |s: &str| Value::from(s).to_string();
            let trans = kf_account.map(|kf| format!(r#","TransInfo":{{"KfAccount":{}}}"#, js(kf))).unwrap_or_default();
            format!(
                r#"{{"ToUserName":{},"FromUserName":{},"CreateTime":{create_time},"MsgType":"transfer_customer_service"{trans}}}"#,
                js(to),
                js(from)
            )
        }
    }
}

/// Verifies, decrypts and types one app's pushes. `Debug` redacts the token and key.
#[derive(Clone)]
pub struct Verifier {
    token: SecretString,
    crypt: Option<MsgCrypt>,
    window: Option<Duration>,
    accept_plaintext: bool,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("token", &"[redacted]")
            .field("crypt", &self.crypt)
            .field("window", &self.window)
            .field("accept_plaintext", &self.accept_plaintext)
            .finish()
    }
}

fn required<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::InvalidRequest(format!("query parameter {name} is missing")))
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Verifier {
    /// Plaintext mode only: the console's Token.
    pub fn new(token: impl Into<String>) -> Self {
        Verifier { token: SecretString::from(token.into()), crypt: None, window: None, accept_plaintext: true }
    }

    /// Compatible and secure modes: Token, EncodingAESKey and the appid. Plaintext pushes are then
    /// rejected unless [`Verifier::accept_plaintext`] allows them.
    pub fn with_aes_key(token: impl Into<String>, encoding_aes_key: &str, appid: impl Into<String>) -> Result<Self> {
        let token = token.into();
        let crypt = MsgCrypt::new(token.clone(), encoding_aes_key, appid)?;
        Ok(Verifier { token: SecretString::from(token), crypt: Some(crypt), window: None, accept_plaintext: false })
    }

    /// Accepts (or refuses) plaintext pushes although an EncodingAESKey is configured — only while
    /// switching the console from plaintext to an encrypted mode.
    pub fn accept_plaintext(mut self, yes: bool) -> Self {
        self.accept_plaintext = yes;
        self
    }

    /// Rejects pushes whose `timestamp` is further than `window` from now (off by default: WeChat
    /// documents none; 300 s is a sound choice when clocks are synchronized).
    pub fn timestamp_window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// The WXBizMsgCrypt, when an EncodingAESKey is configured.
    pub fn crypt(&self) -> Option<&MsgCrypt> {
        self.crypt.as_ref()
    }

    /// `signature` for a timestamp and nonce.
    pub fn signature(&self, timestamp: &str, nonce: &str) -> String {
        sig::sha1_sorted(&[self.token.expose_secret(), timestamp, nonce])
    }

    fn check_signature(&self, q: &PushQuery, timestamp: &str, nonce: &str) -> Result<()> {
        let given = q
            .signature
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Signature("signature is missing".into()))?;
        if sig::verify_sha1_sorted(&[self.token.expose_secret(), timestamp, nonce], given) {
            return Ok(());
        }
        // Uppercase never verifies; told apart only for the message, once verification has failed.
        if sig::is_uppercase_hex_sha1(given) {
            return Err(Error::Signature("signature is uppercase hex; WeChat signs in lowercase hex".into()));
        }
        Err(Error::Signature("signature does not match sha1(sort(token, timestamp, nonce))".into()))
    }

    fn check_window(&self, timestamp: &str, now: i64) -> Result<()> {
        let Some(window) = self.window else { return Ok(()) };
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Error::InvalidRequest(format!("timestamp {timestamp:?} is not a number")))?;
        let window_secs = window.as_secs() as i64;
        if (now - ts).abs() > window_secs {
            return Err(Error::StaleTimestamp { timestamp: ts, window_secs });
        }
        Ok(())
    }

    /// Answers the console's URL verification (GET): the `echostr` to send back.
    pub fn verify_url(&self, q: &PushQuery) -> Result<String> {
        self.verify_url_at(q, now_unix())
    }

    /// [`Verifier::verify_url`] at a given time (unix seconds).
    pub fn verify_url_at(&self, q: &PushQuery, now: i64) -> Result<String> {
        let timestamp = required(&q.timestamp, "timestamp")?;
        let nonce = required(&q.nonce, "nonce")?;
        let echostr =
            q.echostr.as_deref().ok_or_else(|| Error::InvalidRequest("query parameter echostr is missing".into()))?;
        self.check_signature(q, timestamp, nonce)?;
        self.check_window(timestamp, now)?;
        Ok(echostr.to_string())
    }

    /// Verifies, decrypts and types a push (POST): its query string and raw body.
    pub fn open(&self, q: &PushQuery, body: &[u8]) -> Result<Incoming> {
        self.open_at(q, body, now_unix())
    }

    /// [`Verifier::open`] at a given time (unix seconds).
    pub fn open_at(&self, q: &PushQuery, body: &[u8], now: i64) -> Result<Incoming> {
        let timestamp = required(&q.timestamp, "timestamp")?;
        let nonce = required(&q.nonce, "nonce")?;
        let encrypted = match q.encrypt_type.as_deref() {
            None | Some("") | Some("raw") => false,
            Some(t) if t.eq_ignore_ascii_case("aes") => true,
            Some(other) => return Err(Error::InvalidRequest(format!("unsupported encrypt_type {other:?}"))),
        };
        if !encrypted {
            if !self.accept_plaintext {
                return Err(Error::Signature(
                    "plaintext push refused: an EncodingAESKey is configured, so pushes must be encrypted".into(),
                ));
            }
            self.check_signature(q, timestamp, nonce)?;
            self.check_window(timestamp, now)?;
            return typed(Mode::Plaintext, body.to_vec());
        }
        let crypt = self
            .crypt
            .as_ref()
            .ok_or_else(|| Error::Config("an encrypted push arrived but no EncodingAESKey is configured".into()))?;
        let msg_signature = q
            .msg_signature
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Signature("msg_signature is missing".into()))?;
        // WeChat also sends `signature` in the encrypted modes; when present it must hold too.
        if q.signature.is_some() {
            self.check_signature(q, timestamp, nonce)?;
        }
        let (_, encrypt, compatible) = body::envelope_encrypt(body)?;
        let plaintext = crypt.decrypt_verified(msg_signature, timestamp, nonce, &encrypt)?;
        self.check_window(timestamp, now)?;
        typed(if compatible { Mode::Compatible } else { Mode::Secure }, plaintext)
    }

    /// Renders a reply with the current time and a fresh nonce.
    pub fn reply(&self, incoming: &Incoming, reply: &Reply) -> Result<ReplyBody> {
        let nonce = format!("{}", rand::random_range(100_000_000u64..10_000_000_000));
        self.reply_with(incoming, reply, &now_unix().to_string(), &nonce)
    }

    /// Renders a reply: `success` and empty replies in clear, anything else in the push's format,
    /// encrypted (with `timestamp` and `nonce`) when the push was.
    pub fn reply_with(&self, incoming: &Incoming, reply: &Reply, timestamp: &str, nonce: &str) -> Result<ReplyBody> {
        let plain = match reply {
            Reply::Success => {
                return Ok(ReplyBody { content_type: "text/plain; charset=utf-8", body: "success".into() });
            }
            Reply::Empty => return Ok(ReplyBody { content_type: "text/plain; charset=utf-8", body: String::new() }),
            Reply::TransferCustomerService { kf_account } => {
                let create_time: i64 = timestamp.parse().unwrap_or_else(|_| now_unix());
                transfer_body(incoming, create_time, kf_account.as_deref())
            }
        };
        if !incoming.mode.encrypted() {
            return Ok(ReplyBody { content_type: incoming.format.content_type(), body: plain });
        }
        let crypt =
            self.crypt.as_ref().ok_or_else(|| Error::Config("no EncodingAESKey to encrypt the reply".into()))?;
        let env = crypt.encrypt_reply(plain.as_bytes(), timestamp, nonce);
        let body = match incoming.format {
            Format::Xml => env.to_xml(),
            Format::Json => env.to_json(),
        };
        Ok(ReplyBody { content_type: incoming.format.content_type(), body })
    }

    /// Decrypts an encrypted reply envelope (what WeChat does with [`Verifier::reply`]'s output).
    pub fn open_reply(&self, body: &[u8]) -> Result<Vec<u8>> {
        let crypt = self.crypt.as_ref().ok_or_else(|| Error::Config("no EncodingAESKey configured".into()))?;
        let (_, env) = body::parse(body)?;
        let get = |k: &str| message::text(&env, k).ok_or_else(|| Error::decode("reply", format!("no {k}")));
        crypt.decrypt_verified(&get("MsgSignature")?, &get("TimeStamp")?, &get("Nonce")?, &get("Encrypt")?)
    }

    /// Signs (and encrypts) a push the way WeChat does: the emulator's sender and test fixtures.
    /// `fields` is the message in WeChat's JSON shape; `openid` goes in the query as WeChat sends it.
    pub fn sign_push(
        &self,
        mode: Mode,
        format: Format,
        fields: &Map<String, Value>,
        timestamp: &str,
        nonce: &str,
    ) -> Result<SignedPush> {
        let plain = body::render(format, fields);
        let mut query = PushQuery {
            signature: Some(self.signature(timestamp, nonce)),
            timestamp: Some(timestamp.to_string()),
            nonce: Some(nonce.to_string()),
            openid: message::text(fields, "FromUserName").filter(|s| !s.is_empty()),
            ..Default::default()
        };
        if mode == Mode::Plaintext {
            return Ok(SignedPush { query, body: plain, content_type: format.content_type() });
        }
        let crypt = self.crypt.as_ref().ok_or_else(|| Error::Config("no EncodingAESKey to encrypt the push".into()))?;
        let encrypt = crypt.encrypt(plain.as_bytes());
        query.encrypt_type = Some("aes".into());
        query.msg_signature = Some(crypt.signature(timestamp, nonce, &encrypt));
        let mut envelope = match mode {
            Mode::Compatible => fields.clone(),
            _ => Map::new(),
        };
        if let Some(to) = fields.get("ToUserName") {
            envelope.insert("ToUserName".into(), to.clone());
        }
        envelope.insert("Encrypt".into(), Value::String(encrypt));
        let body = match format {
            // The envelope is not a subscribe event, so no wrapper: plain rendering.
            Format::Xml => body::render_xml(&envelope),
            Format::Json => serde_json::to_string(&envelope).map_err(|e| Error::InvalidRequest(e.to_string()))?,
        };
        Ok(SignedPush { query, body, content_type: format.content_type() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CryptoKind;
    use serde_json::json;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn fields() -> Map<String, Value> {
        json!({
            "ToUserName": "gh_10f6c3c3ac5a", "FromUserName": "oUser", "CreateTime": 1409735668,
            "MsgType": "text", "Content": "hi <b> & ]]>", "MsgId": 42
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn every_mode_and_format_round_trips() {
        let v = Verifier::with_aes_key("tok", KEY, "wxapp").unwrap().accept_plaintext(true);
        for mode in [Mode::Plaintext, Mode::Compatible, Mode::Secure] {
            for format in [Format::Xml, Format::Json] {
                let p = v.sign_push(mode, format, &fields(), "1409735669", "n1").unwrap();
                let got = v.open_at(&PushQuery::parse(&p.query.to_query_string()), p.body.as_bytes(), 0).unwrap();
                assert_eq!((got.mode, got.format), (mode, format));
                assert_eq!(got.message, Message::Text { content: "hi <b> & ]]>".into(), msg_id: "42".into() });
                assert_eq!(got.from_user_name, "oUser");
                assert_eq!(got.create_time, 1409735668);
                assert_eq!(got.dedupe_key(), "msg:42");
                assert_eq!(got.fields()["Content"], "hi <b> & ]]>");
                assert_eq!(got.fields()["ToUserName"], "gh_10f6c3c3ac5a");
            }
        }
    }

    #[test]
    fn plaintext_is_refused_once_a_key_is_configured() {
        let v = Verifier::with_aes_key("tok", KEY, "wxapp").unwrap();
        let p = v.sign_push(Mode::Plaintext, Format::Json, &fields(), "1", "n").unwrap();
        assert!(matches!(v.open_at(&p.query, p.body.as_bytes(), 0), Err(Error::Signature(_))));
    }

    #[test]
    fn wrong_or_missing_signatures_are_signature_errors() {
        let v = Verifier::with_aes_key("tok", KEY, "wxapp").unwrap();
        let p = v.sign_push(Mode::Secure, Format::Xml, &fields(), "1", "n").unwrap();
        let mut q = p.query.clone();
        q.msg_signature = Some("0".repeat(40));
        assert!(matches!(v.open_at(&q, p.body.as_bytes(), 0), Err(Error::Signature(_))));
        q.msg_signature = None;
        assert!(matches!(v.open_at(&q, p.body.as_bytes(), 0), Err(Error::Signature(_))));
        let mut q = p.query.clone();
        q.signature = Some("0".repeat(40));
        assert!(matches!(v.open_at(&q, p.body.as_bytes(), 0), Err(Error::Signature(_))));
        let other = Verifier::with_aes_key("other-token", KEY, "wxapp").unwrap();
        assert!(matches!(other.open_at(&p.query, p.body.as_bytes(), 0), Err(Error::Signature(_))));
    }

    #[test]
    fn wrong_appid_is_an_appid_error() {
        let wechat = Verifier::with_aes_key("tok", KEY, "wx_someone_else").unwrap();
        let p = wechat.sign_push(Mode::Secure, Format::Json, &fields(), "1", "n").unwrap();
        let mine = Verifier::with_aes_key("tok", KEY, "wxapp").unwrap();
        match mine.open_at(&p.query, p.body.as_bytes(), 0) {
            Err(Error::Crypto { kind: CryptoKind::AppidMismatch, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timestamp_window_when_set() {
        let v = Verifier::new("tok").timestamp_window(Duration::from_secs(300));
        let p = v.sign_push(Mode::Plaintext, Format::Xml, &fields(), "1000", "n").unwrap();
        assert!(v.open_at(&p.query, p.body.as_bytes(), 1300).is_ok());
        assert!(v.open_at(&p.query, p.body.as_bytes(), 700).is_ok());
        match v.open_at(&p.query, p.body.as_bytes(), 1301) {
            Err(Error::StaleTimestamp { timestamp: 1000, window_secs: 300 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_query_parameters_are_invalid_requests() {
        let v = Verifier::new("tok");
        assert!(matches!(v.open_at(&PushQuery::parse("nonce=1"), b"{}", 0), Err(Error::InvalidRequest(_))));
        assert!(matches!(
            v.verify_url_at(&PushQuery::parse("timestamp=1&nonce=2&signature=x"), 0),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn encrypted_push_without_a_key_is_a_config_error() {
        let wechat = Verifier::with_aes_key("tok", KEY, "wxapp").unwrap();
        let p = wechat.sign_push(Mode::Secure, Format::Xml, &fields(), "1", "n").unwrap();
        assert!(matches!(Verifier::new("tok").open_at(&p.query, p.body.as_bytes(), 0), Err(Error::Config(_))));
    }

    #[test]
    fn transfer_reply_is_encrypted_like_the_push() {
        let v = Verifier::with_aes_key("tok", KEY, "wxapp").unwrap();
        let p = v.sign_push(Mode::Secure, Format::Json, &fields(), "1", "n").unwrap();
        let push = v.open_at(&p.query, p.body.as_bytes(), 0).unwrap();
        let r = v.reply_with(&push, &Reply::TransferCustomerService { kf_account: None }, "1409735670", "n2").unwrap();
        let inner: Value = serde_json::from_slice(&v.open_reply(r.body.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            inner,
            json!({"ToUserName":"oUser","FromUserName":"gh_10f6c3c3ac5a","CreateTime":1409735670,"MsgType":"transfer_customer_service"})
        );
        assert_eq!(v.reply(&push, &Reply::Success).unwrap().body, "success");
        let plain = Verifier::new("tok");
        let p = plain.sign_push(Mode::Plaintext, Format::Xml, &fields(), "1", "n").unwrap();
        let push = plain.open_at(&p.query, p.body.as_bytes(), 0).unwrap();
        let r = plain
            .reply_with(&push, &Reply::TransferCustomerService { kf_account: Some("kf2001@gh".into()) }, "7", "n")
            .unwrap();
        assert_eq!(
            r.body,
            "<xml><ToUserName><![CDATA[oUser]]></ToUserName><FromUserName><![CDATA[gh_10f6c3c3ac5a]]></FromUserName><CreateTime>7</CreateTime><MsgType><![CDATA[transfer_customer_service]]></MsgType><TransInfo><KfAccount><![CDATA[kf2001@gh]]></KfAccount></TransInfo></xml>"
        );
    }

    #[test]
    fn event_dedupe_key_uses_sender_time_event_and_ids() {
        let v = Verifier::new("tok");
        let f = json!({"FromUserName":"oU","CreateTime":"100","MsgType":"event","Event":"wxa_media_check","trace_id":"tr-1","appid":"wx","version":2})
            .as_object()
            .cloned()
            .unwrap();
        let p = v.sign_push(Mode::Plaintext, Format::Xml, &f, "1", "n").unwrap();
        let push = v.open_at(&p.query, p.body.as_bytes(), 0).unwrap();
        assert_eq!(push.dedupe_key(), "event:oU:100:wxa_media_check:tr-1");
    }
}
