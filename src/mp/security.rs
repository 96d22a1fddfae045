//! Content security: `msg_sec_check` (text, synchronous, v2) and `media_check_async` (images and
//! audio, whose verdict arrives later as a `wxa_media_check` push), plus [`MediaChecks`] to join
//! that push to the call by `trace_id`.
//!
//! Version 2 answers errcode 0 with a verdict (`result.suggest` = pass / review / risky); only the
//! retired version 1 answered 87014 for risky text. The openid must have opened the mini-program
//! within the last two hours.
//!
//! ```no_run
//! # async fn demo(client: wxshop::Client, checks: std::sync::Arc<wxshop::mp::security::MediaChecks>) -> wxshop::Result<()> {
//! use std::time::Duration;
//! use wxshop::mp::security::{MediaType, Scene};
//! let verdict = client.security().msg_sec_check("oUser…", Scene::Comment, "review text").await?;
//! if verdict.result.is_risky() { /* refuse the comment */ }
//!
//! let trace_id = client.security().media_check_async("oUser…", Scene::Profile, "https://cdn/x.png", MediaType::Image).await?;
//! // The push handler calls `checks.complete(result)` on each `Message::MediaCheck`.
//! let result = checks.wait(&trace_id, Duration::from_secs(60)).await?;
//! println!("risky: {}", result.is_risky());
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Client;
use crate::error::{Error, Result};
use crate::http::Request;
pub use crate::push::message::{MediaCheckResult, Verdict, VerdictDetail};

/// Where the content appears (WeChat tunes its models per scene).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scene {
    /// 1: a profile (资料).
    Profile = 1,
    /// 2: a comment (评论).
    Comment = 2,
    /// 3: a forum post (论坛).
    Forum = 3,
    /// 4: a social log (社交日志).
    SocialLog = 4,
}

/// What `media_check_async` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// 1: audio.
    Audio = 1,
    /// 2: an image.
    Image = 2,
}

/// `POST /wxa/msg_sec_check` (version 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MsgSecCheck {
    /// The text (at most 2500 characters).
    pub content: String,
    /// 2.
    pub version: u8,
    /// The scene, 1..=4.
    pub scene: u8,
    /// A user who opened the mini-program within 2 hours.
    pub openid: String,
    /// A title, checked too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A nickname, checked too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// A signature line (profile scene), checked too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The longest text `msg_sec_check` takes.
pub const MAX_CONTENT_CHARS: usize = 2500;

/// What `msg_sec_check` v2 answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MsgSecCheckResult {
    /// The overall verdict.
    pub result: Verdict,
    /// Per-strategy details.
    #[serde(default)]
    pub detail: Vec<VerdictDetail>,
    /// WeChat's trace id.
    #[serde(default)]
    pub trace_id: String,
}

/// Content-security APIs of one [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct Security<'a> {
    pub(crate) client: &'a Client,
}

impl Security<'_> {
    /// Checks text synchronously.
    pub async fn msg_sec_check(&self, openid: &str, scene: Scene, content: &str) -> Result<MsgSecCheckResult> {
        self.msg_sec_check_with(&MsgSecCheck {
            content: content.to_string(),
            version: 2,
            scene: scene as u8,
            openid: openid.to_string(),
            title: None,
            nickname: None,
            signature: None,
        })
        .await
    }

    /// Checks text with every field of the request.
    pub async fn msg_sec_check_with(&self, req: &MsgSecCheck) -> Result<MsgSecCheckResult> {
        if req.openid.is_empty() {
            return Err(Error::InvalidRequest("openid is required by msg_sec_check v2".into()));
        }
        let n = req.content.chars().count();
        if n > MAX_CONTENT_CHARS {
            return Err(Error::InvalidRequest(format!("content is {n} characters, more than {MAX_CONTENT_CHARS}")));
        }
        // A check has no side effect: safe to retry.
        let r = Request::mp_post("/wxa/msg_sec_check", req)?.idempotent(true);
        self.client.call(&r).await
    }

    /// Starts an asynchronous check of an image or audio at `media_url`; returns the `trace_id`
    /// the `wxa_media_check` push will carry.
    pub async fn media_check_async(
        &self,
        openid: &str,
        scene: Scene,
        media_url: &str,
        media_type: MediaType,
    ) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            trace_id: String,
        }
        if openid.is_empty() {
            return Err(Error::InvalidRequest("openid is required by media_check_async v2".into()));
        }
        if !(media_url.starts_with("http://") || media_url.starts_with("https://")) {
            return Err(Error::InvalidRequest("media_url must be an http(s) URL WeChat can download".into()));
        }
        let body = serde_json::json!({
            "media_url": media_url, "media_type": media_type as u8, "version": 2,
            "scene": scene as u8, "openid": openid,
        });
        let r: R = self.client.call(&Request::mp_post("/wxa/media_check_async", &body)?).await?;
        Ok(r.trace_id)
    }
}

