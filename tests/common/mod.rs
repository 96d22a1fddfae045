//! Shared test helpers.
#![allow(dead_code)]

use std::path::PathBuf;

/// The published vectors.
pub fn vectors() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/official.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors file")).expect("vectors JSON")
}

/// A service URL from the environment; `None` (with a notice) when unset, and a failure when
/// `WXSHOP_REQUIRE_SERVICES=1` says the suite must run (CI sets it).
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("WXSHOP_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{var} is not set but WXSHOP_REQUIRE_SERVICES=1: this suite must not be skipped");
            }
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}
