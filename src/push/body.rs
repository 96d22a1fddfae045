//! Push bodies as WeChat sends them: XML or JSON, parsed into one field tree, and rendered back.
//!
//! Both formats become a `serde_json::Map`: an XML element with children becomes an object, a
//! leaf becomes a string (CDATA or text, exactly), and a repeated element becomes an array. The
//! parser is iterative with a depth limit, refuses DOCTYPEs and unknown entities (no expansion
//! attacks), and never panics on any input.
//!
//! ```
//! use wxshop::push::body::{parse, Format};
//! let (format, fields) = parse(b"<xml><MsgType><![CDATA[text]]></MsgType><CreateTime>1</CreateTime></xml>").unwrap();
//! assert_eq!(format, Format::Xml);
//! assert_eq!(fields["MsgType"], "text");
//! assert_eq!(fields["CreateTime"], "1");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::events::Event;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The deepest element nesting accepted (WeChat's pushes use 4).
pub const MAX_DEPTH: usize = 32;

/// A push body format, chosen in the mini-program console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `<xml>…</xml>`.
    Xml,
    /// `{…}`.
    Json,
}

impl Format {
    /// The Content-Type of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "text/xml; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    /// Detects the format from the first significant byte (after whitespace and a UTF-8 BOM).
    pub fn detect(body: &[u8]) -> Result<Format> {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'<') => Ok(Format::Xml),
            Some(b'{') => Ok(Format::Json),
            Some(_) => Err(Error::decode("push body", "neither XML nor a JSON object")),
            None => Err(Error::decode("push body", "empty body")),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "xml" => Ok(Format::Xml),
            "json" => Ok(Format::Json),
            other => Err(Error::InvalidRequest(format!("unknown push format {other:?} (xml or json)"))),
        }
    }
}

/// Detects the format and parses the body into its field tree.
pub fn parse(body: &[u8]) -> Result<(Format, Map<String, Value>)> {
    let format = Format::detect(body)?;
    let fields = match format {
        Format::Xml => parse_xml(body)?,
        Format::Json => parse_json(body)?,
    };
    Ok((format, fields))
}

/// Parses a JSON object.
pub fn parse_json(body: &[u8]) -> Result<Map<String, Value>> {
    serde_json::from_slice::<Map<String, Value>>(body).map_err(|e| Error::decode("push body", format!("JSON: {e}")))
}

struct Frame {
    name: String,
    children: Map<String, Value>,
    text: String,
}

fn xml_err(e: impl std::fmt::Display) -> Error {
    Error::decode("push body", format!("XML: {e}"))
}

fn insert(map: &mut Map<String, Value>, key: String, value: Value) {
    match map.get_mut(&key) {
        // XML only makes arrays by repeating an element.
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(key, value);
        }
    }
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parses a WeChat XML body (`<xml>…</xml>`, any root name) into the root's children.
pub fn parse_xml(body: &[u8]) -> Result<Map<String, Value>> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        let event = reader.read_event().map_err(xml_err)?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(xml_err("content after the root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(xml_err(format!("nested deeper than {MAX_DEPTH}")));
                }
                let name = std::str::from_utf8(e.name().as_ref()).map_err(xml_err)?.to_string();
                stack.push(Frame { name, children: Map::new(), text: String::new() });
            }
            Event::Empty(e) => {
                let name = std::str::from_utf8(e.name().as_ref()).map_err(xml_err)?.to_string();
                match stack.last_mut() {
                    Some(top) => insert(&mut top.children, name, Value::String(String::new())),
                    None if root.is_none() => root = Some(Map::new()),
                    None => return Err(xml_err("content after the root element")),
                }
            }
            Event::End(_) => {
                let frame = stack.pop().ok_or_else(|| xml_err("unmatched end tag"))?;
                let value =
                    if frame.children.is_empty() { Value::String(frame.text) } else { Value::Object(frame.children) };
                match stack.last_mut() {
                    Some(parent) => insert(&mut parent.children, frame.name, value),
                    None => {
                        root = Some(match value {
                            Value::Object(m) => m,
                            // `<xml></xml>` or `<xml>text</xml>`: no fields.
                            _ => Map::new(),
                        })
                    }
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(xml_err("text outside the root element")),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None => return Err(xml_err("CDATA outside the root element")),
                }
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(xml_err)?
                } else {
                    let name = r.decode().map_err(xml_err)?;
                    entity(&name)
                }
                .ok_or_else(|| xml_err("unknown entity reference"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push(c),
                    None => return Err(xml_err("reference outside the root element")),
                }
            }
            Event::DocType(_) => return Err(xml_err("DOCTYPE is not allowed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(xml_err("unclosed element"));
    }
    root.ok_or_else(|| xml_err("no root element"))
}

