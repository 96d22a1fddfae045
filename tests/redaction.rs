//! Secrets never print: Debug of every config, token and session type.

use secrecy::SecretString;
use wxshop::AppConfig;
use wxshop::mp::session::{LoginSession, SessionToken};
use wxshop::token::AccessToken;

const SECRET: &str = "S3CRET-VALUE-123";

#[test]
fn app_config_debug_hides_the_secret() {
    let dbg = format!("{:?}", AppConfig::new("wxappid", SECRET));
    assert!(!dbg.contains(SECRET), "{dbg}");
    assert!(dbg.contains("wxappid"));
}

#[test]
fn access_token_debug_hides_the_value() {
    let dbg = format!("{:?}", AccessToken::new(SECRET, std::time::Duration::from_secs(60)));
    assert!(!dbg.contains(SECRET), "{dbg}");
}

#[test]
fn session_types_hide_session_key_and_token() {
    let s = LoginSession {
        openid: "o1".into(),
        unionid: None,
        session_key: SecretString::from(SECRET.to_string()),
        expires_at: chrono::Utc::now(),
    };
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(SECRET), "{dbg}");
    let t = SessionToken::generate();
    assert!(!format!("{t:?}").contains(t.expose()));
}

#[tokio::test]
async fn client_and_code2session_debug_hide_secrets() {
    let emu = wxshop::emulator::Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    let dbg = format!("{client:?}");
    assert!(!dbg.contains(wxshop::emulator::DEFAULT_SECRET), "{dbg}");
    let code = emu.login_code(wxshop::emulator::DEFAULT_APPID, "x").await.unwrap();
    let s = client.auth().code2session(&code).await.unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(secrecy::ExposeSecret::expose_secret(&s.session_key)), "{dbg}");
    let token = client.access_token().await.unwrap();
    assert!(!format!("{token:?}").contains(secrecy::ExposeSecret::expose_secret(&token)));
}

#[test]
fn pay_keys_and_config_debug_hide_key_material() {
    use wxshop::crypto::pay::{ApiV3Key, MerchantKey};
    use wxshop::emulator::pay::{DEFAULT_APIV3_KEY, DEFAULT_MERCHANT_KEY_PEM, default_pay_config};
    let key = MerchantKey::from_pem(DEFAULT_MERCHANT_KEY_PEM).unwrap();
    let dbg = format!("{key:?}");
    assert!(!dbg.contains("PRIVATE KEY") && !dbg.contains(&DEFAULT_MERCHANT_KEY_PEM[40..80]), "{dbg}");
    let v3 = ApiV3Key::new(DEFAULT_APIV3_KEY).unwrap();
    assert!(!format!("{v3:?}").contains(DEFAULT_APIV3_KEY));
    let cfg = default_pay_config().unwrap();
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains(DEFAULT_APIV3_KEY) && !dbg.contains(&DEFAULT_MERCHANT_KEY_PEM[40..80]), "{dbg}");
}

#[test]
fn push_crypto_debug_hides_token_and_aes_key() {
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let v = wxshop::push::Verifier::with_aes_key(SECRET, AES_KEY, "wxappid").unwrap();
    let dbg = format!("{v:?}");
    assert!(!dbg.contains(SECRET) && !dbg.contains(AES_KEY), "{dbg}");
    let m = wxshop::crypto::msgcrypt::MsgCrypt::new(SECRET, AES_KEY, "wxappid").unwrap();
    let dbg = format!("{m:?}");
    assert!(!dbg.contains(SECRET) && !dbg.contains(AES_KEY), "{dbg}");
}

#[test]
fn referral_key_debug_hides_the_secret() {
    let k = wxshop::mp::referral::ReferralKey::new(SECRET.repeat(2)).unwrap();
    assert!(!format!("{k:?}").contains(SECRET));
}
