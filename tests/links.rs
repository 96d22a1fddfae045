//! Share links, mini-program codes and referral tokens against the in-process emulator: the exact
//! body WeChat receives from every endpoint, local validation that spends nothing, WeChat's
//! errcodes from the emulator, quotas and caps, and codes that decode to what they should.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use wxshop::emulator::mp::link::Limits;
use wxshop::emulator::mp::wxacode::{limited_payload, qrcode_payload, unlimited_payload};
use wxshop::emulator::{DEFAULT_APPID, Emulator, EmulatorHandle, Fault};
use wxshop::http::Request;
use wxshop::mp::link::{EnvVersion, Expiry, GenerateScheme, GenerateShortLink, GenerateUrlLink};
use wxshop::mp::referral::{Referral, ReferralError, ReferralKey};
use wxshop::mp::wxacode::{CreateQrCode, GetUnlimitedCode, GetWxaCode, LineColor};
use wxshop::{ErrCode, Error};

async fn emu() -> (EmulatorHandle, wxshop::Client) {
    let emu = Emulator::start_default().await.unwrap();
    let client = emu.client().unwrap();
    (emu, client)
}

/// Reads the QR code in a PNG: the payload it holds.
fn decode_qr(png_bytes: &[u8]) -> String {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let p = &buf[y * info.line_size + x * channels..][..channels];
        if channels == 4 && p[3] == 0 {
            return 255; // transparent background reads as paper
        }
        ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    grids[0].decode().unwrap().1
}

fn png_size(png_bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
    (reader.info().width, reader.info().height)
}

#[tokio::test]
async fn every_link_endpoint_sends_wechats_exact_body() {
    let (emu, client) = emu().await;
    let links = client.links();

    let req =
        GenerateScheme::new(Expiry::days(7)).path("pages/product/index").query("id=42").env_version(EnvVersion::Trial);
    let openlink = links.generate_scheme(&req).await.unwrap();
    assert_eq!(
        emu.last_json("/wxa/generatescheme").unwrap(),
        json!({"jump_wxa": {"path": "pages/product/index", "query": "id=42", "env_version": "trial"}, "expire_type": 1, "expire_interval": 7})
    );
    assert!(openlink.starts_with("weixin://dl/business/?t="), "{openlink}");
    assert_eq!(openlink.len(), "weixin://dl/business/?t=".len() + 11);

    let info = links.query_scheme(&openlink).await.unwrap();
    assert_eq!(emu.last_json("/wxa/queryscheme").unwrap(), json!({"scheme": openlink, "query_type": 0}));
    assert_eq!(
        (info.appid.as_str(), info.path.as_str(), info.query.as_str()),
        (DEFAULT_APPID, "pages/product/index", "id=42")
    );
    assert_eq!(info.env_version, "trial");
    assert_eq!(info.expire_time - info.create_time, 7 * 86_400);

    let remaining = links.remaining_visits().await.unwrap();
    assert_eq!(emu.last_json("/wxa/queryscheme").unwrap(), json!({"query_type": 1}));
    assert_eq!(remaining, 3_000_000);

    let expire_at = Utc::now() + chrono::Duration::days(3);
    let url_link = links
        .generate_url_link(&GenerateUrlLink::new(Expiry::at(expire_at)).path("pages/index/index").query("ref=abc"))
        .await
        .unwrap();
    assert_eq!(
        emu.last_json("/wxa/generate_urllink").unwrap(),
        json!({"path": "pages/index/index", "query": "ref=abc", "expire_type": 0, "expire_time": expire_at.timestamp()})
    );
    assert!(url_link.starts_with("https://wxaurl.cn/"), "{url_link}");
    let info = links.query_url_link(&url_link).await.unwrap();
    assert_eq!(emu.last_json("/wxa/query_urllink").unwrap(), json!({"url_link": url_link, "query_type": 0}));
    assert_eq!(
        (info.path.as_str(), info.query.as_str(), info.expire_time),
        ("pages/index/index", "ref=abc", expire_at.timestamp())
    );
    assert_eq!(info.env_version, "release");

    let short = links
        .generate_short_link(&GenerateShortLink::new("pages/product/index?id=42").title("Blue mug").permanent(true))
        .await
        .unwrap();
    assert_eq!(
        emu.last_json("/wxa/genwxashortlink").unwrap(),
        json!({"page_url": "pages/product/index?id=42", "page_title": "Blue mug", "is_permanent": true})
    );
    assert!(short.starts_with(&format!("#小程序://{DEFAULT_APPID}/Blue mug/")), "{short}");
}

