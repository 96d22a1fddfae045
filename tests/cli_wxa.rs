//! `wxshop wxa …` on the published vector (the CLI contract in shared/CLI.md).
#![cfg(feature = "cli")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxshop"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn decrypt_prints_the_exact_plaintext_and_one_newline() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let (code, out, err) = run(
        &[
            "wxa",
            "decrypt",
            "--session-key",
            v["session_key"].as_str().unwrap(),
            "--iv",
            v["iv"].as_str().unwrap(),
            "--appid",
            v["appid"].as_str().unwrap(),
        ],
        v["encrypted_data"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}\n", v["plaintext"].as_str().unwrap()));
}

#[test]
fn tampered_data_exits_1_with_one_line() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let mut data = v["encrypted_data"].as_str().unwrap().to_string();
    data.replace_range(10..11, if &data[10..11] == "A" { "B" } else { "A" });
    let (code, out, err) = run(
        &[
            "wxa",
            "decrypt",
            "--session-key",
            v["session_key"].as_str().unwrap(),
            "--iv",
            v["iv"].as_str().unwrap(),
            "--appid",
            "wx4f4bc4dec97d474b",
        ],
        data.as_bytes(),
    );
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn wrong_appid_exits_1() {
    let v = &common::vectors()["wxa_encrypted_data"];
    let (code, _, err) = run(
        &[
            "wxa",
            "decrypt",
            "--session-key",
            v["session_key"].as_str().unwrap(),
            "--iv",
            v["iv"].as_str().unwrap(),
            "--appid",
            "wxother",
        ],
        v["encrypted_data"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("watermark"), "{err}");
}

#[test]
fn missing_flags_exit_2() {
    let (code, _, _) = run(&["wxa", "decrypt", "--iv", "x"], b"");
    assert_eq!(code, 2);
}

#[test]
fn verify_raw_checks_sha1_of_raw_data_and_key() {
    let raw = br#"{"nickName":"Band","gender":1}"#;
    let key = "HyVFkGl5F5OQWJZZaNzBBg==";
    let sig = wxshop::crypto::sig::sha1_hex(&[&raw[..], key.as_bytes()].concat());
    let (code, out, _) = run(&["wxa", "verify-raw", "--session-key", key, "--signature", &sig], raw);
    assert_eq!((code, out.as_str()), (0, "ok\n"));
    let (code, out, err) = run(&["wxa", "verify-raw", "--session-key", key, "--signature", &sig], b"{}");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err.lines().count(), 1);
}
