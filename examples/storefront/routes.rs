//! One declaration per route: [`Routes`] registers the axum route and records what the OpenAPI
//! document says about it (method, path, summary, auth, tag), so the router and `GET /openapi.json`
//! cannot diverge. `GET /docs` is a self-contained page (no CDN) that renders that document.
//!
//! A capability module's `routes()` reads as its route table:
//!
//! ```ignore
//! Routes::new("market")
//!     .get("/api/products", browse, doc("Browse listed products", Auth::Public).query::<BrowseParams>())
//!     .post("/api/checkout", checkout, doc("Check out the cart", Auth::Buyer).body::<CheckoutBody>())
//! ```

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::{MethodRouter, delete, get, post, put};
use utoipa::openapi::path::{Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder, Schema,
};

use crate::AppState;

/// Who may call a route: each is a security scheme of the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    Public,
    /// The signed-in buyer: `Authorization: Bearer <session_token>` (`POST /api/login`).
    Buyer,
    /// The signed-in buyer, or a guest cart by `X-Cart-Token`.
    BuyerOrGuest,
    /// A merchant: `X-Merchant-Key` (printed at startup for the seeded merchants).
    Merchant,
    /// The platform: `Authorization: Bearer <STOREFRONT_ADMIN_TOKEN>` (`/admin/...`).
    Platform,
    /// WeChat's message push callback, signed by WeChat (`signature`, `timestamp`, `nonce` query).
    WeChatPush,
    /// WeChat Pay's notification, signed by WeChat Pay (`Wechatpay-Signature` and its headers).
    WeChatPay,
}

impl Auth {
    /// The security requirements of a route with this auth: alternatives, any one suffices.
    fn requirements(self) -> Vec<SecurityRequirement> {
        let one = |name: &str| SecurityRequirement::new(name, Vec::<String>::new());
        match self {
            Auth::Public => Vec::new(),
            Auth::Buyer => vec![one("buyer")],
            Auth::BuyerOrGuest => vec![one("buyer"), one("guest_cart")],
            Auth::Merchant => vec![one("merchant")],
            Auth::Platform => vec![one("platform")],
            Auth::WeChatPush => vec![one("wechat_push")],
            Auth::WeChatPay => vec![one("wechat_pay")],
        }
    }

    /// A short label (`/docs` shows it; the operation carries it as `x-auth`).
    pub fn label(self) -> &'static str {
        match self {
            Auth::Public => "public",
            Auth::Buyer => "buyer",
            Auth::BuyerOrGuest => "buyer or guest cart",
            Auth::Merchant => "merchant",
            Auth::Platform => "platform",
            Auth::WeChatPush => "WeChat (signed push)",
            Auth::WeChatPay => "WeChat Pay (signed notification)",
        }
    }
}

/// What the document says about one route besides its method, path and tag.
#[derive(Clone)]
pub struct Doc {
    pub summary: &'static str,
    pub auth: Auth,
    body: Option<(String, RefOr<Schema>)>,
    query: Vec<Parameter>,
}

/// A route's documentation: its summary and who may call it.
pub fn doc(summary: &'static str, auth: Auth) -> Doc {
    Doc { summary, auth, body: None, query: Vec::new() }
}

impl Doc {
    /// The JSON request body's schema (for the example's own request structs).
    pub fn body<T: utoipa::ToSchema>(mut self) -> Self {
        self.body = Some((T::name().into_owned(), T::schema()));
        self
    }

    /// The query parameters.
    pub fn query<T: utoipa::IntoParams>(mut self) -> Self {
        self.query = T::into_params(|| Some(ParameterIn::Query));
        self
    }
}

/// One registered route, as the document lists it.
#[derive(Clone)]
pub struct RouteDoc {
    pub method: Method,
    pub path: &'static str,
    pub tag: &'static str,
    pub doc: Doc,
}

/// Registers routes and records their documentation (see the module docs).
pub struct Routes {
    tag: &'static str,
    router: Router<AppState>,
    docs: Vec<RouteDoc>,
}

