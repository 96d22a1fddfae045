//! Share links: URL Scheme (`weixin://dl/business/?t=…`), URL Link (`https://wxaurl.cn/…`) and
//! Short Link (`#小程序://…`), with WeChat's rules checked before anything is sent.
//!
//! Since 2022-04-11 every URL Scheme and URL Link expires within 30 days and opens for one user
//! only; Schemes and Links share one pool of 500,000 generated per day and one daily visit
//! quota. A request that breaks a rule WeChat documents (expiry out of range, a path with a query,
//! a query longer than 1024 characters or with characters outside WeChat's set, an unknown
//! `env_version`) fails locally with [`Error::InvalidRequest`] and spends no quota.
//!
//! ```no_run
//! # async fn demo(client: wxshop::Client) -> wxshop::Result<()> {
//! use wxshop::mp::link::{EnvVersion, Expiry, GenerateUrlLink};
//! let req = GenerateUrlLink::new(Expiry::days(7))
//!     .path("pages/product/index")
//!     .query("id=42&ref=AQABAAAAAAAAAAAA")
//!     .env_version(EnvVersion::Release);
//! let link = client.links().generate_url_link(&req).await?; // https://wxaurl.cn/…
//! let info = client.links().query_url_link(&link).await?;
//! assert_eq!(info.path, "pages/product/index");
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Client;
use crate::error::{Error, Result};
use crate::http::Request;

/// The longest validity WeChat grants a URL Scheme or URL Link.
pub const MAX_EXPIRY_DAYS: u32 = 30;
/// The shortest validity WeChat accepts for an absolute expiry (85401 below it).
pub const MIN_EXPIRY_SECS: i64 = 60;
/// The longest `query` of a Scheme or Link.
pub const MAX_QUERY_CHARS: usize = 1024;
/// The longest page path (and the longest Short Link `page_url`).
pub const MAX_PATH_CHARS: usize = 1024;

/// Which version of the mini-program a link or code opens (only honoured outside WeChat for links).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvVersion {
    /// The published version (`release`, WeChat's default).
    #[default]
    Release,
    /// The trial version (`trial`).
    Trial,
    /// The development version (`develop`).
    Develop,
}

impl EnvVersion {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvVersion::Release => "release",
            EnvVersion::Trial => "trial",
            EnvVersion::Develop => "develop",
        }
    }

    /// Parses a wire value; anything else is `None` (WeChat answers 85402).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "release" => Some(EnvVersion::Release),
            "trial" => Some(EnvVersion::Trial),
            "develop" => Some(EnvVersion::Develop),
            _ => None,
        }
    }
}

/// When a URL Scheme or URL Link stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// At a Unix time (`expire_type` 0): more than a minute and at most 30 days from now.
    At(i64),
    /// After this many days (`expire_type` 1): 1 to 30.
    Days(u32),
}

impl Expiry {
    /// Expires at `t`.
    pub fn at(t: DateTime<Utc>) -> Self {
        Expiry::At(t.timestamp())
    }

    /// Expires after `n` days.
    pub fn days(n: u32) -> Self {
        Expiry::Days(n)
    }

    /// Checks WeChat's range against `now`.
    pub fn check(&self, now: DateTime<Utc>) -> Result<()> {
        match *self {
            Expiry::At(t) => {
                let left = t - now.timestamp();
                if left <= MIN_EXPIRY_SECS || left > i64::from(MAX_EXPIRY_DAYS) * 86_400 {
                    return Err(Error::InvalidRequest(format!(
                        "expire_time must be more than 1 minute and at most {MAX_EXPIRY_DAYS} days from now \
                         (it is {left} s away)"
                    )));
                }
            }
            Expiry::Days(n) => {
                if n == 0 || n > MAX_EXPIRY_DAYS {
                    return Err(Error::InvalidRequest(format!(
                        "expire_interval must be 1 to {MAX_EXPIRY_DAYS} days (got {n})"
                    )));
                }
            }
        }
        Ok(())
    }

    fn wire(&self) -> (u8, Option<i64>, Option<u32>) {
        match *self {
            Expiry::At(t) => (0, Some(t), None),
            Expiry::Days(n) => (1, None, Some(n)),
        }
    }
}

/// `true` for the characters WeChat allows in a link `query`: digits, ASCII letters and
/// `` !#$&'()*+,/:;=?@-._~% ``.
pub fn is_query_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$&'()*+,/:;=?@-._~%".contains(c)
}

