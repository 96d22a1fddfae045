//! The storefront: the axum server merchants copy as the start of their own backend.
//!
//! `cargo run --example storefront` needs no configuration: it starts the wxshop emulator
//! in-process, points every client at it, and listens on 127.0.0.1:3000 (override with `PORT`).
//! With `WXSHOP_APPID` and `WXSHOP_SECRET` set it talks to real WeChat instead. Its SQLite database
//! lives in a data directory (`--data-dir DIR`, `STOREFRONT_DATA_DIR`, else the user's data directory).
//! `cargo run --example storefront -- --demo` runs the buyer journey against itself, prints each
//! step, and exits non-zero if any step fails. `GET /openapi.json` is the OpenAPI 3.1 document of every
//! route (`routes.rs`: each route is declared once, for the router and the document), `GET /docs` a page
//! of it.

mod access;
mod api;
mod compensation;
mod demo;
mod governance;
mod login;
mod market;
mod pay;
mod push;
mod routes;
mod share;
mod shipping;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use wxshop::emulator::{Emulator, EmulatorHandle};
use wxshop::mp::session::{MemorySessionStore, SessionStore, Sessions};
use wxshop::{AppConfig, Client};

/// Everything the handlers share. Add your capability's clients and stores here.
#[derive(Clone)]
pub struct AppState {
    /// The mini-program client.
    pub client: Client,
    /// Login sessions.
    pub sessions: Sessions,
    /// The in-process emulator when running without WeChat credentials.
    pub emulator: Option<Arc<EmulatorHandle>>,
    /// Example-level profile data (phone numbers by openid).
    pub profiles: Arc<login::Profiles>,
    /// The marketplace.
    pub market: market::MarketState,
    /// Referral key and the share cache (promoter ids and attribution are the market's).
    pub share: Arc<share::ShareState>,
    /// Credentials: the failure throttle, the bootstrap admin token, the first run's platform key.
    pub access: Arc<access::Access>,
    /// The WeChat Pay client (`None` when not configured).
    pub pay: Option<wxshop::pay::PayClient>,
    /// What the push callback learned: customer messages, consents, content-check verdicts.
    pub inbox: Arc<push::Inbox>,
}

/// What several instances share: access tokens and login sessions in Redis when `REDIS_URL` is set
/// (keys under `REDIS_PREFIX`, default `wxshop:`), this process's memory otherwise.
struct Shared {
    sessions: Arc<dyn SessionStore>,
    #[cfg(feature = "redis")]
    tokens: Option<(Arc<wxshop::token::RedisTokenStore>, String)>,
}

impl Shared {
    async fn from_env() -> wxshop::Result<Self> {
        let url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
        #[cfg(feature = "redis")]
        if let Some(url) = url {
            let prefix = std::env::var("REDIS_PREFIX").unwrap_or_else(|_| "wxshop:".into());
            println!("sharing access tokens and sessions through Redis (prefix {prefix})");
            let sessions = wxshop::mp::session::RedisSessionStore::connect(&url, &format!("{prefix}session:")).await?;
            let tokens = wxshop::token::RedisTokenStore::connect(&url).await?;
            return Ok(Shared {
                sessions: Arc::new(sessions),
                tokens: Some((Arc::new(tokens), format!("{prefix}access_token:"))),
            });
        }
        #[cfg(not(feature = "redis"))]
        if url.is_some() {
            return Err(wxshop::Error::Config(
                "REDIS_URL is set but the storefront was built without the `redis` feature: add --features redis"
                    .into(),
            ));
        }
        Ok(Shared {
            sessions: Arc::new(MemorySessionStore::default()),
            #[cfg(feature = "redis")]
            tokens: None,
        })
    }

    /// Puts the shared token store (if any) on a client builder.
    fn client(&self, b: wxshop::mp::ClientBuilder) -> wxshop::mp::ClientBuilder {
        #[cfg(feature = "redis")]
        if let Some((store, prefix)) = &self.tokens {
            let config = wxshop::token::TokenManagerConfig { key_prefix: prefix.clone(), ..Default::default() };
            return b.token_store(store.clone()).token_config(config);
        }
        b
    }
}

/// Every route: one `routes()` per capability module, then `GET /openapi.json` (their OpenAPI 3.1
/// document, generated from these same declarations) and `GET /docs`.
pub fn routes(state: &AppState) -> (Router<AppState>, Vec<routes::RouteDoc>) {
    routes::Routes::new("storefront")
        .merge(access::routes())
        .merge(login::routes())
        .merge(share::routes())
        .merge(shipping::routes())
        .merge(pay::routes(state))
        .merge(push::routes(state))
        .merge(market::routes())
        .merge(governance::routes())
        .merge(compensation::routes())
        .with_openapi()
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    routes(&state).0.with_state(state)
}

