//! The `--demo` step that walks the route list (the same declarations the router and the OpenAPI
//! document come from) as an attacker: every merchant route with another merchant's key, every buyer
//! route as a buyer who owns nothing, every platform route with a merchant key. None may succeed on
//! someone else's resource, and no list may show someone else's.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::json;

use crate::demo::Demo;
use crate::routes::Auth;

/// What each path segment before a `{param}` names, per owner: `(owner merchant, resource id)`.
struct Fixture {
    /// For merchant routes: segment → (owning merchant's name, id).
    merchant: BTreeMap<&'static str, (String, String)>,
    /// For buyer routes: segment → an id owned by some other buyer.
    buyer: BTreeMap<&'static str, String>,
}

async fn fixture(d: &Demo) -> Result<Fixture, String> {
    let m = &d.state.market.market;
    let mut f = Fixture { merchant: BTreeMap::new(), buyer: BTreeMap::new() };
    for (name, id) in d.state.market.seeded.iter() {
        let e = |e: wxshop::market::MarketError| e.to_string();
        let g = |e: wxshop::market::MarketError| e.to_string();
        let mut put = |seg: &'static str, v: Option<String>| {
            if let Some(v) = v {
                f.merchant.entry(seg).or_insert((name.clone(), v));
            }
        };
        let orders = m.orders().merchant_orders(id, None, None, 100).await.map_err(e)?.items;
        put("orders", orders.first().map(|o| o.id.clone()));
        put("settlements", orders.first().map(|o| o.id.clone()));
        let products = m
            .catalog()
            .browse(&wxshop::market::BrowseQuery { merchant_id: Some(id.clone()), ..Default::default() }.limit(10))
            .await
            .map_err(e)?
            .items;
        if let Some(p) = products.first() {
            put("products", Some(p.id.clone()));
            put("skus", m.catalog().product(&p.id).await.map_err(e)?.skus.first().map(|s| s.id.clone()));
        }
        put(
            "aftersales",
            m.governance().aftersales().merchant_cases(id, 100).await.map_err(g)?.first().map(|c| c.id.clone()),
        );
        put(
            "reviews",
            m.governance().reviews().merchant_reviews(id, true, 100).await.map_err(g)?.first().map(|r| r.id.clone()),
        );
        put(
            "penalties",
            m.governance().penalties().penalty_log(id).await.map_err(g)?.records.first().map(|p| p.id.clone()),
        );
        put("keys", m.access().keys(Some(id)).await.map_err(e)?.first().map(|k| k.id.clone()));
        // Everything any buyer owns is foreign to the fresh buyer.
        if let Some(o) = orders.first() {
            f.buyer.entry("orders").or_insert(o.id.clone());
            f.buyer.entry("checkout").or_insert(o.group_id.clone());
        }
        if let Some(c) = m.governance().aftersales().merchant_cases(id, 100).await.map_err(g)?.first() {
            f.buyer.entry("aftersales").or_insert(c.id.clone());
        }
        if let Some(r) = m.governance().reviews().merchant_reviews(id, true, 100).await.map_err(g)?.first() {
            f.buyer.entry("reviews").or_insert(r.id.clone());
        }
    }
    Ok(f)
}

/// Fills a path's `{params}` from the segment before each; `None` when a resource is missing.
fn fill(path: &str, ids: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = Vec::new();
    let mut prev = "";
    for seg in path.split('/') {
        let v = match seg {
            "{action}" => "approve".to_string(),
            "{line_no}" => "1".to_string(),
            s if s.starts_with('{') => ids(prev)?,
            s => s.to_string(),
        };
        prev = seg;
        out.push(v);
    }
    Some(out.join("/"))
}

/// Routes whose parameter names something public (a SKU) and that act on the caller's own data (its
/// cart): nothing of another tenant's to try.
const OWN_SCOPE: &[&str] = &["/api/cart/items/{sku_id}"];

