//! The Redis token store: one issuance per expiry across processes, lease takeover.
//! Runs when REDIS_URL is set (CI sets it and WXSHOP_REQUIRE_SERVICES=1).
#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use wxshop::emulator::{DEFAULT_APPID, DEFAULT_SECRET, Emulator};
use wxshop::token::{RedisTokenStore, TokenManagerConfig, TokenStore};
use wxshop::{AppConfig, Client};

fn config(prefix: &str) -> TokenManagerConfig {
    TokenManagerConfig {
        key_prefix: prefix.to_string(),
        lease_ttl: Duration::from_secs(1),
        poll_interval: Duration::from_millis(20),
        wait_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

/// Four "processes": separate clients with separate in-memory state, one Redis.
async fn four_processes(emu: &wxshop::emulator::EmulatorHandle, url: &str, prefix: &str) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        let store = Arc::new(RedisTokenStore::connect(url).await.unwrap());
        clients.push(
            Client::builder(AppConfig::new(DEFAULT_APPID, DEFAULT_SECRET))
                .endpoints(emu.endpoints())
                .token_store(store)
                .token_config(config(prefix))
                .build()
                .unwrap(),
        );
    }
    clients
}

async fn hammer(clients: &[Client]) -> std::collections::HashSet<String> {
    let mut tasks = Vec::new();
    for c in clients {
        for _ in 0..50 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { c.access_token().await.unwrap().expose_secret().to_string() }));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_processes_on_one_redis_issue_one_token_per_expiry() {
    let Some(url) = common::service_url("REDIS_URL") else { return };
    let emu = Emulator::start_default().await.unwrap();
    // Short-lived tokens so the test sees an expiry: refresh starts a tenth before it.
    emu.state().set_token_ttl(Duration::from_secs(3));
    let prefix = format!("wxshop-test:{}:", uuid::Uuid::new_v4());
    let clients = four_processes(&emu, &url, &prefix).await;

    let first = hammer(&clients).await;
    assert_eq!(first.len(), 1);
    assert_eq!(emu.counter("token.issued"), 1);

    tokio::time::sleep(Duration::from_millis(2900)).await;
    let second = hammer(&clients).await;
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    assert_eq!(emu.counter("token.issued"), 2, "exactly one issuance for the second expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_is_taken_over() {
    let Some(url) = common::service_url("REDIS_URL") else { return };
    let emu = Emulator::start_default().await.unwrap();
    let prefix = format!("wxshop-test:{}:", uuid::Uuid::new_v4());
    let store = RedisTokenStore::connect(&url).await.unwrap();
    // A process took the lease and crashed before storing a token.
    let key = format!("{prefix}{DEFAULT_APPID}");
    assert!(store.try_lease(&key, "crashed-process", Duration::from_millis(800)).await.unwrap());
    assert!(!store.try_lease(&key, "someone-else", Duration::from_secs(1)).await.unwrap());

    let clients = four_processes(&emu, &url, &prefix).await;
    let seen = hammer(&clients).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(emu.counter("token.issued"), 1);
}

#[tokio::test]
async fn invalidate_only_removes_the_rejected_token() {
    let Some(url) = common::service_url("REDIS_URL") else { return };
    let store = RedisTokenStore::connect(&url).await.unwrap();
    let key = format!("wxshop-test:{}:app", uuid::Uuid::new_v4());
    let token = wxshop::token::AccessToken::new("T1", Duration::from_secs(60));
    store.set(&key, &token).await.unwrap();
    store.invalidate(&key, &secrecy::SecretString::from("OTHER".to_string())).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().value.expose_secret(), "T1");
    store.invalidate(&key, &secrecy::SecretString::from("T1".to_string())).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_none());
    assert!(store.try_mark_forced(&key, Duration::from_secs(30)).await.unwrap());
    assert!(!store.try_mark_forced(&key, Duration::from_secs(30)).await.unwrap());
}
