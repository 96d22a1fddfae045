//! Outbound messages: subscribe messages (`subscribeMessage.send`), customer-service messages,
//! the typing indicator, and temporary media uploads.
//!
//! Subscribe-message data is checked against WeChat's per-type value rules before anything is
//! sent (the type is the key's name without its number: `thing1` is a `thing`), so a 47003 never
//! costs a round trip — and a user's one-shot consent is never spent on a message WeChat would
//! refuse anyway.
//!
//! ```no_run
//! # async fn demo(client: wxshop::Client) -> wxshop::Result<()> {
//! use wxshop::mp::message::{CustomerServiceMessage, SubscribeData, SubscribeMessage};
//! let data = SubscribeData::new()
//!     .set("thing1", "Your order has shipped")
//!     .set("amount2", "¥128.00")
//!     .set("date3", "2024年5月1日 15:01")
//!     .set("phrase4", "配送中");
//! let msg = SubscribeMessage::new("oUser…", "TEMPLATE_ID", data).page("pages/order/detail?id=42");
//! match client.messages().send_subscribe(&msg).await {
//!     Err(e) if e.errcode() == Some(wxshop::ErrCode::UserRefused) => { /* ask again in the app */ }
//!     other => other?,
//! }
//! client.messages().send_custom("oUser…", &CustomerServiceMessage::text("Thanks, we are on it")).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::Client;
use crate::error::{Error, Result};
use crate::http::{Body, Host, Part, Request};

/// The value types of subscribe-message template keys, with WeChat's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataKind {
    /// `thing`: at most 20 characters of any kind.
    Thing,
    /// `number`: at most 32 digits, optionally with a decimal point.
    Number,
    /// `letter`: at most 32 letters.
    Letter,
    /// `symbol`: at most 5 symbols.
    Symbol,
    /// `character_string`: at most 32 digits, letters or symbols.
    CharacterString,
    /// `time`: a 24-hour time, optionally with a date; a range joined by `~`.
    Time,
    /// `date`: a date, optionally with a 24-hour time; a range joined by `~`.
    Date,
    /// `amount`: a currency symbol, at most 10 digits, optional decimals, optionally ending in 元.
    Amount,
    /// `phone_number`: at most 17 digits and symbols.
    PhoneNumber,
    /// `car_number`: at most 8; first and last may be Chinese, the rest letters or digits.
    CarNumber,
    /// `name`: at most 10 Chinese characters, or at most 20 letters and symbols.
    Name,
    /// `phrase`: at most 5 Chinese characters.
    Phrase,
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{20000}'..='\u{2A6DF}' | '\u{F900}'..='\u{FAFF}')
}

fn is_symbol(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace() && !c.is_control())
}

/// A date/time part: digits, 年月日, separators, and a space between date and time.
fn date_time_chars(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().all(|c| c.is_ascii_digit() || "年月日时分秒:：-/. ".contains(c))
}

fn has_time(s: &str) -> bool {
    s.contains(':') || s.contains('：') || s.contains('时')
}

fn has_date(s: &str) -> bool {
    s.contains('年') || s.contains('月') || s.contains('日') || s.contains('-') || s.contains('/')
}

