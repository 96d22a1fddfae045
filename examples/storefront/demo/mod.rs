//! `--demo`: the buyer journey, run against this server, one printed step at a time.
//! The steps live apart from the routes they drive (one file per capability under `demo/`), so the
//! capability modules read as the template a merchant keeps; a new capability adds its steps to `STEPS`.

use std::future::Future;
use std::pin::Pin;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use wxshop::http::{Body, Host, Http, HttpConfig, Request};

use crate::AppState;

mod access;
mod compensation;
mod governance;
mod login;
mod market;
mod openapi;
mod pay;
mod push;
mod share;
mod shipping;
mod tenancy;

/// What every step gets: the server's address, the shared state, the buyer's session.
pub struct Demo {
    pub base: String,
    pub state: AppState,
    pub token: Option<String>,
    /// The URL Link the promoter shared (demo/share.rs).
    pub shared_link: Option<String>,
    /// The promoter id of the buyer who shared (demo/share.rs).
    pub promoter: Option<u64>,
    /// The promoter's openid: what the market attributes and WeChat Pay shares to (demo/share.rs).
    pub promoter_openid: Option<String>,
    /// The market order the referred friend paid (demo/share.rs, demo/shipping.rs).
    pub referred_order: Option<String>,
    /// The checkout group the market steps work on.
    pub group_id: Option<String>,
    /// The late-shipment penalty the governance steps appeal (demo/governance.rs).
    pub late_penalty: Option<String>,
    http: Http,
}

type StepFn = for<'a> fn(&'a mut Demo) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

macro_rules! step {
    ($name:literal, $f:path) => {
        ($name, |d| Box::pin($f(d)) as Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>)
    };
}

/// The journey, in order.
const STEPS: &[(&str, StepFn)] = &[
    step!("the API's OpenAPI 3.1 document and its page", openapi::demo_openapi),
    step!("log in with wx.login", login::demo_login),
    step!("bind a phone number", login::demo_phone),
    step!("configure and verify the push URL", push::demo_configure),
    step!("answer a customer message", push::demo_customer_message),
    step!("send a subscribe message", push::demo_subscribe),
    step!("a push signed long ago, and a replayed one, are refused", push::demo_replay),
    step!("share a product: URL Link + wxacode with a signed referral", share::demo_share),
    step!("a friend arrives through the link; the click is recorded in the market", share::demo_arrive),
    step!(
        "the friend checks out and pays in the cashier; the settlement names the promoter",
        share::demo_referred_purchase
    ),
    step!("the merchant ships with SF Express and corrects the waybill once", shipping::demo_ship_and_correct),
    step!(
        "the friend receives; the settled order shares the promoter's fee through WeChat Pay (分账)",
        share::demo_promoter_share
    ),
    step!("browse the catalog", market::demo_browse),
    step!("fill a cart from two merchants (guest cart merged at login)", market::demo_cart),
    step!("check out both merchants in one payment", market::demo_checkout),
    step!("pay (WeChat Pay notification, delivered twice)", market::demo_pay),
    step!("merchants ship, buyer confirms receipt", market::demo_ship_and_receive),
    step!("a merchant pays its deposit (保证金)", governance::demo_deposit),
    step!("a late shipment becomes a penalty and a deposit deduction", governance::demo_late_shipment),
    step!("the buyer confirms the compensation transfer (商家转账); it is paid", compensation::demo_compensation),
    step!("the merchant appeals; upheld, the deposit is restored", governance::demo_appeal),
    step!("a return becomes a refund", governance::demo_return),
    step!("a review, the merchant's reply, the score and the ledger audit", governance::demo_review_and_score),
    step!(
        "a settled order shares its commission and the promoter's fee through WeChat Pay (分账)",
        governance::demo_profit_sharing
    ),
    step!("merchant staff keys: issued, scoped, rotated, revoked", access::demo_keys),
    step!(
        "a wrong-amount notification is held for review; a refund made in the merchant platform is applied",
        pay::demo_anomalies
    ),
    step!(
        "every route of the route list, tried by another merchant, another buyer, a merchant on platform routes",
        tenancy::demo_cross_tenant
    ),
    step!("guessing merchant keys is throttled", access::demo_brute_force),
];

pub async fn run(base: &str, state: &AppState) -> bool {
    let http = Http::new(wxshop::Endpoints::default(), HttpConfig::default()).expect("HTTP client");
    let mut d = Demo {
        base: base.to_string(),
        state: state.clone(),
        token: None,
        shared_link: None,
        promoter: None,
        promoter_openid: None,
        referred_order: None,
        group_id: None,
        late_penalty: None,
        http,
    };
    println!("demo: the buyer journey against {base}");
    let mut ok = true;
    for (i, (name, f)) in STEPS.iter().enumerate() {
        match f(&mut d).await {
            Ok(detail) => println!("  [{}] {name} … ok: {detail}", i + 1),
            Err(e) => {
                println!("  [{}] {name} … FAILED: {e}", i + 1);
                ok = false;
                break;
            }
        }
    }
    println!("demo: {}", if ok { "all steps passed" } else { "failed" });
    ok
}