impl Routes {
    /// Routes of one capability module; `tag` groups them in the document.
    pub fn new(tag: &'static str) -> Self {
        Routes { tag, router: Router::new(), docs: Vec::new() }
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, doc: Doc) -> Self {
        self.with(Method::GET, path, get(handler), doc)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, doc: Doc) -> Self {
        self.with(Method::POST, path, post(handler), doc)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, doc: Doc) -> Self {
        self.with(Method::PUT, path, put(handler), doc)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, doc: Doc) -> Self {
        self.with(Method::DELETE, path, delete(handler), doc)
    }

    /// A ready method router (a library endpoint, or one with a state of its own) that answers exactly
    /// the listed methods, each with its documentation. The tests check every listed method is routed.
    pub fn service(mut self, path: &'static str, router: MethodRouter<AppState>, methods: Vec<(Method, Doc)>) -> Self {
        self.router = self.router.route(path, router);
        for (method, doc) in methods {
            self.docs.push(RouteDoc { method, path, tag: self.tag, doc });
        }
        self
    }

    fn with(mut self, method: Method, path: &'static str, router: MethodRouter<AppState>, doc: Doc) -> Self {
        // axum merges method routers given for the same path (`GET` and `PUT` of one resource).
        self.router = self.router.route(path, router);
        self.docs.push(RouteDoc { method, path, tag: self.tag, doc });
        self
    }

    /// Adds another module's routes (their tag is kept).
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.docs.extend(other.docs);
        self
    }

    /// Adds `GET /openapi.json` (the document of every route, these two included) and `GET /docs`, then
    /// hands out the router and what it documents.
    pub fn with_openapi(self) -> (Router<AppState>, Vec<RouteDoc>) {
        let json: Arc<OnceLock<String>> = Arc::default();
        let served = json.clone();
        let (router, docs) = self
            .merge(
                Routes::new("docs")
                    .get(
                        "/openapi.json",
                        move || async move {
                            ([(CONTENT_TYPE, "application/json")], served.get().cloned().unwrap_or_default())
                                .into_response()
                        },
                        doc("This document: OpenAPI 3.1 of every route", Auth::Public),
                    )
                    .get("/docs", || async { Html(DOCS_PAGE) }, doc("A browsable page of this document", Auth::Public)),
            )
            .into_parts();
        let _ = json.set(openapi(&docs).to_json().expect("the document serializes"));
        (router, docs)
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteDoc>) {
        (self.router, self.docs)
    }
}

/// The `{name}` segments of an axum path.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        _ => HttpMethod::Trace,
    }
}

fn operation(r: &RouteDoc) -> Operation {
    let string = || ObjectBuilder::new().schema_type(Type::String).build();
    let mut parameters: Vec<Parameter> = path_params(r.path)
        .map(|name| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string()))
                .build()
        })
        .collect();
    parameters.extend(r.doc.query.iter().cloned());
    let json_of = |schema: RefOr<Schema>| ContentBuilder::new().schema(Some(schema)).build();
    let mut op = OperationBuilder::new()
        .summary(Some(r.doc.summary))
        .tag(r.tag)
        .operation_id(Some(format!("{} {}", r.method, r.path)))
        .parameters((!parameters.is_empty()).then_some(parameters))
        .securities(Some(r.doc.auth.requirements()))
        .response(
            "200",
            ResponseBuilder::new()
                .description("Success")
                .content("application/json", json_of(ObjectBuilder::new().schema_type(Type::Object).build().into())),
        )
        .response("4XX", Ref::from_response_name("Error"))
        .response("5XX", Ref::from_response_name("Error"));
    if let Some((name, _)) = &r.doc.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json_of(Ref::from_schema_name(name.clone()).into()))
                .build(),
        ));
    }
    let mut op = op.build();
    let mut ext = utoipa::openapi::extensions::Extensions::default();
    ext.insert("x-auth".into(), r.doc.auth.label().into());
    op.extensions = Some(ext);
    op
}

