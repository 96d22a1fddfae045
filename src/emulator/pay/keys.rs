//! Platform keys: the self-signed platform certificates the emulator issues and rotates, and
//! `GET /v3/certificates` (mirrors `crate::pay::keys`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::extract::{Authed, PayError, reply_with};
use super::{PlatformCert, SignMode};
use crate::crypto::pay::{MerchantKey, PlatformCertificate};
use crate::emulator::{EmulatorState, Shared, lock};
use crate::error::{Error, Result};
use crate::pay::EncryptedResource;
use crate::pay::transactions::wechat_time;

pub(super) fn static_key(pem: &str) -> Arc<MerchantKey> {
    Arc::new(MerchantKey::from_pem(pem).expect("the emulator's built-in keys are valid"))
}

/// Issues a self-signed platform certificate for `key` valid from `now − 1 day` for 5 years.
pub(super) fn issue_certificate(key: &MerchantKey, now: DateTime<Utc>, serial: &[u8]) -> Result<PlatformCertificate> {
    issue_certificate_valid(key, now - chrono::Duration::days(1), now + chrono::Duration::days(5 * 365), serial)
}

pub(super) fn issue_certificate_valid(
    key: &MerchantKey,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    serial: &[u8],
) -> Result<PlatformCertificate> {
    let rc_key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key.to_pkcs8_pem(), &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| Error::Config(format!("emulator certificate key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Config(format!("emulator certificate: {e}")))?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let start = not_before.timestamp().max(0) as u64;
    let end = not_after.timestamp().max(0) as u64;
    params.not_before = epoch + Duration::from_secs(start);
    params.not_after = epoch + Duration::from_secs(end);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "wxshop emulator");
    dn.push(rcgen::DnType::CommonName, "WeChat Pay Emulator Platform Certificate");
    params.distinguished_name = dn;
    let cert = params.self_signed(&rc_key).map_err(|e| Error::Config(format!("emulator certificate: {e}")))?;
    PlatformCertificate::from_der(cert.der())
}

/// A 20-byte serial whose hex form has no leading zero (so every SDK prints it the same way).
pub(super) fn serial_bytes(seed: &[u8]) -> [u8; 20] {
    let mut s = crate::crypto::sig::sha1(seed);
    s[0] = 0x40 | (s[0] & 0x3F);
    s
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v3/certificates", get(certificates))
}

pub(super) async fn certificates(State(s): State<Shared>, m: Authed) -> Result<Response, PayError> {
    let Authed { mchid, what, .. } = m;
    let (mode, apiv3, certs) = {
        let p = lock(&s.pay);
        let apiv3 = p.merchants.get(&mchid).map(|m| m.apiv3.clone());
        (p.mode, apiv3, p.certs.iter().map(|c| c.cert.clone()).collect::<Vec<_>>())
    };
    if mode == SignMode::PublicKey {
        return Err(PayError::new(
            404,
            "RESOURCE_NOT_EXISTS",
            "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥",
        ));
    }
    let Some(apiv3) = apiv3 else { return Err(PayError::new(500, "SYSTEM_ERROR", "merchant vanished")) };
    let now = s.now();
    let mut data = Vec::new();
    for c in certs.iter().filter(|c| c.not_after() > now) {
        let Ok(enc) = EncryptedResource::encrypt(&apiv3, "certificate", None, c.pem().as_bytes()) else {
            return Err(PayError::new(500, "SYSTEM_ERROR", "encryption failed"));
        };
        data.push(json!({
            "serial_no": c.serial_no(),
            "effective_time": wechat_time(c.not_before()),
            "expire_time": wechat_time(c.not_after()),
            "encrypt_certificate": enc,
        }));
    }
    s.bump("pay.certificates");
    // The certificate list is signed with a platform certificate, whatever the mode.
    Ok(reply_with(&s, &what, 200, Some(json!({ "data": data })), true))
}

pub(super) fn rotate(s: &EmulatorState) -> Result<String> {
    let key = MerchantKey::generate()?;
    let now = s.now();
    let seed = format!("rotation {} {}", now.timestamp_nanos_opt().unwrap_or_default(), rand::random::<u64>());
    let cert = issue_certificate(&key, now, &serial_bytes(seed.as_bytes()))?;
    let serial = cert.serial_no().to_string();
    let mut p = lock(&s.pay);
    p.certs.push(PlatformCert { key: Arc::new(key), cert });
    p.push_log(now, "control", "rotate platform certificate".into(), 200, serial.clone());
    Ok(serial)
}
