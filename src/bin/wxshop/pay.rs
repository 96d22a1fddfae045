//! `wxshop pay …` (WeChat Pay v3 signatures and decryption) and `wxshop trigger …` (a signed test
//! notification to a local webhook).

use clap::{ArgGroup, Subcommand, ValueEnum};
use wxshop::crypto::pay::{self as paycrypto, ApiV3Key, MerchantKey, PayPublicKey, PlatformCertificate};
use wxshop::pay::keys::{SignatureHeaders, Verifier};

use crate::{Rejected, print_out, stdin_bytes, stdin_text};

#[derive(Subcommand)]
pub enum PayCommand {
    /// Signs a request: prints the whole Authorization header value; stdin is the body.
    Sign {
        /// The merchant number.
        #[arg(long)]
        mchid: String,
        /// The merchant API certificate serial.
        #[arg(long)]
        serial: String,
        /// The merchant private key file (apiclient_key.pem, PKCS#8).
        #[arg(long)]
        key: String,
        /// GET, POST, …
        #[arg(long)]
        method: String,
        /// The path and query ('/v3/path?query').
        #[arg(long)]
        url: String,
        /// Unix seconds.
        #[arg(long)]
        timestamp: String,
        /// The nonce.
        #[arg(long)]
        nonce: String,
    },
    /// Prints the paySign of wx.requestPayment.
    PaySign {
        /// The appid.
        #[arg(long)]
        appid: String,
        /// timeStamp.
        #[arg(long)]
        timestamp: String,
        /// nonceStr.
        #[arg(long)]
        nonce: String,
        /// package ('prepay_id=…').
        #[arg(long)]
        package: String,
        /// The merchant private key file.
        #[arg(long)]
        key: String,
    },
    /// Verifies a notification (raw body on stdin) and prints the decrypted resource.
    #[command(group(ArgGroup::new("verifying_key").required(true).args(["public_key", "cert"])))]
    VerifyNotify {
        /// The WeChat Pay public key file (pub_key.pem).
        #[arg(long, requires = "public_key_id")]
        public_key: Option<String>,
        /// Its id (PUB_KEY_ID_…).
        #[arg(long, requires = "public_key")]
        public_key_id: Option<String>,
        /// A platform certificate file.
        #[arg(long)]
        cert: Option<String>,
        /// The APIv3 key.
        #[arg(long)]
        apiv3_key: String,
        /// Wechatpay-Timestamp.
        #[arg(long)]
        timestamp: String,
        /// Wechatpay-Nonce.
        #[arg(long)]
        nonce: String,
        /// Wechatpay-Signature.
        #[arg(long)]
        signature: String,
        /// Wechatpay-Serial.
        #[arg(long)]
        serial: String,
        /// Wechatpay-Signature-Type.
        #[arg(long, default_value = paycrypto::SCHEME)]
        signature_type: String,
        /// The current time (unix seconds) for the 300 s window; default: the system clock.
        #[arg(long)]
        now: Option<i64>,
    },
    /// Decrypts an RSA-OAEP (SHA-1) base64 field from stdin with the merchant key.
    DecryptField {
        /// The merchant private key file.
        #[arg(long)]
        key: String,
    },
}

/// The events `wxshop trigger` can send.
#[derive(Clone, Copy, ValueEnum)]
pub enum TriggerEvent {
    /// TRANSACTION.SUCCESS.
    #[value(name = "payment.success")]
    PaymentSuccess,
    /// REFUND.SUCCESS.
    #[value(name = "refund.success")]
    RefundSuccess,
}

fn read_file(path: &str) -> Result<String, Rejected> {
    std::fs::read_to_string(path).map_err(|e| Rejected(format!("cannot read {path}: {e}")))
}

fn merchant_key(path: &str) -> Result<MerchantKey, Rejected> {
    Ok(MerchantKey::from_pem(&read_file(path)?)?)
}

