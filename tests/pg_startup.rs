//! Several instances starting at once on one empty PostgreSQL schema (a fresh deployment of N
//! storefronts): every one of them must open the store, and the migrations must run exactly once.
#![cfg(feature = "postgres")]

mod common;

use wxshop::market::{new_id, store::PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_instances_opening_one_empty_schema_all_start_and_migrate_once() {
    let Some(url) = common::service_url("DATABASE_URL") else { return };
    let schema = format!("startup_{}", new_id());
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move { PgStore::open_in_schema(&url, &schema).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.expect("join").expect("every instance opens the schema"));
    }
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .expect("migrations dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql")))
        .count() as i64;
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}._sqlx_migrations WHERE success"
    )))
    .fetch_one(stores[0].pool())
    .await
    .expect("count migrations");
    assert_eq!(applied, migrations);
    let first = stores.swap_remove(0);
    for s in stores {
        s.pool().close().await;
    }
    first.drop_schema().await.expect("drop schema");
}