#[tokio::test]
async fn every_code_endpoint_sends_wechats_exact_body() {
    let (emu, client) = emu().await;
    let codes = client.wxacode();
    codes.get(&GetWxaCode::new("pages/product/index?id=42").width(300).env_version(EnvVersion::Develop)).await.unwrap();
    assert_eq!(
        emu.last_json("/wxa/getwxacode").unwrap(),
        json!({"path": "pages/product/index?id=42", "width": 300, "env_version": "develop"})
    );
    codes
        .get_unlimited(
            &GetUnlimitedCode::new("p=42")
                .page("pages/product/index")
                .check_path(false)
                .line_color(LineColor { r: 200, g: 0, b: 0 })
                .hyaline(true),
        )
        .await
        .unwrap();
    assert_eq!(
        emu.last_json("/wxa/getwxacodeunlimit").unwrap(),
        json!({"scene": "p=42", "page": "pages/product/index", "check_path": false, "auto_color": false,
               "line_color": {"r": 200, "g": 0, "b": 0}, "is_hyaline": true})
    );
    codes.create_qrcode(&CreateQrCode::new("pages/index/index").width(280)).await.unwrap();
    assert_eq!(
        emu.last_json("/cgi-bin/wxaapp/createwxaqrcode").unwrap(),
        json!({"path": "pages/index/index", "width": 280})
    );
}

#[tokio::test]
async fn codes_are_pngs_holding_page_and_scene() {
    let (_emu, client) = emu().await;
    let codes = client.wxacode();

    let img = codes.get_unlimited(&GetUnlimitedCode::new("p=42&c=7").page("pages/product/index")).await.unwrap();
    assert_eq!(img.content_type, "image/png");
    assert_eq!(png_size(&img.bytes), (430, 430));
    assert_eq!(
        decode_qr(&img.bytes),
        "wxemu://wxacode/wx_emulator_app/pages/product/index?scene=p%3D42%26c%3D7&env_version=release"
    );
    assert_eq!(
        decode_qr(&img.bytes),
        unlimited_payload(DEFAULT_APPID, "pages/product/index", "p=42&c=7", EnvVersion::Release)
    );

    // Colored lines on a transparent background still scan.
    let img = codes
        .get_unlimited(
            &GetUnlimitedCode::new("x")
                .page("pages/a/index")
                .line_color(LineColor { r: 0, g: 80, b: 160 })
                .hyaline(true),
        )
        .await
        .unwrap();
    assert_eq!(decode_qr(&img.bytes), "wxemu://wxacode/wx_emulator_app/pages/a/index?scene=x&env_version=release");

    let img = codes.get(&GetWxaCode::new("pages/product/index?id=42").width(1280)).await.unwrap();
    assert_eq!(png_size(&img.bytes), (1280, 1280));
    assert_eq!(decode_qr(&img.bytes), limited_payload(DEFAULT_APPID, "pages/product/index?id=42", EnvVersion::Release));
    assert_eq!(decode_qr(&img.bytes), "wxemu://wxacode/wx_emulator_app/pages/product/index?id=42&env_version=release");

    let img = codes.create_qrcode(&CreateQrCode::new("pages/index/index")).await.unwrap();
    assert_eq!(decode_qr(&img.bytes), qrcode_payload(DEFAULT_APPID, "pages/index/index"));
}

#[tokio::test]
async fn a_json_error_is_a_typed_error_not_an_image() {
    let (emu, client) = emu().await;
    // The same endpoint answers an image or a JSON errcode, both HTTP 200: the executor branches.
    let ok = Request::mp_post("/wxa/getwxacodeunlimit", &json!({"scene": "a"})).unwrap();
    match client.call_raw(&ok).await.unwrap() {
        wxshop::http::MpBody::Binary { content_type, bytes } => {
            assert_eq!(content_type, "image/png");
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
        other => panic!("expected an image, got {other:?}"),
    }
    // A scene WeChat refuses, sent raw (the typed request refuses it before sending).
    let req = Request::mp_post("/wxa/getwxacodeunlimit", &json!({"scene": "a b"})).unwrap();
    assert_eq!(client.call_raw(&req).await.unwrap_err().errcode(), Some(ErrCode::InvalidScene));
    let req = Request::mp_post("/wxa/getwxacodeunlimit", &json!({"scene": "x".repeat(33)})).unwrap();
    assert_eq!(client.call_raw(&req).await.unwrap_err().errcode(), Some(ErrCode::InvalidSceneLength));
    let req = Request::mp_post("/wxa/getwxacode", &json!({"path": ""})).unwrap();
    assert_eq!(client.call_raw(&req).await.unwrap_err().errcode(), Some(ErrCode::InvalidCodePath));

    // An injected WeChat error on a valid request comes back as that errcode.
    emu.inject(Fault {
        path: "/wxa/getwxacode".into(),
        count: 1,
        errcode: Some(40097),
        status: None,
        reset: false,
        delay_ms: None,
        after: false,
    });
    let err = client.wxacode().get(&GetWxaCode::new("pages/index/index")).await.unwrap_err();
    assert!(matches!(err, Error::Api { errcode: ErrCode::InvalidArgs, .. }), "{err:?}");
    // And the next one is an image again.
    assert_eq!(client.wxacode().get(&GetWxaCode::new("pages/index/index")).await.unwrap().content_type, "image/png");
}

#[tokio::test]
async fn invalid_scenes_fail_before_sending() {
    let (emu, client) = emu().await;
    for (scene, needle) in [
        ("", "scene is empty"),
        ("推广", "scene has '推' at position 0"),
        ("a=%20", "scene has '%' at position 2"),
        ("abcdefghijklmnopqrstuvwxyz0123456", "scene is 33 characters"),
    ] {
        let err = client.wxacode().get_unlimited(&GetUnlimitedCode::new(scene)).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidRequest(m) if m.contains(needle)), "{scene:?}: {err}");
    }
    assert_eq!(emu.calls("/wxa/getwxacodeunlimit"), 0);
}