fn amount_ok(s: &str) -> bool {
    let s = s.strip_suffix('元').unwrap_or(s);
    let s = ["HK$", "US$", "¥", "￥", "$", "€", "£", "₩", "₹"].iter().find_map(|sym| s.strip_prefix(sym)).unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    (1..=10).contains(&int.len())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

impl DataKind {
    /// The type of a template key: its name without the trailing number (`thing01` → `thing`).
    pub fn of_key(key: &str) -> Option<DataKind> {
        Some(match key.trim_end_matches(|c: char| c.is_ascii_digit()) {
            "thing" => DataKind::Thing,
            "number" => DataKind::Number,
            "letter" => DataKind::Letter,
            "symbol" => DataKind::Symbol,
            "character_string" => DataKind::CharacterString,
            "time" => DataKind::Time,
            "date" => DataKind::Date,
            "amount" => DataKind::Amount,
            "phone_number" => DataKind::PhoneNumber,
            "car_number" => DataKind::CarNumber,
            "name" => DataKind::Name,
            "phrase" => DataKind::Phrase,
            _ => return None,
        })
    }

    /// Checks a value against the rule; the error says what is wrong.
    pub fn check(self, value: &str) -> std::result::Result<(), String> {
        let n = value.chars().count();
        if value.trim().is_empty() {
            return Err("is empty".into());
        }
        let max = |m: usize| if n > m { Err(format!("more than {m} characters ({n})")) } else { Ok(()) };
        match self {
            DataKind::Thing => max(20),
            DataKind::Number => {
                max(32)?;
                let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
                if !int.is_empty()
                    && int.bytes().all(|b| b.is_ascii_digit())
                    && frac.bytes().all(|b| b.is_ascii_digit())
                {
                    Ok(())
                } else {
                    Err("only digits, optionally with a decimal point".into())
                }
            }
            DataKind::Letter => {
                max(32)?;
                if value.chars().all(|c| c.is_ascii_alphabetic()) { Ok(()) } else { Err("only letters".into()) }
            }
            DataKind::Symbol => {
                max(5)?;
                if value.chars().all(is_symbol) { Ok(()) } else { Err("only symbols".into()) }
            }
            DataKind::CharacterString => {
                max(32)?;
                if value.chars().all(|c| c.is_ascii_graphic()) {
                    Ok(())
                } else {
                    Err("only digits, letters and symbols".into())
                }
            }
            DataKind::Time | DataKind::Date => {
                for part in value.split('~') {
                    let ok =
                        date_time_chars(part) && if self == DataKind::Time { has_time(part) } else { has_date(part) };
                    if !ok {
                        return Err(if self == DataKind::Time {
                            "not a 24-hour time such as 15:01 or 2019年10月1日 15:01".into()
                        } else {
                            "not a date such as 2019年10月1日 or 2019年10月1日 15:01".into()
                        });
                    }
                }
                Ok(())
            }
            DataKind::Amount => {
                if amount_ok(value) {
                    Ok(())
                } else {
                    Err("not an amount: a currency symbol, at most 10 digits, optional decimals, optional 元".into())
                }
            }
            DataKind::PhoneNumber => {
                max(17)?;
                if value.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c)) {
                    Ok(())
                } else {
                    Err("only digits and symbols".into())
                }
            }
            DataKind::CarNumber => {
                max(8)?;
                let chars: Vec<char> = value.chars().collect();
                let ok = chars
                    .iter()
                    .enumerate()
                    .all(|(i, &c)| c.is_ascii_alphanumeric() || ((i == 0 || i == chars.len() - 1) && is_han(c)));
                if ok { Ok(()) } else { Err("letters and digits, Chinese only first or last".into()) }
            }
            DataKind::Name => {
                if !value.is_ascii() {
                    max(10)
                } else if n <= 20 && value.chars().all(|c| c.is_ascii_alphabetic() || is_symbol(c) || c == ' ') {
                    Ok(())
                } else {
                    Err("at most 10 Chinese characters or 20 letters".into())
                }
            }
            DataKind::Phrase => {
                max(5)?;
                if value.chars().all(is_han) { Ok(()) } else { Err("only Chinese characters".into()) }
            }
        }
    }
}

/// One template value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataValue {
    /// The value.
    pub value: String,
}

/// The `data` of a subscribe message: key → `{"value": …}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubscribeData(pub BTreeMap<String, DataValue>);

impl SubscribeData {
    /// Empty data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a key (checked on [`SubscribeData::validate`] and before sending).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), DataValue { value: value.into() });
        self
    }

    /// Checks every value whose key has a known type; the error names each bad key as WeChat would
    /// (`data.thing1.value: …`).
    pub fn validate(&self) -> Result<()> {
        if self.0.is_empty() {
            return Err(Error::InvalidRequest("subscribe message data is empty".into()));
        }
        let problems: Vec<String> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let kind = DataKind::of_key(k)?;
                kind.check(&v.value).err().map(|why| format!("data.{k}.value {why}"))
            })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(Error::InvalidRequest(problems.join("; "))) }
    }
}

/// Which version of the mini-program a subscribe message opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MiniprogramState {
    /// 开发版.
    Developer,
    /// 体验版.
    Trial,
    /// 正式版 (WeChat's default).
    Formal,
}

/// `POST /cgi-bin/message/subscribe/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscribeMessage {
    /// The user's openid.
    pub touser: String,
    /// The template id.
    pub template_id: String,
    /// The page the card opens (`pages/x?y=z`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// The values.
    pub data: SubscribeData,
    /// Which version opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miniprogram_state: Option<MiniprogramState>,
    /// `zh_CN` (default), `en_US`, `zh_HK`, `zh_TW`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

