//! Mini-program codes: `getwxacode` and `createwxaqrcode` (limited: together at most 100,000 per
//! app, ever) and `getwxacodeunlimit` (unlimited count, but the page gets only a 32-character
//! `scene`).
//!
//! WeChat answers an image on success and a JSON `{errcode, errmsg}` on error, both with HTTP 200:
//! the executor branches on the content type, so these calls return an [`Image`] or a typed
//! [`Error`]. A `scene` is checked before sending ([`validate_scene`]): at most 32 visible
//! characters from WeChat's set, digits, letters and `` !#$&'()*+,/:;=?@-._~ ``.
//!
//! ```no_run
//! # async fn demo(client: wxshop::Client) -> wxshop::Result<()> {
//! use wxshop::mp::wxacode::GetUnlimitedCode;
//! let img = client.wxacode().get_unlimited(&GetUnlimitedCode::new("p=42&c=7").page("pages/product/index")).await?;
//! assert_eq!(img.content_type, "image/png");
//! std::fs::write("code.png", &img.bytes).ok();
//! # Ok(()) }
//! ```

use bytes::Bytes;
use serde::Serialize;

use super::Client;
use super::link::EnvVersion;
use crate::error::{Error, Result};
use crate::http::{MpBody, Request};

/// The most characters a `scene` may have.
pub const MAX_SCENE_CHARS: usize = 32;
/// The narrowest code WeChat draws, in pixels.
pub const MIN_WIDTH: u32 = 280;
/// The widest code WeChat draws, in pixels.
pub const MAX_WIDTH: u32 = 1280;
/// The longest `path` of `getwxacode`.
pub const MAX_CODE_PATH_CHARS: usize = 1024;
/// The longest `path` of `createwxaqrcode`, in bytes.
pub const MAX_QRCODE_PATH_BYTES: usize = 128;
/// A query parameter WeChat reserves for itself (85096 when a path carries it).
pub const RESERVED_PARAM: &str = "scancode_time";

/// An image WeChat drew.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    /// The bytes (PNG or JPEG).
    pub bytes: Bytes,
    /// The content type (`image/png`, `image/jpeg`).
    pub content_type: String,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image").field("content_type", &self.content_type).field("len", &self.bytes.len()).finish()
    }
}

/// Why a `scene` is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SceneError {
    /// The scene is empty.
    #[error("scene is empty; WeChat needs 1 to 32 characters")]
    Empty,
    /// The scene is longer than 32 characters.
    #[error("scene is {chars} characters; WeChat allows at most 32")]
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// The scene holds a character outside WeChat's set.
    #[error(
        "scene has {ch:?} at position {index}; WeChat allows digits, letters and !#$&'()*+,/:;=?@-._~ (no %, so encode other data, e.g. base64url)"
    )]
    BadChar {
        /// The character.
        ch: char,
        /// Its position (0-based, in characters).
        index: usize,
    },
}

impl From<SceneError> for Error {
    fn from(e: SceneError) -> Self {
        Error::InvalidRequest(e.to_string())
    }
}

/// `true` for the characters WeChat allows in a `scene`.
pub fn is_scene_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$&'()*+,/:;=?@-._~".contains(c)
}

/// Checks a `scene`: 1 to 32 characters from WeChat's set.
pub fn validate_scene(scene: &str) -> std::result::Result<(), SceneError> {
    if scene.is_empty() {
        return Err(SceneError::Empty);
    }
    if let Some((index, ch)) = scene.chars().enumerate().find(|(_, c)| !is_scene_char(*c)) {
        return Err(SceneError::BadChar { ch, index });
    }
    let chars = scene.chars().count();
    if chars > MAX_SCENE_CHARS {
        return Err(SceneError::TooLong { chars });
    }
    Ok(())
}

/// The color of the code's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LineColor {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
}

fn check_width(width: Option<u32>) -> Result<()> {
    match width {
        Some(w) if !(MIN_WIDTH..=MAX_WIDTH).contains(&w) => {
            Err(Error::InvalidRequest(format!("width must be {MIN_WIDTH} to {MAX_WIDTH} px (got {w})")))
        }
        _ => Ok(()),
    }
}

fn check_reserved(field: &str, value: &str) -> Result<()> {
    if value.contains(RESERVED_PARAM) {
        return Err(Error::InvalidRequest(format!("{field} must not carry {RESERVED_PARAM}: WeChat reserves it")));
    }
    Ok(())
}

/// `POST /wxa/getwxacode`: a limited code for a page with its query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GetWxaCode {
    /// The page with its query (`pages/product/index?id=42`), at most 1024 characters.
    pub path: String,
    /// Width in pixels (280–1280, WeChat's default 430).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Let WeChat pick the line color.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_color: Option<bool>,
    /// The line color when `auto_color` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_color: Option<LineColor>,
    /// A transparent background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_hyaline: Option<bool>,
    /// The version the code opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_version: Option<EnvVersion>,
}

