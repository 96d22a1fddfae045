//! `wxshop push …` on the published vectors and on tampered input (the CLI contract in shared/CLI.md).
#![cfg(feature = "cli")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine as _;
use wxshop::crypto::msgcrypt::MsgCrypt;

fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxshop"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The tool may reject its flags before reading stdin.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn one_line_error(code: i32, out: &str, err: &str) {
    assert_eq!(code, 1, "stderr: {err}");
    assert_eq!(out, "");
    assert!(err.ends_with('\n') && err.trim_end().lines().count() == 1, "{err:?}");
}

fn s(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap().to_string()
}

#[test]
fn verify_url_prints_the_echostr_and_one_newline() {
    let v = &common::vectors()["push_url_verification"];
    let args = |sig: &str| {
        vec![
            "push".to_string(),
            "verify-url".into(),
            "--token".into(),
            s(v, "token"),
            "--timestamp".into(),
            s(v, "timestamp"),
            "--nonce".into(),
            s(v, "nonce"),
            "--signature".into(),
            sig.into(),
            "--echostr".into(),
            s(v, "echostr"),
        ]
    };
    let a = args(&s(v, "signature"));
    let (code, out, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), b"");
    assert_eq!((code, out.as_str()), (0, "4375120948345356249\n"), "{err}");
    let a = args("f464b24fc39322e44b38aa78f5edd27bd1441697");
    let (code, out, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), b"");
    one_line_error(code, &out, &err);
    // The right digest in uppercase is refused, as the push endpoint refuses it.
    let a = args(&s(v, "signature").to_ascii_uppercase());
    let (code, out, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>(), b"");
    one_line_error(code, &out, &err);
    assert!(err.contains("signature is uppercase hex; WeChat signs in lowercase"), "{err}");
}

fn decrypt_args(v: &serde_json::Value, appid: &str, msg_signature: &str) -> Vec<String> {
    vec![
        "push".into(),
        "decrypt".into(),
        "--token".into(),
        s(v, "token"),
        "--aes-key".into(),
        s(v, "encoding_aes_key"),
        "--appid".into(),
        appid.into(),
        "--timestamp".into(),
        s(v, "timestamp"),
        "--nonce".into(),
        s(v, "nonce"),
        "--msg-signature".into(),
        msg_signature.into(),
    ]
}

fn run_owned(args: &[String], stdin: &[u8]) -> (i32, String, String) {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
}

#[test]
fn decrypt_prints_the_exact_message_from_xml_or_json_envelopes() {
    let v = &common::vectors()["msgcrypt_decrypt_known_answer"];
    let args = decrypt_args(v, &s(v, "appid"), &s(v, "msg_signature"));
    let xml = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        s(v, "encrypt")
    );
    let json = serde_json::json!({"ToUserName": "gh_10f6c3c3ac5a", "Encrypt": s(v, "encrypt")}).to_string();
    for body in [xml, json] {
        let (code, out, err) = run_owned(&args, body.as_bytes());
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("{}\n", s(v, "plaintext")));
    }
}

#[test]
fn decrypt_rejects_signature_appid_base64_and_tampering_with_one_line() {
    let v = &common::vectors()["msgcrypt_decrypt_known_answer"];
    let envelope = |e: &str| format!("<xml><Encrypt><![CDATA[{e}]]></Encrypt></xml>");
    let good = envelope(&s(v, "encrypt"));
    // A wrong msg_signature.
    let (c, o, e) =
        run_owned(&decrypt_args(v, &s(v, "appid"), "5d197aaffba7e9b25a30732f161a50dee96bd5fb"), good.as_bytes());
    one_line_error(c, &o, &e);
    assert!(e.contains("signature"), "{e}");
    // A wrong appid.
    let (c, o, e) = run_owned(&decrypt_args(v, "wx0000000000000000", &s(v, "msg_signature")), good.as_bytes());
    one_line_error(c, &o, &e);
    assert!(e.contains("AppidMismatch"), "{e}");
    // Tampered ciphertext and truncated base64, each signed with the right token.
    let crypt = MsgCrypt::new(s(v, "token"), &s(v, "encoding_aes_key"), s(v, "appid")).unwrap();
    // Flip the ciphertext byte CBC xors into the pad byte.
    let mut ct = base64::engine::general_purpose::STANDARD.decode(s(v, "encrypt")).unwrap();
    let len = ct.len();
    ct[len - 17] ^= 0x01;
    let tampered = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ct);
    let n = s(v, "encrypt").len();
    let truncated = s(v, "encrypt")[..n - 1].to_string();
    for (bad, what) in [(tampered, "Padding"), (truncated, "Base64")] {
        let sig = crypt.signature(&s(v, "timestamp"), &s(v, "nonce"), &bad);
        let (c, o, e) = run_owned(&decrypt_args(v, &s(v, "appid"), &sig), envelope(&bad).as_bytes());
        one_line_error(c, &o, &e);
        assert!(e.contains(what), "{what}: {e}");
    }
    // Not an envelope at all.
    let (c, o, e) = run_owned(&decrypt_args(v, &s(v, "appid"), &s(v, "msg_signature")), b"hello");
    one_line_error(c, &o, &e);
}

#[test]
fn encrypt_makes_an_envelope_that_decrypts_back_in_both_formats() {
    let v = &common::vectors()["msgcrypt_decrypt_known_answer"];
    let plain = "<xml><MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>";
    for format in ["xml", "json"] {
        let args: Vec<String> = [
            "push",
            "encrypt",
            "--token",
            &s(v, "token"),
            "--aes-key",
            &s(v, "encoding_aes_key"),
            "--appid",
            &s(v, "appid"),
            "--timestamp",
            "1409735670",
            "--nonce",
            "nonce-1",
            "--format",
            format,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let (code, out, err) = run_owned(&args, plain.as_bytes());
        assert_eq!(code, 0, "{err}");
        assert!(out.ends_with('\n') && !out.ends_with("\n\n"));
        let (_, env) = wxshop::push::body::parse(out.trim_end().as_bytes()).unwrap();
        assert_eq!(env["TimeStamp"].to_string().trim_matches('"'), "1409735670");
        assert_eq!(env["Nonce"], "nonce-1");
        let sig = env["MsgSignature"].as_str().unwrap();
        assert_eq!(sig, sig.to_lowercase());
        if format == "json" {
            assert!(env["TimeStamp"].is_number());
        }
        // Back through `push decrypt`.
        let mut d = decrypt_args(v, &s(v, "appid"), sig);
        d[9] = "1409735670".into();
        d[11] = "nonce-1".into();
        let (code, back, err) = run_owned(&d, out.trim_end().as_bytes());
        assert_eq!(code, 0, "{err}");
        assert_eq!(back, format!("{plain}\n"));
    }
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, _) = run(&["push", "encrypt", "--token", "t"], b"");
    assert_eq!(code, 2);
    let (code, _, _) = run(
        &[
            "push",
            "encrypt",
            "--token",
            "t",
            "--aes-key",
            "k",
            "--appid",
            "a",
            "--timestamp",
            "1",
            "--nonce",
            "n",
            "--format",
            "yaml",
        ],
        b"",
    );
    assert_eq!(code, 2);
    // A malformed key is rejected input, not a usage error.
    let (code, out, err) = run(
        &["push", "encrypt", "--token", "t", "--aes-key", "short", "--appid", "a", "--timestamp", "1", "--nonce", "n"],
        b"x",
    );
    one_line_error(code, &out, &err);
}