#[tokio::test]
async fn local_rules_spend_no_quota() {
    let (emu, client) = emu().await;
    let links = client.links();
    assert!(links.generate_scheme(&GenerateScheme::new(Expiry::days(31))).await.is_err());
    assert!(links.generate_url_link(&GenerateUrlLink::new(Expiry::days(1)).query("a=中")).await.is_err());
    assert!(links.generate_url_link(&GenerateUrlLink::new(Expiry::days(1)).path("pages/a?x=1")).await.is_err());
    assert!(links.generate_short_link(&GenerateShortLink::new("")).await.is_err());
    assert_eq!(
        emu.calls("/wxa/generatescheme") + emu.calls("/wxa/generate_urllink") + emu.calls("/wxa/genwxashortlink"),
        0
    );
}

#[tokio::test]
async fn the_emulator_refuses_what_wechat_refuses() {
    let (emu, client) = emu().await;
    let raw = |path: &str, body: serde_json::Value| Request::mp_post(path.to_string(), &body).unwrap();
    let now = Utc::now().timestamp();
    let cases = [
        (raw("/wxa/generatescheme", json!({"expire_type": 1, "expire_interval": 31})), ErrCode::ExpireTimeInvalid),
        (raw("/wxa/generate_urllink", json!({"expire_time": now + 30})), ErrCode::ExpireTimeInvalid),
        (
            raw("/wxa/generate_urllink", json!({"expire_type": 1, "expire_interval": 1, "env_version": "beta"})),
            ErrCode::InvalidEnvVersion,
        ),
        (
            raw("/wxa/generate_urllink", json!({"expire_type": 1, "expire_interval": 1, "query": "a b"})),
            ErrCode::InvalidQuery,
        ),
        (
            raw(
                "/wxa/generatescheme",
                json!({"jump_wxa": {"path": "pages/a?x=1"}, "expire_type": 1, "expire_interval": 1}),
            ),
            ErrCode::InvalidPagePath,
        ),
        (raw("/wxa/queryscheme", json!({"scheme": "weixin://dl/business/?t=nope"})), ErrCode::LinkNotFound),
        (raw("/wxa/getwxacodeunlimit", json!({"scene": "a", "page": "/pages/a/index"})), ErrCode::InvalidPage),
        (raw("/wxa/getwxacode", json!({"path": "pages/a/index?scancode_time=1"})), ErrCode::ScancodeTimeReserved),
        (raw("/cgi-bin/wxaapp/createwxaqrcode", json!({"path": "p".repeat(129)})), ErrCode::InvalidCodePath),
    ];
    for (req, code) in cases {
        let err = client.call_raw(&req).await.unwrap_err();
        assert_eq!(err.errcode(), Some(code), "{} {:?}", req.path, err);
    }
    // Only published pages, once the app's pages are known.
    emu.set_published_pages(DEFAULT_APPID, &["pages/index/index"]);
    let err = client
        .links()
        .generate_scheme(&GenerateScheme::new(Expiry::days(1)).path("pages/gone/index"))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidPagePath));
    let err = client.wxacode().get_unlimited(&GetUnlimitedCode::new("a").page("pages/gone/index")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidPage));
    client
        .wxacode()
        .get_unlimited(&GetUnlimitedCode::new("a").page("pages/gone/index").check_path(false))
        .await
        .unwrap();
    let err = client.links().generate_short_link(&GenerateShortLink::new("pages/gone/index")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::InvalidUrl));
}

