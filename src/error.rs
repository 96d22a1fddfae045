//! The one public error type of the crate, and WeChat's errcodes as a typed enum.
//!
//! Mini-program APIs answer `{errcode, errmsg, rid?}`; they become [`Error::Api`] with a typed
//! [`ErrCode`]. WeChat Pay v3 answers an HTTP status plus `{code, message, detail}`; that becomes
//! [`Error::PayApi`]. Everything else (transport, decoding, crypto, signatures, configuration,
//! storage) has its own variant, so a caller can act on what went wrong.
//!
//! ```
//! use wxshop::{ErrCode, Error};
//! let err = Error::api(40125, "invalid appsecret", None);
//! assert_eq!(err.errcode(), Some(ErrCode::InvalidAppSecret));
//! assert!(err.to_string().contains("check AppConfig.secret"));
//! ```

use std::fmt;

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

errcodes! {
    /// -1: system busy.
    SystemBusy = -1 => "WeChat is busy — retry with backoff",
    /// 40001: the access_token is invalid or not the latest.
    InvalidCredential = 40001 => "the access_token is invalid or was replaced — refresh it (use stable_token in clusters)",
    /// 40002: invalid grant_type.
    InvalidGrantType = 40002 => "the grant_type is wrong",
    /// 40003: invalid openid.
    InvalidOpenid = 40003 => "the openid is not valid for this appid",
    /// 40004: invalid media type.
    InvalidMediaType = 40004 => "the media type is not supported here (temporary media: image)",
    /// 40005: invalid file type.
    InvalidFileType = 40005 => "the file is not an accepted image format (JPG, PNG, GIF)",
    /// 40006: invalid media size.
    InvalidMediaSize = 40006 => "the file is too large for temporary media",
    /// 40007: invalid media_id.
    InvalidMediaId = 40007 => "the media_id is unknown or expired (temporary media lives 3 days)",
    /// 40013: invalid appid.
    InvalidAppid = 40013 => "the appid is wrong — check AppConfig.appid",
    /// 40014: invalid access_token.
    InvalidAccessToken = 40014 => "the access_token is malformed — refresh it",
    /// 40029: invalid js_code.
    InvalidCode = 40029 => "the login code is invalid, used or expired — call wx.login again",
    /// 40037: invalid template_id.
    InvalidTemplateId = 40037 => "the subscribe-message template_id is wrong",
    /// 40097: invalid parameter.
    InvalidArgs = 40097 => "a request parameter is invalid — check the request fields",
    /// 40125: invalid appsecret.
    InvalidAppSecret = 40125 => "the appsecret is wrong — check AppConfig.secret",
    /// 40129: invalid scene.
    InvalidScene = 40129 => "the wxacode scene is invalid — at most 32 visible characters from WeChat's set",
    /// 40163: the code has been used.
    CodeUsed = 40163 => "the login code was already used — call wx.login again",
    /// 40226: a high-risk user was blocked from logging in.
    RiskyUser = 40226 => "WeChat blocked this high-risk user",
    /// 41002: appid missing.
    AppidMissing = 41002 => "the appid parameter is missing — check AppConfig.appid",
    /// 41004: appsecret missing.
    SecretMissing = 41004 => "the appsecret parameter is missing — check AppConfig.secret",
    /// 41030: invalid page path.
    InvalidPage = 41030 => "the page does not exist in the published mini-program, or check_path failed",
    /// 42001: access_token expired.
    AccessTokenExpired = 42001 => "the access_token expired — refresh it",
    /// 43101: the user has not consented to this subscribe message.
    UserRefused = 43101 => "the user has not accepted this subscribe-message template (wx.requestSubscribeMessage)",
    /// 44002: empty POST body.
    EmptyPostData = 44002 => "the request body is empty",
    /// 45009: the daily API quota is used up.
    ApiQuotaExceeded = 45009 => "the daily quota of this API is used up — wait for the reset or clear the quota",
    /// 45011: API calls too frequent.
    ApiFrequencyLimit = 45011 => "calls are too frequent — slow down",
    /// 45015: the reply window (48 h since the user's last message) is over.
    ReplyTimeLimit = 45015 => "the 48-hour customer-service window is closed for this user",
    /// 45047: too many customer-service messages without a user reply.
    OutOfResponseLimit = 45047 => "too many customer-service messages without a reply from the user",
    /// 45029: lifetime cap on limited wxacodes reached.
    WxacodeLifetimeLimit = 45029 => "the lifetime cap of limited wxacodes (100k) is reached — use getwxacodeunlimit",
    /// 45072: invalid typing command.
    InvalidTypingCommand = 45072 => "command must be Typing or CancelTyping",
    /// 45080: typing needs a recent exchange with the user.
    TypingWithoutRecentMessage = 45080 => "the typing indicator needs an exchange with the user within the last 30 seconds",
    /// 45081: already typing.
    AlreadyTyping = 45081 => "the typing indicator is already shown",
    /// 47001: the request body is not valid JSON/XML.
    DataFormatError = 47001 => "the request body is malformed",
    /// 47003: a template parameter is invalid.
    ArgumentInvalid = 47003 => "a template data value breaks its key's rule",
    /// 61010: the code has expired.
    CodeExpired = 61010 => "the code expired — ask the user again",
    /// 85079: the mini-program has no published version.
    NotPublished = 85079 => "the mini-program has no published version",
    /// 87009: an invalid signature.
    InvalidSignature = 87009 => "the signature is invalid — check session_key and the signing method",
    /// 87014: content is risky.
    RiskyContent = 87014 => "the content was judged risky",
    // --- share links and codes (qrcode-link) ---
    /// 40066: the Short Link's page does not exist in the published mini-program.
    InvalidUrl = 40066 => "the page_url is not a page of the published mini-program",
    /// 40159: the code path is empty or too long.
    InvalidCodePath = 40159 => "the code path is empty or too long (getwxacode ≤ 1024 chars, createwxaqrcode ≤ 128 bytes)",
    /// 40165: the link path is not a page of the published mini-program.
    InvalidPagePath = 40165 => "the link path must be a published page, without a query",
    /// 40169: the scene is empty or too long.
    InvalidSceneLength = 40169 => "the wxacode scene must be 1 to 32 characters",
    /// 40212: the link query is invalid.
    InvalidQuery = 40212 => "the link query is invalid — at most 1024 chars of WeChat's set, k1=v1&k2=v2",
    /// 40225: the Short Link title is invalid.
    InvalidPageTitle = 40225 => "the Short Link page_title is not acceptable",
    /// 44990: more than 100 calls per second.
    ApiSecondLimit = 44990 => "more than 100 calls per second — slow down",
    /// 44993: the daily quota of generated URL Schemes + URL Links is used up.
    LinkDailyLimit = 44993 => "500,000 URL Schemes + URL Links were generated today — wait for tomorrow or reuse links",
    /// 85096: `scancode_time` is a reserved parameter.
    ScancodeTimeReserved = 85096 => "scancode_time is reserved by WeChat — remove it from the path",
    /// 85400: the lifetime cap of permanent Short Links is reached.
    PermanentLinkLimit = 85400 => "the lifetime cap (100,000) of permanent Short Links is reached — use temporary ones",
    /// 85401: the expiry is out of range.
    ExpireTimeInvalid = 85401 => "the expiry must be between 1 minute and 30 days from now",
    /// 85402: an invalid env_version.
    InvalidEnvVersion = 85402 => "env_version must be release, trial or develop",
    /// 85403: the scheme or URL Link does not exist.
    LinkNotFound = 85403 => "no such URL Scheme or URL Link",
    /// 85406: the daily visit quota of URL Schemes / URL Links is used up.
    LinkVisitLimit = 85406 => "the daily visit quota of URL Schemes and URL Links is used up",
    // --- shipping-info management (/wxa/sec/order/*) ---
    /// 10060001: the payment does not exist in shipping-info management.
    ShippingOrderNotFound = 10060001 => "no such payment in shipping-info management — check the order key (new payments take seconds to appear)",
    /// 10060002: shipping was already completed.
    ShippingCompleted = 10060002 => "shipping of this payment is already complete",
    /// 10060003: the one allowed correction was already used.
    ShippingCorrectionUsed = 10060003 => "the one correction of shipping info was already used — it can no longer be changed",
    /// 10060004: the payment's state does not allow shipping.
    ShippingNotAllowed = 10060004 => "the payment's state does not allow shipping (receipt confirmed, settled or refunded)",
    /// 10060005: invalid logistics_type.
    InvalidLogisticsType = 10060005 => "logistics_type must be 1 express, 2 same-city, 3 virtual or 4 self-pickup",
    /// 10060006: split delivery needs express logistics.
    SplitNeedsExpress = 10060006 => "split delivery is only allowed for express (logistics_type 1)",
    /// 10060007: split delivery needs is_all_delivered.
    SplitNeedsAllDelivered = 10060007 => "split delivery must say is_all_delivered",
    /// 10060008: item_desc is empty.
    ItemDescEmpty = 10060008 => "item_desc must not be empty",
    /// 10060009: item_desc is too long.
    ItemDescTooLong = 10060009 => "item_desc must be at most 120 characters",
    /// 10060011: invalid last_index.
    InvalidLastIndex = 10060011 => "last_index is not one WeChat returned — restart the listing",
    /// 10060012: shipping system error.
    ShippingSystemError = 10060012 => "WeChat's shipping service failed — retry later",
    /// 10060014: an invalid shipping parameter.
    ShippingInvalidParam = 10060014 => "a shipping parameter is invalid — see errmsg",
    /// 10060019: shipping system busy.
    ShippingSystemBusy = 10060019 => "WeChat's shipping service is busy — retry later",
    /// 10060020: no item description at all.
    ShippingNoItemDesc = 10060020 => "shipping cannot complete without any item_desc",
    /// 10060023: the shipping info did not change.
    ShippingUnchanged = 10060023 => "the shipping info is the same as before — nothing was updated",
    /// 10060024: shipping_list is too long.
    ShippingListTooLong = 10060024 => "shipping_list holds at most 15 packages",
    /// 10060025: express_company is too long.
    ExpressCompanyTooLong = 10060025 => "express_company is too long — use an id from get_delivery_list",
    /// 10060026: tracking_no is too long.
    TrackingNoTooLong = 10060026 => "tracking_no is too long (at most 128 bytes)",
    /// 10060028: the payment is not shipped.
    NotShipped = 10060028 => "the payment is not in the shipped state",
    /// 10060029: invalid received_time.
    InvalidReceivedTime = 10060029 => "received_time must be Unix seconds after the shipping time and not in the future",
    /// 10060030: the receipt reminder was already used.
    ConfirmReminderUsed = 10060030 => "the buyer was already reminded to confirm receipt (once per payment)",
    /// 10060031: the payment does not belong to the payer.
    PayerMismatch = 10060031 => "the payment does not belong to payer.openid",
    /// 10060032: only express shipments can be reminded.
    RemindNeedsExpress = 10060032 => "only express shipments (logistics_type 1) can be reminded to confirm receipt",
    /// 268485194: invalid order_number_type.
    InvalidOrderNumberType = 268485194 => "order_number_type must be 1 (mchid + out_trade_no) or 2 (transaction_id)",
    /// 268485195: transaction_id missing.
    TransactionIdMissing = 268485195 => "order_number_type 2 needs transaction_id",
    /// 268485196: mchid missing.
    MchidMissing = 268485196 => "order_number_type 1 needs mchid",
    /// 268485197: out_trade_no missing.
    OutTradeNoMissing = 268485197 => "order_number_type 1 needs out_trade_no",
    /// 268485216: invalid upload_time.
    InvalidUploadTime = 268485216 => "upload_time must be RFC 3339, e.g. 2022-12-15T13:29:35.120+08:00",
    /// 268485224: invalid delivery_mode.
    InvalidDeliveryMode = 268485224 => "delivery_mode must be 1 (unified) or 2 (split)",
    /// 268485226: tracking_no missing.
    TrackingNoMissing = 268485226 => "express shipments need tracking_no",
    /// 268485227: express_company missing.
    ExpressCompanyMissing = 268485227 => "express shipments need express_company",
    /// 268485228: unified delivery needs exactly one package.
    UnifiedNeedsOnePackage = 268485228 => "unified delivery takes exactly one shipping_list entry",
    /// 268546000: invalid special-order type.
    InvalidSpecialOrderType = 268546000 => "opspecialorder type must be 1 (pre-sale) or 2 (test order)",
    /// 268546001: invalid delay_to.
    InvalidDelayTo = 268546001 => "delay_to must be 15 to 330 days after payment",
    /// 268546002: no such unshipped order.
    SpecialOrderNotFound = 268546002 => "no unshipped order with this order_id",
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// What failed with a signature or a decryption, kept short and non-secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoKind {
    /// Base64 that does not decode.
    Base64,
    /// A key of the wrong length or format.
    Key,
    /// An IV of the wrong length.
    Iv,
    /// Bad padding after decryption (wrong key, or tampered data).
    Padding,
    /// A length field that points past the end of the data.
    Length,
    /// An authentication tag that does not match (AES-GCM).
    Tag,
    /// A plaintext that is not what the format says (not UTF-8, not JSON…).
    Plaintext,
    /// The appid inside the data is not ours.
    AppidMismatch,
    /// An RSA operation failed.
    Rsa,
}

