//! Share links and mini-program codes, the way WeChat serves them.
//!
//! - URL Schemes (`weixin://dl/business/?t=…`) and URL Links (`https://wxaurl.cn/…`) carry their
//!   page, query, `env_version` and expiry (1 minute to 30 days, else 85401); both count against one
//!   daily generation quota per app (500,000, then 44993) and one daily visit quota (85406); a link
//!   opens for the first user who opens it and for nobody else.
//! - Short Links (`#小程序://…`): permanent ones count against a lifetime cap (100,000, then 85400),
//!   all against a daily cap (10,000,000, then 45009).
//! - Codes ([`super::wxacode`]) share this module's limits and published pages.
//!
//! Days are China days (UTC+8), as WeChat counts them, on the emulator's clock. Every quota and cap
//! can be lowered for tests.
//!
//! # Control API
//!
//! | call | body | effect |
//! |---|---|---|
//! | `POST /__emulator/links/limits` | `{"daily_links"?, "daily_visits"?, "permanent_short_links"?, "daily_short_links"?, "limited_codes"?}` | sets quotas and caps (all apps) → the limits in force |
//! | `POST /__emulator/links/pages` | `{"appid","pages":["pages/index/index",…]}` | the app's published pages: links and codes to other pages are refused like WeChat refuses them (default: every page exists) |
//! | `POST /__emulator/links/open` | `{"link","user"}` | `user` opens a URL Scheme or URL Link → `{"appid","path","query","env_version"}`; 404 unknown, 410 expired, 403 already opened by another user, 429 with `errcode` 85406 when today's visits are used up |
//! | `GET /__emulator/links/usage?appid=A` | — | `{"links_today","visits_today","short_links_today","permanent_short_links","limited_codes"}` |
//!
//! ```no_run
//! # async fn demo() -> wxshop::Result<()> {
//! use wxshop::emulator::Emulator;
//! use wxshop::mp::wxacode::GetUnlimitedCode;
//! let emu = Emulator::start_default().await?;
//! emu.set_link_limits(wxshop::emulator::mp::link::Limits { limited_codes: 2, ..Default::default() });
//! let png = emu.client()?.wxacode().get_unlimited(&GetUnlimitedCode::new("p=1").page("pages/index/index")).await?;
//! std::fs::write("code.png", &png.bytes).ok(); // scan it: wxemu://wxacode/wx_emulator_app/pages/index/index?scene=p%3D1&env_version=release
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use super::{Authorized, WxError, WxJson, WxResult, wx_ok};
use crate::emulator::{EmulatorHandle, EmulatorState, Shared, lock};
use crate::mp::link::{EnvVersion, is_query_char};

/// The prefix of a URL Scheme.
pub const SCHEME_PREFIX: &str = "weixin://dl/business/?t=";
/// The prefix of a URL Link.
pub const URL_LINK_PREFIX: &str = "https://wxaurl.cn/";

/// Quotas and caps. The defaults are WeChat's published numbers; the daily visit figure is the
/// commonly cited one and not confirmed by WeChat's API page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// URL Schemes + URL Links generated per app per day (44993 beyond).
    pub daily_links: u64,
    /// URL Scheme + URL Link visits per app per day (85406 beyond).
    pub daily_visits: u64,
    /// Permanent Short Links per app, ever (85400 beyond).
    pub permanent_short_links: u64,
    /// Short Links per app per day (45009 beyond).
    pub daily_short_links: u64,
    /// `getwxacode` + `createwxaqrcode` codes per app, ever (45029 beyond).
    pub limited_codes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            daily_links: 500_000,
            daily_visits: 3_000_000,
            permanent_short_links: 100_000,
            daily_short_links: 10_000_000,
            limited_codes: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkKind {
    Scheme,
    UrlLink,
}

