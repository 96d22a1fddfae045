//! The storefront: the axum server merchants copy as the start of their own backend.
//!
//! `cargo run --example storefront` needs no configuration: it starts the wxshop emulator
//! in-process, points every client at it, and listens on 127.0.0.1:3000 (override with `PORT`).
//! With `WXSHOP_APPID` and `WXSHOP_SECRET` set it talks to real WeChat instead. Its SQLite database
//! lives in a data directory (`--data-dir DIR`, `STOREFRONT_DATA_DIR`, else the user's data directory).
//! `cargo run --example storefront -- --demo` runs the buyer journey against itself, prints each
//! step, and exits non-zero if any step fails.

mod access;
mod api;
mod compensation;
mod demo;
mod governance;
mod login;
mod market;
mod pay;
mod push;
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

/// The whole router: one `routes()` per capability module.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(access::routes())
        .merge(login::routes())
        .merge(share::routes())
        .merge(shipping::routes())
        .merge(pay::routes(&state))
        .merge(push::routes(&state))
        .merge(market::routes())
        .merge(governance::routes())
        .merge(compensation::routes())
        .with_state(state)
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
