//! Fresh market stores for the conformance suites: a temp-file SQLite always, a throwaway
//! PostgreSQL schema when `DATABASE_URL` is set (required under `WXSHOP_REQUIRE_SERVICES=1`).
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use wxshop::market::{MarketStore, new_id, store};

pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A fresh store per case, and how to throw it away.
pub struct Fresh {
    pub store: Arc<dyn MarketStore>,
    pub cleanup: BoxFut<()>,
}

pub type Factory = Arc<dyn Fn() -> BoxFut<Fresh> + Send + Sync>;

/// A temp-file SQLite per case, so WAL, busy_timeout and several connections are exercised.
pub fn sqlite_factory(prefix: &'static str) -> Factory {
    Arc::new(move || {
        Box::pin(async move {
            let path = std::env::temp_dir().join(format!("{prefix}-{}.db", new_id()));
            let store = store::SqliteStore::open(&format!("sqlite://{}", path.display())).await.expect("open sqlite");
            let cleanup: BoxFut<()> = Box::pin(async move {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            });
            Fresh { store: Arc::new(store), cleanup }
        })
    })
}

#[cfg(not(feature = "postgres"))]
pub fn postgres_factory(_schema_prefix: &'static str) -> Option<Factory> {
    if std::env::var("WXSHOP_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("built without feature `postgres` but WXSHOP_REQUIRE_SERVICES=1: this suite must not be skipped");
    }
    eprintln!("skipped: DATABASE_URL (built without feature `postgres`)");
    None
}

/// A fresh PostgreSQL schema per case, dropped afterwards.
#[cfg(feature = "postgres")]
pub fn postgres_factory(schema_prefix: &'static str) -> Option<Factory> {
    let url = super::common::service_url("DATABASE_URL")?;
    Some(Arc::new(move || {
        let url = url.clone();
        Box::pin(async move {
            let schema = format!("{schema_prefix}_{}", new_id());
            let store = store::PgStore::open_in_schema(&url, &schema).await.expect("open postgres schema");
            let keep = store.clone();
            let cleanup: BoxFut<()> = Box::pin(async move {
                keep.drop_schema().await.expect("drop schema");
            });
            Fresh { store: Arc::new(store), cleanup }
        })
    }))
}
