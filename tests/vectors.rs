//! WeChat's published vectors for open data and signatures.

mod common;

use proptest::prelude::*;
use wxshop::crypto::{sig, wxa};
use wxshop::{CryptoKind, Error};

#[test]
fn encrypted_data_vector_decrypts_to_its_exact_plaintext() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let plain = wxa::decrypt_bytes(
        v["appid"].as_str().unwrap(),
        v["session_key"].as_str().unwrap(),
        v["iv"].as_str().unwrap(),
        v["encrypted_data"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(std::str::from_utf8(&plain).unwrap(), v["plaintext"].as_str().unwrap());
}

#[test]
fn encrypted_data_vector_decodes_into_user_info() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let info: wxa::UserInfo = wxa::decrypt_json(
        "wx4f4bc4dec97d474b",
        v["session_key"].as_str().unwrap(),
        v["iv"].as_str().unwrap(),
        v["encrypted_data"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(info.open_id.as_deref(), Some("oGZUI0egBJY1zhBYw2KhdUfwVJJE"));
    assert_eq!(info.union_id.as_deref(), Some("ocMvos6NjeKLIBqg5Mr9QjxrP1FA"));
    assert_eq!(info.watermark, wxa::Watermark { appid: "wx4f4bc4dec97d474b".into(), timestamp: 1477314187 });
}

#[test]
fn encrypted_data_for_another_appid_is_rejected_by_the_watermark() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let err = wxa::decrypt_bytes(
        "wx0000000000000000",
        v["session_key"].as_str().unwrap(),
        v["iv"].as_str().unwrap(),
        v["encrypted_data"].as_str().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Crypto { kind: CryptoKind::AppidMismatch, .. }), "{err:?}");
}

#[test]
fn wrong_session_key_is_a_padding_or_plaintext_error() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let err = wxa::decrypt_bytes(
        "wx4f4bc4dec97d474b",
        "AAAAAAAAAAAAAAAAAAAAAA==",
        v["iv"].as_str().unwrap(),
        v["encrypted_data"].as_str().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Crypto { kind: CryptoKind::Padding | CryptoKind::Plaintext, .. }), "{err:?}");
}

#[test]
fn wrong_lengths_are_typed() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let data = v["encrypted_data"].as_str().unwrap();
    let e = wxa::decrypt_bytes("a", "AAAA", v["iv"].as_str().unwrap(), data).unwrap_err();
    assert!(matches!(e, Error::Crypto { kind: CryptoKind::Key, .. }), "{e:?}");
    let e = wxa::decrypt_bytes("a", v["session_key"].as_str().unwrap(), "AAAA", data).unwrap_err();
    assert!(matches!(e, Error::Crypto { kind: CryptoKind::Iv, .. }), "{e:?}");
    let e = wxa::decrypt_bytes("a", v["session_key"].as_str().unwrap(), v["iv"].as_str().unwrap(), "AAAA").unwrap_err();
    assert!(matches!(e, Error::Crypto { kind: CryptoKind::Length, .. }), "{e:?}");
    let e = wxa::decrypt_bytes("a", "not base64!", v["iv"].as_str().unwrap(), data).unwrap_err();
    assert!(matches!(e, Error::Crypto { kind: CryptoKind::Base64, .. }), "{e:?}");
}

#[test]
fn encrypt_then_decrypt_round_trips_with_the_watermark() {
    let key = [7u8; 16];
    let iv = [9u8; 16];
    let plain = br#"{"openId":"o1","watermark":{"appid":"wxabc","timestamp":1}}"#;
    let data = wxa::encrypt(&key, &iv, plain);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = wxa::decrypt_bytes("wxabc", &b64.encode(key), &b64.encode(iv), &data).unwrap();
    assert_eq!(out, plain);
}

#[test]
fn published_push_signature_vectors() {
    let v = common::vectors();
    let u = &v["push_url_verification"];
    assert_eq!(
        sig::sha1_sorted(&[
            u["token"].as_str().unwrap(),
            u["timestamp"].as_str().unwrap(),
            u["nonce"].as_str().unwrap()
        ]),
        u["signature"].as_str().unwrap()
    );
    let p = &v["push_plaintext_signature"];
    assert_eq!(
        sig::sha1_sorted(&[
            p["token"].as_str().unwrap(),
            p["timestamp"].as_str().unwrap(),
            p["nonce"].as_str().unwrap()
        ]),
        p["signature"].as_str().unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(
        key in proptest::collection::vec(any::<u8>(), 0..40),
        iv in proptest::collection::vec(any::<u8>(), 0..40),
        data in proptest::collection::vec(any::<u8>(), 0..300),
        raw in ".{0,64}",
    ) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let r = wxa::decrypt_bytes("wx4f4bc4dec97d474b", &b64.encode(&key), &b64.encode(&iv), &b64.encode(&data));
        prop_assert!(r.is_err() || key.len() == 16);
        let _ = wxa::decrypt_bytes("wx", &raw, &raw, &raw);
    }
}

#[test]
fn decrypt_user_info_equals_decrypt_json_and_keeps_the_watermark_check() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let (key, iv, data) =
        (v["session_key"].as_str().unwrap(), v["iv"].as_str().unwrap(), v["encrypted_data"].as_str().unwrap());
    let once = wxa::decrypt_user_info("wx4f4bc4dec97d474b", key, iv, data).unwrap();
    let twice: wxa::UserInfo = wxa::decrypt_json("wx4f4bc4dec97d474b", key, iv, data).unwrap();
    assert_eq!(once, twice);
    match wxa::decrypt_user_info("wx0000000000000000", key, iv, data) {
        Err(Error::Crypto { kind: CryptoKind::AppidMismatch, message }) => {
            assert_eq!(message, "watermark.appid wx4f4bc4dec97d474b is not wx0000000000000000")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn decrypt_user_info_refuses_what_decrypt_json_refuses() {
    let (key, iv) = ([7u8; 16], [9u8; 16]);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (k, i) = (b64.encode(key), b64.encode(iv));
    for plain in [
        &br#"{"nickName":"x"}"#[..],
        br#"{"gender":"x","watermark":{"appid":"wxa","timestamp":1}}"#,
        br#"{"gender":"x","watermark":{"appid":"wxb","timestamp":1}}"#,
        b"not json",
    ] {
        let data = wxa::encrypt(&key, &iv, plain);
        let a = format!("{:?}", wxa::decrypt_user_info("wxa", &k, &i, &data).unwrap_err());
        let b = format!("{:?}", wxa::decrypt_json::<wxa::UserInfo>("wxa", &k, &i, &data).unwrap_err());
        assert_eq!(a, b, "{}", String::from_utf8_lossy(plain));
    }
}
