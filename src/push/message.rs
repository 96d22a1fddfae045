//! Typed push messages and events, read from the field tree of either format.
//!
//! WeChat's two formats disagree in small ways this module absorbs: XML carries every value as
//! text while JSON sends numbers (and sometimes numbers as strings); subscribe-message events nest
//! `List` inside a wrapper element in XML but put it at the top in JSON, where a one-item list is
//! a bare object. A message whose required fields are missing is kept as [`Message::Unknown`]
//! with its raw fields, so nothing WeChat signed is dropped.
//!
//! ```
//! use wxshop::push::message::Message;
//! let fields = serde_json::json!({
//!     "MsgType": "event", "Event": "subscribe_msg_popup_event",
//!     "List": {"TemplateId": "T1", "SubscribeStatusString": "accept", "PopupScene": "0"}
//! });
//! match Message::from_fields(fields.as_object().unwrap()) {
//!     Message::SubscribePopup(items) => assert_eq!(items[0].template_id, "T1"),
//!     other => panic!("{other:?}"),
//! }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::body::list_wrapper;

/// A field as text: strings as they are, numbers and booleans printed.
pub(crate) fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A field as an integer: JSON numbers, or text holding one.
pub(crate) fn int(map: &Map<String, Value>, key: &str) -> Option<i64> {
    match map.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Removes a field, as text (no copy of a string value).
pub(crate) fn take_text(map: &mut Map<String, Value>, key: &str) -> String {
    match map.remove(key) {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// Text that is present and not empty.
fn nonempty(map: &Map<String, Value>, key: &str) -> Option<String> {
    text(map, key).filter(|s| !s.is_empty())
}

/// An object or an array of objects, as a list.
fn objects(v: Option<&Value>) -> Vec<&Map<String, Value>> {
    match v {
        Some(Value::Object(m)) => vec![m],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    }
}

/// The `List` of a subscribe-message event: top-level (JSON) or inside its wrapper (XML).
fn subscribe_list<'a>(map: &'a Map<String, Value>, event: &str) -> Vec<&'a Map<String, Value>> {
    if let Some(list) = map.get("List") {
        return objects(Some(list));
    }
    list_wrapper(event)
        .and_then(|w| map.get(w))
        .and_then(Value::as_object)
        .map(|w| objects(w.get("List")))
        .unwrap_or_default()
}

/// What the user chose in a subscribe-message prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum SubscribeStatus {
    /// Accepted.
    Accept,
    /// Rejected.
    Reject,
    /// Accepted with voice reminders.
    AcceptWithAudio,
    /// Anything else WeChat may add.
    Other(String),
}

impl SubscribeStatus {
    fn parse(s: &str) -> Self {
        match s {
            "accept" => SubscribeStatus::Accept,
            "reject" => SubscribeStatus::Reject,
            "acceptWithAudio" => SubscribeStatus::AcceptWithAudio,
            other => SubscribeStatus::Other(other.to_string()),
        }
    }

    /// The user agreed (with or without audio).
    pub fn accepted(&self) -> bool {
        matches!(self, SubscribeStatus::Accept | SubscribeStatus::AcceptWithAudio)
    }
}

/// One template in a `subscribe_msg_popup_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribePopupItem {
    /// The template id.
    pub template_id: String,
    /// The choice.
    pub status: SubscribeStatus,
    /// Where the prompt was shown (0: a mini-program page).
    pub popup_scene: Option<String>,
}

/// One template in a `subscribe_msg_change_event` (the user changed a setting; WeChat only sends rejections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeChangeItem {
    /// The template id.
    pub template_id: String,
    /// The new choice.
    pub status: SubscribeStatus,
}

/// One delivery result in a `subscribe_msg_sent_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeSentItem {
    /// The template id.
    pub template_id: String,
    /// WeChat's message id.
    pub msg_id: String,
    /// 0 on success.
    pub error_code: i64,
    /// `success`, or why it failed.
    pub error_status: String,
}

/// A content-security verdict: `pass`, `review` or `risky`, and WeChat's label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `pass`, `review` or `risky`.
    pub suggest: String,
    /// The label (100 normal, 20001 political, 20002 porn, 20006 illegal, …).
    #[serde(deserialize_with = "lenient_i64")]
    pub label: i64,
}

