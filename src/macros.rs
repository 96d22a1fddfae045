//! The crate's internal macros, in one place. Declared first in `lib.rs` (`#[macro_use]`) so every
//! module can use them.
//!
//! - [`wire_enum!`]: an *open* enum of WeChat's wire values (strings or numbers) that keeps a value
//!   it does not know in `Other`, so a new value WeChat adds never fails a decode.
//! - [`str_enum!`]: a *closed* enum stored by its string form (database columns, HTTP bodies), with
//!   `ALL`, `as_str` and `Display`; parsing an unknown string is an error.
//! - [`errcodes!`]: the mini-program errcodes ([`ErrCode`](crate::ErrCode)) with their one-line hints.
//! - [`transport_setters!`]: the transport setters every client builder shares (`endpoints`,
//!   `http_config`, `http`).

/// An open enum of WeChat's wire values that keeps values it does not know in `Other`.
///
/// `Name(String) { V = "S", … }` maps strings: `as_str`, `From<&str>`, `Display`, serde as a string.
/// `Name(i64) { V = 1, … }` maps numbers (and is `Copy`): `code`, `from_code`, serde as a number.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident(String) { $( $(#[$vm:meta])* $var:ident = $s:literal, )* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// A value this crate does not know (yet).
            Other(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$var => $s, )*
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $s => $name::$var, )*
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<$name, E> {
                        Ok($name::from(v))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
    ($(#[$m:meta])* $name:ident(i64) { $( $(#[$vm:meta])* $var:ident = $code:literal, )* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// A value this crate does not know (kept, never dropped).
            Other(i64),
        }

        impl $name {
            /// The number WeChat uses.
            pub fn code(self) -> i64 {
                match self {
                    $( $name::$var => $code, )*
                    $name::Other(c) => c,
                }
            }

            /// The variant for a number.
            pub fn from_code(code: i64) -> Self {
                match code {
                    $( $code => $name::$var, )*
                    other => $name::Other(other),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_i64(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                <i64 as serde::Deserialize>::deserialize(d).map($name::from_code)
            }
        }
    };
}

/// A closed, fieldless enum stored by its string form, with `ALL`, `as_str` and `Display`.
///
/// - `pub enum Name { V, … }`: the string form is the variant's name (serde too); `FromStr` fails
///   with [`MarketError::Invalid`](crate::market::MarketError::Invalid).
/// - `pub enum Name { V => "s", … }`: the string form is given (serde renames to it); the enum is
///   ordered (`PartialOrd`, `Ord`) and `parse` answers `None` for an unknown string.
#[allow(unused_macros)] // only the `market` feature declares such enums
macro_rules! str_enum {
    (@common $name:ident { $($v:ident => $s:expr,)+ }) => {
        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            /// The stable string form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vm])* $v,)+ }

        str_enum!(@common $name { $($v => stringify!($v),)+ });

        impl std::str::FromStr for $name {
            type Err = $crate::market::MarketError;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                match s {
                    $(stringify!($v) => Ok($name::$v),)+
                    _ => Err($crate::market::MarketError::Invalid(format!(
                        concat!("unknown ", stringify!($name), " {}"), s
                    ))),
                }
            }
        }
    };
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $v,)+ }

        str_enum!(@common $name { $($v => $s,)+ });

        impl $name {
            /// Parses the string form.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }
    };
}

/// The mini-program errcodes: [`ErrCode`](crate::ErrCode) with `from_code`, `code` and `hint`.
macro_rules! errcodes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal => $hint:literal, )*) => {
        /// A WeChat mini-program errcode. Codes this crate does not know keep their number in
        /// [`ErrCode::Unknown`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrCode {
            $( $(#[$doc])* $name, )*
            /// A code not (yet) named by this crate.
            Unknown(i64),
        }

        impl ErrCode {
            /// The typed code for a number.
            pub fn from_code(code: i64) -> Self {
                match code {
                    $( $code => ErrCode::$name, )*
                    other => ErrCode::Unknown(other),
                }
            }

            /// The number WeChat sends.
            pub fn code(self) -> i64 {
                match self {
                    $( ErrCode::$name => $code, )*
                    ErrCode::Unknown(c) => c,
                }
            }

            /// What the caller should do about it, in one line.
            pub fn hint(self) -> &'static str {
                match self {
                    $( ErrCode::$name => $hint, )*
                    ErrCode::Unknown(_) => "see WeChat's errcode reference",
                }
            }
        }
    };
}

/// The transport setters a client builder shares with every other: `endpoints`, `http_config` and
/// `http`, written once. Expands inside the builder's `impl`; the builder has the fields
/// `endpoints: Endpoints`, `http_config: HttpConfig` and `http: Option<Http>`, and gets its
/// executor from the generated `transport()`.
macro_rules! transport_setters {
    () => {
        /// The base URLs (default: WeChat's hosts).
        pub fn endpoints(mut self, endpoints: $crate::config::Endpoints) -> Self {
            self.endpoints = endpoints;
            self
        }

        /// Timeouts, retries and an optional injected `reqwest::Client`.
        pub fn http_config(mut self, config: $crate::http::HttpConfig) -> Self {
            self.http_config = config;
            self
        }

        /// Shares an existing executor (its endpoints win).
        pub fn http(mut self, http: $crate::http::Http) -> Self {
            self.http = Some(http);
            self
        }

        /// The shared executor if one was given, else a new one on the configured endpoints.
        fn transport(&mut self) -> $crate::error::Result<$crate::http::Http> {
            match self.http.take() {
                Some(h) => Ok(h),
                None => $crate::http::Http::new(self.endpoints.clone(), self.http_config.clone()),
            }
        }
    };
}