async fn build_state(demo_mode: bool) -> wxshop::Result<AppState> {
    let shared = Shared::from_env().await?;
    let (client, emulator, pay) = match AppConfig::from_env() {
        Some(app) => {
            println!("using real WeChat for appid {}", app.appid);
            (shared.client(Client::builder(app)).build()?, None, pay::pay_client(None)?)
        }
        None => match std::env::var("WXSHOP_EMULATOR_URL") {
            // Several instances share one emulator (and so one WeChat): the script in scripts/ does this.
            Ok(url) if !url.is_empty() => {
                println!("using the emulator at {url}");
                let endpoints = wxshop::config::Endpoints::emulator(&url)?;
                let app = AppConfig::new(wxshop::emulator::DEFAULT_APPID, wxshop::emulator::DEFAULT_SECRET);
                let client = shared.client(Client::builder(app).endpoints(endpoints.clone())).build()?;
                let pay = wxshop::pay::PayClient::builder(wxshop::emulator::pay::default_pay_config()?)
                    .endpoints(endpoints)
                    .build()?;
                (client, None, Some(pay))
            }
            _ => {
                let emu = Emulator::start_default().await?;
                println!("no WXSHOP_APPID/WXSHOP_SECRET: using the in-process emulator at {}", emu.base_url());
                let app = AppConfig::new(wxshop::emulator::DEFAULT_APPID, wxshop::emulator::DEFAULT_SECRET);
                let client = shared.client(Client::builder(app).endpoints(emu.endpoints())).build()?;
                let pay = pay::pay_client(Some(&emu))?;
                (client, Some(Arc::new(emu)), pay)
            }
        },
    };
    let sessions = Sessions::new(client.clone(), shared.sessions.clone());
    let market = market::build(demo_mode, &client, pay.clone()).await?;
    share::apply_attribution_env(&market.market).await?;

    let first_run_admin_key = access::first_run(&market.market).await?;
    Ok(AppState {
        client,
        sessions,
        emulator,
        profiles: Arc::default(),
        share: Arc::new(share::ShareState::from_env()?),
        access: Arc::new(access::Access::from_env(first_run_admin_key)),
        pay,
        inbox: Arc::default(),
        market,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let demo_mode = std::env::args().any(|a| a == "--demo");
    let default_filter = if demo_mode { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    match run(demo_mode).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("storefront failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(demo_mode: bool) -> wxshop::Result<std::process::ExitCode> {
    let state = build_state(demo_mode).await?;
    let port: u16 = if demo_mode { 0 } else { std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000) };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|e| wxshop::Error::Config(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| wxshop::Error::Config(e.to_string()))?;
    let app = router(state.clone());
    // The peer address keys the credential throttle.
    let server =
        tokio::spawn(
            async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await },
        );
    let base = format!("http://{addr}");
    state.market.serving_at(&base);
    if demo_mode {
        let ok = demo::run(&base, &state).await;
        server.abort();
        state.market.shutdown().await;
        return Ok(if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE });
    }
    println!("storefront listening on {base}");
    if let Some(emu) = &state.emulator {
        println!("try it:");
        println!(
            "  code=$(curl -s -XPOST {}/__emulator/login -H 'content-type: application/json' -d '{{\"appid\":\"{}\",\"user\":\"alice\"}}' | sed 's/.*\"code\":\"\\([^\"]*\\)\".*/\\1/')",
            emu.base_url(),
            wxshop::emulator::DEFAULT_APPID
        );
        println!(
            "  curl -s -XPOST {base}/api/login -H 'content-type: application/json' -d \"{{\\\"code\\\":\\\"$code\\\"}}\""
        );
        println!("  curl -s {base}/api/me -H 'authorization: Bearer <session_token>'");
        println!(
            "  curl -s '{base}/api/share?product=42' -H 'authorization: Bearer <session_token>' | jq -r .wxacode_png_base64 | base64 -d > code.png"
        );
        println!(
            "  platform routes (/admin/...) take: authorization: Bearer <the platform key shown at the first run>"
        );
        println!("or run the whole buyer journey: cargo run --example storefront -- --demo");
    }
    let _ = tokio::signal::ctrl_c().await;
    server.abort();
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    /// The demo's state: in-process emulator, in-memory market (or the `DATABASE_URL` one, in a demo schema).
    async fn state() -> AppState {
        build_state(true).await.expect("the storefront's state")
    }

    /// Every (method, path) the document lists.
    fn operations(doc: &Value) -> Vec<(String, String)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for m in ["get", "put", "post", "delete", "patch", "head", "options", "trace"] {
                if item[m].is_object() {
                    ops.push((m.to_string(), path.clone()));
                }
            }
        }
        ops
    }

    #[tokio::test]
    async fn every_registered_route_is_in_the_openapi_document() {
        let state = state().await;
        let (_, docs) = routes(&state);
        let doc = serde_json::to_value(routes::openapi(&docs)).expect("the document as JSON");

        assert!(doc["openapi"].as_str().expect("openapi").starts_with("3.1"), "openapi is {}", doc["openapi"]);
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        for r in &docs {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{} {} is missing from the document", r.method, r.path);
            assert_eq!(op["summary"], r.doc.summary, "{} {}", r.method, r.path);
            assert_eq!(op["tags"][0], r.tag, "{} {}", r.method, r.path);
            assert_eq!(op["responses"]["4XX"]["$ref"], "#/components/responses/Error", "{} {}", r.method, r.path);
            for name in r.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                let listed = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(listed, "{} {}: path parameter {name} is not documented", r.method, r.path);
            }
            let security = op["security"].as_array().map_or(0, Vec::len);
            assert_eq!(
                security == 0,
                r.doc.auth == routes::Auth::Public,
                "{} {}: security {}",
                r.method,
                r.path,
                op["security"]
            );
        }
        let mut registered: Vec<(String, String)> =
            docs.iter().map(|r| (r.method.as_str().to_lowercase(), r.path.to_string())).collect();
        registered.sort();
        let mut listed = operations(&doc);
        listed.sort();
        assert_eq!(listed.len(), docs.len(), "operations in the document vs registered routes");
        assert_eq!(listed, registered);
        // The routes that depend on configuration are on in the demo's state, so they are covered too.
        for (m, p) in [("post", "/wx/pay/notify"), ("get", "/wx/push"), ("post", "/wx/push"), ("post", "/api/checkout")]
        {
            assert!(listed.contains(&(m.to_string(), p.to_string())), "{m} {p} is not documented");
        }
        for scheme in ["buyer", "guest_cart", "merchant", "platform", "wechat_push", "wechat_pay"] {
            assert!(doc["components"]["securitySchemes"][scheme].is_object(), "security scheme {scheme}");
        }
        assert_eq!(doc["components"]["schemas"]["Error"]["required"], serde_json::json!(["error", "kind", "code"]));
        state.market.shutdown().await;
    }

    #[tokio::test]
    async fn the_router_serves_the_document_and_answers_every_documented_operation() {
        let state = state().await;
        let (router, docs) = routes(&state);
        let app = router.with_state(state.clone());
        let call = |method: Method, uri: String| {
            let app = app.clone();
            async move {
                let resp = app
                    .oneshot(Request::builder().method(method).uri(uri).body(Body::empty()).expect("a request"))
                    .await
                    .expect("infallible");
                let status = resp.status();
                (status, to_bytes(resp.into_body(), usize::MAX).await.expect("the body"))
            }
        };

        let (status, body) = call(Method::GET, "/openapi.json".into()).await;
        assert_eq!(status, StatusCode::OK);
        let served: Value = serde_json::from_slice(&body).expect("/openapi.json is JSON");
        assert_eq!(served, serde_json::to_value(routes::openapi(&docs)).expect("JSON"));
        assert!(served["paths"]["/api/checkout"]["post"].is_object());
        let (status, page) = call(Method::GET, "/docs".into()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&page).contains("fetch('/openapi.json')"));

        // A path the router does not have answers its own empty 404, and a method it does not route 405.
        let (status, body) = call(Method::GET, "/api/no-such-route".into()).await;
        assert_eq!((status, body.is_empty()), (StatusCode::NOT_FOUND, true));
        let (status, _) = call(Method::PATCH, "/api/checkout".into()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        // So every documented operation is routed: no 405, no empty 404 (a handler's 404 is the error shape).
        // Without credentials or a body each stops at its extractors (or finds nothing).
        for r in &docs {
            let uri: String =
                r.path.split('/').map(|s| if s.starts_with('{') { "1" } else { s }).collect::<Vec<_>>().join("/");
            let (status, body) = call(r.method.clone(), uri).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{} {} is documented but not routed", r.method, r.path);
            assert!(
                !(status == StatusCode::NOT_FOUND && body.is_empty()),
                "{} {} is documented but not routed",
                r.method,
                r.path
            );
        }
        state.market.shutdown().await;
    }
}
