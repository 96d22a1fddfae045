//! The load generator of `scripts/multi-instance.sh` and `scripts/crash-safety.sh`: buyers log in
//! through the emulator, check out one unit of the seeded tea SKUs on a storefront instance, and pay
//! in the emulator's cashier (which notifies the instance that created the payment). Each buyer uses
//! a different instance for every step, so sessions must be shared. Bounded in buyers, attempts and
//! time; loopback only. Prints one JSON summary; with `--paid FILE` writes the group ids whose payment
//! the cashier accepted, one a line.
//!
//! ```text
//! cargo run --release --example loadgen -- --emulator http://127.0.0.1:4000 \
//!     --instances http://127.0.0.1:3001,http://127.0.0.1:3002 --buyers 16 --attempts 4 --secs 60
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wxshop::http::{Body, Host, Http, HttpConfig, Request};

struct Args {
    emulator: String,
    instances: Vec<String>,
    buyers: usize,
    attempts: usize,
    secs: u64,
    paid: Option<String>,
    user_prefix: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        emulator: String::new(),
        instances: Vec::new(),
        buyers: 16,
        attempts: 4,
        secs: 60,
        paid: None,
        user_prefix: "buyer".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--emulator" => a.emulator = v,
            "--instances" => a.instances = v.split(',').map(str::to_string).collect(),
            "--buyers" => a.buyers = v.parse().map_err(|_| "bad --buyers")?,
            "--attempts" => a.attempts = v.parse().map_err(|_| "bad --attempts")?,
            "--secs" => a.secs = v.parse().map_err(|_| "bad --secs")?,
            "--paid" => a.paid = Some(v),
            "--user-prefix" => a.user_prefix = v,
            other => return Err(format!("unknown option {other}")),
        }
    }
    let loopback = |u: &str| u.starts_with("http://127.0.0.1:") || u.starts_with("http://localhost:");
    if !loopback(&a.emulator) || a.instances.is_empty() || !a.instances.iter().all(|u| loopback(u)) {
        return Err("--emulator and --instances must be loopback http URLs".into());
    }
    Ok(a)
}

#[derive(Default)]
struct Tally {
    logins: AtomicU64,
    shares: AtomicU64,
    login_errors: AtomicU64,
    checkouts: AtomicU64,
    out_of_stock: AtomicU64,
    checkout_errors: AtomicU64,
    payments: AtomicU64,
    payment_errors: AtomicU64,
}

async fn call(
    http: &Http,
    method: Method,
    url: &str,
    body: Option<Value>,
    bearer: Option<&str>,
) -> Result<(u16, Value), String> {
    let mut req = Request::new(method, Host::Absolute, url.to_string());
    if let Some(b) = body {
        req = req.body(Body::json(&b).map_err(|e| e.to_string())?);
    }
    if let Some(t) = bearer {
        let v = format!("Bearer {t}").parse().map_err(|_| "bad token")?;
        req = req.header(reqwest::header::AUTHORIZATION, v);
    }
    let r = http.execute(&req, None).await.map_err(|e| e.to_string())?;
    Ok((r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null)))
}