/// Checks a link `query`: at most 1024 characters from WeChat's set.
pub fn validate_query(query: &str) -> Result<()> {
    let len = query.chars().count();
    if len > MAX_QUERY_CHARS {
        return Err(Error::InvalidRequest(format!("query is {len} characters; WeChat allows {MAX_QUERY_CHARS}")));
    }
    if let Some((i, c)) = query.char_indices().find(|(_, c)| !is_query_char(*c)) {
        return Err(Error::InvalidRequest(format!(
            "query has {c:?} at byte {i}; WeChat allows digits, letters and !#$&'()*+,/:;=?@-._~% \
             (percent-encode anything else)"
        )));
    }
    Ok(())
}

/// Checks a link `path`: a page path without a query, at most 1024 visible ASCII characters.
pub fn validate_path(path: &str) -> Result<()> {
    if path.len() > MAX_PATH_CHARS {
        return Err(Error::InvalidRequest(format!("path is {} bytes; WeChat allows {MAX_PATH_CHARS}", path.len())));
    }
    if path.contains('?') {
        return Err(Error::InvalidRequest(
            "path must not carry a query — put it in `query` (WeChat answers 40165)".into(),
        ));
    }
    if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(Error::InvalidRequest(format!("path has {c:?}; a page path is visible ASCII only")));
    }
    Ok(())
}

/// The target page of a URL Scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JumpWxa {
    /// The page (`pages/index/index`); empty opens the home page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The query the page receives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The version opened outside WeChat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_version: Option<EnvVersion>,
}

impl JumpWxa {
    fn validate(&self) -> Result<()> {
        if let Some(p) = &self.path {
            validate_path(p)?;
        }
        if let Some(q) = &self.query {
            validate_query(q)?;
        }
        Ok(())
    }
}

/// `POST /wxa/generatescheme`: an encrypted URL Scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerateScheme {
    /// Where it opens.
    pub jump_wxa: JumpWxa,
    /// 0 = at `expire_time`, 1 = after `expire_interval` days.
    pub expire_type: u8,
    /// Unix seconds (`expire_type` 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<i64>,
    /// Days (`expire_type` 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_interval: Option<u32>,
}

impl GenerateScheme {
    /// A scheme to the home page that expires as given.
    pub fn new(expiry: Expiry) -> Self {
        let (expire_type, expire_time, expire_interval) = expiry.wire();
        GenerateScheme { jump_wxa: JumpWxa::default(), expire_type, expire_time, expire_interval }
    }

    /// The page.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.jump_wxa.path = Some(path.into());
        self
    }

    /// The query.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.jump_wxa.query = Some(query.into());
        self
    }

    /// The version opened outside WeChat.
    pub fn env_version(mut self, env: EnvVersion) -> Self {
        self.jump_wxa.env_version = Some(env);
        self
    }

    fn expiry(&self) -> Result<Expiry> {
        expiry_of(self.expire_type, self.expire_time, self.expire_interval)
    }

    /// Checks every rule WeChat documents, as of `now`.
    pub fn validate_at(&self, now: DateTime<Utc>) -> Result<()> {
        self.expiry()?.check(now)?;
        self.jump_wxa.validate()
    }
}

fn expiry_of(expire_type: u8, time: Option<i64>, interval: Option<u32>) -> Result<Expiry> {
    match (expire_type, time, interval) {
        (0, Some(t), _) => Ok(Expiry::At(t)),
        (1, _, Some(n)) => Ok(Expiry::Days(n)),
        (0, None, _) => Err(Error::InvalidRequest("expire_type 0 needs expire_time".into())),
        (1, _, None) => Err(Error::InvalidRequest("expire_type 1 needs expire_interval".into())),
        (t, _, _) => Err(Error::InvalidRequest(format!("expire_type must be 0 or 1 (got {t})"))),
    }
}

/// The Cloud Base static site a URL Link may go through (optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudBase {
    /// The Cloud Base environment.
    pub env: String,
    /// A custom domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The H5 page path (no query).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The H5 page query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The appid that created `env`, for third-party platforms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_appid: Option<String>,
}

/// `POST /wxa/generate_urllink`: an encrypted URL Link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerateUrlLink {
    /// The page; empty opens the home page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The query the page receives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// 0 = at `expire_time`, 1 = after `expire_interval` days.
    pub expire_type: u8,
    /// Unix seconds (`expire_type` 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<i64>,
    /// Days (`expire_type` 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_interval: Option<u32>,
    /// The version opened outside WeChat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_version: Option<EnvVersion>,
    /// A Cloud Base H5 page to go through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_base: Option<CloudBase>,
}