/// Demo: the route list, walked by an attacker of every kind.
pub async fn demo_cross_tenant(d: &mut Demo) -> Result<String, String> {
    let (_, docs) = crate::routes(&d.state);
    let f = fixture(d).await?;
    let keys: BTreeMap<String, String> = d
        .state
        .market
        .seeded
        .iter()
        .map(|(name, _)| d.merchant_key(name).map(|(_, k)| (name.clone(), k)))
        .collect::<Result<_, _>>()?;
    let other_than = |owner: &str| keys.iter().find(|(n, _)| n.as_str() != owner).map(|(_, k)| k.clone());
    let any_key = keys.values().next().cloned().ok_or("no merchant key")?;
    d.sign_in("mallory").await?;
    let (mut checked, mut lists, mut skipped) = (0, 0, Vec::new());
    for r in docs.iter().filter(|r| !OWN_SCOPE.contains(&r.path)) {
        let body = matches!(r.method, Method::POST | Method::PUT).then(|| json!({}));
        let has_params = r.path.contains('{');
        let (path, headers, anonymous): (String, Vec<(&'static str, String)>, bool) = match r.doc.auth {
            Auth::Merchant if has_params => {
                let attacker = std::cell::RefCell::new(None);
                let path = fill(r.path, &|seg| {
                    let (owner, id) = f.merchant.get(seg)?;
                    *attacker.borrow_mut() = other_than(owner);
                    Some(id.clone())
                });
                match (path, attacker.into_inner()) {
                    (Some(p), Some(k)) => (p, vec![("x-merchant-key", k)], true),
                    _ => {
                        skipped.push(r.path);
                        continue;
                    }
                }
            }
            Auth::Merchant => {
                // A list: each merchant sees only its own.
                for (name, key) in &keys {
                    let answer =
                        d.call(r.method.clone(), r.path, body.clone(), &[("x-merchant-key", key.clone())], true).await;
                    let Ok(v) = answer else { continue };
                    let text = v.to_string();
                    let leaked: Vec<&String> = f
                        .merchant
                        .values()
                        .filter(|(owner, _)| owner != name)
                        .map(|(_, id)| id)
                        .filter(|id| text.contains(id.as_str()))
                        .collect();
                    if !leaked.is_empty() {
                        return Err(format!("{} {} shows {name} another merchant's {leaked:?}", r.method, r.path));
                    }
                }
                lists += 1;
                continue;
            }
            Auth::Buyer | Auth::BuyerOrGuest if has_params => match fill(r.path, &|seg| f.buyer.get(seg).cloned()) {
                Some(p) => (p, Vec::new(), false),
                None => {
                    skipped.push(r.path);
                    continue;
                }
            },
            Auth::Buyer | Auth::BuyerOrGuest => {
                if let Ok(v) = d.call(r.method.clone(), r.path, body.clone(), &[], false).await {
                    let text = v.to_string();
                    if let Some(id) = f.buyer.values().find(|id| text.contains(id.as_str())) {
                        return Err(format!("{} {} shows a new buyer someone else's {id}", r.method, r.path));
                    }
                }
                lists += 1;
                continue;
            }
            // The platform's routes refuse a merchant's key.
            Auth::Platform => {
                let p = fill(r.path, &|_| Some("0".repeat(32))).unwrap_or_else(|| r.path.to_string());
                (p, vec![("authorization", format!("Bearer {any_key}"))], true)
            }
            Auth::Public | Auth::WeChatPush | Auth::WeChatPay => continue,
        };
        let answer = d.call(r.method.clone(), &path, body, &headers, anonymous).await;
        match answer {
            Ok(v) => return Err(format!("{} {path} ({:?}) answered another tenant 2xx: {v}", r.method, r.doc.auth)),
            Err(e) if e.starts_with("HTTP 5") => return Err(format!("{} {path}: {e}", r.method)),
            Err(_) => checked += 1,
        }
    }
    if !skipped.is_empty() {
        return Err(format!("no resource to try on {skipped:?}"));
    }
    Ok(format!(
        "{checked} routes refused another tenant's resource (or a merchant key on a platform route), \
         {lists} lists showed only their own, over {} declared routes",
        docs.len()
    ))
}