fn append<'a>(acc: &mut Option<Cow<'a, str>>, s: Cow<'a, str>) {
    match acc {
        None => *acc = Some(s),
        Some(a) => a.to_mut().push_str(&s),
    }
}

/// The `Encrypt` of an encrypted-mode envelope (borrowed from `body` when it needs no unescaping)
/// and whether the envelope carries fields besides `ToUserName` and `Encrypt` (compatible mode).
/// The fast path of [`crate::push::Verifier::open`]: no field tree is built for the envelope.
pub fn envelope_encrypt(body: &[u8]) -> Result<(Format, Cow<'_, str>, bool)> {
    let format = Format::detect(body)?;
    let (encrypt, others) = match format {
        Format::Xml => xml_envelope(body)?,
        Format::Json => {
            let env: JsonEnvelope<'_> =
                serde_json::from_slice(body).map_err(|e| Error::decode("push body", format!("JSON: {e}")))?;
            (env.encrypt, env.others)
        }
    };
    match encrypt {
        Some(e) if !e.is_empty() => Ok((format, e, others)),
        _ => Err(Error::decode("push body", "an encrypted push without Encrypt")),
    }
}

/// The one shape WeChat sends (and [`render_xml`] writes): `<xml>` then flat children, each
/// `<Name>` with CDATA sections or plain text (no `&`, `<` or `>`) and `</Name>`, whitespace between
/// them, `</xml>`. Calls `child` with each name and its text, borrowed when it is one section;
/// `None` as soon as anything else appears (a declaration, a comment, an attribute, an entity, an empty
/// or nested element, invalid UTF-8, …), or when `child` says `None`: the caller then parses with
/// quick-xml, which accepts the same documents and reports the precise error. A fast path only,
/// with no rule of its own.
pub(crate) fn scan_flat<'a>(body: &'a [u8], mut child: impl FnMut(&'a [u8], Cow<'a, str>) -> Option<()>) -> Option<()> {
    let text = simdutf8::basic::from_utf8(body).ok()?;
    let b = text.as_bytes();
    let ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if !b[i..].starts_with(b"<xml>") {
        return None;
    }
    i += 5;
    loop {
        i = ws(i);
        let rest = &b[i..];
        if rest.starts_with(b"</xml>") {
            i += 6;
            break;
        }
        if rest.first() != Some(&b'<') {
            return None;
        }
        let name_len = rest[1..].iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))?;
        if name_len == 0 || rest[1 + name_len] != b'>' {
            return None;
        }
        let name = &rest[1..1 + name_len];
        i += name_len + 2;
        let mut value: Option<Cow<'a, str>> = None;
        loop {
            let rest = &b[i..];
            let seg = if rest.starts_with(b"<![CDATA[") {
                let start = i + 9;
                // One searcher for the process: building a memmem finder per call cost as much as the search.
                static CDATA_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
                    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"]]>"));
                let end = start + CDATA_END.find(&b[start..])?;
                i = end + 3;
                &text[start..end]
            } else if rest.starts_with(b"</") {
                break;
            } else {
                let end = i + memchr::memchr3(b'<', b'&', b'>', rest)?;
                // Not an empty run (a nested element starts here), and no reference or `>`.
                if end == i || b[end] != b'<' {
                    return None;
                }
                let seg = &text[i..end];
                i = end;
                seg
            };
            append(&mut value, Cow::Borrowed(seg));
        }
        let rest = &b[i + 2..];
        if !(rest.starts_with(name) && rest.get(name.len()) == Some(&b'>')) {
            return None;
        }
        i += 2 + name.len() + 1;
        child(name, value.filter(|v| !v.is_empty())?)?;
    }
    (ws(i) == b.len()).then_some(())
}

