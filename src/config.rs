//! Configuration of a mini-program app and of the endpoints the client talks to.
//!
//! ```
//! use wxshop::config::{AppConfig, Endpoints};
//! let app = AppConfig::new("wx1234567890abcdef", "app-secret");
//! assert!(!format!("{app:?}").contains("app-secret"));
//! let ep = Endpoints::emulator("http://127.0.0.1:9000").unwrap();
//! assert_eq!(ep.mp.as_str(), "http://127.0.0.1:9000/");
//! ```

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::{Error, Result};

/// Which access-token endpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenMode {
    /// `POST /cgi-bin/stable_token` (default): the same token while valid, so several
    /// processes and tools never invalidate each other's token.
    #[default]
    Stable,
    /// Classic `GET /cgi-bin/token`: every fetch issues a new token and retires the previous one
    /// after about five minutes. Only for accounts that must keep it.
    Classic,
}

/// One mini-program: its appid and appsecret.
#[derive(Clone)]
pub struct AppConfig {
    /// The mini-program's appid (`wx…`).
    pub appid: String,
    /// The appsecret. Never printed.
    pub secret: SecretString,
    /// Which token endpoint to use.
    pub token_mode: TokenMode,
}

impl AppConfig {
    /// A mini-program with the stable-token default.
    pub fn new(appid: impl Into<String>, secret: impl Into<String>) -> Self {
        AppConfig { appid: appid.into(), secret: SecretString::from(secret.into()), token_mode: TokenMode::Stable }
    }

    /// Chooses the token endpoint.
    pub fn token_mode(mut self, mode: TokenMode) -> Self {
        self.token_mode = mode;
        self
    }

    /// Reads `WXSHOP_APPID` and `WXSHOP_SECRET`; `None` when either is unset.
    pub fn from_env() -> Option<Self> {
        let appid = std::env::var("WXSHOP_APPID").ok().filter(|s| !s.is_empty())?;
        let secret = std::env::var("WXSHOP_SECRET").ok().filter(|s| !s.is_empty())?;
        Some(AppConfig::new(appid, secret))
    }

    /// Checks that nothing required is empty.
    pub fn validate(&self) -> Result<()> {
        if self.appid.trim().is_empty() {
            return Err(Error::Config("AppConfig.appid is empty".into()));
        }
        if self.secret.expose_secret().is_empty() {
            return Err(Error::Config("AppConfig.secret is empty".into()));
        }
        Ok(())
    }
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("appid", &self.appid)
            .field("secret", &"[redacted]")
            .field("token_mode", &self.token_mode)
            .finish()
    }
}

/// The base URLs of WeChat's two API hosts. Point both at the emulator for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Mini-program server APIs (`https://api.weixin.qq.com`).
    pub mp: Url,
    /// WeChat Pay v3 (`https://api.mch.weixin.qq.com`).
    pub pay: Url,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            mp: Url::parse("https://api.weixin.qq.com/").expect("static url"),
            pay: Url::parse("https://api.mch.weixin.qq.com/").expect("static url"),
        }
    }
}

impl Endpoints {
    /// Both hosts served by one emulator at `base`.
    pub fn emulator(base: &str) -> Result<Self> {
        let url = parse_base(base)?;
        Ok(Endpoints { mp: url.clone(), pay: url })
    }

    /// Overrides the mini-program host.
    pub fn with_mp(mut self, base: &str) -> Result<Self> {
        self.mp = parse_base(base)?;
        Ok(self)
    }

    /// Overrides the WeChat Pay host.
    pub fn with_pay(mut self, base: &str) -> Result<Self> {
        self.pay = parse_base(base)?;
        Ok(self)
    }
}

fn parse_base(base: &str) -> Result<Url> {
    let mut url = Url::parse(base).map_err(|e| Error::Config(format!("invalid base URL {base:?}: {e}")))?;
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}
