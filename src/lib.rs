//! # wxshop
//!
//! WeChat mini-program storefronts in Rust: login, WeChat Pay v3, message push, share links,
//! shipping-info management, the primitives of a governed multi-merchant marketplace, and a local
//! WeChat emulator so that every flow runs offline.
//!
//! The map:
//! - [`http`]: the one HTTP executor (base URLs, retries, tracing, token injection).
//! - [`token`]: access tokens — providers, stores, single-flight and cross-process refresh.
//! - [`crypto`]: every signature and cipher WeChat uses.
//! - [`mp`]: mini-program server APIs ([`mp::Client`]).
//! - [`push`]: inbound message push (verification, decryption, typed messages).
//! - [`dedupe`]: processing each notification and push once (claim, complete, release).
//! - [`pay`]: WeChat Pay API v3.
//! - `market`: the marketplace (feature `market`).
//! - `emulator`: the local WeChat + WeChat Pay emulator (feature `emulator`).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

pub mod config;
pub mod crypto;
pub mod dedupe;
pub mod error;
pub mod http;
mod json;
pub mod mp;
pub mod pay;
pub mod push;
pub mod token;

#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "market")]
pub mod market;

pub use config::{AppConfig, Endpoints, TokenMode};
pub use error::{CryptoKind, ErrCode, Error, Result};
pub use mp::Client;
