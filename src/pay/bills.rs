//! Trade and fund-flow bills: apply (`GET /v3/bill/tradebill`, `GET /v3/bill/fundflowbill`), then
//! download the file from `download_url` (a signed request whose answer WeChat does not sign),
//! gunzip it when asked for GZIP, and check its SHA-1 against `hash_value` (WeChat hashes the
//! uncompressed bill).
//!
//! ```no_run
//! # async fn demo(pay: wxshop::pay::PayClient) -> wxshop::Result<()> {
//! use wxshop::pay::bills::{BillTable, TradeBillType};
//! let bytes = pay.bills().trade_bill_file("2024-06-11", TradeBillType::All).await?; // gzip, SHA-1 checked
//! let table = BillTable::parse(std::str::from_utf8(&bytes).unwrap());
//! println!("{} rows", table.rows.len());
//! # Ok(()) }
//! ```

use std::io::Read;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::client::{PayClient, get};
use crate::error::{CryptoKind, Error, Result};
use crate::http::{Host, Request};

/// The most a bill may decompress to (a guard against gzip bombs).
pub const MAX_BILL_BYTES: u64 = 512 * 1024 * 1024;

/// The answer of a bill application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillInfo {
    /// `SHA1`.
    pub hash_type: String,
    /// Lowercase hex SHA-1 of the uncompressed bill.
    pub hash_value: String,
    /// Where to download it (valid a few minutes).
    pub download_url: String,
}

/// `bill_type` of a trade bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeBillType {
    /// Every order of the day.
    All,
    /// Paid orders.
    Success,
    /// Refunds.
    Refund,
}

impl TradeBillType {
    fn as_str(self) -> &'static str {
        match self {
            TradeBillType::All => "ALL",
            TradeBillType::Success => "SUCCESS",
            TradeBillType::Refund => "REFUND",
        }
    }
}

/// `account_type` of a fund-flow bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountType {
    /// The basic account.
    Basic,
    /// The operation account.
    Operation,
    /// The fee account.
    Fees,
}

impl AccountType {
    fn as_str(self) -> &'static str {
        match self {
            AccountType::Basic => "BASIC",
            AccountType::Operation => "OPERATION",
            AccountType::Fees => "FEES",
        }
    }
}

/// A bill file split into its parts: detail header and rows, then the summary header and row.
/// The leading backtick WeChat puts before every detail field is removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BillTable {
    /// Detail column names.
    pub header: Vec<String>,
    /// Detail rows.
    pub rows: Vec<Vec<String>>,
    /// Summary column names.
    pub summary_header: Vec<String>,
    /// Summary values.
    pub summary: Vec<String>,
}

impl BillTable {
    /// Parses a bill's text.
    pub fn parse(text: &str) -> Self {
        let split = |line: &str| -> Vec<String> {
            line.split(',').map(|f| f.trim().trim_start_matches('`').to_string()).collect()
        };
        let mut t = BillTable::default();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        if let Some(h) = lines.next() {
            t.header = split(h);
        }
        for line in lines {
            if !t.summary_header.is_empty() {
                t.summary = split(line);
            } else if line.starts_with('`') {
                t.rows.push(split(line));
            } else {
                t.summary_header = split(line);
            }
        }
        t
    }
}

impl PayClient {
    /// Trade and fund-flow bills.
    pub fn bills(&self) -> Bills<'_> {
        Bills { client: self }
    }
}

/// Bills. From [`PayClient::bills`].
#[derive(Debug, Clone, Copy)]
pub struct Bills<'a> {
    pub(crate) client: &'a PayClient,
}

fn check_date(bill_date: &str) -> Result<()> {
    chrono::NaiveDate::parse_from_str(bill_date, "%Y-%m-%d")
        .map(|_| ())
        .map_err(|_| Error::InvalidRequest(format!("bill_date {bill_date:?} must be YYYY-MM-DD")))
}

