//! The fast path for user messages (text, image, card): WeChat sends them flat — every child of
//! the root a leaf — so their known fields are read straight from the message bytes, borrowed
//! where no unescaping is needed, without building a field tree. Anything else (nesting,
//! duplicates, events, odd value types, malformed input) returns `None` and takes the general
//! path, which gives the same result or the precise error; a test checks the two agree.

use std::borrow::Cow;

use quick_xml::events::Event;

use super::body::{Format, MAX_DEPTH};
use super::message::Message;
use super::{Incoming, Mode};

const NAMES: [&str; 14] = [
    "ToUserName",
    "FromUserName",
    "CreateTime",
    "MsgType",
    "Event",
    "Content",
    "MsgId",
    "PicUrl",
    "MediaId",
    "Title",
    "AppId",
    "PagePath",
    "ThumbUrl",
    "ThumbMediaId",
];
const TO: usize = 0;
const FROM: usize = 1;
const CREATE_TIME: usize = 2;
const MSG_TYPE: usize = 3;
const EVENT: usize = 4;
const CONTENT: usize = 5;
const MSG_ID: usize = 6;
const PIC_URL: usize = 7;
const MEDIA_ID: usize = 8;
const TITLE: usize = 9;
const APP_ID: usize = 10;
const PAGE_PATH: usize = 11;
const THUMB_URL: usize = 12;
const THUMB_MEDIA_ID: usize = 13;

type Fields<'a> = [Option<Cow<'a, str>>; 14];

fn index(name: &[u8]) -> Option<usize> {
    NAMES.iter().position(|n| n.as_bytes() == name)
}

fn append<'a>(slot: &mut Option<Cow<'a, str>>, s: Cow<'a, str>) {
    match slot {
        None => *slot = Some(s),
        Some(a) => a.to_mut().push_str(&s),
    }
}

/// Text as UTF-8, checked with SIMD: a user's message is mostly CJK text, where the standard check is at
/// its slowest (it was a tenth of a 1 KB push's time).
fn utf8(bytes: Cow<'_, [u8]>) -> Option<Cow<'_, str>> {
    match bytes {
        Cow::Borrowed(b) => simdutf8::basic::from_utf8(b).ok().map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
    }
}

fn xml(body: &[u8]) -> Option<Fields<'_>> {
    // WeChat's own shape without quick-xml; anything else takes the reader below.
    let mut fields: Fields<'_> = Default::default();
    if super::body::scan_flat(body, |name, value| {
        if let Some(i) = index(name) {
            if fields[i].is_some() {
                return None;
            }
            fields[i] = Some(value);
        }
        Some(())
    })
    .is_some()
    {
        return Some(fields);
    }
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut fields: Fields<'_> = Default::default();
    let mut seen = [false; 14];
    let (mut depth, mut root_done, mut current) = (0usize, false, None::<usize>);
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                if root_done || depth >= 2 || depth >= MAX_DEPTH {
                    return None;
                }
                if depth == 1 {
                    current = index(e.name().as_ref());
                    if let Some(i) = current {
                        if seen[i] {
                            return None;
                        }
                        seen[i] = true;
                    }
                }
                depth += 1;
            }
            Event::Empty(e) => match depth {
                0 if root_done => return None,
                0 => root_done = true,
                1 => {
                    if let Some(i) = index(e.name().as_ref()) {
                        if seen[i] {
                            return None;
                        }
                        seen[i] = true;
                        fields[i] = Some(Cow::Borrowed(""));
                    }
                }
                _ => return None,
            },
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                match depth {
                    1 => {
                        // An element with no text is an empty string, as in the general path.
                        if let Some(i) = current.take()
                            && fields[i].is_none()
                        {
                            fields[i] = Some(Cow::Borrowed(""));
                        }
                    }
                    0 => root_done = true,
                    _ => {}
                }
            }
            Event::Text(t) => {
                let text = utf8(t.into_inner())?;
                match (depth, current) {
                    (2, Some(i)) => append(&mut fields[i], text),
                    (0, _) if !text.trim().is_empty() => return None,
                    _ => {}
                }
            }
            Event::CData(t) => match (depth, current) {
                (0, _) => return None,
                (2, Some(i)) => append(&mut fields[i], utf8(t.into_inner())?),
                _ => {}
            },
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok()??
                } else {
                    match r.decode().ok()?.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return None,
                    }
                };
                match (depth, current) {
                    (0, _) => return None,
                    (2, Some(i)) => append(&mut fields[i], Cow::Owned(c.to_string())),
                    _ => {}
                }
            }
            Event::DocType(_) => return None,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    (depth == 0 && root_done).then_some(fields)
}

/// A JSON value the general path would read as text: strings, and integers printed.
struct Scalar<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

struct JsonFields<'a>(Fields<'a>);