fn xml_envelope(body: &[u8]) -> Result<(Option<Cow<'_, str>>, bool)> {
    // WeChat's own shape without quick-xml; anything else (and every error) takes the reader below.
    let (mut encrypt, mut others) = (None, false);
    let fast = scan_flat(body, |name, value| {
        match name {
            b"Encrypt" if encrypt.is_some() => return None,
            b"Encrypt" => encrypt = Some(value),
            b"ToUserName" => {}
            _ => others = true,
        }
        Some(())
    });
    if fast.is_some() {
        return Ok((encrypt, others));
    }
    xml_envelope_reader(body)
}

/// [`xml_envelope`] through quick-xml: every shape, and every error.
fn xml_envelope_reader(body: &[u8]) -> Result<(Option<Cow<'_, str>>, bool)> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let (mut depth, mut root_done, mut in_encrypt, mut found, mut others) = (0usize, false, false, false, false);
    let mut encrypt: Option<Cow<'_, str>> = None;
    let mut child = |name: &[u8], found: &mut bool| -> Result<bool> {
        match name {
            b"Encrypt" if *found => Err(xml_err("Encrypt appears twice")),
            b"Encrypt" => {
                *found = true;
                Ok(true)
            }
            b"ToUserName" => Ok(false),
            _ => {
                others = true;
                Ok(false)
            }
        }
    };
    loop {
        match reader.read_event().map_err(xml_err)? {
            Event::Start(e) => {
                if root_done {
                    return Err(xml_err("content after the root element"));
                }
                if in_encrypt || depth >= MAX_DEPTH {
                    return Err(xml_err("Encrypt must be text, and nesting is limited"));
                }
                if depth == 1 {
                    in_encrypt = child(e.name().as_ref(), &mut found)?;
                }
                depth += 1;
            }
            Event::Empty(e) => match depth {
                0 if root_done => return Err(xml_err("content after the root element")),
                0 => root_done = true,
                1 => {
                    child(e.name().as_ref(), &mut found)?;
                }
                _ if in_encrypt => return Err(xml_err("Encrypt must be text")),
                _ => {}
            },
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or_else(|| xml_err("unmatched end tag"))?;
                match depth {
                    1 => in_encrypt = false,
                    0 => root_done = true,
                    _ => {}
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(xml_err)?;
                if in_encrypt {
                    append(&mut encrypt, text);
                } else if depth == 0 && !text.trim().is_empty() {
                    return Err(xml_err("text outside the root element"));
                }
            }
            Event::CData(t) => {
                if depth == 0 {
                    return Err(xml_err("CDATA outside the root element"));
                }
                if in_encrypt {
                    append(&mut encrypt, t.decode().map_err(xml_err)?);
                }
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(xml_err)?
                } else {
                    entity(&r.decode().map_err(xml_err)?)
                }
                .ok_or_else(|| xml_err("unknown entity reference"))?;
                if depth == 0 {
                    return Err(xml_err("reference outside the root element"));
                }
                if in_encrypt {
                    append(&mut encrypt, Cow::Owned(c.to_string()));
                }
            }
            Event::DocType(_) => return Err(xml_err("DOCTYPE is not allowed")),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if depth != 0 {
        return Err(xml_err("unclosed element"));
    }
    if !root_done {
        return Err(xml_err("no root element"));
    }
    Ok((if found { Some(encrypt.unwrap_or_default()) } else { None }, others))
}

/// A JSON envelope read without building a tree.
struct JsonEnvelope<'a> {
    encrypt: Option<Cow<'a, str>>,
    others: bool,
}