impl GenerateUrlLink {
    /// A link to the home page that expires as given.
    pub fn new(expiry: Expiry) -> Self {
        let (expire_type, expire_time, expire_interval) = expiry.wire();
        GenerateUrlLink {
            path: None,
            query: None,
            expire_type,
            expire_time,
            expire_interval,
            env_version: None,
            cloud_base: None,
        }
    }

    /// The page.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The query.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// The version opened outside WeChat.
    pub fn env_version(mut self, env: EnvVersion) -> Self {
        self.env_version = Some(env);
        self
    }

    /// Goes through a Cloud Base H5 page.
    pub fn cloud_base(mut self, cloud_base: CloudBase) -> Self {
        self.cloud_base = Some(cloud_base);
        self
    }

    /// Checks every rule WeChat documents, as of `now`.
    pub fn validate_at(&self, now: DateTime<Utc>) -> Result<()> {
        expiry_of(self.expire_type, self.expire_time, self.expire_interval)?.check(now)?;
        if let Some(p) = &self.path {
            validate_path(p)?;
        }
        if let Some(q) = &self.query {
            validate_query(q)?;
        }
        if let Some(cb) = &self.cloud_base {
            if cb.env.is_empty() {
                return Err(Error::InvalidRequest("cloud_base.env is required".into()));
            }
            if let Some(p) = &cb.path {
                validate_path(p)?;
            }
            if let Some(q) = &cb.query {
                validate_query(q)?;
            }
        }
        Ok(())
    }
}

/// `POST /wxa/genwxashortlink`: a `#小程序://…` Short Link to paste in WeChat chats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerateShortLink {
    /// The page, with its query (at most 1024 characters).
    pub page_url: String,
    /// A title (WeChat cuts it after 20 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_title: Option<String>,
    /// Permanent links count against a lifetime cap of 100,000; temporary ones last 30 days.
    pub is_permanent: bool,
}

impl GenerateShortLink {
    /// A temporary Short Link to `page_url` (`pages/product/index?id=42`).
    pub fn new(page_url: impl Into<String>) -> Self {
        GenerateShortLink { page_url: page_url.into(), page_title: None, is_permanent: false }
    }

    /// The title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.page_title = Some(title.into());
        self
    }

    /// Permanent (lifetime-capped) or temporary.
    pub fn permanent(mut self, yes: bool) -> Self {
        self.is_permanent = yes;
        self
    }

    /// Checks what WeChat documents.
    pub fn validate(&self) -> Result<()> {
        if self.page_url.is_empty() {
            return Err(Error::InvalidRequest("page_url is required".into()));
        }
        let len = self.page_url.chars().count();
        if len > MAX_PATH_CHARS {
            return Err(Error::InvalidRequest(format!("page_url is {len} characters; WeChat allows {MAX_PATH_CHARS}")));
        }
        let (path, query) = self.page_url.split_once('?').unwrap_or((&self.page_url, ""));
        validate_path(path)?;
        validate_query(query)
    }
}

/// What WeChat knows about a generated Scheme or URL Link.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LinkInfo {
    /// The appid.
    #[serde(default)]
    pub appid: String,
    /// The page.
    #[serde(default)]
    pub path: String,
    /// The query.
    #[serde(default)]
    pub query: String,
    /// Unix seconds.
    #[serde(default)]
    pub create_time: i64,
    /// Unix seconds; 0 = never (only links made before 2022-04-11).
    #[serde(default)]
    pub expire_time: i64,
    /// The version it opens.
    #[serde(default)]
    pub env_version: String,
}

/// Share-link APIs of one [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct Links<'a> {
    pub(crate) client: &'a Client,
}