impl<'de> serde::Deserialize<'de> for JsonFields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonFields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: Fields<'de> = Default::default();
                while let Some(key) = map.next_key::<Scalar<'de>>()? {
                    match index(key.0.as_bytes()) {
                        Some(i) if fields[i].is_some() => return Err(serde::de::Error::custom("duplicate")),
                        Some(i) => fields[i] = Some(map.next_value::<Scalar<'de>>()?.0),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(JsonFields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

fn own(slot: &mut Option<Cow<'_, str>>) -> String {
    slot.take().map(Cow::into_owned).unwrap_or_default()
}

/// The typed user message in `plaintext`, when the fast path applies.
pub(crate) fn user_message(mode: Mode, plaintext: &[u8]) -> Option<(Format, Incoming)> {
    let format = Format::detect(plaintext).ok()?;
    let mut f = match format {
        Format::Xml => xml(plaintext)?,
        Format::Json => serde_json::from_slice::<JsonFields<'_>>(plaintext).ok()?.0,
    };
    let nonempty = |f: &Fields<'_>, i: usize| f[i].as_deref().is_some_and(|s| !s.is_empty());
    let kind = f[MSG_TYPE].as_deref()?;
    let ready = nonempty(&f, MSG_ID)
        && match kind {
            "text" => f[CONTENT].is_some(),
            "image" => nonempty(&f, MEDIA_ID),
            "miniprogrampage" => nonempty(&f, PAGE_PATH),
            _ => false,
        };
    if !ready {
        return None;
    }
    let message = match kind {
        "text" => Message::Text { content: own(&mut f[CONTENT]), msg_id: own(&mut f[MSG_ID]) },
        "image" => Message::Image {
            pic_url: own(&mut f[PIC_URL]),
            media_id: own(&mut f[MEDIA_ID]),
            msg_id: own(&mut f[MSG_ID]),
        },
        _ => Message::MiniProgramPage {
            title: own(&mut f[TITLE]),
            app_id: own(&mut f[APP_ID]),
            page_path: own(&mut f[PAGE_PATH]),
            thumb_url: own(&mut f[THUMB_URL]),
            thumb_media_id: own(&mut f[THUMB_MEDIA_ID]),
            msg_id: own(&mut f[MSG_ID]),
        },
    };
    let incoming = Incoming {
        mode,
        format,
        to_user_name: own(&mut f[TO]),
        from_user_name: own(&mut f[FROM]),
        create_time: f[CREATE_TIME].as_deref().and_then(|s| s.trim().parse().ok()).unwrap_or(0),
        msg_type: own(&mut f[MSG_TYPE]),
        event: f[EVENT].take().map(Cow::into_owned),
        message,
        plaintext: Vec::new(),
    };
    Some((format, incoming))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn general(body: &[u8]) -> Option<Incoming> {
        let (format, fields) = super::super::body::parse(body).ok()?;
        Incoming::from_fields(Mode::Secure, format, fields, Vec::new()).ok()
    }

    #[test]
    fn fast_and_general_paths_agree_on_wechat_shapes() {
        for body in [
            "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[a &amp; <b>]]></Content><MsgId>6054768590064713728</MsgId></xml>",
            "<xml>\n<MsgType>text</MsgType>\n<Content>a &amp; b&#x4E2D;</Content><MsgId>1</MsgId><Extra>x</Extra></xml>",
            "<xml><MsgType>image</MsgType><MediaId>m</MediaId><MsgId>2</MsgId><CreateTime> 7 </CreateTime></xml>",
            "<xml><MsgType>miniprogrampage</MsgType><PagePath>p</PagePath><MsgId>3</MsgId><Title/></xml>",
            r#"{"ToUserName":"gh","FromUserName":"oU","CreateTime":1714037059,"MsgType":"text","Content":"hi","MsgId":6054768590064713728,"Other":{"x":[1]}}"#,
            r#"{"MsgType":"text","Content":"a\"b","MsgId":"5","Event":"e"}"#,
        ] {
            let (_, fast) = user_message(Mode::Secure, body.as_bytes()).unwrap_or_else(|| panic!("fast path: {body}"));
            assert_eq!(Some(fast), general(body.as_bytes()), "{body}");
        }
    }

    #[test]
    fn everything_else_takes_the_general_path() {
        for body in [
            "<xml><MsgType>event</MsgType><Event>user_enter_tempsession</Event></xml>",
            "<xml><MsgType>text</MsgType><Content>x</Content></xml>",
            "<xml><MsgType>text</MsgType><Content>x</Content><Content>y</Content><MsgId>1</MsgId></xml>",
            "<xml><MsgType>text</MsgType><Content><b>x</b></Content><MsgId>1</MsgId></xml>",
            "<xml><MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId>",
            r#"{"MsgType":"text","Content":"x","MsgId":1.5}"#,
            r#"{"MsgType":"text","Content":null,"MsgId":1}"#,
            r#"{"MsgType":"text","Content":"x","MsgId":1,"MsgId":2}"#,
            "not a message",
        ] {
            assert!(user_message(Mode::Secure, body.as_bytes()).is_none(), "{body}");
        }
    }

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9 <>&\"'中文]{0,12}", "[0-9]{1,19}"]
    }

    proptest! {
        #[test]
        fn the_paths_agree_on_generated_flat_messages(
            kind in prop_oneof![Just("text"), Just("image"), Just("miniprogrampage"), Just("event")],
            picks in proptest::collection::vec((0usize..14, leaf()), 0..10),
            json in any::<bool>(),
        ) {
            let mut map = serde_json::Map::new();
            map.insert("MsgType".into(), kind.into());
            for (i, v) in picks {
                map.insert(NAMES[i].to_string(), v.into());
            }
            let body = if json {
                serde_json::to_string(&map).unwrap()
            } else {
                super::super::body::render_xml(&map)
            };
            if let Some((_, fast)) = user_message(Mode::Secure, body.as_bytes()) {
                prop_assert_eq!(Some(fast), general(body.as_bytes()));
            }
        }
    }
}