/// The one error of the crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A mini-program API answered a non-zero errcode.
    #[error("WeChat API error {errcode}: {} ({errmsg}{})", errcode.hint(), rid.as_deref().map(|r| format!(", rid {r}")).unwrap_or_default())]
    Api {
        /// The typed errcode.
        errcode: ErrCode,
        /// WeChat's message.
        errmsg: String,
        /// WeChat's request id, when it sends one (quote it to WeChat support).
        rid: Option<String>,
    },
    /// WeChat Pay v3 answered an error status.
    #[error("WeChat Pay error {status} {code}: {message}")]
    PayApi {
        /// The HTTP status.
        status: u16,
        /// WeChat Pay's code, e.g. `PARAM_ERROR`, `SIGN_ERROR`, `ORDERPAID`.
        code: String,
        /// WeChat Pay's message.
        message: String,
        /// The `detail` object, when sent.
        detail: Option<serde_json::Value>,
    },
    /// The request could not be sent or the response not read (after bounded retries).
    #[error("transport error calling {endpoint}: {source}")]
    Transport {
        /// The endpoint path.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP status that carries no WeChat error body.
    #[error("unexpected HTTP status {status} from {endpoint}")]
    HttpStatus {
        /// The endpoint path.
        endpoint: String,
        /// The status.
        status: u16,
    },
    /// The response body did not decode into the expected type.
    #[error("could not decode the response of {endpoint}: {message}")]
    Decode {
        /// The endpoint path (or the name of the parsed thing).
        endpoint: String,
        /// What was wrong.
        message: String,
    },
    /// A decryption or key failure.
    #[error("crypto failure ({kind:?}): {message}")]
    Crypto {
        /// Which check failed.
        kind: CryptoKind,
        /// A short, non-secret explanation.
        message: String,
    },
    /// A signature did not verify (callback, response or raw data).
    #[error("signature verification failed: {0}")]
    Signature(String),
    /// A WeChat Pay response or notification names a key (`Wechatpay-Serial`) this merchant does
    /// not hold: configure that WeChat Pay public key, or let platform certificates refresh.
    #[error("unknown Wechatpay-Serial {serial}: {hint}")]
    UnknownSerial {
        /// The serial (a platform certificate serial or a `PUB_KEY_ID_…`).
        serial: String,
        /// What to do about it.
        hint: String,
    },
    /// A callback or response timestamp outside the allowed window.
    #[error("timestamp {timestamp} is outside the allowed window of {window_secs} s")]
    StaleTimestamp {
        /// The timestamp that was sent.
        timestamp: i64,
        /// The window.
        window_secs: i64,
    },
    /// The request was rejected locally before sending (a WeChat rule it would break).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The configuration is incomplete or wrong.
    #[error("configuration error: {0}")]
    Config(String),
    /// A token store, lease or database failure.
    #[error("store error: {0}")]
    Store(String),
    /// A marketplace rule was violated (illegal transition, out of stock, conflict…). `code` is the
    /// stable machine-readable code of the market error (`"out_of_stock"`,
    /// `"illegal_transition"`, `"refund_exceeds"`…), so callers can branch without parsing `message`.
    #[error("{message}")]
    Market {
        /// `MarketError::code()`.
        code: &'static str,
        /// What went wrong, for people.
        message: String,
    },
}