impl GetWxaCode {
    /// A code for `path`.
    pub fn new(path: impl Into<String>) -> Self {
        GetWxaCode {
            path: path.into(),
            width: None,
            auto_color: None,
            line_color: None,
            is_hyaline: None,
            env_version: None,
        }
    }

    /// Width in pixels.
    pub fn width(mut self, w: u32) -> Self {
        self.width = Some(w);
        self
    }

    /// Line color (turns `auto_color` off).
    pub fn line_color(mut self, color: LineColor) -> Self {
        self.auto_color = Some(false);
        self.line_color = Some(color);
        self
    }

    /// Transparent background.
    pub fn hyaline(mut self, yes: bool) -> Self {
        self.is_hyaline = Some(yes);
        self
    }

    /// The version the code opens.
    pub fn env_version(mut self, env: EnvVersion) -> Self {
        self.env_version = Some(env);
        self
    }

    /// Checks what WeChat documents.
    pub fn validate(&self) -> Result<()> {
        let chars = self.path.chars().count();
        if chars == 0 || chars > MAX_CODE_PATH_CHARS {
            return Err(Error::InvalidRequest(format!(
                "path must be 1 to {MAX_CODE_PATH_CHARS} characters (got {chars})"
            )));
        }
        check_reserved("path", &self.path)?;
        check_width(self.width)
    }
}

/// `POST /wxa/getwxacodeunlimit`: an unlimited code for a page plus a `scene`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GetUnlimitedCode {
    /// 1 to 32 characters from WeChat's set; the page reads it from `options.scene`.
    pub scene: String,
    /// The page (`pages/product/index`, no leading `/`, no query); the home page when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Check that the page exists in the published version (WeChat's default `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_path: Option<bool>,
    /// The version the code opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_version: Option<EnvVersion>,
    /// Width in pixels (280–1280, WeChat's default 430).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Let WeChat pick the line color.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_color: Option<bool>,
    /// The line color when `auto_color` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_color: Option<LineColor>,
    /// A transparent background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_hyaline: Option<bool>,
}

impl GetUnlimitedCode {
    /// A code carrying `scene`.
    pub fn new(scene: impl Into<String>) -> Self {
        GetUnlimitedCode {
            scene: scene.into(),
            page: None,
            check_path: None,
            env_version: None,
            width: None,
            auto_color: None,
            line_color: None,
            is_hyaline: None,
        }
    }

    /// The page.
    pub fn page(mut self, page: impl Into<String>) -> Self {
        self.page = Some(page.into());
        self
    }

    /// Whether WeChat checks that the page is published (set `false` for unpublished pages).
    pub fn check_path(mut self, yes: bool) -> Self {
        self.check_path = Some(yes);
        self
    }

    /// The version the code opens.
    pub fn env_version(mut self, env: EnvVersion) -> Self {
        self.env_version = Some(env);
        self
    }

    /// Width in pixels.
    pub fn width(mut self, w: u32) -> Self {
        self.width = Some(w);
        self
    }

    /// Line color (turns `auto_color` off).
    pub fn line_color(mut self, color: LineColor) -> Self {
        self.auto_color = Some(false);
        self.line_color = Some(color);
        self
    }

    /// Transparent background.
    pub fn hyaline(mut self, yes: bool) -> Self {
        self.is_hyaline = Some(yes);
        self
    }

    /// Checks what WeChat documents.
    pub fn validate(&self) -> Result<()> {
        validate_scene(&self.scene)?;
        if let Some(page) = &self.page {
            if page.starts_with('/') || page.contains('?') {
                return Err(Error::InvalidRequest(format!(
                    "page {page:?} must not start with '/' or carry a query (put parameters in scene)"
                )));
            }
            if page.len() > MAX_CODE_PATH_CHARS {
                return Err(Error::InvalidRequest(format!("page is longer than {MAX_CODE_PATH_CHARS} bytes")));
            }
            check_reserved("page", page)?;
        }
        check_width(self.width)
    }
}

/// `POST /cgi-bin/wxaapp/createwxaqrcode`: a limited square QR code for a page with its query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateQrCode {
    /// The page with its query, at most 128 bytes.
    pub path: String,
    /// Width in pixels (280–1280, WeChat's default 430).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
}

impl CreateQrCode {
    /// A QR code for `path`.
    pub fn new(path: impl Into<String>) -> Self {
        CreateQrCode { path: path.into(), width: None }
    }

    /// Width in pixels.
    pub fn width(mut self, w: u32) -> Self {
        self.width = Some(w);
        self
    }

