//! Content security, with WeChat's rules: `msg_sec_check` version 2 answers a verdict (risky when
//! the text holds a word of the control list), version 1 answers 87014 for risky text;
//! `media_check_async` answers a `trace_id` and later pushes `wxa_media_check` to the app's push
//! URL (see [`super::message`]).
//!
//! # Control API
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /__emulator/security/risky_words` | `{"words":[…]}` | the words content checks judge risky |

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::message::{deliver, valid_openid};
use super::{Authorized, WxError, WxJson, WxResult, wx_ok};
use crate::emulator::{Shared, lock};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/wxa/msg_sec_check", post(msg_sec_check))
        .route("/wxa/media_check_async", post(media_check_async))
        .route("/__emulator/security/risky_words", post(risky_words))
}

fn risky_word(s: &Shared, texts: &[&str]) -> Option<String> {
    let st = lock(&s.push.state);
    st.risky_words.iter().find(|w| !w.is_empty() && texts.iter().any(|t| t.contains(w.as_str()))).cloned()
}

fn trace_id() -> String {
    let r: [u8; 12] = rand::random();
    format!("{}-{}-{}", hex::encode(&r[..4]), hex::encode(&r[4..8]), hex::encode(&r[8..]))
}

fn scene_ok(scene: Option<i64>) -> bool {
    scene.is_some_and(|s| (1..=4).contains(&s))
}

/// `msg_sec_check`'s body (version 1 reads `content` only).
#[derive(Deserialize)]
struct MsgSecCheck {
    #[serde(default)]
    content: String,
    version: Option<i64>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    nickname: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    openid: String,
    scene: Option<i64>,
}

async fn msg_sec_check(State(s): State<Shared>, _: Authorized, WxJson(b): WxJson<MsgSecCheck>) -> WxResult {
    let texts = [b.content.as_str(), &b.title, &b.nickname, &b.signature];
    if b.version.unwrap_or(1) != 2 {
        // Version 1: risky text is an error, 87014.
        if b.content.is_empty() {
            return Err(WxError::new(47001, "data format error"));
        }
        return match risky_word(&s, &texts) {
            Some(_) => Err(WxError::new(87014, "risky content")),
            None => wx_ok(json!({})),
        };
    }
    if !valid_openid(&b.openid) {
        return Err(WxError::new(40003, "invalid openid"));
    }
    if !scene_ok(b.scene) {
        return Err(WxError::new(40097, "invalid args: scene must be 1..4"));
    }
    if b.content.is_empty() || b.content.chars().count() > crate::mp::security::MAX_CONTENT_CHARS {
        return Err(WxError::new(40097, "invalid args: content"));
    }
    s.bump("security.msg_sec_check");
    let (result, detail) = match risky_word(&s, &texts) {
        Some(word) => (
            json!({"suggest": "risky", "label": 20006}),
            json!([
                {"strategy": "content_model", "errcode": 0, "suggest": "risky", "label": 20006, "prob": 90},
                {"strategy": "keyword", "errcode": 0, "suggest": "risky", "label": 20006, "level": 20, "keyword": word}
            ]),
        ),
        None => (
            json!({"suggest": "pass", "label": 100}),
            json!([{"strategy": "content_model", "errcode": 0, "suggest": "pass", "label": 100, "prob": 90}]),
        ),
    };
    wx_ok(json!({ "result": result, "detail": detail, "trace_id": trace_id() }))
}

/// `media_check_async`'s body.
#[derive(Deserialize)]
struct MediaCheckAsync {
    #[serde(default)]
    media_url: String,
    media_type: Option<i64>,
    version: Option<i64>,
    #[serde(default)]
    openid: String,
    scene: Option<i64>,
}

async fn media_check_async(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<MediaCheckAsync>,
) -> WxResult {
    let url = b.media_url;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(WxError::new(40097, "invalid args: media_url"));
    }
    if !matches!(b.media_type, Some(1 | 2)) || b.version != Some(2) || !scene_ok(b.scene) {
        return Err(WxError::new(40097, "invalid args"));
    }
    if !valid_openid(&b.openid) {
        return Err(WxError::new(40003, "invalid openid"));
    }
    let trace = trace_id();
    let risky = risky_word(&s, &[&url]).is_some();
    let (suggest, label) = if risky { ("risky", 20002) } else { ("pass", 100) };
    let event = json!({
        "FromUserName": b.openid, "MsgType": "event", "Event": "wxa_media_check",
        "appid": appid, "trace_id": trace, "version": 2,
        "result": {"suggest": suggest, "label": label},
        "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}],
    });
    s.bump("security.media_check_async");
    // WeChat answers at once and pushes the verdict later.
    if lock(&s.push.state).configs.contains_key(&appid) {
        let s2 = s.clone();
        let fields = event.as_object().cloned().unwrap_or_default();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Err(e) = deliver(&s2, &appid, fields, 1).await {
                tracing::warn!(error = %e, "emulator could not push wxa_media_check");
            }
        });
    }
    wx_ok(json!({ "trace_id": trace }))
}

#[derive(Deserialize)]
struct WordsBody {
    words: Vec<String>,
}

async fn risky_words(State(s): State<Shared>, axum::Json(b): axum::Json<WordsBody>) -> Response {
    lock(&s.push.state).risky_words = b.words;
    axum::Json(json!({ "ok": true })).into_response()
}