impl Bills<'_> {
    /// `GET /v3/bill/tradebill`.
    pub async fn trade_bill(self, bill_date: &str, bill_type: TradeBillType, gzip: bool) -> Result<BillInfo> {
        check_date(bill_date)?;
        let mut req = get("/v3/bill/tradebill").query("bill_date", bill_date).query("bill_type", bill_type.as_str());
        if gzip {
            req = req.query("tar_type", "GZIP");
        }
        self.client.send_json(&req).await
    }

    /// `GET /v3/bill/fundflowbill`.
    pub async fn fund_flow_bill(self, bill_date: &str, account_type: AccountType, gzip: bool) -> Result<BillInfo> {
        check_date(bill_date)?;
        let mut req =
            get("/v3/bill/fundflowbill").query("bill_date", bill_date).query("account_type", account_type.as_str());
        if gzip {
            req = req.query("tar_type", "GZIP");
        }
        self.client.send_json(&req).await
    }

    /// Downloads a bill, gunzips it when `gzip`, and checks its SHA-1. The signed request only
    /// goes to the configured WeChat Pay host.
    pub async fn download(self, info: &BillInfo, gzip: bool) -> Result<Bytes> {
        if !info.hash_type.eq_ignore_ascii_case("SHA1") {
            return Err(Error::decode("bill", format!("unsupported hash_type {:?}", info.hash_type)));
        }
        let url = url::Url::parse(&info.download_url)
            .map_err(|e| Error::decode("bill", format!("download_url is not a URL: {e}")))?;
        let pay = &self.client.http().endpoints().pay;
        if url.origin() != pay.origin() {
            return Err(Error::InvalidRequest(format!(
                "download_url host {} is not the WeChat Pay host {}; refusing to send a signed request there",
                url.origin().ascii_serialization(),
                pay.origin().ascii_serialization()
            )));
        }
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let req = Request::new(reqwest::Method::GET, Host::Pay, path).idempotent(true);
        let resp = self.client.send_unsigned_response(&req).await?;
        let bytes = if gzip { gunzip(&resp.body)? } else { resp.body };
        let got = crate::crypto::sig::sha1_hex(&bytes);
        if !crate::crypto::sig::ct_eq_hex(&got, &info.hash_value) {
            return Err(Error::crypto(
                CryptoKind::Tag,
                format!("bill SHA-1 mismatch: expected {}, got {got} (truncated or altered download)", info.hash_value),
            ));
        }
        Ok(bytes)
    }

    /// Applies for a trade bill (GZIP) and downloads it, checked.
    pub async fn trade_bill_file(self, bill_date: &str, bill_type: TradeBillType) -> Result<Bytes> {
        let info = self.trade_bill(bill_date, bill_type, true).await?;
        self.download(&info, true).await
    }

    /// Applies for a fund-flow bill (GZIP) and downloads it, checked.
    pub async fn fund_flow_bill_file(self, bill_date: &str, account_type: AccountType) -> Result<Bytes> {
        let info = self.fund_flow_bill(bill_date, account_type, true).await?;
        self.download(&info, true).await
    }
}

/// Gunzips at most [`MAX_BILL_BYTES`].
pub fn gunzip(data: &[u8]) -> Result<Bytes> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(MAX_BILL_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::decode("bill", format!("not a gzip file: {e}")))?;
    if out.len() as u64 > MAX_BILL_BYTES {
        return Err(Error::decode("bill", "the bill decompresses to more than 512 MiB"));
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bill_text_parses() {
        let text = "交易时间,公众账号ID,商户号\n`2024-06-11 10:00:00,`wx1,`1900009191\n`2024-06-11 11:00:00,`wx1,`1900009191\n总交易单数,应结订单总金额\n`2,`36.00\n";
        let t = BillTable::parse(text);
        assert_eq!(t.header, vec!["交易时间", "公众账号ID", "商户号"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[1][0], "2024-06-11 11:00:00");
        assert_eq!(t.summary_header, vec!["总交易单数", "应结订单总金额"]);
        assert_eq!(t.summary, vec!["2", "36.00"]);
    }

    #[test]
    fn gunzip_rejects_garbage() {
        assert!(gunzip(b"not gzip").is_err());
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, b"hello").unwrap();
        assert_eq!(&gunzip(&enc.finish().unwrap()).unwrap()[..], b"hello");
    }
}
