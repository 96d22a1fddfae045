//! Governance hot paths, each beside a raw baseline measured in the same run:
//! - a ledger posting (transaction row, two entries, two conditional balance upserts, commit) through
//!   `store::governance::post`, beside the same statements sent raw on the same SQLite pool;
//! - the merchant score over 10 000 reviews and 2 000 shipments, beside a plain loop summing the stars.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wxshop::market::governance::ledger::{Account, NegativePolicy, TxnBuilder, TxnKind};
use wxshop::market::governance::review::Ratings;
use wxshop::market::governance::score::{ReviewSample, ScoreInputs, ScorePolicy, ShipmentSample, Stars, compute};
use wxshop::market::store::governance::post;
use wxshop::market::{Money, store};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn ledger(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = std::env::temp_dir().join(format!("wxshop-gov-bench-{}.db", wxshop::market::new_id()));
    let sq = rt.block_on(store::SqliteStore::open(&format!("sqlite://{}", path.display()))).unwrap();
    let pool = sq.pool().clone();
    let store: Arc<dyn store::MarketStore> = Arc::new(sq);
    let seq = AtomicU64::new(0);
    let policy = NegativePolicy::default();
    let mut g = c.benchmark_group("governance/ledger_post");
    g.throughput(Throughput::Elements(1));
    g.bench_function("post (store::governance::post)", |b| {
        b.to_async(&rt).iter(|| async {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            let t = TxnBuilder::new(TxnKind::Sale, "bench")
                .transfer(Account::Clearing, Account::MerchantPending("m1".into()), Money::fen(100))
                .build(format!("p{n}"), t0())
                .unwrap();
            let mut tx = store.begin().await.unwrap();
            post(&mut *tx, &t, &policy).await.unwrap();
            tx.commit().await.unwrap();
        })
    });
    g.bench_function("raw SQL baseline (same statements)", |b| {
        b.to_async(&rt).iter(|| async {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            let id = format!("r{n}");
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("INSERT INTO gov_ledger_txns (txn_id, kind, reference, reverses, at) VALUES ($1, 'sale', 'raw', NULL, 0)")
                .bind(&id)
                .execute(&mut *tx)
                .await
                .unwrap();
            for (seq, (account, amount)) in [("clearing", -100i64), ("merchant:m2:pending", 100)].into_iter().enumerate() {
                sqlx::query("INSERT INTO gov_ledger_entries (txn_id, seq, account, amount_fen) VALUES ($1, $2, $3, $4)")
                    .bind(&id)
                    .bind(seq as i64)
                    .bind(account)
                    .bind(amount)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query(
                    "INSERT INTO gov_balances (account, balance_fen, updated_at) VALUES ($1, $2, 0) \
                     ON CONFLICT (account) DO UPDATE SET balance_fen = gov_balances.balance_fen + excluded.balance_fen",
                )
                .bind(account)
                .bind(amount)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        })
    });
    g.finish();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn score(c: &mut Criterion) {
    let now = t0();
    let reviews: Vec<ReviewSample> = (0..10_000)
        .map(|i| ReviewSample {
            at: now - Duration::minutes(i * 7),
            ratings: Ratings::new(1 + (i % 5) as u8, 1 + (i % 4) as u8, 1 + (i % 3) as u8).unwrap(),
            excluded: i % 17 == 0,
        })
        .collect();
    let shipments: Vec<ShipmentSample> = (0..2_000)
        .map(|i| ShipmentSample {
            deadline: now - Duration::hours(i),
            shipped_at: Some(now - Duration::hours(i) + Duration::minutes(i % 3 - 1)),
        })
        .collect();
    let inputs = ScoreInputs { reviews, shipments, orders: 2_000, prior: Stars::default(), ..ScoreInputs::default() };
    let policy = ScorePolicy::default();
    let mut g = c.benchmark_group("governance/score");
    g.throughput(Throughput::Elements(12_000));
    g.bench_function("compute (10k reviews, 2k shipments)", |b| {
        b.iter(|| compute("m1", std::hint::black_box(&inputs), now, &policy))
    });
    g.bench_function("raw baseline (sum the stars)", |b| {
        b.iter(|| {
            let mut s = 0i64;
            for r in &std::hint::black_box(&inputs).reviews {
                if !r.excluded {
                    s += r.ratings.item as i64 + r.ratings.logistics as i64 + r.ratings.service as i64;
                }
            }
            for sh in &inputs.shipments {
                s += (sh.shipped_at <= Some(sh.deadline)) as i64;
            }
            s
        })
    });
    g.finish();
}

criterion_group!(benches, ledger, score);
criterion_main!(benches);
