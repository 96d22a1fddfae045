//! The `--demo` step of `routes.rs`: the OpenAPI document and its page, as a client fetches them.

use crate::demo::Demo;

/// Demo: `GET /openapi.json` lists every route (`POST /api/checkout` among them), `GET /docs` renders it.
pub async fn demo_openapi(d: &mut Demo) -> Result<String, String> {
    let doc = d.get("/openapi.json").await?;
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.1") {
        return Err(format!("openapi is {version:?}, not 3.1"));
    }
    if !doc["paths"]["/api/checkout"]["post"].is_object() {
        return Err("the document does not list POST /api/checkout".into());
    }
    let operations: usize = doc["paths"]
        .as_object()
        .ok_or("the document has no paths")?
        .values()
        .map(|item| ["get", "put", "post", "delete", "patch"].iter().filter(|m| item[**m].is_object()).count())
        .sum();
    let (status, page) = d.get_page("/docs").await?;
    if status != 200 || !page.contains("/openapi.json") {
        return Err(format!("GET /docs answered {status}"));
    }
    Ok(format!("OpenAPI {version}: {operations} operations; /docs serves {} bytes of HTML", page.len()))
}