impl Error {
    /// Builds an [`Error::Api`] from the wire values.
    pub fn api(errcode: i64, errmsg: impl Into<String>, rid: Option<String>) -> Self {
        Error::Api { errcode: ErrCode::from_code(errcode), errmsg: errmsg.into(), rid }
    }

    /// Builds an [`Error::Crypto`].
    pub fn crypto(kind: CryptoKind, message: impl Into<String>) -> Self {
        Error::Crypto { kind, message: message.into() }
    }

    /// Builds an [`Error::Decode`].
    pub fn decode(endpoint: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Decode { endpoint: endpoint.into(), message: message.to_string() }
    }

    /// The typed errcode of a mini-program API error.
    pub fn errcode(&self) -> Option<ErrCode> {
        match self {
            Error::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// The access token was rejected (40001, 40014, 42001): refresh and replay once.
    pub fn is_token_invalid(&self) -> bool {
        matches!(
            self.errcode(),
            Some(ErrCode::InvalidCredential | ErrCode::InvalidAccessToken | ErrCode::AccessTokenExpired)
        )
    }

    /// A transient failure worth retrying (system busy, transport, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { errcode, .. } => {
                matches!(errcode, ErrCode::SystemBusy | ErrCode::ShippingSystemError | ErrCode::ShippingSystemBusy)
            }
            Error::Transport { .. } => true,
            Error::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            Error::PayApi { status, code, .. } => {
                *status >= 500 || *status == 429 || code == "SYSTEM_ERROR" || code == "FREQUENCY_LIMITED"
            }
            _ => false,
        }
    }

    /// A quota or rate limit was hit (45009, 45011, 44990, 44993, 85406, 85400, 45029).
    pub fn is_quota(&self) -> bool {
        matches!(
            self.errcode(),
            Some(
                ErrCode::ApiQuotaExceeded
                    | ErrCode::ApiFrequencyLimit
                    | ErrCode::ApiSecondLimit
                    | ErrCode::LinkDailyLimit
                    | ErrCode::LinkVisitLimit
                    | ErrCode::PermanentLinkLimit
                    | ErrCode::WxacodeLifetimeLimit
            )
        )
    }

    /// The WeChat Pay code, for a Pay v3 error.
    pub fn pay_code(&self) -> Option<&str> {
        match self {
            Error::PayApi { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_codes_are_named() {
        for (code, named) in [
            (-1, ErrCode::SystemBusy),
            (40001, ErrCode::InvalidCredential),
            (40013, ErrCode::InvalidAppid),
            (40014, ErrCode::InvalidAccessToken),
            (40029, ErrCode::InvalidCode),
            (40125, ErrCode::InvalidAppSecret),
            (40226, ErrCode::RiskyUser),
            (41002, ErrCode::AppidMissing),
            (42001, ErrCode::AccessTokenExpired),
            (45009, ErrCode::ApiQuotaExceeded),
            (45011, ErrCode::ApiFrequencyLimit),
        ] {
            assert_eq!(ErrCode::from_code(code), named);
            assert_eq!(named.code(), code);
        }
    }

    #[test]
    fn unknown_code_keeps_its_number() {
        assert_eq!(ErrCode::from_code(99999), ErrCode::Unknown(99999));
        assert_eq!(ErrCode::Unknown(99999).code(), 99999);
    }

    #[test]
    fn display_says_what_to_do_and_keeps_rid() {
        let e = Error::api(40125, "invalid appsecret", Some("6530a1b2-1".into()));
        assert_eq!(
            e.to_string(),
            "WeChat API error 40125: the appsecret is wrong — check AppConfig.secret (invalid appsecret, rid 6530a1b2-1)"
        );
    }

    #[test]
    fn token_errors_are_classified() {
        assert!(Error::api(40001, "", None).is_token_invalid());
        assert!(Error::api(40014, "", None).is_token_invalid());
        assert!(Error::api(42001, "", None).is_token_invalid());
        assert!(!Error::api(40029, "", None).is_token_invalid());
        assert!(Error::api(-1, "", None).is_retryable());
        assert!(!Error::api(45009, "", None).is_retryable());
        assert!(Error::api(45009, "", None).is_quota());
    }
}