impl Demo {
    async fn send(
        &self,
        method: Method,
        url: String,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        self.send_as(method, url, body, self.token.as_deref()).await
    }

    async fn send_as(
        &self,
        method: Method,
        url: String,
        body: Option<serde_json::Value>,
        bearer: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        let mut req = Request::new(method, Host::Absolute, url);
        if let Some(b) = body {
            req = req.body(Body::json(&b).map_err(|e| e.to_string())?);
        }
        if let Some(t) = bearer {
            req = req.header(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())?);
        }
        let resp = self.http.execute(&req, None).await.map_err(|e| e.to_string())?;
        let json: serde_json::Value = if resp.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&resp.body).map_err(|e| format!("not JSON: {e}"))?
        };
        if resp.status >= 400 {
            return Err(format!("HTTP {}: {json}", resp.status));
        }
        Ok(json)
    }

    /// Any method on a storefront path with extra headers; `anonymous` leaves out the session token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&'static str, String)],
        anonymous: bool,
    ) -> Result<serde_json::Value, String> {
        let mut req = Request::new(method, Host::Absolute, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.body(Body::json(&b).map_err(|e| e.to_string())?);
        }
        if let (Some(t), false) = (&self.token, anonymous) {
            req = req.header(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {t}")).map_err(|e| e.to_string())?);
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            req = req.header(reqwest::header::HeaderName::from_static(name), value);
        }
        let resp = self.http.execute(&req, None).await.map_err(|e| e.to_string())?;
        let json: serde_json::Value = if resp.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&resp.body).map_err(|e| format!("not JSON: {e}"))?
        };
        if resp.status >= 400 {
            return Err(format!("HTTP {}: {json}", resp.status));
        }
        Ok(json)
    }

    /// GET a storefront page that is not JSON: its status and text.
    pub async fn get_page(&self, path: &str) -> Result<(u16, String), String> {
        let req = Request::new(Method::GET, Host::Absolute, format!("{}{path}", self.base));
        let resp = self.http.execute(&req, None).await.map_err(|e| e.to_string())?;
        Ok((resp.status, String::from_utf8_lossy(&resp.body).into_owned()))
    }

    /// GET a storefront path.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        self.send(Method::GET, format!("{}{path}", self.base), None).await
    }

    /// POST JSON to a storefront path.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        self.send(Method::POST, format!("{}{path}", self.base), Some(body)).await
    }

    /// The platform credential: the key issued at this (first) run, else `STOREFRONT_ADMIN_TOKEN`.
    pub fn admin_token(&self) -> String {
        self.state
            .access
            .first_run_admin_key
            .clone()
            .or_else(|| std::env::var("STOREFRONT_ADMIN_TOKEN").ok())
            .unwrap_or_default()
    }

    /// A seeded merchant's id and the owner key issued for it at this (first) run.
    pub fn merchant_key(&self, name: &str) -> Result<(String, String), String> {
        let market = &self.state.market;
        let id = market.seeded.iter().find(|(n, _)| n == name).map(|(_, id)| id.clone()).ok_or("not seeded")?;
        let key = market
            .issued_keys
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, k)| k.clone())
            .ok_or_else(|| format!("no key for {name} (keys are issued on the first run only)"))?;
        Ok((id, key))
    }

    /// GET a platform (`/admin/...`) path with the admin token.
    pub async fn admin_get(&self, path: &str) -> Result<serde_json::Value, String> {
        let token = self.admin_token();
        self.send_as(Method::GET, format!("{}{path}", self.base), None, Some(&token)).await
    }

    /// Signs in as another buyer (a fresh `wx.login` code) and continues as them.
    pub async fn sign_in(&mut self, user: &str) -> Result<String, String> {
        let code = self.emulator_login_code(user).await?;
        let r = self.post("/api/login", serde_json::json!({ "code": code })).await?;
        self.token = Some(r["session_token"].as_str().ok_or("no session_token")?.to_string());
        Ok(r["openid"].as_str().unwrap_or_default().to_string())
    }

    /// POST JSON to the emulator's control API (`/__emulator/...`).
    pub async fn emulator_post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let emu = self.state.emulator.as_ref().ok_or("the demo needs the in-process emulator (unset WXSHOP_APPID)")?;
        self.send(Method::POST, format!("{}{path}", emu.base_url()), Some(body)).await
    }

    /// A `wx.login` code for `user`, from the emulator.
    pub async fn emulator_login_code(&self, user: &str) -> Result<String, String> {
        let r = self
            .emulator_post("/__emulator/login", serde_json::json!({ "appid": self.state.client.appid(), "user": user }))
            .await?;
        r["code"].as_str().map(str::to_string).ok_or_else(|| "no code".to_string())
    }

    /// A getPhoneNumber code for `phone`, from the emulator.
    pub async fn emulator_phone_code(&self, phone: &str) -> Result<String, String> {
        let r = self
            .emulator_post(
                "/__emulator/phone_code",
                serde_json::json!({ "appid": self.state.client.appid(), "phone": phone }),
            )
            .await?;
        r["code"].as_str().map(str::to_string).ok_or_else(|| "no code".to_string())
    }
}
