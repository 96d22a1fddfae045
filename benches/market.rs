//! Marketplace hot paths, each beside the raw-SQL rate of the same statements in the same run:
//! - checkout (reserve + group + order + line + reservation + ledger + payment record + audit + outbox +
//!   timer + idempotency key, then the prepay id stored) on one hot SKU and spread over many SKUs;
//! - the catalog page query (a category's newest listed products, 20 per page, first and deep pages).
//!
//! SQLite always (a WAL file in the temp dir); PostgreSQL too when `DATABASE_URL` is set (feature
//! `postgres`; a throwaway schema). `MARKET_BENCH_SKUS` sets the catalog size (default 100 000).
//! After criterion, a short concurrent run (8 clients) prints orders/s, and a sampled run prints the
//! page query's p50/p99.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wxshop::market::*;

#[path = "common/market_fixture.rs"]
mod market_fixture;
use market_fixture::*;

fn bench_fixture(c: &mut Criterion, rt: &tokio::runtime::Runtime, f: &Fixture) {
    let mut g = c.benchmark_group(format!("checkout_{}", f.name));
    g.throughput(Throughput::Elements(1));
    let hot = f.skus[0].clone();
    g.bench_function("hot_sku/raw_sql", |b| b.to_async(rt).iter(|| raw_checkout(f, &hot, f.next())));
    g.bench_function("hot_sku/wxshop", |b| b.to_async(rt).iter(|| wx_checkout(f, &hot, f.next())));
    // wxshop first here (raw first above): the database grows as the benches run.
    g.bench_function("spread/wxshop", |b| {
        b.to_async(rt).iter(|| {
            let n = f.next();
            wx_checkout(f, f.spread_sku(n), n)
        })
    });
    g.bench_function("spread/raw_sql", |b| {
        b.to_async(rt).iter(|| {
            let n = f.next();
            raw_checkout(f, f.spread_sku(n), n)
        })
    });
    g.finish();
    let mut g = c.benchmark_group(format!("catalog_page_{}", f.name));
    let deep = f.deep_cursor.clone();
    g.bench_function("first/raw_sql", |b| b.to_async(rt).iter(|| raw_page(f, "")));
    g.bench_function("first/wxshop", |b| b.to_async(rt).iter(|| wx_page(f, false)));
    g.bench_function("deep/raw_sql", |b| {
        let after = deep_after(&deep);
        b.to_async(rt).iter(|| raw_page(f, &after))
    });
    g.bench_function("deep/wxshop", |b| b.to_async(rt).iter(|| wx_page(f, true)));
    g.finish();
}

async fn report(f: &Fixture) {
    println!("\n{}: concurrent checkout, 8 clients, 4 alternating 1 s rounds each", f.name);
    for hot in [true, false] {
        // Alternate raw and wxshop rounds so that the growing database does not favour either.
        let (mut raw, mut wx) = (0.0, 0.0);
        for round in 0..4 {
            let raw_first = round % 2 == 0;
            let a = concurrent_rate(f, 8, 1.0, hot, raw_first).await;
            let b = concurrent_rate(f, 8, 1.0, hot, !raw_first).await;
            if raw_first {
                raw += a / 4.0;
                wx += b / 4.0;
            } else {
                wx += a / 4.0;
                raw += b / 4.0;
            }
        }
        let what = if hot { "hot SKU " } else { "spread  " };
        println!(
            "  {what} raw SQL {raw:>7.0} orders/s   wxshop {wx:>7.0} orders/s   ({:.0} % of raw)",
            wx / raw * 100.0
        );
    }
    println!("{}: catalog page query, 2000 samples", f.name);
    for deep in [false, true] {
        let (rp50, rp99) = page_percentiles(f, deep, true, 2000).await;
        let (wp50, wp99) = page_percentiles(f, deep, false, 2000).await;
        let what = if deep { "deep page " } else { "first page" };
        println!("  {what} raw SQL p50 {rp50:>9.1?} p99 {rp99:>9.1?}   wxshop p50 {wp50:>9.1?} p99 {wp99:>9.1?}");
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let path = std::env::temp_dir().join(format!("wxshop-bench-{}.db", new_id()));
    let sqlite = rt.block_on(async {
        let s = store::SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
        let raw = Raw::Sqlite(s.pool().clone());
        fixture("sqlite", Arc::new(s), raw, sku_count(100_000)).await
    });
    bench_fixture(c, &rt, &sqlite);
    rt.block_on(report(&sqlite));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let schema = format!("wxshop_bench_{}", new_id());
        let (pg, store) = rt.block_on(async {
            let s = store::PgStore::open_in_schema(&url, &schema).await.unwrap();
            let raw = Raw::Pg(s.pool().clone());
            (fixture("postgres", Arc::new(s.clone()), raw, sku_count(100_000)).await, s)
        });
        bench_fixture(c, &rt, &pg);
        rt.block_on(report(&pg));
        rt.block_on(store.drop_schema()).unwrap();
    }
    #[cfg(not(feature = "postgres"))]
    println!("postgres: built without feature `postgres`; skipped");
}

criterion_group! {
    name = market;
    config = Criterion::default().sample_size(20);
    targets = benches
}
criterion_main!(market);
