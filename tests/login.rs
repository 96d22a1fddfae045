//! Mini-program login against the emulator.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use wxshop::emulator::{DEFAULT_APPID, Emulator};
use wxshop::mp::session::{MemorySessionStore, SessionToken, Sessions};
use wxshop::{AppConfig, Client, ErrCode};

#[tokio::test]
async fn code2session_returns_the_users_openid_and_a_16_byte_session_key() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let code = emu.login_code(DEFAULT_APPID, "alice").await.unwrap();
    let s = client.auth().code2session(&code).await.unwrap();
    assert_eq!(s.openid, emu.openid_of(DEFAULT_APPID, "alice"));
    assert_eq!(s.openid.len(), 28);
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(s.session_key.expose_secret()).unwrap();
    assert_eq!(key.len(), 16);
    assert!(s.unionid.is_some());
}

#[tokio::test]
async fn a_code_is_single_use() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let code = emu.login_code(DEFAULT_APPID, "alice").await.unwrap();
    client.auth().code2session(&code).await.unwrap();
    let err = client.auth().code2session(&code).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::CodeUsed));
}

#[tokio::test]
async fn an_unknown_or_expired_code_is_40029() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let err = client.auth().code2session("not-a-code").await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidCode));
    let code = emu.login_code(DEFAULT_APPID, "alice").await.unwrap();
    emu.state().advance(std::time::Duration::from_secs(301));
    let err = client.auth().code2session(&code).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidCode));
}

#[tokio::test]
async fn a_wrong_appid_is_40013() {
    let emu = Emulator::start_default().await.unwrap();
    let client = Client::builder(AppConfig::new("wx_nobody", "x")).endpoints(emu.endpoints()).build().unwrap();
    let err = client.auth().code2session("c").await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidAppid));
}

#[tokio::test]
async fn check_and_reset_session_key() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let code = emu.login_code(DEFAULT_APPID, "carol").await.unwrap();
    let s = client.auth().code2session(&code).await.unwrap();
    client.auth().check_session_key(&s.openid, &s.session_key).await.unwrap();
    let wrong = SecretString::from("AAAAAAAAAAAAAAAAAAAAAA==".to_string());
    let err = client.auth().check_session_key(&s.openid, &wrong).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidSignature));
    let reset = client.auth().reset_session_key(&s.openid, &s.session_key).await.unwrap();
    assert_ne!(reset.session_key.expose_secret(), s.session_key.expose_secret());
    // The old key is no longer the current one.
    let err = client.auth().check_session_key(&s.openid, &s.session_key).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidSignature));
    client.auth().check_session_key(&s.openid, &reset.session_key).await.unwrap();
}

#[tokio::test]
async fn phone_number_codes_are_exchanged_once() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let code = emu.phone_code(DEFAULT_APPID, "+8613800138000").unwrap();
    let p = client.auth().phone_number(&code).await.unwrap();
    assert_eq!(p.phone_number, "13800138000");
    assert_eq!(p.pure_phone_number, "13800138000");
    assert_eq!(p.country_code, "86");
    assert_eq!(p.watermark.as_ref().map(|w| w.appid.as_str()), Some(DEFAULT_APPID));
    let err = client.auth().phone_number(&code).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidCode));
}

#[tokio::test]
async fn login_sessions_map_an_opaque_token_to_the_user() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let sessions = Sessions::new(client, Arc::new(MemorySessionStore::default()));
    let code = emu.login_code(DEFAULT_APPID, "dave").await.unwrap();
    let (token, session) = sessions.login(&code).await.unwrap();
    // 256 random bits, base64url without padding.
    assert_eq!(token.expose().len(), 43);
    assert_ne!(token.expose(), session.session_key.expose_secret());
    let found = sessions.get(token.expose()).await.unwrap().unwrap();
    assert_eq!(found.openid, emu.openid_of(DEFAULT_APPID, "dave"));
    assert!(sessions.get("forged-token").await.unwrap().is_none());
    sessions.logout(token.expose()).await.unwrap();
    assert!(sessions.get(token.expose()).await.unwrap().is_none());
    assert_eq!(SessionToken::store_key("abc").len(), 64);
}

#[tokio::test]
async fn expired_sessions_are_gone() {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let sessions =
        Sessions::new(client, Arc::new(MemorySessionStore::default())).ttl(std::time::Duration::from_millis(1));
    let code = emu.login_code(DEFAULT_APPID, "erin").await.unwrap();
    let (token, _) = sessions.login(&code).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(sessions.get(token.expose()).await.unwrap().is_none());
}
