//! The emulator's cashier page in headless Chromium: tapping Pay pays the order, the signed
//! notification reaches the merchant's handler, and the page shows the order paid.
//! Skipped (with a notice) when /usr/bin/chromium is absent; CI installs it.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wxshop::emulator::pay::DEFAULT_MCHID;
use wxshop::emulator::{DEFAULT_APPID, Emulator};
use wxshop::pay::notify::NotifyService;
use wxshop::pay::transactions::JsapiPrepay;
use wxshop::pay::{Notification, NotificationResource};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Loads `url` in headless Chromium, lets its scripts run for `budget_ms` of virtual time, and
/// returns the DOM. Killed after 90 s of real time.
fn dump_dom(url: &str, budget_ms: u32) -> String {
    let profile = std::env::temp_dir().join(format!("wxshop-chromium-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&profile).unwrap();
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom",
            url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tapping_pay_in_the_cashier_pays_the_order() {
    if !std::path::Path::new(CHROMIUM).exists() {
        eprintln!("skipped: {CHROMIUM} is absent (apt-get install -y chromium to run the cashier test)");
        return;
    }
    let emu = Emulator::start_default().await.unwrap();
    let pay = emu.pay_client().unwrap();

    // The merchant's notify endpoint.
    let paid: Arc<Mutex<Vec<String>>> = Arc::default();
    let paid2 = paid.clone();
    let svc = NotifyService::new(pay.clone(), move |n: Notification| {
        let paid = paid2.clone();
        async move {
            if let NotificationResource::Transaction(t) = n.resource
                && t.is_paid()
            {
                paid.lock().unwrap().push(t.out_trade_no);
            }
            Ok(())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notify_url = format!("http://{}/wx/pay/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, svc.router("/wx/pay/notify")).await.unwrap() });

    let openid = emu.openid_of(DEFAULT_APPID, "alice");
    pay.transactions()
        .jsapi(JsapiPrepay::new(DEFAULT_APPID, "Oolong tea 250 g", "ORDER_CHROME_1", &notify_url, 6800, openid))
        .await
        .unwrap();
    assert_eq!(emu.pay_order_state(DEFAULT_MCHID, "ORDER_CHROME_1").as_deref(), Some("NOTPAY"));

    let url = format!("{}/?autopay=ORDER_CHROME_1", emu.base_url());
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url, 4000)).await.unwrap();
    assert!(dom.contains("WeChat Pay cashier"), "the cashier page rendered: {dom}");
    assert!(
        dom.contains(r#"data-order="ORDER_CHROME_1" data-mchid="1230000109" data-state="SUCCESS""#),
        "the page shows the order paid: {dom}"
    );

    // The merchant saw it paid, through the signed notification.
    let deadline = Instant::now() + Duration::from_secs(10);
    while paid.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*paid.lock().unwrap(), vec!["ORDER_CHROME_1".to_string()]);
    assert!(pay.transactions().query_by_out_trade_no("ORDER_CHROME_1").await.unwrap().is_paid());
    assert_eq!(emu.calls("/v3/certificates"), 0);
}
