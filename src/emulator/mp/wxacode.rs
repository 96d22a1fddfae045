//! Mini-program codes, the way WeChat serves them: real PNG QR codes you can look at and scan.
//!
//! `getwxacode` and `createwxaqrcode` share a lifetime cap per app (100,000, then 45029; lowered
//! with `POST /__emulator/links/limits`); `getwxacodeunlimit` checks the `scene` (40169, 40129)
//! and the page (41030, against the pages set with `POST /__emulator/links/pages`). What a code
//! encodes: [`unlimited_payload`], [`limited_payload`], [`qrcode_payload`].

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use serde::Deserialize;

use super::{Authorized, WxError, WxJson, WxResult};
use crate::emulator::{EmulatorState, Shared, lock};
use crate::mp::link::EnvVersion;
use crate::mp::wxacode::{MAX_SCENE_CHARS, is_scene_char};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/wxa/getwxacode", post(get_wxa_code))
        .route("/wxa/getwxacodeunlimit", post(get_unlimited_code))
        .route("/cgi-bin/wxaapp/createwxaqrcode", post(create_qrcode))
}

/// What an unlimited code (`getwxacodeunlimit`) encodes in the emulator.
pub fn unlimited_payload(appid: &str, page: &str, scene: &str, env: EnvVersion) -> String {
    let scene: String = url::form_urlencoded::byte_serialize(scene.as_bytes()).collect();
    format!("wxemu://wxacode/{appid}/{page}?scene={scene}&env_version={}", env.as_str())
}

/// What a limited code (`getwxacode`) encodes in the emulator: the path with its query.
pub fn limited_payload(appid: &str, path: &str, env: EnvVersion) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("wxemu://wxacode/{appid}/{path}{sep}env_version={}", env.as_str())
}

/// What a square QR code (`createwxaqrcode`) encodes in the emulator.
pub fn qrcode_payload(appid: &str, path: &str) -> String {
    format!("wxemu://qrcode/{appid}/{path}")
}

/// Draws `payload` as a QR code PNG, `width` pixels square (a quiet zone of 4 modules included),
/// dark modules in `line`, on white or (when `transparent`) on a transparent background.
pub fn render_png(payload: &str, width: u32, line: [u8; 3], transparent: bool) -> Result<Vec<u8>, String> {
    use qrcode::{Color, EcLevel, QrCode};
    let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::M).map_err(|e| e.to_string())?;
    let modules = code.width() as u32;
    let colors = code.to_colors();
    let total = modules + 8;
    let width = width.max(total);
    let scale = width / total;
    let origin = (width - total * scale) / 2 + 4 * scale;
    let channels: usize = if transparent { 4 } else { 3 };
    let mut data = Vec::with_capacity(width as usize * width as usize * channels);
    for y in 0..width {
        for x in 0..width {
            let dark = x >= origin && y >= origin && {
                let (mx, my) = ((x - origin) / scale, (y - origin) / scale);
                mx < modules && my < modules && colors[(my * modules + mx) as usize] == Color::Dark
            };
            match (dark, transparent) {
                (true, false) => data.extend_from_slice(&line),
                (true, true) => data.extend_from_slice(&[line[0], line[1], line[2], 255]),
                (false, false) => data.extend_from_slice(&[255, 255, 255]),
                (false, true) => data.extend_from_slice(&[255, 255, 255, 0]),
            }
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, width);
    enc.set_color(if transparent { png::ColorType::Rgba } else { png::ColorType::Rgb });
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&data).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[derive(Deserialize)]
struct CodeBody {
    path: Option<String>,
    page: Option<String>,
    scene: Option<String>,
    check_path: Option<bool>,
    env_version: Option<String>,
    width: Option<u32>,
    #[serde(default)]
    auto_color: bool,
    line_color: Option<serde_json::Value>,
    #[serde(default)]
    is_hyaline: bool,
}

impl CodeBody {
    fn width(&self) -> u32 {
        self.width.unwrap_or(430).clamp(280, 1280)
    }