#[derive(Debug, Clone)]
struct LinkRecord {
    kind: LinkKind,
    appid: String,
    path: String,
    query: String,
    env_version: EnvVersion,
    create_time: i64,
    expire_time: i64,
    opened_by: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Daily {
    links: u64,
    visits: u64,
    short_links: u64,
}

/// The emulator's link and code state.
#[derive(Debug, Default)]
pub struct LinksState {
    pub(super) limits: Limits,
    links: HashMap<String, LinkRecord>,
    daily: HashMap<(String, NaiveDate), Daily>,
    permanent_short_links: HashMap<String, u64>,
    pub(super) limited_codes: HashMap<String, u64>,
    pages: HashMap<String, HashSet<String>>,
}

/// The China (UTC+8) calendar day of `now`: WeChat's daily quotas reset at Beijing midnight.
fn china_day(now: DateTime<Utc>) -> NaiveDate {
    (now + Duration::hours(8)).date_naive()
}

fn ticket(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

impl LinksState {
    fn daily(&mut self, appid: &str, now: DateTime<Utc>) -> &mut Daily {
        self.daily.entry((appid.to_string(), china_day(now))).or_default()
    }

    /// `true` when `page` is a published page of `appid` (every page is, until pages are registered).
    pub(super) fn page_exists(&self, appid: &str, page: &str) -> bool {
        match self.pages.get(appid) {
            Some(pages) => pages.contains(page.trim_start_matches('/')),
            None => true,
        }
    }

    /// Sets the quotas and caps.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Registers the published pages of an app.
    pub fn set_pages(&mut self, appid: &str, pages: impl IntoIterator<Item = String>) {
        self.pages
            .insert(appid.to_string(), pages.into_iter().map(|p| p.trim_start_matches('/').to_string()).collect());
    }
}

impl EmulatorHandle {
    /// Sets the link and code quotas and caps (lower them to test exhaustion).
    pub fn set_link_limits(&self, limits: Limits) {
        lock(&self.state().links).set_limits(limits);
    }

    /// Registers the published pages of an app: links and codes to other pages are refused.
    pub fn set_published_pages(&self, appid: &str, pages: &[&str]) {
        lock(&self.state().links).set_pages(appid, pages.iter().map(|p| p.to_string()));
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/wxa/generatescheme", post(generate_scheme))
        .route("/wxa/queryscheme", post(query_scheme))
        .route("/wxa/generate_urllink", post(generate_url_link))
        .route("/wxa/query_urllink", post(query_url_link))
        .route("/wxa/genwxashortlink", post(generate_short_link))
        .route("/__emulator/links/limits", post(set_limits))
        .route("/__emulator/links/pages", post(set_pages))
        .route("/__emulator/links/open", post(open_link))
        .route("/__emulator/links/usage", get(usage))
}

type Q = Query<HashMap<String, String>>;

#[derive(Deserialize, Default)]
struct Jump {
    path: Option<String>,
    query: Option<String>,
    env_version: Option<String>,
}

#[derive(Deserialize)]
struct LinkBody {
    // URL Scheme puts the target in jump_wxa, URL Link at the top level.
    jump_wxa: Option<Jump>,
    path: Option<String>,
    query: Option<String>,
    env_version: Option<String>,
    expire_type: Option<i64>,
    expire_time: Option<i64>,
    expire_interval: Option<i64>,
}

fn env_of(s: Option<&str>) -> WxResult<EnvVersion> {
    match s {
        None | Some("") => Ok(EnvVersion::Release),
        Some(v) => EnvVersion::parse(v).ok_or_else(|| WxError::new(85402, "invalid env_version")),
    }
}

/// Checks and records a URL Scheme or URL Link; returns its ticket.
fn make_link(s: &EmulatorState, appid: &str, kind: LinkKind, body: LinkBody) -> WxResult<String> {
    let now = s.now();
    let jump = body.jump_wxa.unwrap_or_default();
    let (path, query, env) = match kind {
        LinkKind::Scheme => (jump.path, jump.query, jump.env_version),
        LinkKind::UrlLink => (body.path, body.query, body.env_version),
    };
    let env_version = env_of(env.as_deref())?;
    let path = path.unwrap_or_default();
    let query = query.unwrap_or_default();
    let mut st = lock(&s.links);
    if path.contains('?') || !path.chars().all(|c| c.is_ascii_graphic()) || !st.page_exists(appid, &path) {
        return Err(WxError::new(40165, "invalid weapp pagepath"));
    }
    if query.chars().count() > 1024 || !query.chars().all(is_query_char) {
        return Err(WxError::new(40212, "invalid query"));
    }
    let expire_time = match body.expire_type.unwrap_or(0) {
        0 => body.expire_time.unwrap_or(0),
        1 => match body.expire_interval {
            Some(days @ 1..=30) => (now + Duration::days(days)).timestamp(),
            _ => return Err(WxError::new(85401, "time limit between 1min and 30days")),
        },
        _ => return Err(WxError::new(40097, "invalid args: expire_type")),
    };
    let left = expire_time - now.timestamp();
    if left <= 60 || left > 30 * 86_400 {
        return Err(WxError::new(85401, "time limit between 1min and 30days"));
    }
    let cap = st.limits.daily_links;
    let daily = st.daily(appid, now);
    if daily.links >= cap {
        return Err(WxError::new(44993, "reach max api day frequence limit"));
    }
    daily.links += 1;
    let t = ticket(11);
    st.links.insert(
        t.clone(),
        LinkRecord {
            kind,
            appid: appid.to_string(),
            path,
            query,
            env_version,
            create_time: now.timestamp(),
            expire_time,
            opened_by: None,
        },
    );
    Ok(t)
}

async fn generate_scheme(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<LinkBody>,
) -> WxResult {
    let t = make_link(&s, &appid, LinkKind::Scheme, b)?;
    s.bump("links.scheme");
    wx_ok(serde_json::json!({ "openlink": format!("{SCHEME_PREFIX}{t}") }))
}

async fn generate_url_link(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<LinkBody>,
) -> WxResult {
    let t = make_link(&s, &appid, LinkKind::UrlLink, b)?;
    s.bump("links.url_link");
    wx_ok(serde_json::json!({ "url_link": format!("{URL_LINK_PREFIX}{t}") }))
}

#[derive(Deserialize)]
struct QueryBody {
    scheme: Option<String>,
    url_link: Option<String>,
    #[serde(default)]
    query_type: i64,
}

fn link_info(r: &LinkRecord) -> serde_json::Value {
    serde_json::json!({
        "appid": r.appid,
        "path": r.path,
        "query": r.query,
        "create_time": r.create_time,
        "expire_time": r.expire_time,
        "env_version": r.env_version.as_str(),
    })
}

fn query_link(s: &EmulatorState, appid: &str, kind: LinkKind, b: QueryBody) -> WxResult {
    let now = s.now();
    let mut st = lock(&s.links);
    let cap = st.limits.daily_visits;
    let remain = cap.saturating_sub(st.daily(appid, now).visits);
    let quota = serde_json::json!({ "remain_visit_quota": remain });
    if b.query_type == 1 {
        return wx_ok(serde_json::json!({ "quota_info": quota }));
    }
    let (given, prefix, field) = match kind {
        LinkKind::Scheme => (b.scheme, SCHEME_PREFIX, "scheme_info"),
        LinkKind::UrlLink => (b.url_link, URL_LINK_PREFIX, "url_link_info"),
    };
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Err(WxError::new(40097, "invalid args"));
    };
    let t = given.strip_prefix(prefix).unwrap_or(&given);
    match st.links.get(t).filter(|r| r.kind == kind && r.appid == appid) {
        Some(r) => wx_ok(serde_json::json!({ field: link_info(r), "quota_info": quota })),
        None => Err(WxError::new(85403, "not found")),
    }
}

async fn query_scheme(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<QueryBody>,
) -> WxResult {
    query_link(&s, &appid, LinkKind::Scheme, b)
}

async fn query_url_link(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<QueryBody>,
) -> WxResult {
    query_link(&s, &appid, LinkKind::UrlLink, b)
}

#[derive(Deserialize)]
struct ShortLinkBody {
    page_url: Option<String>,
    page_title: Option<String>,
    #[serde(default)]
    is_permanent: bool,
}

async fn generate_short_link(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<ShortLinkBody>,
) -> WxResult {
    let now = s.now();
    let page_url = b.page_url.unwrap_or_default();
    let (path, query) = page_url.split_once('?').unwrap_or((&page_url, ""));
    let mut st = lock(&s.links);
    if path.is_empty()
        || page_url.chars().count() > 1024
        || !path.chars().all(|c| c.is_ascii_graphic())
        || !query.chars().all(is_query_char)
        || !st.page_exists(&appid, path)
    {
        return Err(WxError::new(40066, "invalid url"));
    }
    let title = b.page_title.unwrap_or_default();
    if title.chars().any(char::is_control) {
        return Err(WxError::new(40225, "invalid page title"));
    }
    let daily_cap = st.limits.daily_short_links;
    if st.daily(&appid, now).short_links >= daily_cap {
        return Err(WxError::new(45009, "reach max api daily quota limit"));
    }
    if b.is_permanent {
        let cap = st.limits.permanent_short_links;
        let used = st.permanent_short_links.entry(appid.clone()).or_default();
        if *used >= cap {
            return Err(WxError::new(85400, "reach max long time quota limit"));
        }
        *used += 1;
    }
    st.daily(&appid, now).short_links += 1;
    // WeChat shows at most 20 characters of the title, then "...".
    let shown: String =
        if title.chars().count() > 20 { title.chars().take(20).chain("...".chars()).collect() } else { title };
    wx_ok(serde_json::json!({ "link": format!("#小程序://{appid}/{shown}/{}", ticket(6)) }))
}

fn control_error(status: StatusCode, msg: &str, errcode: Option<i64>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg, "errcode": errcode }))).into_response()
}