impl Verdict {
    /// WeChat suggests blocking.
    pub fn is_risky(&self) -> bool {
        self.suggest == "risky"
    }
}

/// One strategy's detail in a content-security answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictDetail {
    /// `content_model`, `keyword`, …
    #[serde(default)]
    pub strategy: String,
    /// 0 when this strategy ran.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub errcode: i64,
    /// This strategy's suggestion.
    #[serde(default)]
    pub suggest: Option<String>,
    /// This strategy's label.
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub label: Option<i64>,
    /// Confidence 0..=100 (model strategies).
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub prob: Option<i64>,
    /// The keyword hit (keyword strategies).
    #[serde(default)]
    pub keyword: Option<String>,
    /// The keyword level.
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub level: Option<i64>,
}

fn lenient_opt_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    lenient_opt_i64(d).map(|v| v.unwrap_or(0))
}

/// The `wxa_media_check` event: the asynchronous verdict of `media_check_async`, joined by `trace_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCheckResult {
    /// The mini-program.
    pub appid: String,
    /// The id `media_check_async` returned.
    pub trace_id: String,
    /// API version (2).
    pub version: i64,
    /// The overall verdict (absent when the check failed).
    pub result: Option<Verdict>,
    /// Per-strategy details.
    pub detail: Vec<VerdictDetail>,
    /// Non-zero when the check itself failed.
    pub errcode: i64,
    /// Why it failed.
    pub errmsg: Option<String>,
}

impl MediaCheckResult {
    fn from_fields(map: &Map<String, Value>) -> Option<Self> {
        let trace_id = nonempty(map, "trace_id")?;
        let result = map
            .get("result")
            .and_then(Value::as_object)
            .and_then(|r| Some(Verdict { suggest: text(r, "suggest")?, label: int(r, "label").unwrap_or(0) }));
        let detail = objects(map.get("detail"))
            .into_iter()
            .filter_map(|d| serde_json::from_value(Value::Object(d.clone())).ok())
            .collect();
        Some(MediaCheckResult {
            appid: text(map, "appid").unwrap_or_default(),
            trace_id,
            version: int(map, "version").unwrap_or(2),
            result,
            detail,
            errcode: int(map, "errcode").unwrap_or(0),
            errmsg: nonempty(map, "errmsg"),
        })
    }

    /// The media was judged risky (a failed check is not a verdict: see `errcode`).
    pub fn is_risky(&self) -> bool {
        self.result.as_ref().is_some_and(Verdict::is_risky)
    }
}

/// Fields shared by the trade-management (发货信息管理) events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TradeOrder {
    /// WeChat Pay transaction id.
    pub transaction_id: Option<String>,
    /// The merchant id (mchid).
    pub merchant_id: Option<String>,
    /// The sub-merchant id (partner mode).
    pub sub_merchant_id: Option<String>,
    /// The merchant's order number (out_trade_no).
    pub merchant_trade_no: Option<String>,
    /// When it was paid (unix seconds).
    pub pay_time: Option<i64>,
    /// A human-readable message.
    pub msg: Option<String>,
}

impl TradeOrder {
    fn from_fields(map: &Map<String, Value>) -> Self {
        TradeOrder {
            transaction_id: nonempty(map, "transaction_id"),
            merchant_id: nonempty(map, "merchant_id"),
            sub_merchant_id: nonempty(map, "sub_merchant_id"),
            merchant_trade_no: nonempty(map, "merchant_trade_no"),
            pay_time: int(map, "pay_time").filter(|&t| t > 0),
            msg: nonempty(map, "msg"),
        }
    }
}

/// `trade_manage_order_settlement`: an order was shipped (with its estimated settlement time) or
/// settled (with how and when receipt was confirmed). Fields WeChat leaves empty are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TradeSettlement {
    /// The order.
    pub order: TradeOrder,
    /// When it was shipped (unix seconds).
    pub shipped_time: Option<i64>,
    /// When it should settle (sent on shipping).
    pub estimated_settlement_time: Option<i64>,
    /// 1 automatic, 2 by the user (sent on settlement).
    pub confirm_receive_method: Option<i64>,
    /// When receipt was confirmed (sent on settlement).
    pub confirm_receive_time: Option<i64>,
    /// When it settled (sent on settlement).
    pub settlement_time: Option<i64>,
}