/// The OpenAPI 3.1 document of `routes`.
pub fn openapi(routes: &[RouteDoc]) -> OpenApi {
    let mut paths = Paths::new();
    for r in routes {
        paths.add_path_operation(r.path, vec![http_method(&r.method)], operation(r));
    }
    let bearer = |what: &str| {
        let mut h = Http::new(HttpAuthScheme::Bearer);
        h.description = Some(what.to_string());
        SecurityScheme::Http(h)
    };
    let header =
        |name: &str, what: &str| SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, what)));
    let error = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "The one error shape: `kind` is a stable machine-readable class (`unauthorized`, `not_found`, `invalid`, \
             the market's and governance's codes, `upstream`, …); `code` is WeChat's errcode when WeChat answered one. \
             An out-of-stock checkout adds `shortages`.",
        ))
        .property("error", ObjectBuilder::new().schema_type(Type::String).description(Some("what went wrong")))
        .property("kind", ObjectBuilder::new().schema_type(Type::String).description(Some("the error's class")))
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type([Type::Integer, Type::Null].into_iter().collect::<utoipa::openapi::schema::SchemaType>())
                .description(Some("WeChat's errcode, or null")),
        )
        .required("error")
        .required("kind")
        .required("code");
    let mut components = ComponentsBuilder::new()
        .schema("Error", error)
        .response(
            "Error",
            ResponseBuilder::new()
                .description("An error, in the one error shape")
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build()),
        )
        .security_scheme("buyer", bearer("The session token `POST /api/login` answers"))
        .security_scheme("guest_cart", header("X-Cart-Token", "An anonymous cart's token (the cart routes only)"))
        .security_scheme("merchant", header("X-Merchant-Key", "A merchant's key (printed at startup for the seeded merchants)"))
        .security_scheme("platform", bearer("The platform's token, STOREFRONT_ADMIN_TOKEN (`/admin/...`)"))
        .security_scheme(
            "wechat_push",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "signature",
                "WeChat signs its push callback: signature, timestamp and nonce in the query (msg_signature when encrypted)",
            ))),
        )
        .security_scheme(
            "wechat_pay",
            header("Wechatpay-Signature", "WeChat Pay signs its notification (Wechatpay-Serial, -Timestamp, -Nonce, -Signature)"),
        );
    for r in routes {
        if let Some((name, schema)) = &r.doc.body {
            components = components.schema(name.clone(), schema.clone());
        }
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("wxshop storefront")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("The storefront example's HTTP API; every error answers the `Error` shape.")),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// `GET /docs`: fetches `/openapi.json` and lists the operations by tag. Self-contained: no CDN.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>storefront API</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
h2{margin-top:1.6em;border-bottom:1px solid #ddd;text-transform:capitalize}
table{border-collapse:collapse;width:100%;table-layout:fixed}td{padding:.25em .5em;border-bottom:1px solid #eee;vertical-align:top}
.m{font:bold 12px monospace;text-transform:uppercase;width:4em}.get{color:#0a7}.post{color:#06c}.put{color:#c70}
.p{font-family:monospace;width:42%;overflow-wrap:anywhere}.a{color:#666;width:14em}
</style></head><body>
<h1 id="title">storefront API</h1><p id="info">Loading <a href="/openapi.json">/openapi.json</a>…</p><div id="ops"></div>
<script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
fetch('/openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('title').textContent = doc.info.title + ' ' + doc.info.version;
  const byTag = {};
  let n = 0;
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of ['get', 'put', 'post', 'delete', 'patch']) {
      const op = item[m];
      if (!op) continue;
      n++;
      (byTag[(op.tags || ['other'])[0]] ||= []).push({m, path, op});
    }
  }
  document.getElementById('info').innerHTML = 'OpenAPI ' + esc(doc.openapi) + ', ' + n +
    ' operations. Errors answer <code>{error, kind, code}</code>. <a href="/openapi.json">/openapi.json</a>';
  let html = '';
  for (const tag of Object.keys(byTag).sort()) {
    html += '<h2>' + esc(tag) + '</h2><table>';
    for (const {m, path, op} of byTag[tag]) {
      html += '<tr><td class="m ' + m + '">' + m + '</td><td class="p">' + esc(path) + '</td><td>' +
        esc(op.summary || '') + '</td><td class="a">' + esc(op['x-auth'] || '') + '</td></tr>';
    }
    html += '</table>';
  }
  document.getElementById('ops').innerHTML = html;
}).catch(e => { document.getElementById('info').textContent = 'cannot load /openapi.json: ' + e; });
</script></body></html>
"#;