    /// Checks what WeChat documents.
    pub fn validate(&self) -> Result<()> {
        if self.path.is_empty() || self.path.len() > MAX_QRCODE_PATH_BYTES {
            return Err(Error::InvalidRequest(format!(
                "path must be 1 to {MAX_QRCODE_PATH_BYTES} bytes (got {})",
                self.path.len()
            )));
        }
        check_reserved("path", &self.path)?;
        check_width(self.width)
    }
}

/// An image answer, or why it is not one. A JSON error body was already turned into
/// [`Error::Api`] by the executor; a JSON body without an errcode is not an image either.
pub fn image_from(endpoint: &str, body: MpBody) -> Result<Image> {
    match body {
        MpBody::Binary { content_type, bytes } if content_type.starts_with("image/") => {
            Ok(Image { bytes, content_type })
        }
        MpBody::Binary { content_type, .. } => {
            Err(Error::decode(endpoint, format!("expected an image, got content type {content_type:?}")))
        }
        MpBody::Json(_) => Err(Error::decode(endpoint, "expected an image, got a JSON body without errcode")),
    }
}

/// Mini-program code APIs of one [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct WxaCodes<'a> {
    pub(crate) client: &'a Client,
}

impl WxaCodes<'_> {
    async fn fetch<T: Serialize>(&self, path: &str, body: &T) -> Result<Image> {
        // Drawing a code changes nothing but the limited-code counter; a lost answer is not
        // replayed, so one request never counts twice.
        let req = Request::mp_post(path, body)?;
        image_from(path, self.client.call_raw(&req).await?)
    }

    /// `getwxacode`: a limited code (shares the 100,000 lifetime cap with `createwxaqrcode`).
    pub async fn get(&self, req: &GetWxaCode) -> Result<Image> {
        req.validate()?;
        self.fetch("/wxa/getwxacode", req).await
    }

    /// `getwxacodeunlimit`: an unlimited code carrying a `scene`.
    pub async fn get_unlimited(&self, req: &GetUnlimitedCode) -> Result<Image> {
        req.validate()?;
        self.fetch("/wxa/getwxacodeunlimit", req).await
    }

    /// `createwxaqrcode`: a limited square QR code.
    pub async fn create_qrcode(&self, req: &CreateQrCode) -> Result<Image> {
        req.validate()?;
        self.fetch("/cgi-bin/wxaapp/createwxaqrcode", req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_accepts_wechats_set_up_to_32() {
        assert_eq!(validate_scene("a=1&b=2"), Ok(()));
        assert_eq!(validate_scene("!#$&'()*+,/:;=?@-._~09azAZ"), Ok(()));
        assert_eq!(validate_scene(&"x".repeat(32)), Ok(()));
        assert_eq!(validate_scene(&"x".repeat(33)), Err(SceneError::TooLong { chars: 33 }));
        assert_eq!(validate_scene(""), Err(SceneError::Empty));
        assert_eq!(validate_scene("a=%20"), Err(SceneError::BadChar { ch: '%', index: 2 }));
        assert_eq!(validate_scene("推广"), Err(SceneError::BadChar { ch: '推', index: 0 }));
        assert_eq!(validate_scene("a b"), Err(SceneError::BadChar { ch: ' ', index: 1 }));
    }

    #[test]
    fn scene_error_says_what_to_do() {
        let e: Error = SceneError::BadChar { ch: '%', index: 2 }.into();
        assert_eq!(
            e.to_string(),
            "invalid request: scene has '%' at position 2; WeChat allows digits, letters and !#$&'()*+,/:;=?@-._~ \
             (no %, so encode other data, e.g. base64url)"
        );
    }

    #[test]
    fn page_has_no_leading_slash_or_query() {
        assert!(GetUnlimitedCode::new("a").page("pages/a/index").validate().is_ok());
        assert!(GetUnlimitedCode::new("a").page("/pages/a/index").validate().is_err());
        assert!(GetUnlimitedCode::new("a").page("pages/a/index?x=1").validate().is_err());
        assert!(GetUnlimitedCode::new("a").width(279).validate().is_err());
        assert!(GetWxaCode::new("pages/a/index?scancode_time=1").validate().is_err());
        assert!(CreateQrCode::new("p".repeat(129)).validate().is_err());
        assert!(CreateQrCode::new("p".repeat(128)).validate().is_ok());
    }

    #[test]
    fn only_images_are_images() {
        let png = MpBody::Binary { content_type: "image/png".into(), bytes: Bytes::from_static(b"\x89PNG") };
        assert_eq!(image_from("/x", png).unwrap().content_type, "image/png");
        let other = MpBody::Binary { content_type: "application/octet-stream".into(), bytes: Bytes::new() };
        assert!(matches!(image_from("/x", other), Err(Error::Decode { .. })));
        assert!(matches!(image_from("/x", MpBody::Json(Bytes::from_static(b"{}"))), Err(Error::Decode { .. })));
    }
}