/// A push, typed. Marked non-exhaustive: WeChat adds events; unknown ones arrive as [`Message::Unknown`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// A customer-service text message from the user.
    Text {
        /// The text.
        content: String,
        /// WeChat's message id (the dedupe key).
        msg_id: String,
    },
    /// A customer-service image from the user.
    Image {
        /// The picture URL.
        pic_url: String,
        /// The media id.
        media_id: String,
        /// WeChat's message id.
        msg_id: String,
    },
    /// A mini-program card the user sent to customer service.
    MiniProgramPage {
        /// Card title.
        title: String,
        /// The mini-program's appid.
        app_id: String,
        /// The page path.
        page_path: String,
        /// Thumbnail URL.
        thumb_url: String,
        /// Thumbnail media id.
        thumb_media_id: String,
        /// WeChat's message id.
        msg_id: String,
    },
    /// The user opened the customer-service conversation (`user_enter_tempsession`).
    UserEnterTempsession {
        /// The `session-from` of the contact button.
        session_from: String,
    },
    /// The user answered a subscribe-message prompt.
    SubscribePopup(Vec<SubscribePopupItem>),
    /// The user changed subscriptions in settings.
    SubscribeChange(Vec<SubscribeChangeItem>),
    /// Delivery results of subscribe messages.
    SubscribeSent(Vec<SubscribeSentItem>),
    /// The asynchronous verdict of `media_check_async`.
    MediaCheck(MediaCheckResult),
    /// `trade_manage_remind_access_api`: WeChat reminds the merchant to integrate shipping-info upload.
    TradeRemindAccessApi {
        /// The reminder text.
        msg: Option<String>,
    },
    /// `trade_manage_remind_shipping`: an order awaits its shipping info.
    TradeRemindShipping(TradeOrder),
    /// `trade_manage_order_settlement`: an order shipped or settled.
    TradeOrderSettlement(TradeSettlement),
    /// Anything else, kept whole.
    Unknown {
        /// `MsgType`.
        msg_type: String,
        /// `Event`, for events.
        event: Option<String>,
        /// Every field as parsed.
        raw: Value,
    },
}

impl Message {
    /// Types a field tree. Never fails: what cannot be typed is [`Message::Unknown`].
    pub fn from_fields(map: &Map<String, Value>) -> Message {
        let msg_type = text(map, "MsgType").unwrap_or_default();
        let event = text(map, "Event");
        Self::typed(map, &msg_type, event.as_deref()).unwrap_or_else(|| Message::Unknown {
            msg_type,
            event,
            raw: Value::Object(map.clone()),
        })
    }

    /// Types a field tree it owns: user messages take their (possibly large) values without
    /// copying them; everything else is typed as [`Message::from_fields`] does.
    pub fn from_map(mut map: Map<String, Value>) -> Message {
        let kind = text(&map, "MsgType").unwrap_or_default();
        if !Self::user_message_ready(&map) {
            let event = text(&map, "Event");
            return match Self::typed(&map, &kind, event.as_deref()) {
                Some(m) => m,
                None => Message::Unknown { msg_type: kind, event, raw: Value::Object(map) },
            };
        }
        match kind.as_str() {
            "text" => Message::Text { content: take_text(&mut map, "Content"), msg_id: take_text(&mut map, "MsgId") },
            "image" => Message::Image {
                pic_url: take_text(&mut map, "PicUrl"),
                media_id: take_text(&mut map, "MediaId"),
                msg_id: take_text(&mut map, "MsgId"),
            },
            "miniprogrampage" => Message::MiniProgramPage {
                title: take_text(&mut map, "Title"),
                app_id: take_text(&mut map, "AppId"),
                page_path: take_text(&mut map, "PagePath"),
                thumb_url: take_text(&mut map, "ThumbUrl"),
                thumb_media_id: take_text(&mut map, "ThumbMediaId"),
                msg_id: take_text(&mut map, "MsgId"),
            },
            // Not reached (user_message_ready admits only the three above); typed all the same.
            _ => Message::Unknown { msg_type: kind, event: text(&map, "Event"), raw: Value::Object(map) },
        }
    }