enum Slot {
    Waiting(Vec<oneshot::Sender<MediaCheckResult>>),
    Done(MediaCheckResult),
}

/// Joins `wxa_media_check` pushes to their `media_check_async` calls by `trace_id`. Share one per
/// app between the code that starts checks and the push handler.
pub struct MediaChecks {
    slots: Mutex<HashMap<String, Slot>>,
    order: Mutex<VecDeque<String>>,
    max_done: usize,
}

impl std::fmt::Debug for MediaChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaChecks").field("tracked", &crate::push::lock(&self.slots).len()).finish()
    }
}

impl Default for MediaChecks {
    fn default() -> Self {
        Self::new()
    }
}

impl MediaChecks {
    /// Keeps at most 10 000 unclaimed results.
    pub fn new() -> Self {
        MediaChecks { slots: Mutex::new(HashMap::new()), order: Mutex::new(VecDeque::new()), max_done: 10_000 }
    }

    /// Records a verdict from a push; wakes whoever waits for it. Returns whether someone was waiting.
    pub fn complete(&self, result: MediaCheckResult) -> bool {
        let mut slots = crate::push::lock(&self.slots);
        let trace_id = result.trace_id.clone();
        let waiters = match slots.remove(&trace_id) {
            Some(Slot::Waiting(w)) => w,
            // A retried push of a verdict already recorded.
            Some(Slot::Done(prev)) => {
                slots.insert(trace_id, Slot::Done(prev));
                return false;
            }
            None => Vec::new(),
        };
        let mut woke = false;
        for w in waiters {
            woke |= w.send(result.clone()).is_ok();
        }
        if !woke {
            // Nobody waits yet (the push can beat the caller): keep it for `wait` or `take`.
            slots.insert(trace_id.clone(), Slot::Done(result));
            let mut order = crate::push::lock(&self.order);
            order.push_back(trace_id);
            while order.len() > self.max_done {
                if let Some(old) = order.pop_front()
                    && matches!(slots.get(&old), Some(Slot::Done(_)))
                {
                    slots.remove(&old);
                }
            }
        }
        woke
    }

    /// A recorded verdict nobody has claimed yet.
    pub fn take(&self, trace_id: &str) -> Option<MediaCheckResult> {
        let mut slots = crate::push::lock(&self.slots);
        match slots.remove(trace_id) {
            Some(Slot::Done(r)) => Some(r),
            Some(other) => {
                slots.insert(trace_id.to_string(), other);
                None
            }
            None => None,
        }
    }

    /// Waits for the verdict of `trace_id` (returns at once if it already arrived).
    pub async fn wait(&self, trace_id: &str, timeout: Duration) -> Result<MediaCheckResult> {
        let rx = {
            let mut slots = crate::push::lock(&self.slots);
            match slots.remove(trace_id) {
                Some(Slot::Done(r)) => return Ok(r),
                Some(Slot::Waiting(mut w)) => {
                    let (tx, rx) = oneshot::channel();
                    w.push(tx);
                    slots.insert(trace_id.to_string(), Slot::Waiting(w));
                    rx
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(trace_id.to_string(), Slot::Waiting(vec![tx]));
                    rx
                }
            }
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => Err(Error::InvalidRequest(format!(
                "no wxa_media_check push for trace_id {trace_id} within {timeout:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(trace: &str, suggest: &str) -> MediaCheckResult {
        MediaCheckResult {
            appid: "wx".into(),
            trace_id: trace.into(),
            version: 2,
            result: Some(Verdict { suggest: suggest.into(), label: 100 }),
            detail: vec![],
            errcode: 0,
            errmsg: None,
        }
    }

    #[tokio::test]
    async fn a_waiter_gets_the_later_push() {
        let checks = std::sync::Arc::new(MediaChecks::new());
        let c = checks.clone();
        let waiter = tokio::spawn(async move { c.wait("t1", Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        while !matches!(crate::push::lock(&checks.slots).get("t1"), Some(Slot::Waiting(_))) {
            tokio::task::yield_now().await;
        }
        assert!(checks.complete(result("t1", "risky")));
        assert!(waiter.await.unwrap().unwrap().is_risky());
    }

    #[tokio::test]
    async fn a_push_that_beats_the_caller_is_kept() {
        let checks = MediaChecks::new();
        assert!(!checks.complete(result("t2", "pass")));
        assert!(!checks.complete(result("t2", "pass")), "a retried push is not news");
        assert_eq!(checks.wait("t2", Duration::from_millis(1)).await.unwrap().trace_id, "t2");
        assert!(checks.take("t2").is_none());
        assert!(checks.wait("t3", Duration::from_millis(1)).await.is_err());
    }
}