impl SubscribeMessage {
    /// A message to `touser` with `template_id` and `data`.
    pub fn new(touser: impl Into<String>, template_id: impl Into<String>, data: SubscribeData) -> Self {
        SubscribeMessage {
            touser: touser.into(),
            template_id: template_id.into(),
            page: None,
            data,
            miniprogram_state: None,
            lang: None,
        }
    }

    /// The page the card opens.
    pub fn page(mut self, page: impl Into<String>) -> Self {
        self.page = Some(page.into());
        self
    }

    /// Which version opens.
    pub fn miniprogram_state(mut self, state: MiniprogramState) -> Self {
        self.miniprogram_state = Some(state);
        self
    }

    /// The language.
    pub fn lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = Some(lang.into());
        self
    }

    /// The checks WeChat would make on the request itself.
    pub fn validate(&self) -> Result<()> {
        if self.touser.is_empty() {
            return Err(Error::InvalidRequest("touser is empty".into()));
        }
        if self.template_id.is_empty() {
            return Err(Error::InvalidRequest("template_id is empty".into()));
        }
        if let Some(lang) = &self.lang
            && !["zh_CN", "en_US", "zh_HK", "zh_TW"].contains(&lang.as_str())
        {
            return Err(Error::InvalidRequest(format!("lang {lang:?} is not zh_CN, en_US, zh_HK or zh_TW")));
        }
        self.data.validate()
    }
}

/// A customer-service message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CustomerServiceMessage {
    /// Text.
    Text {
        /// The text (may hold `<a data-miniprogram-…>` links).
        content: String,
    },
    /// An image uploaded with [`Messages::upload_temp_media`].
    Image {
        /// Its media id.
        media_id: String,
    },
    /// A link card.
    Link {
        /// Title.
        title: String,
        /// Description.
        description: String,
        /// Where it opens.
        url: String,
        /// Its picture.
        thumb_url: String,
    },
    /// A mini-program card.
    MiniProgramPage {
        /// Title.
        title: String,
        /// The page (`pages/index/index?foo=bar`).
        pagepath: String,
        /// The cover, an image media id.
        thumb_media_id: String,
    },
}

impl CustomerServiceMessage {
    /// A text message.
    pub fn text(content: impl Into<String>) -> Self {
        CustomerServiceMessage::Text { content: content.into() }
    }

    /// An image message.
    pub fn image(media_id: impl Into<String>) -> Self {
        CustomerServiceMessage::Image { media_id: media_id.into() }
    }

    /// A link card.
    pub fn link(
        title: impl Into<String>,
        description: impl Into<String>,
        url: impl Into<String>,
        thumb_url: impl Into<String>,
    ) -> Self {
        CustomerServiceMessage::Link {
            title: title.into(),
            description: description.into(),
            url: url.into(),
            thumb_url: thumb_url.into(),
        }
    }

    /// A mini-program card.
    pub fn mini_program_page(
        title: impl Into<String>,
        pagepath: impl Into<String>,
        thumb_media_id: impl Into<String>,
    ) -> Self {
        CustomerServiceMessage::MiniProgramPage {
            title: title.into(),
            pagepath: pagepath.into(),
            thumb_media_id: thumb_media_id.into(),
        }
    }

