//! Referral tokens: any string as a scene or query gives a typed error or a verified referral, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = wxshop::mp::referral::ReferralKey::new("0123456789abcdef0123456789abcdef").unwrap();
    let text = String::from_utf8_lossy(data);
    let _ = key.verify_ignoring_expiry(&text);
    if let Some(token) = wxshop::mp::referral::token_from_query(&text) {
        let _ = key.verify_ignoring_expiry(token);
    }
});