#[derive(Deserialize)]
struct LimitsBody {
    daily_links: Option<u64>,
    daily_visits: Option<u64>,
    permanent_short_links: Option<u64>,
    daily_short_links: Option<u64>,
    limited_codes: Option<u64>,
}

async fn set_limits(State(s): State<Shared>, axum::Json(b): axum::Json<LimitsBody>) -> Response {
    let mut st = lock(&s.links);
    let mut l = st.limits;
    l.daily_links = b.daily_links.unwrap_or(l.daily_links);
    l.daily_visits = b.daily_visits.unwrap_or(l.daily_visits);
    l.permanent_short_links = b.permanent_short_links.unwrap_or(l.permanent_short_links);
    l.daily_short_links = b.daily_short_links.unwrap_or(l.daily_short_links);
    l.limited_codes = b.limited_codes.unwrap_or(l.limited_codes);
    st.set_limits(l);
    axum::Json(l).into_response()
}

#[derive(Deserialize)]
struct PagesBody {
    appid: String,
    pages: Vec<String>,
}

async fn set_pages(State(s): State<Shared>, axum::Json(b): axum::Json<PagesBody>) -> Response {
    lock(&s.links).set_pages(&b.appid, b.pages);
    axum::Json(serde_json::json!({ "ok": true })).into_response()
}