impl Links<'_> {
    /// Generates a URL Scheme; returns the `openlink` (`weixin://dl/business/?t=…`).
    pub async fn generate_scheme(&self, req: &GenerateScheme) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            openlink: String,
        }
        req.validate_at(Utc::now())?;
        let r: R = self.client.call(&Request::mp_post("/wxa/generatescheme", req)?).await?;
        Ok(r.openlink)
    }

    /// What a URL Scheme opens and when it expires (`/wxa/queryscheme`).
    pub async fn query_scheme(&self, scheme: &str) -> Result<LinkInfo> {
        #[derive(Deserialize)]
        struct R {
            scheme_info: LinkInfo,
        }
        if scheme.is_empty() {
            return Err(Error::InvalidRequest("scheme is required".into()));
        }
        let body = serde_json::json!({ "scheme": scheme, "query_type": 0 });
        let r: R = self.client.call(&Request::mp_post("/wxa/queryscheme", &body)?.idempotent(true)).await?;
        Ok(r.scheme_info)
    }

    /// Today's remaining visits shared by URL Schemes and URL Links (`/wxa/queryscheme`, `query_type` 1).
    pub async fn remaining_visits(&self) -> Result<u64> {
        #[derive(Deserialize)]
        struct Quota {
            remain_visit_quota: u64,
        }
        #[derive(Deserialize)]
        struct R {
            quota_info: Quota,
        }
        let body = serde_json::json!({ "query_type": 1 });
        let r: R = self.client.call(&Request::mp_post("/wxa/queryscheme", &body)?.idempotent(true)).await?;
        Ok(r.quota_info.remain_visit_quota)
    }

    /// Generates a URL Link; returns it (`https://wxaurl.cn/…`).
    pub async fn generate_url_link(&self, req: &GenerateUrlLink) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            url_link: String,
        }
        req.validate_at(Utc::now())?;
        let r: R = self.client.call(&Request::mp_post("/wxa/generate_urllink", req)?).await?;
        Ok(r.url_link)
    }

    /// What a URL Link opens and when it expires (`/wxa/query_urllink`).
    pub async fn query_url_link(&self, url_link: &str) -> Result<LinkInfo> {
        #[derive(Deserialize)]
        struct R {
            url_link_info: LinkInfo,
        }
        if url_link.is_empty() {
            return Err(Error::InvalidRequest("url_link is required".into()));
        }
        let body = serde_json::json!({ "url_link": url_link, "query_type": 0 });
        let r: R = self.client.call(&Request::mp_post("/wxa/query_urllink", &body)?.idempotent(true)).await?;
        Ok(r.url_link_info)
    }

    /// Generates a Short Link; returns it (`#小程序://…`).
    pub async fn generate_short_link(&self, req: &GenerateShortLink) -> Result<String> {
        #[derive(Deserialize)]
        struct R {
            link: String,
        }
        req.validate()?;
        let r: R = self.client.call(&Request::mp_post("/wxa/genwxashortlink", req)?).await?;
        Ok(r.link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn expiry_must_be_within_thirty_days() {
        assert!(Expiry::days(30).check(now()).is_ok());
        assert!(Expiry::days(31).check(now()).is_err());
        assert!(Expiry::days(0).check(now()).is_err());
        assert!(Expiry::at(now() + chrono::Duration::days(30)).check(now()).is_ok());
        assert!(Expiry::at(now() + chrono::Duration::days(30) + chrono::Duration::seconds(1)).check(now()).is_err());
        assert!(Expiry::at(now() + chrono::Duration::seconds(60)).check(now()).is_err());
        assert!(Expiry::at(now() + chrono::Duration::seconds(61)).check(now()).is_ok());
    }

    #[test]
    fn query_charset_is_wechats() {
        assert!(validate_query("id=42&ref=Ab-_9~.*").is_ok());
        assert!(validate_query("a=%E4%B8%AD").is_ok());
        assert!(validate_query("a=中").is_err());
        assert!(validate_query("a=b c").is_err());
        assert!(validate_query("a=\"b\"").is_err());
        assert!(validate_query(&"a".repeat(1024)).is_ok());
        assert!(validate_query(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn path_carries_no_query() {
        assert!(validate_path("pages/index/index").is_ok());
        assert!(validate_path("pages/index/index?id=1").is_err());
        assert!(validate_path("pages/in dex").is_err());
    }

    #[test]
    fn scheme_body_is_wechats_shape() {
        let req =
            GenerateScheme::new(Expiry::days(7)).path("pages/a/index").query("x=1").env_version(EnvVersion::Trial);
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"jump_wxa":{"path":"pages/a/index","query":"x=1","env_version":"trial"},"expire_type":1,"expire_interval":7}"#
        );
        let req = GenerateUrlLink::new(Expiry::At(1_735_700_000));
        assert_eq!(serde_json::to_string(&req).unwrap(), r#"{"expire_type":0,"expire_time":1735700000}"#);
    }

    #[test]
    fn short_link_checks_its_query_part() {
        assert!(GenerateShortLink::new("pages/a/index?id=1").validate().is_ok());
        assert!(GenerateShortLink::new("pages/a/index?id=中").validate().is_err());
        assert!(GenerateShortLink::new("").validate().is_err());
    }
}
