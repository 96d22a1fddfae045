//! WeChat Pay notifications after signature verification: any body, and any resource plaintext
//! sealed with the APIv3 key, gives a typed notification or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxshop::crypto::pay::ApiV3Key;
use wxshop::pay::notify::decrypt_notification;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let key = ApiV3Key::new(KEY).expect("32-byte key");
    // The raw body as it might arrive.
    let _ = decrypt_notification(&key, data);
    // A well-formed envelope around a fuzzed plaintext, so the typed parsers see arbitrary JSON.
    let (event, plaintext) = match data.first() {
        Some(b) if b % 4 == 0 => ("TRANSACTION.SUCCESS", &data[1..]),
        Some(b) if b % 4 == 1 => ("REFUND.SUCCESS", &data[1..]),
        Some(b) if b % 4 == 2 => ("MCHTRANSFER.BILL.FINISHED", &data[1..]),
        Some(_) => ("OTHER.EVENT", &data[1..]),
        None => return,
    };
    let Ok(ciphertext) = key.encrypt("fuzznonce123", "transaction", plaintext) else { return };
    let body = serde_json::json!({
        "id": "n1", "create_time": "2024-06-11T10:00:00+08:00", "event_type": event,
        "resource_type": "encrypt-resource", "summary": "s",
        "resource": { "algorithm": "AEAD_AES_256_GCM", "ciphertext": ciphertext,
                      "associated_data": "transaction", "nonce": "fuzznonce123", "original_type": "transaction" }
    });
    let _ = decrypt_notification(&key, body.to_string().as_bytes());
});