#[derive(Deserialize)]
struct OpenBody {
    link: String,
    user: String,
}

async fn open_link(State(s): State<Shared>, axum::Json(b): axum::Json<OpenBody>) -> Response {
    let now = s.now();
    let t = b.link.strip_prefix(SCHEME_PREFIX).or_else(|| b.link.strip_prefix(URL_LINK_PREFIX)).unwrap_or(&b.link);
    let mut st = lock(&s.links);
    let cap = st.limits.daily_visits;
    let Some(r) = st.links.get(t).cloned() else {
        return control_error(StatusCode::NOT_FOUND, "no such URL Scheme or URL Link", Some(85403));
    };
    if now.timestamp() >= r.expire_time {
        return control_error(StatusCode::GONE, "the link has expired", None);
    }
    if r.opened_by.as_deref().is_some_and(|u| u != b.user) {
        return control_error(
            StatusCode::FORBIDDEN,
            "the link was opened by another user; it opens for that user only",
            None,
        );
    }
    let daily = st.daily(&r.appid, now);
    if daily.visits >= cap {
        return control_error(StatusCode::TOO_MANY_REQUESTS, "daily visit limit", Some(85406));
    }
    daily.visits += 1;
    if let Some(rec) = st.links.get_mut(t) {
        rec.opened_by = Some(b.user);
    }
    axum::Json(serde_json::json!({
        "appid": r.appid, "path": r.path, "query": r.query, "env_version": r.env_version.as_str()
    }))
    .into_response()
}

async fn usage(State(s): State<Shared>, Query(q): Q) -> Response {
    let now = s.now();
    let appid = q.get("appid").cloned().unwrap_or_default();
    let mut st = lock(&s.links);
    let daily = *st.daily(&appid, now);
    axum::Json(serde_json::json!({
        "links_today": daily.links,
        "visits_today": daily.visits,
        "short_links_today": daily.short_links,
        "permanent_short_links": st.permanent_short_links.get(&appid).copied().unwrap_or(0),
        "limited_codes": st.limited_codes.get(&appid).copied().unwrap_or(0),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_day_rolls_at_beijing_midnight() {
        let t = DateTime::parse_from_rfc3339("2025-01-01T15:59:59Z").unwrap().with_timezone(&Utc);
        assert_eq!(china_day(t).to_string(), "2025-01-01");
        assert_eq!(china_day(t + Duration::seconds(1)).to_string(), "2025-01-02");
    }
}