    /// The fields form a user message (text, image, card) with everything it requires.
    pub(crate) fn user_message_ready(map: &Map<String, Value>) -> bool {
        let has = |k: &str| nonempty(map, k).is_some();
        has("MsgId")
            && match map.get("MsgType").and_then(Value::as_str) {
                Some("text") => text(map, "Content").is_some(),
                Some("image") => has("MediaId"),
                Some("miniprogrampage") => has("PagePath"),
                _ => false,
            }
    }

    fn typed(map: &Map<String, Value>, msg_type: &str, event: Option<&str>) -> Option<Message> {
        Some(match (msg_type, event) {
            ("text", _) => Message::Text { content: text(map, "Content")?, msg_id: nonempty(map, "MsgId")? },
            ("image", _) => Message::Image {
                pic_url: text(map, "PicUrl").unwrap_or_default(),
                media_id: nonempty(map, "MediaId")?,
                msg_id: nonempty(map, "MsgId")?,
            },
            ("miniprogrampage", _) => Message::MiniProgramPage {
                title: text(map, "Title").unwrap_or_default(),
                app_id: text(map, "AppId").unwrap_or_default(),
                page_path: nonempty(map, "PagePath")?,
                thumb_url: text(map, "ThumbUrl").unwrap_or_default(),
                thumb_media_id: text(map, "ThumbMediaId").unwrap_or_default(),
                msg_id: nonempty(map, "MsgId")?,
            },
            ("event", Some(event)) => match event {
                "user_enter_tempsession" => {
                    Message::UserEnterTempsession { session_from: text(map, "SessionFrom").unwrap_or_default() }
                }
                "subscribe_msg_popup_event" => Message::SubscribePopup(
                    subscribe_list(map, event)
                        .into_iter()
                        .map(|i| {
                            Some(SubscribePopupItem {
                                template_id: nonempty(i, "TemplateId")?,
                                status: SubscribeStatus::parse(&text(i, "SubscribeStatusString")?),
                                popup_scene: text(i, "PopupScene"),
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                        .filter(|v| !v.is_empty())?,
                ),
                "subscribe_msg_change_event" => Message::SubscribeChange(
                    subscribe_list(map, event)
                        .into_iter()
                        .map(|i| {
                            Some(SubscribeChangeItem {
                                template_id: nonempty(i, "TemplateId")?,
                                status: SubscribeStatus::parse(&text(i, "SubscribeStatusString")?),
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                        .filter(|v| !v.is_empty())?,
                ),
                "subscribe_msg_sent_event" => Message::SubscribeSent(
                    subscribe_list(map, event)
                        .into_iter()
                        .map(|i| {
                            Some(SubscribeSentItem {
                                template_id: nonempty(i, "TemplateId")?,
                                msg_id: text(i, "MsgID").unwrap_or_default(),
                                error_code: int(i, "ErrorCode").unwrap_or(0),
                                error_status: text(i, "ErrorStatus").unwrap_or_default(),
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                        .filter(|v| !v.is_empty())?,
                ),
                "wxa_media_check" => Message::MediaCheck(MediaCheckResult::from_fields(map)?),
                "trade_manage_remind_access_api" => Message::TradeRemindAccessApi { msg: nonempty(map, "msg") },
                "trade_manage_remind_shipping" => Message::TradeRemindShipping(TradeOrder::from_fields(map)),
                "trade_manage_order_settlement" => {
                    let positive = |k: &str| int(map, k).filter(|&t| t > 0);
                    Message::TradeOrderSettlement(TradeSettlement {
                        order: TradeOrder::from_fields(map),
                        shipped_time: positive("shipped_time"),
                        estimated_settlement_time: positive("estimated_settlement_time"),
                        confirm_receive_method: positive("confirm_receive_method"),
                        confirm_receive_time: positive("confirm_receive_time"),
                        settlement_time: positive("settlement_time"),
                    })
                }
                _ => return None,
            },
            _ => return None,
        })
    }

    /// WeChat's message id, for user messages.
    pub fn msg_id(&self) -> Option<&str> {
        match self {
            Message::Text { msg_id, .. } | Message::Image { msg_id, .. } | Message::MiniProgramPage { msg_id, .. } => {
                Some(msg_id)
            }
            _ => None,
        }
    }

    /// A message the user sent (which opens the 48-hour customer-service window).
    pub fn is_user_message(&self) -> bool {
        self.msg_id().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::body::parse;
    use serde_json::json;

    fn typed(body: &str) -> Message {
        Message::from_fields(&parse(body.as_bytes()).unwrap().1)
    }

    #[test]
    fn text_in_both_formats() {
        let want = Message::Text { content: "你好".into(), msg_id: "6054768590064713728".into() };
        assert_eq!(
            typed(
                "<xml><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content><MsgId>6054768590064713728</MsgId></xml>"
            ),
            want
        );
        assert_eq!(typed(r#"{"MsgType":"text","Content":"你好","MsgId":6054768590064713728}"#), want);
    }

    #[test]
    fn image_and_card() {
        assert_eq!(
            typed(r#"{"MsgType":"image","PicUrl":"http://p","MediaId":"m1","MsgId":"7"}"#),
            Message::Image { pic_url: "http://p".into(), media_id: "m1".into(), msg_id: "7".into() }
        );
        assert_eq!(
            typed(
                "<xml><MsgType>miniprogrampage</MsgType><MsgId>8</MsgId><Title>T</Title><AppId>wx1</AppId><PagePath>pages/a</PagePath><ThumbUrl>u</ThumbUrl><ThumbMediaId>tm</ThumbMediaId></xml>"
            ),
            Message::MiniProgramPage {
                title: "T".into(),
                app_id: "wx1".into(),
                page_path: "pages/a".into(),
                thumb_url: "u".into(),
                thumb_media_id: "tm".into(),
                msg_id: "8".into()
            }
        );
    }

    #[test]
    fn subscribe_popup_xml_wrapper_and_json_object_or_array() {
        let xml = "<xml><MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event><SubscribeMsgPopupEvent><List><TemplateId>A</TemplateId><SubscribeStatusString>accept</SubscribeStatusString><PopupScene>2</PopupScene></List><List><TemplateId>B</TemplateId><SubscribeStatusString>reject</SubscribeStatusString><PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent></xml>";
        let two = vec![
            SubscribePopupItem {
                template_id: "A".into(),
                status: SubscribeStatus::Accept,
                popup_scene: Some("2".into()),
            },
            SubscribePopupItem {
                template_id: "B".into(),
                status: SubscribeStatus::Reject,
                popup_scene: Some("2".into()),
            },
        ];
        assert_eq!(typed(xml), Message::SubscribePopup(two));
        let one = r#"{"MsgType":"event","Event":"subscribe_msg_popup_event","List":{"TemplateId":"A","SubscribeStatusString":"accept","PopupScene":"0"}}"#;
        match typed(one) {
            Message::SubscribePopup(v) => {
                assert_eq!(v.len(), 1);
                assert!(v[0].status.accepted());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscribe_change_and_sent() {
        assert_eq!(
            typed(
                r#"{"MsgType":"event","Event":"subscribe_msg_change_event","List":[{"TemplateId":"A","SubscribeStatusString":"reject"}]}"#
            ),
            Message::SubscribeChange(vec![SubscribeChangeItem {
                template_id: "A".into(),
                status: SubscribeStatus::Reject
            }])
        );
        assert_eq!(
            typed(
                "<xml><MsgType>event</MsgType><Event>subscribe_msg_sent_event</Event><SubscribeMsgSentEvent><List><TemplateId>A</TemplateId><MsgID>1700827132819554304</MsgID><ErrorCode>0</ErrorCode><ErrorStatus>success</ErrorStatus></List></SubscribeMsgSentEvent></xml>"
            ),
            Message::SubscribeSent(vec![SubscribeSentItem {
                template_id: "A".into(),
                msg_id: "1700827132819554304".into(),
                error_code: 0,
                error_status: "success".into()
            }])
        );
    }

    #[test]
    fn media_check_as_wechat_sends_it() {
        let body = r#"{"ToUserName":"gh_7bf1f1389686","FromUserName":"or9bw69j","CreateTime":1762329554,"MsgType":"event","Event":"wxa_media_check","appid":"wxb04d1be1ede56d47","trace_id":"690b03d2-301f6111-35ffbd44","version":2,"result":{"suggest":"pass","label":"100"},"detail":[{"strategy":"content_model","errcode":0,"suggest":"pass","label":"100","prob":90}]}"#;
        match typed(body) {
            Message::MediaCheck(r) => {
                assert_eq!(r.trace_id, "690b03d2-301f6111-35ffbd44");
                assert_eq!(r.result, Some(Verdict { suggest: "pass".into(), label: 100 }));
                assert_eq!(r.detail.len(), 1);
                assert_eq!(r.detail[0].prob, Some(90));
                assert!(!r.is_risky());
            }
            other => panic!("{other:?}"),
        }
        let failed = r#"{"MsgType":"event","Event":"wxa_media_check","appid":"wx2","trace_id":"t","version":2,"detail":[],"errcode":43104,"errmsg":"this appid does not have permission"}"#;
        match typed(failed) {
            Message::MediaCheck(r) => {
                assert_eq!((r.errcode, r.result), (43104, None));
                assert_eq!(r.errmsg.as_deref(), Some("this appid does not have permission"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trade_management_events() {
        let settled = r#"{"MsgType":"event","Event":"trade_manage_order_settlement","transaction_id":"4200001","merchant_id":"190000","sub_merchant_id":"","merchant_trade_no":"o-1","pay_time":1700000000,"shipped_time":1700000100,"estimated_settlement_time":0,"confirm_receive_method":2,"confirm_receive_time":"","settlement_time":1700900000}"#;
        match typed(settled) {
            Message::TradeOrderSettlement(s) => {
                assert_eq!(s.order.transaction_id.as_deref(), Some("4200001"));
                assert_eq!(s.order.sub_merchant_id, None);
                assert_eq!(s.order.pay_time, Some(1700000000));
                assert_eq!(s.estimated_settlement_time, None);
                assert_eq!(s.confirm_receive_method, Some(2));
                assert_eq!(s.confirm_receive_time, None);
                assert_eq!(s.settlement_time, Some(1700900000));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            typed(
                "<xml><MsgType>event</MsgType><Event>trade_manage_remind_access_api</Event><msg>接入发货信息管理</msg></xml>"
            ),
            Message::TradeRemindAccessApi { msg: Some("接入发货信息管理".into()) }
        );
        match typed(
            r#"{"MsgType":"event","Event":"trade_manage_remind_shipping","transaction_id":"42","merchant_trade_no":"o-2"}"#,
        ) {
            Message::TradeRemindShipping(o) => assert_eq!(o.merchant_trade_no.as_deref(), Some("o-2")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            typed(r#"{"MsgType":"event","Event":"user_enter_tempsession","SessionFrom":"order-9"}"#),
            Message::UserEnterTempsession { session_from: "order-9".into() }
        );
    }

    #[test]
    fn owned_and_borrowed_typing_agree() {
        for body in [
            r#"{"MsgType":"text","Content":"x","MsgId":1}"#,
            r#"{"MsgType":"text","Content":"","MsgId":"2"}"#,
            r#"{"MsgType":"text","Content":"x"}"#,
            r#"{"MsgType":"image","MediaId":"m","MsgId":3}"#,
            r#"{"MsgType":"image","PicUrl":"p","MsgId":3}"#,
            r#"{"MsgType":"miniprogrampage","PagePath":"p","MsgId":4,"Title":"t"}"#,
            r#"{"MsgType":"event","Event":"wxa_media_check","trace_id":"t"}"#,
            r#"{"MsgType":"event","Event":"nope","x":[1,2]}"#,
        ] {
            let map = parse(body.as_bytes()).unwrap().1;
            assert_eq!(Message::from_map(map.clone()), Message::from_fields(&map), "{body}");
        }
    }

    #[test]
    fn unknown_and_incomplete_messages_are_kept_whole() {
        let m = typed(r#"{"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#);
        assert_eq!(
            m,
            Message::Unknown {
                msg_type: "event".into(),
                event: Some("debug_demo".into()),
                raw: json!({"MsgType":"event","Event":"debug_demo","debug_str":"hello world"})
            }
        );
        // A text message without MsgId cannot be typed, and is not dropped either.
        assert!(matches!(typed(r#"{"MsgType":"text","Content":"x"}"#), Message::Unknown { .. }));
        assert!(matches!(
            typed(r#"{"MsgType":"event","Event":"subscribe_msg_popup_event","List":[]}"#),
            Message::Unknown { .. }
        ));
    }
}