pub fn run(cmd: PayCommand) -> Result<(), Rejected> {
    match cmd {
        PayCommand::Sign { mchid, serial, key, method, url, timestamp, nonce } => {
            let key = merchant_key(&key)?;
            let body = stdin_bytes()?;
            let header = paycrypto::sign_request(&key, &mchid, &serial, &method, &url, &timestamp, &nonce, &body)?;
            print_out(header.as_bytes())
        }
        PayCommand::PaySign { appid, timestamp, nonce, package, key } => {
            let key = merchant_key(&key)?;
            print_out(key.sign(&paycrypto::pay_sign_message(&appid, &timestamp, &nonce, &package))?.as_bytes())
        }
        PayCommand::VerifyNotify {
            public_key,
            public_key_id,
            cert,
            apiv3_key,
            timestamp,
            nonce,
            signature,
            serial,
            signature_type,
            now,
        } => {
            let apiv3 = ApiV3Key::new(&apiv3_key)?;
            let now = now.unwrap_or_else(|| chrono::Utc::now().timestamp());
            let verifier = Verifier::new();
            if let (Some(path), Some(id)) = (public_key, public_key_id) {
                verifier.add_public_key(id, PayPublicKey::from_pem(&read_file(&path)?)?);
            }
            let mut cert_hint = String::new();
            if let Some(path) = cert {
                let c = PlatformCertificate::from_pem(&read_file(&path)?)?;
                if c.looks_like_merchant_certificate() {
                    cert_hint = format!(
                        " (the certificate given, {} with subject {}, looks like a merchant API certificate — pass a platform certificate or the WeChat Pay public key)",
                        c.serial_no(),
                        c.subject()
                    );
                }
                let at = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
                verifier.add_certificates([c], at - chrono::Duration::seconds(1));
            }
            let body = stdin_bytes()?;
            let headers = SignatureHeaders {
                serial: &serial,
                signature: &signature,
                timestamp: &timestamp,
                nonce: &nonce,
                signature_type: Some(&signature_type),
            };
            verifier.verify(&headers, &body, now).map_err(|e| Rejected(format!("{e}{cert_hint}")))?;
            let plain = wxshop::pay::notify::decrypt_resource(&apiv3, &body)?;
            print_out(&plain)
        }
        PayCommand::DecryptField { key } => {
            let key = merchant_key(&key)?;
            let ct = stdin_text()?;
            print_out(key.decrypt_oaep(&ct)?.as_bytes())
        }
    }
}

/// `wxshop trigger EVENT --to URL [--out-trade-no NO]`.
pub fn trigger(event: TriggerEvent, to: &str, out_trade_no: Option<String>) -> Result<(), Rejected> {
    use wxshop::emulator::DEFAULT_APPID;
    use wxshop::emulator::pay::DEFAULT_MCHID;
    let no = out_trade_no.unwrap_or_else(|| format!("TRIGGER{}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    let now = chrono::Utc::now();
    let txn = format!("42000{}{:011}", now.format("%Y%m%d"), rand_digits());
    let (event_type, resource) = match event {
        TriggerEvent::PaymentSuccess => (
            "TRANSACTION.SUCCESS",
            serde_json::json!({
                "appid": DEFAULT_APPID, "mchid": DEFAULT_MCHID, "out_trade_no": no, "transaction_id": txn,
                "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                "attach": "", "success_time": wxshop::pay::transactions::wechat_time(now),
                "payer": { "openid": "o_trigger_openid" },
                "amount": { "total": 1, "payer_total": 1, "currency": "CNY", "payer_currency": "CNY" },
            }),
        ),
        TriggerEvent::RefundSuccess => (
            "REFUND.SUCCESS",
            serde_json::json!({
                "mchid": DEFAULT_MCHID, "out_trade_no": no, "transaction_id": txn,
                "out_refund_no": format!("R{no}"), "refund_id": format!("50300{}", rand_digits()),
                "refund_status": "SUCCESS", "success_time": wxshop::pay::transactions::wechat_time(now),
                "user_received_account": "支付用户零钱",
                "amount": { "total": 1, "refund": 1, "payer_total": 1, "payer_refund": 1 },
            }),
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = rt.block_on(wxshop::emulator::pay::trigger(to, event_type, &resource))?;
    if (200..300).contains(&status) {
        print_out(format!("{event_type} {no} → HTTP {status}").as_bytes())
    } else {
        Err(Rejected(format!("{to} answered HTTP {status} to {event_type} {no}")))
    }
}

fn rand_digits() -> u64 {
    rand::random::<u64>() % 100_000_000_000
}