struct CowStr<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for JsonEnvelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonEnvelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut env = JsonEnvelope { encrypt: None, others: false };
                while let Some(CowStr(key)) = map.next_key::<CowStr<'de>>()? {
                    match key.as_ref() {
                        "Encrypt" if env.encrypt.is_some() => {
                            return Err(serde::de::Error::custom("Encrypt appears twice"));
                        }
                        "Encrypt" => env.encrypt = Some(map.next_value::<CowStr<'de>>()?.0),
                        "ToUserName" => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                        _ => {
                            env.others = true;
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_map(V)
    }
}

/// The wrapper element WeChat puts around `List` in the XML form of a subscribe-message event.
pub fn list_wrapper(event: &str) -> Option<&'static str> {
    match event {
        "subscribe_msg_popup_event" => Some("SubscribeMsgPopupEvent"),
        "subscribe_msg_change_event" => Some("SubscribeMsgChangeEvent"),
        "subscribe_msg_sent_event" => Some("SubscribeMsgSentEvent"),
        _ => None,
    }
}

fn render_value(out: &mut String, key: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            for item in items {
                render_value(out, key, item);
            }
        }
        Value::Object(map) => {
            let _ = write!(out, "<{key}>");
            for (k, v) in map {
                render_value(out, k, v);
            }
            let _ = write!(out, "</{key}>");
        }
        Value::String(s) => {
            let _ = write!(out, "<{key}><![CDATA[{}]]></{key}>", s.replace("]]>", "]]]]><![CDATA[>"));
        }
        Value::Number(n) => {
            let _ = write!(out, "<{key}>{n}</{key}>");
        }
        Value::Bool(b) => {
            let _ = write!(out, "<{key}>{b}</{key}>");
        }
        Value::Null => {
            let _ = write!(out, "<{key}></{key}>");
        }
    }
}

/// Renders fields as WeChat's XML: `<xml>`, strings in CDATA, numbers bare, arrays as repeated
/// elements, and the `List` of a subscribe-message event inside its wrapper element.
pub fn render_xml(fields: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<xml>");
    let wrapper = fields.get("Event").and_then(Value::as_str).and_then(list_wrapper);
    for (k, v) in fields {
        match (k.as_str(), wrapper) {
            ("List", Some(w)) => {
                let _ = write!(out, "<{w}>");
                render_value(&mut out, "List", v);
                let _ = write!(out, "</{w}>");
            }
            _ => render_value(&mut out, k, v),
        }
    }
    out.push_str("</xml>");
    out
}

/// Renders fields as WeChat's JSON. WeChat sends a one-item `List` as a bare object, not an array.
pub fn render_json(fields: &Map<String, Value>) -> String {
    let mut fields: Cow<'_, Map<String, Value>> = Cow::Borrowed(fields);
    if let Some(Value::Array(items)) = fields.get("List")
        && items.len() == 1
    {
        let one = items[0].clone();
        fields.to_mut().insert("List".into(), one);
    }
    serde_json::to_string(&*fields).unwrap_or_else(|_| "{}".into())
}