async fn buyer(
    http: Http,
    a: Arc<Args>,
    n: usize,
    skus: Arc<Vec<String>>,
    t: Arc<Tally>,
    deadline: Instant,
) -> Vec<String> {
    let mut paid = Vec::new();
    let inst = |k: usize| a.instances[(n + k) % a.instances.len()].clone();
    let user = format!("{}-{n}", a.user_prefix);
    let login = async {
        let (_, c) = call(
            &http,
            Method::POST,
            &format!("{}/__emulator/login", a.emulator),
            Some(json!({"appid": wxshop::emulator::DEFAULT_APPID, "user": user})),
            None,
        )
        .await?;
        let code = c["code"].as_str().ok_or(format!("no code: {c}"))?.to_string();
        let (s, r) =
            call(&http, Method::POST, &format!("{}/api/login", inst(0)), Some(json!({ "code": code })), None).await?;
        r["session_token"].as_str().map(str::to_string).ok_or(format!("login {s}: {r}"))
    };
    let token = match login.await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {user} login: {e}");
            t.login_errors.fetch_add(1, Ordering::Relaxed);
            return paid;
        }
    };
    t.logins.fetch_add(1, Ordering::Relaxed);
    // A share code needs the app's access_token: every instance wants one, WeChat should issue one.
    match call(&http, Method::GET, &format!("{}/api/share?product=42", inst(1)), None, Some(&token)).await {
        Ok((200, _)) => {
            t.shares.fetch_add(1, Ordering::Relaxed);
        }
        Ok((s, v)) => eprintln!("loadgen: share {s}: {v}"),
        Err(e) => eprintln!("loadgen: share: {e}"),
    }
    for k in 0..a.attempts {
        if Instant::now() > deadline {
            break;
        }
        let sku = &skus[(n + k) % skus.len()];
        let body = json!({ "idempotency_key": format!("{user}-{k}"), "lines": [{ "sku_id": sku, "qty": 1 }] });
        let (s, co) =
            match call(&http, Method::POST, &format!("{}/api/checkout", inst(k + 1)), Some(body), Some(&token)).await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("loadgen: checkout: {e}");
                    t.checkout_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
        let Some(group) = co["group"]["id"].as_str().map(str::to_string) else {
            if co.to_string().to_lowercase().contains("stock") {
                t.out_of_stock.fetch_add(1, Ordering::Relaxed);
            } else {
                eprintln!("loadgen: checkout {s}: {co}");
                t.checkout_errors.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        t.checkouts.fetch_add(1, Ordering::Relaxed);
        // The buyer taps Pay: the emulator notifies the instance that created the payment.
        let url = format!("{}/__emulator/pay/orders/{}/{group}/pay", a.emulator, wxshop::emulator::pay::DEFAULT_MCHID);
        match call(&http, Method::POST, &url, Some(json!({})), None).await {
            Ok((200, _)) => {
                t.payments.fetch_add(1, Ordering::Relaxed);
                paid.push(group);
            }
            Ok((s, v)) => {
                eprintln!("loadgen: pay {group}: {s} {v}");
                t.payment_errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("loadgen: pay {group}: {e}");
                t.payment_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    paid
}

/// The seeded tea SKUs (one merchant, paid directly): every buyer competes for them.
async fn tea_skus(http: &Http, base: &str) -> Result<Vec<String>, String> {
    let (_, list) = call(http, Method::GET, &format!("{base}/api/products?limit=50"), None, None).await?;
    let items = list["items"].as_array().or(list.as_array()).ok_or(format!("no products: {list}"))?.clone();
    let mut skus = Vec::new();
    for p in items {
        let id = p["id"].as_str().or(p["product"]["id"].as_str()).unwrap_or_default().to_string();
        let (_, d) = call(http, Method::GET, &format!("{base}/api/products/{id}"), None, None).await?;
        let tea = d.to_string().contains("Longjing") || d.to_string().contains("Tieguanyin");
        if let (true, Some(arr)) = (tea, d["skus"].as_array()) {
            skus.extend(arr.iter().filter_map(|s| s["id"].as_str().or(s["sku"]["id"].as_str()).map(str::to_string)));
        }
    }
    if skus.is_empty() {
        return Err("no tea SKUs found".into());
    }
    Ok(skus)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let endpoints = wxshop::Endpoints::emulator(&a.emulator).expect("loopback URL");
    let config = HttpConfig { timeout: Duration::from_secs(10), ..HttpConfig::default() };
    let http = Http::new(endpoints, config).expect("http client");
    let skus = match tea_skus(&http, &a.instances[0]).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.secs);
    let tasks: Vec<_> = (0..a.buyers)
        .map(|n| tokio::spawn(buyer(http.clone(), a.clone(), n, skus.clone(), tally.clone(), deadline)))
        .collect();
    let mut paid = Vec::new();
    for t in tasks {
        paid.extend(t.await.unwrap_or_default());
    }
    if let Some(f) = &a.paid {
        let text: String = paid.iter().map(|g| format!("{g}\n")).collect();
        if let Err(e) = std::fs::write(f, text) {
            eprintln!("loadgen: cannot write {f}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "buyers": a.buyers, "instances": a.instances.len(), "skus": skus.len(),
            "logins": g(&tally.logins), "login_errors": g(&tally.login_errors), "shares": g(&tally.shares),
            "checkouts": g(&tally.checkouts), "out_of_stock": g(&tally.out_of_stock),
            "checkout_errors": g(&tally.checkout_errors),
            "payments": g(&tally.payments), "payment_errors": g(&tally.payment_errors),
            "secs": started.elapsed().as_secs_f64(),
        })
    );
    std::process::ExitCode::SUCCESS
}
