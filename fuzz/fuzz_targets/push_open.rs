//! Message push: any query and body, through signature checks, WXBizMsgCrypt and both parsers,
//! give a typed error or a message, never a panic. The first line is the query string, the rest
//! the body; an `Encrypt` is re-signed with the right token so the decryption paths are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxshop::push::{PushQuery, Verifier};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (query, body) = (String::from_utf8_lossy(&data[..split]), data.get(split + 1..).unwrap_or(&[]));
    let verifier = Verifier::with_aes_key("fuzz-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wxfuzz")
        .expect("valid key")
        .accept_plaintext(true);
    let mut q = PushQuery::parse(&query);
    let _ = verifier.open_at(&q, body, 0);
    if let Ok((_, encrypt, _)) = wxshop::push::body::envelope_encrypt(body) {
        let (ts, nonce) = (q.timestamp.clone().unwrap_or_default(), q.nonce.clone().unwrap_or_default());
        q.encrypt_type = Some("aes".into());
        q.msg_signature = Some(verifier.crypt().expect("key").signature(&ts, &nonce, &encrypt));
        q.signature = None;
        let _ = verifier.open_at(&q, body, 0);
    }
});