    /// `msgtype`.
    pub fn msgtype(&self) -> &'static str {
        match self {
            CustomerServiceMessage::Text { .. } => "text",
            CustomerServiceMessage::Image { .. } => "image",
            CustomerServiceMessage::Link { .. } => "link",
            CustomerServiceMessage::MiniProgramPage { .. } => "miniprogrampage",
        }
    }

    /// The request body for `touser`.
    pub fn body(&self, touser: &str) -> serde_json::Value {
        let inner = match self {
            CustomerServiceMessage::Text { content } => serde_json::json!({ "content": content }),
            CustomerServiceMessage::Image { media_id } => serde_json::json!({ "media_id": media_id }),
            CustomerServiceMessage::Link { title, description, url, thumb_url } => serde_json::json!({
                "title": title, "description": description, "url": url, "thumb_url": thumb_url
            }),
            CustomerServiceMessage::MiniProgramPage { title, pagepath, thumb_media_id } => serde_json::json!({
                "title": title, "pagepath": pagepath, "thumb_media_id": thumb_media_id
            }),
        };
        let mut body = serde_json::json!({ "touser": touser, "msgtype": self.msgtype() });
        body[self.msgtype()] = inner;
        body
    }

    fn validate(&self) -> Result<()> {
        let empty = |what: &str, v: &str| {
            if v.is_empty() { Err(Error::InvalidRequest(format!("{what} is empty"))) } else { Ok(()) }
        };
        match self {
            CustomerServiceMessage::Text { content } => empty("text.content", content),
            CustomerServiceMessage::Image { media_id } => empty("image.media_id", media_id),
            CustomerServiceMessage::Link { title, url, .. } => {
                empty("link.title", title)?;
                empty("link.url", url)
            }
            CustomerServiceMessage::MiniProgramPage { title, pagepath, thumb_media_id } => {
                empty("miniprogrampage.title", title)?;
                empty("miniprogrampage.pagepath", pagepath)?;
                empty("miniprogrampage.thumb_media_id", thumb_media_id)
            }
        }
    }
}

/// The typing indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TypingCommand {
    /// Show "typing…".
    Typing,
    /// Hide it.
    CancelTyping,
}

/// What `media/upload` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TempMedia {
    /// `image`.
    #[serde(rename = "type")]
    pub media_type: String,
    /// The media id, valid for 3 days.
    pub media_id: String,
    /// When it was uploaded (unix seconds).
    pub created_at: i64,
}

/// Outbound-message APIs of one [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct Messages<'a> {
    pub(crate) client: &'a Client,
}

#[derive(Deserialize)]
struct Ack {}