    /// WeChat documents the components as decimal numbers and shows them quoted; take both.
    fn line(&self) -> [u8; 3] {
        if self.auto_color {
            return [0, 0, 0];
        }
        let part = |k: &str| -> u8 {
            let v = self.line_color.as_ref().and_then(|c| c.get(k));
            let n = v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())));
            n.unwrap_or(0).min(255) as u8
        };
        [part("r"), part("g"), part("b")]
    }

    fn env(&self) -> WxResult<EnvVersion> {
        match self.env_version.as_deref() {
            None | Some("") => Ok(EnvVersion::Release),
            Some(v) => EnvVersion::parse(v).ok_or_else(|| WxError::new(40097, "invalid args: env_version")),
        }
    }
}

fn png_response(payload: &str, b: &CodeBody) -> WxResult {
    match render_png(payload, b.width(), b.line(), b.is_hyaline) {
        Ok(png) => Ok(([(CONTENT_TYPE, "image/png")], png).into_response()),
        Err(_) => Err(WxError::new(-1, "system error")),
    }
}

/// Counts one limited code against the app's lifetime cap, or answers 45029.
fn take_limited(s: &EmulatorState, appid: &str) -> WxResult<()> {
    let mut st = lock(&s.links);
    let cap = st.limits.limited_codes;
    let used = st.limited_codes.entry(appid.to_string()).or_default();
    if *used >= cap {
        return Err(WxError::new(45029, "qrcode count out of limit"));
    }
    *used += 1;
    Ok(())
}

async fn get_wxa_code(State(s): State<Shared>, Authorized(appid): Authorized, WxJson(b): WxJson<CodeBody>) -> WxResult {
    let path = b.path.clone().unwrap_or_default();
    if path.is_empty() || path.chars().count() > 1024 {
        return Err(WxError::new(40159, "invalid length for path, or the data is not json string"));
    }
    if path.contains("scancode_time") {
        return Err(WxError::new(85096, "not allow include scancode_time field"));
    }
    let env = b.env()?;
    take_limited(&s, &appid)?;
    s.bump("wxacode.limited");
    png_response(&limited_payload(&appid, &path, env), &b)
}

async fn create_qrcode(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<CodeBody>,
) -> WxResult {
    let path = b.path.clone().unwrap_or_default();
    if path.is_empty() || path.len() > 128 {
        return Err(WxError::new(40159, "invalid length for path, or the data is not json string"));
    }
    if path.contains("scancode_time") {
        return Err(WxError::new(85096, "page or path not allow include scancode_time field"));
    }
    take_limited(&s, &appid)?;
    s.bump("wxacode.limited");
    png_response(&qrcode_payload(&appid, &path), &b)
}

async fn get_unlimited_code(
    State(s): State<Shared>,
    Authorized(appid): Authorized,
    WxJson(b): WxJson<CodeBody>,
) -> WxResult {
    let scene = b.scene.clone().unwrap_or_default();
    let chars = scene.chars().count();
    if chars == 0 || chars > MAX_SCENE_CHARS {
        return Err(WxError::new(40169, "invalid length for scene, or the data is not json string"));
    }
    if !scene.chars().all(is_scene_char) {
        return Err(WxError::new(40129, "invalid scene"));
    }
    let page = b.page.clone().unwrap_or_default();
    if page.contains("scancode_time") {
        return Err(WxError::new(85096, "not allow include scancode_time field"));
    }
    let published = lock(&s.links).page_exists(&appid, &page);
    if page.starts_with('/') || page.contains('?') || (b.check_path.unwrap_or(true) && !page.is_empty() && !published) {
        return Err(WxError::new(41030, "invalid page"));
    }
    let env = b.env()?;
    s.bump("wxacode.unlimited");
    png_response(&unlimited_payload(&appid, &page, &scene, env), &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_readable() {
        assert_eq!(
            unlimited_payload("wx1", "pages/p/index", "a=1&b=2", EnvVersion::Trial),
            "wxemu://wxacode/wx1/pages/p/index?scene=a%3D1%26b%3D2&env_version=trial"
        );
        assert_eq!(
            limited_payload("wx1", "pages/p/index?id=1", EnvVersion::Release),
            "wxemu://wxacode/wx1/pages/p/index?id=1&env_version=release"
        );
        assert_eq!(qrcode_payload("wx1", "pages/p/index"), "wxemu://qrcode/wx1/pages/p/index");
    }

    #[test]
    fn png_has_the_requested_width() {
        let png = render_png("hello", 430, [0, 0, 0], false).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR width and height, big-endian, right after the 8-byte signature and the chunk header.
        assert_eq!(&png[16..24], &[0, 0, 1, 174, 0, 0, 1, 174]);
    }
}