/// Renders in `format`.
pub fn render(format: Format, fields: &Map<String, Value>) -> String {
    match format {
        Format::Xml => render_xml(fields),
        Format::Json => render_json(fields),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_fast_path_agrees_with_the_reader() {
        let e = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvx+/==";
        for body in [
            format!("<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{e}]]></Encrypt></xml>"),
            format!("\n <xml>\n<ToUserName>gh_1</ToUserName>\n<Encrypt>{e}</Encrypt>\n</xml>\n"),
            format!("<xml><Encrypt><![CDATA[{e}]]><![CDATA[AB]]>CD</Encrypt><MsgType><![CDATA[text]]></MsgType></xml>"),
            format!("<xml><Encrypt><![CDATA[{e}]]></Encrypt><Encrypt>x</Encrypt></xml>"),
            format!("<xml><Encrypt>{e}</Encrypt><A><B>x</B></A></xml>"),
            format!("<xml><Encrypt>{e}</Encrypt></Encrypt></xml>"),
            format!("<xml><Encrypt>{e}</Encrypt>"),
            "<xml><Encrypt>a&amp;b</Encrypt></xml>".to_string(),
            "<xml><Encrypt></Encrypt></xml>".to_string(),
            format!("<xml><Encrypt attr=\"1\">{e}</Encrypt></xml>"),
            format!("<xml><Encrypt>{e}</Encrypt></xml>trailing"),
            format!("<?xml version=\"1.0\"?><xml><Encrypt>{e}</Encrypt></xml>"),
            format!("<xml><Encrypt><![CDATA[{e}]]></Encrypt></xml><xml></xml>"),
            format!("<xml><Encrypt><![CDATA[{e}]]> <![CDATA[AB]]></Encrypt></xml>"),
            format!("<xml><Encrypt>\n  {e}\n</Encrypt></xml>"),
            "<xml><Encrypt>   </Encrypt></xml>".to_string(),
            format!("<xml><Encrypt>{e}</Encrypt><Encrypt2>x</Encrypt2></xml>"),
            format!("<xml><ToUserName>gh_1</ToUserName><Encrypt>{e}</Encrypt ></xml>"),
        ] {
            let fast = scan_flat(body.as_bytes(), |_, _| Some(())).is_some();
            let got = xml_envelope(body.as_bytes()).map_err(|e| e.to_string());
            let want = xml_envelope_reader(body.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(got, want, "{body} (fast path taken: {fast})");
        }
        let mut bad = b"<xml><Encrypt><![CDATA[".to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        bad.extend_from_slice(b"]]></Encrypt></xml>");
        assert!(scan_flat(&bad, |_, _| Some(())).is_none());
        assert!(xml_envelope(&bad).is_err());
    }
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn published_text_message_parses_exactly() {
        let xml = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>";
        let (f, m) = parse(xml.as_bytes()).unwrap();
        assert_eq!(f, Format::Xml);
        assert_eq!(
            Value::Object(m),
            json!({
                "ToUserName": "gh_10f6c3c3ac5a",
                "FromUserName": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
                "CreateTime": "1409735668",
                "MsgType": "text",
                "Content": "abcdteT",
                "MsgId": "6054768590064713728"
            })
        );
    }

    #[test]
    fn repeated_elements_become_arrays_and_nesting_objects() {
        let xml = "<xml><SubscribeMsgPopupEvent><List><TemplateId>a</TemplateId></List><List><TemplateId>b</TemplateId></List></SubscribeMsgPopupEvent><E/></xml>";
        let m = parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"SubscribeMsgPopupEvent": {"List": [{"TemplateId": "a"}, {"TemplateId": "b"}]}, "E": ""})
        );
    }

    #[test]
    fn entities_and_char_refs_are_resolved_but_nothing_else() {
        let m = parse_xml(b"<xml><C>a &amp; b &lt;&#x4E2D;&#25991;&gt;</C></xml>").unwrap();
        assert_eq!(m["C"], "a & b <中文>");
        assert!(parse_xml(b"<xml><C>&custom;</C></xml>").is_err());
        assert!(parse_xml(b"<!DOCTYPE x [<!ENTITY a \"b\">]><xml><C>&a;</C></xml>").is_err());
    }

    #[test]
    fn malformed_xml_is_a_decode_error() {
        for bad in [
            &b"<xml><A>1</A>"[..],
            b"<xml><A>1</B></xml>",
            b"<xml></xml><xml></xml>",
            b"<xml></xml>trailing",
            b"<",
            b"text",
            b"",
        ] {
            match parse(bad) {
                Err(Error::Decode { .. }) => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn depth_is_limited() {
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(40), "</a>".repeat(40));
        assert!(parse_xml(deep.as_bytes()).is_err());
        let ok = format!("<xml>{}x{}</xml>", "<a>".repeat(30), "</a>".repeat(30));
        assert!(parse_xml(ok.as_bytes()).is_ok());
    }

    #[test]
    fn envelope_fast_path_agrees_with_the_tree() {
        let xml = b"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[abc/+=]]></Encrypt></xml>";
        let (f, e, others) = envelope_encrypt(xml).unwrap();
        assert_eq!((f, e.as_ref(), others), (Format::Xml, "abc/+=", false));
        assert!(matches!(e, Cow::Borrowed(_)));
        let compat = b"<xml><ToUserName>gh</ToUserName><MsgType>text</MsgType><Encrypt>a&amp;b</Encrypt></xml>";
        assert_eq!(envelope_encrypt(compat).unwrap().1, "a&b");
        assert!(envelope_encrypt(compat).unwrap().2);
        let json = br#"{"ToUserName":"gh","Encrypt":"ab\/c"}"#;
        let (f, e, others) = envelope_encrypt(json).unwrap();
        assert_eq!((f, e.as_ref(), others), (Format::Json, "ab/c", false));
        assert!(envelope_encrypt(br#"{"ToUserName":"gh","Content":"x","Encrypt":"e"}"#).unwrap().2);
        for bad in [
            &b"<xml><ToUserName>gh</ToUserName></xml>"[..],
            b"<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",
            b"<xml><Encrypt><x>a</x></Encrypt></xml>",
            b"<xml><Encrypt>a</Encrypt>",
            b"<xml><Encrypt>a</Encrypt></xml><more/>",
            b"<!DOCTYPE x><xml><Encrypt>a</Encrypt></xml>",
            br#"{"Encrypt":1}"#,
            br#"{"Encrypt":"a","Encrypt":"b"}"#,
            br#"{"Encrypt":"a"} x"#,
            br#"{"Encrypt":""}"#,
        ] {
            assert!(matches!(envelope_encrypt(bad), Err(Error::Decode { .. })), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn json_must_be_an_object() {
        assert!(matches!(parse(b"  {\"a\":1}"), Ok((Format::Json, _))));
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{\"a\":").is_err());
    }

    #[test]
    fn render_xml_wraps_subscribe_lists_and_round_trips() {
        let fields = obj(json!({
            "ToUserName": "gh_1", "CreateTime": 5, "MsgType": "event", "Event": "subscribe_msg_popup_event",
            "List": [{"TemplateId": "t1", "SubscribeStatusString": "accept", "PopupScene": "0"}]
        }));
        let xml = render_xml(&fields);
        assert_eq!(
            xml,
            // serde_json's map is ordered by key; WeChat's parsers, like ours, ignore order.
            "<xml><CreateTime>5</CreateTime><Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent><List><PopupScene><![CDATA[0]]></PopupScene><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><TemplateId><![CDATA[t1]]></TemplateId></List></SubscribeMsgPopupEvent><MsgType><![CDATA[event]]></MsgType><ToUserName><![CDATA[gh_1]]></ToUserName></xml>"
        );
        let back = parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(back["SubscribeMsgPopupEvent"]["List"]["TemplateId"], "t1");
    }

    #[test]
    fn render_json_sends_a_one_item_list_as_an_object() {
        let fields = obj(json!({"Event": "subscribe_msg_change_event", "List": [{"TemplateId": "t"}]}));
        assert_eq!(render_json(&fields), r#"{"Event":"subscribe_msg_change_event","List":{"TemplateId":"t"}}"#);
    }

    #[test]
    fn cdata_terminator_in_a_value_survives_rendering() {
        let fields = obj(json!({"Content": "a]]>b"}));
        assert_eq!(parse_xml(render_xml(&fields).as_bytes()).unwrap()["Content"], "a]]>b");
    }
}