impl Messages<'_> {
    /// Sends a subscribe message after checking it locally. 43101 ([`crate::ErrCode::UserRefused`])
    /// means the user has no unused consent for this template.
    pub async fn send_subscribe(&self, msg: &SubscribeMessage) -> Result<()> {
        msg.validate()?;
        let req = Request::mp_post("/cgi-bin/message/subscribe/send", msg)?;
        let _: Ack = self.client.call(&req).await?;
        Ok(())
    }

    /// Sends a customer-service message (within 48 hours of the user's last message; 45015 after).
    pub async fn send_custom(&self, touser: &str, msg: &CustomerServiceMessage) -> Result<()> {
        if touser.is_empty() {
            return Err(Error::InvalidRequest("touser is empty".into()));
        }
        msg.validate()?;
        let req = Request::mp_post("/cgi-bin/message/custom/send", &msg.body(touser))?;
        let _: Ack = self.client.call(&req).await?;
        Ok(())
    }

    /// Shows or hides the typing indicator (within 30 seconds of an exchange with the user).
    pub async fn typing(&self, touser: &str, command: TypingCommand) -> Result<()> {
        if touser.is_empty() {
            return Err(Error::InvalidRequest("touser is empty".into()));
        }
        let req = Request::mp_post(
            "/cgi-bin/message/custom/typing",
            &serde_json::json!({ "touser": touser, "command": command }),
        )?;
        let _: Ack = self.client.call(&req).await?;
        Ok(())
    }

    /// Uploads an image as temporary media (3 days) for customer-service messages.
    pub async fn upload_temp_media(
        &self,
        filename: &str,
        content_type: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<TempMedia> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(Error::InvalidRequest("media is empty".into()));
        }
        let req = Request::new(Method::POST, Host::Mp, "/cgi-bin/media/upload").query("type", "image").body(
            Body::Multipart(vec![Part {
                name: "media".into(),
                filename: Some(filename.to_string()),
                content_type: content_type.to_string(),
                bytes,
            }]),
        );
        self.client.call(&req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(kind: DataKind, v: &str) -> bool {
        kind.check(v).is_err()
    }

    #[test]
    fn key_types_come_from_the_key_name() {
        assert_eq!(DataKind::of_key("thing1"), Some(DataKind::Thing));
        assert_eq!(DataKind::of_key("number01"), Some(DataKind::Number));
        assert_eq!(DataKind::of_key("character_string12"), Some(DataKind::CharacterString));
        assert_eq!(DataKind::of_key("phone_number3"), Some(DataKind::PhoneNumber));
        assert_eq!(DataKind::of_key("site01"), None);
    }

    #[test]
    fn thing_is_at_most_20_characters() {
        assert!(DataKind::Thing.check(&"中".repeat(20)).is_ok());
        assert_eq!(DataKind::Thing.check(&"中".repeat(21)), Err("more than 20 characters (21)".into()));
        assert_eq!(DataKind::Thing.check("  "), Err("is empty".into()));
    }

    #[test]
    fn number_letter_symbol_string() {
        assert!(DataKind::Number.check("339208499").is_ok());
        assert!(DataKind::Number.check("12.5").is_ok());
        assert!(bad(DataKind::Number, "12a") || bad(DataKind::Number, "1.2.3"));
        assert!(bad(DataKind::Number, "1.2.3"));
        assert!(bad(DataKind::Number, &"1".repeat(33)));
        assert!(DataKind::Letter.check("abcXYZ").is_ok());
        assert!(bad(DataKind::Letter, "abc1"));
        assert!(DataKind::Symbol.check("#$%").is_ok());
        assert!(bad(DataKind::Symbol, "#$%^&*"));
        assert!(bad(DataKind::Symbol, "a"));
        assert!(DataKind::CharacterString.check("ORDER-2024_001").is_ok());
        assert!(bad(DataKind::CharacterString, "订单1"));
    }

    #[test]
    fn dates_times_and_amounts() {
        assert!(DataKind::Date.check("2019年10月1日").is_ok());
        assert!(DataKind::Date.check("2019年10月1日 15:01").is_ok());
        assert!(DataKind::Date.check("2023-08-21 22:48:54").is_ok());
        assert!(DataKind::Date.check("2019年10月1日~2019年10月2日").is_ok());
        assert!(bad(DataKind::Date, "tomorrow"));
        assert!(bad(DataKind::Date, "15:01"));
        assert!(DataKind::Time.check("15:01").is_ok());
        assert!(DataKind::Time.check("2019年10月1日 15:01").is_ok());
        assert!(DataKind::Time.check("15:01~16:00").is_ok());
        assert!(bad(DataKind::Time, "2019年10月1日"));
        assert!(DataKind::Amount.check("¥128.00").is_ok());
        assert!(DataKind::Amount.check("128.00元").is_ok());
        assert!(DataKind::Amount.check("$5").is_ok());
        assert!(bad(DataKind::Amount, "¥12345678901"));
        assert!(bad(DataKind::Amount, "¥1.2.3"));
        assert!(bad(DataKind::Amount, "free"));
    }

    #[test]
    fn phrase_name_phone_car() {
        assert!(DataKind::Phrase.check("配送中").is_ok());
        assert!(bad(DataKind::Phrase, "货物正在配送中"));
        assert!(bad(DataKind::Phrase, "ok"));
        assert!(DataKind::Name.check("张三").is_ok());
        assert!(DataKind::Name.check("John Smith").is_ok());
        assert!(bad(DataKind::Name, "一二三四五六七八九十一"));
        assert!(DataKind::PhoneNumber.check("+86-0766-66888866").is_ok());
        assert!(bad(DataKind::PhoneNumber, "call me"));
        assert!(DataKind::CarNumber.check("粤A8Z888挂").is_ok());
        assert!(bad(DataKind::CarNumber, "A粤8Z888"));
    }

    #[test]
    fn validation_names_every_bad_key_like_wechat() {
        let data = SubscribeData::new().set("thing1", "x".repeat(21)).set("phrase2", "ok").set("site01", "anything");
        match data.validate() {
            Err(Error::InvalidRequest(m)) => assert_eq!(
                m,
                "data.phrase2.value only Chinese characters; data.thing1.value more than 20 characters (21)"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bodies_are_wechats() {
        let msg = SubscribeMessage::new("oU", "T1", SubscribeData::new().set("thing1", "hi"))
            .page("pages/a")
            .miniprogram_state(MiniprogramState::Developer);
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            serde_json::json!({"touser":"oU","template_id":"T1","page":"pages/a","data":{"thing1":{"value":"hi"}},"miniprogram_state":"developer"})
        );
        assert_eq!(
            CustomerServiceMessage::mini_program_page("T", "pages/i", "m").body("oU"),
            serde_json::json!({"touser":"oU","msgtype":"miniprogrampage","miniprogrampage":{"title":"T","pagepath":"pages/i","thumb_media_id":"m"}})
        );
        assert_eq!(serde_json::to_value(TypingCommand::CancelTyping).unwrap(), serde_json::Value::from("CancelTyping"));
    }
}
