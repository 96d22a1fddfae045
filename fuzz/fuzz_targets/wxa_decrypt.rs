//! encryptedData decryption: any bytes as key, iv and data give a typed error or the plaintext, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let key = parts.next().unwrap_or("");
    let iv = parts.next().unwrap_or("");
    let blob = parts.next().unwrap_or("");
    let _ = wxshop::crypto::wxa::decrypt_bytes("wx4f4bc4dec97d474b", key, iv, blob);
});