#[tokio::test]
async fn exhausted_quotas_give_typed_errors() {
    let (emu, client) = emu().await;
    emu.set_link_limits(Limits { daily_links: 2, permanent_short_links: 1, limited_codes: 1, ..Limits::default() });
    let links = client.links();
    links.generate_scheme(&GenerateScheme::new(Expiry::days(1))).await.unwrap();
    links.generate_url_link(&GenerateUrlLink::new(Expiry::days(1))).await.unwrap();
    // Schemes and Links share the daily pool.
    let err = links.generate_scheme(&GenerateScheme::new(Expiry::days(1))).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::LinkDailyLimit));
    assert!(err.is_quota());
    // The pool refills on the next China day.
    emu.state().advance(Duration::from_secs(86_400));
    links.generate_url_link(&GenerateUrlLink::new(Expiry::days(1))).await.unwrap();

    links.generate_short_link(&GenerateShortLink::new("pages/index/index").permanent(true)).await.unwrap();
    let err =
        links.generate_short_link(&GenerateShortLink::new("pages/index/index").permanent(true)).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::PermanentLinkLimit));
    links.generate_short_link(&GenerateShortLink::new("pages/index/index")).await.unwrap();

    // getwxacode and createwxaqrcode share the lifetime cap; unlimited codes do not count.
    client.wxacode().get(&GetWxaCode::new("pages/index/index")).await.unwrap();
    let err = client.wxacode().create_qrcode(&CreateQrCode::new("pages/index/index")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::WxacodeLifetimeLimit));
    assert!(err.is_quota());
    emu.state().advance(Duration::from_secs(365 * 86_400));
    let err = client.wxacode().get(&GetWxaCode::new("pages/index/index")).await.unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::WxacodeLifetimeLimit));
    client.wxacode().get_unlimited(&GetUnlimitedCode::new("a")).await.unwrap();
}

async fn open(emu: &EmulatorHandle, link: &str, user: &str) -> (u16, serde_json::Value) {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/__emulator/links/open", emu.base_url()))
        .json(&json!({"link": link, "user": user}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn links_expire_and_open_for_one_user() {
    let (emu, client) = emu().await;
    let link = client
        .links()
        .generate_url_link(&GenerateUrlLink::new(Expiry::days(2)).path("pages/product/index").query("id=7"))
        .await
        .unwrap();
    let (status, body) = open(&emu, &link, "alice").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"appid": DEFAULT_APPID, "path": "pages/product/index", "query": "id=7", "env_version": "release"})
    );
    assert_eq!(open(&emu, &link, "alice").await.0, 200);
    assert_eq!(open(&emu, &link, "bob").await.0, 403);
    assert_eq!(client.links().remaining_visits().await.unwrap(), 3_000_000 - 2);
    emu.state().advance(Duration::from_secs(2 * 86_400));
    assert_eq!(open(&emu, &link, "alice").await.0, 410);
}

#[tokio::test]
async fn a_referral_token_survives_the_whole_trip_through_a_code() {
    let (_emu, client) = emu().await;
    let key = ReferralKey::new("merchant referral secret, 32 byte").unwrap();
    let now = Utc::now();
    let token = key.sign_for(Referral::new(1001, 7).product(42), now, chrono::Duration::days(30)).unwrap();
    let img = client
        .wxacode()
        .get_unlimited(&GetUnlimitedCode::new(token.scene()).page("pages/product/index"))
        .await
        .unwrap();
    // What the phone reads back, and the scene the page receives.
    let payload = decode_qr(&img.bytes);
    let scene_enc = payload.split("scene=").nth(1).unwrap().split('&').next().unwrap();
    let scene: String = url::form_urlencoded::parse(format!("s={scene_enc}").as_bytes()).next().unwrap().1.into_owned();
    assert_eq!(scene, token.as_str());
    let r = key.verify(&scene, now).unwrap();
    assert_eq!((r.promoter, r.campaign, r.product), (1001, 7, Some(42)));

    // Expired, forged (another merchant's key, or one character changed) and garbage are refused.
    assert_eq!(
        key.verify(&scene, now + chrono::Duration::days(30)),
        Err(ReferralError::Expired { expired_at: r.expires_at })
    );
    let other = ReferralKey::new("another merchant's secret, 32 byt").unwrap();
    let foreign = other.sign_for(Referral::new(1001, 7).product(42), now, chrono::Duration::days(30)).unwrap();
    assert_eq!(key.verify(foreign.as_str(), now), Err(ReferralError::BadSignature));
    let mut chars: Vec<char> = scene.chars().collect();
    chars[7] = if chars[7] == 'A' { 'B' } else { 'A' };
    assert_eq!(key.verify(&chars.into_iter().collect::<String>(), now), Err(ReferralError::BadSignature));
    assert!(matches!(key.verify("not a token!", now), Err(ReferralError::Malformed(_))));
    let as_error: Error = ReferralError::BadSignature.into();
    assert!(matches!(as_error, Error::Signature(_)));
}
