//! Offline evaluation with full ranking: for every test user also in the training data, each model
//! ranks the whole catalogue minus the user's training items, and its top `k` is scored against the
//! user's test items. Also the CSV readers of `wxshop recommend eval`.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::covisit::CoVisit;
use super::data::{Dataset, Interaction, ItemInfo, UNKNOWN};
use super::ease::Ease;
use super::ials::Ials;
use super::popular::Popular;
use super::{Blend, EventKind, Query, Recommender};

/// A malformed input file: what is wrong and on which line (1 is the header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// The 1-based line.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

fn columns<R: Read>(r: &mut csv::Reader<R>, want: &[&str]) -> Result<Vec<usize>, CsvError> {
    let head = r.headers().map_err(|e| CsvError { line: 1, message: e.to_string() })?.clone();
    want.iter()
        .map(|w| {
            head.iter()
                .position(|h| h.trim().trim_start_matches('\u{feff}').eq_ignore_ascii_case(w))
                .ok_or_else(|| CsvError { line: 1, message: format!("the header has no `{w}` column") })
        })
        .collect()
}

fn reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new().has_headers(true).flexible(true).trim(csv::Trim::All).from_reader(input)
}

fn rows<R: Read>(
    input: R,
    want: &[&str],
    mut each: impl FnMut(u64, Vec<&str>) -> Result<(), String>,
) -> Result<(), CsvError> {
    let mut r = reader(input);
    let cols = columns(&mut r, want)?;
    let mut rec = csv::StringRecord::new();
    loop {
        match r.read_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(r.position().line(), |p| p.line());
                return Err(CsvError { line, message: e.to_string() });
            }
        }
        let line = rec.position().map_or(r.position().line(), |p| p.line());
        if rec.len() == 1 && rec.get(0) == Some("") {
            continue; // a blank line
        }
        let mut fields = Vec::with_capacity(cols.len());
        for (&c, name) in cols.iter().zip(want) {
            match rec.get(c) {
                Some(v) if !v.is_empty() => fields.push(v),
                _ => return Err(CsvError { line, message: format!("`{name}` is missing or empty") }),
            }
        }
        each(line, fields).map_err(|message| CsvError { line, message })?;
    }
}

/// Parses an event name (`view`, `click`, `cart`, `buy`, `share`; any case).
pub fn parse_event(s: &str) -> Option<EventKind> {
    EventKind::parse(&s.to_ascii_lowercase())
}

fn parse_int(s: &str, what: &str) -> Result<i64, String> {
    s.parse::<i64>().map_err(|_| format!("`{what}` is not an integer: {s:?}"))
}

/// Reads interactions: a header naming `user,item,ts,event` (any order, more columns ignored).
pub fn read_interactions<R: Read>(input: R) -> Result<Vec<Interaction>, CsvError> {
    let mut out = Vec::new();
    rows(input, &["user", "item", "ts", "event"], |_, f| {
        let ts = parse_int(f[2], "ts")?;
        let event = parse_event(f[3])
            .ok_or_else(|| format!("`event` must be one of view, click, cart, buy, share, not {:?}", f[3]))?;
        out.push(Interaction { user: f[0].to_string(), item: f[1].to_string(), ts, event });
        Ok(())
    })?;
    Ok(out)
}

/// Reads the catalogue: a header naming `item,merchant,category,price` (price in fen).
pub fn read_items<R: Read>(input: R) -> Result<Vec<ItemInfo>, CsvError> {
    let mut out = Vec::new();
    rows(input, &["item", "merchant", "category", "price"], |_, f| {
        let price = parse_int(f[3], "price")?;
        if price < 0 {
            return Err(format!("`price` is negative: {price}"));
        }
        out.push(ItemInfo { item: f[0].to_string(), merchant: f[1].to_string(), category: f[2].to_string(), price });
        Ok(())
    })?;
    Ok(out)
}

/// One model's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelReport {
    /// Mean over users of hits / |test items|.
    #[serde(rename = "recall@k")]
    pub recall: f64,
    /// Mean binary nDCG.
    #[serde(rename = "ndcg@k")]
    pub ndcg: f64,
    /// The share of users with at least one hit.
    #[serde(rename = "hit_rate@k")]
    pub hit_rate: f64,
    /// Distinct recommended items / catalogue size.
    pub catalog_coverage: f64,
    /// Gini of merchants' exposure in the lists (0 equal … 1 all to one); `null` without a catalogue.
    pub merchant_gini: Option<f64>,
    /// Users evaluated.
    pub users: usize,
    /// Fit time in milliseconds.
    pub fit_ms: f64,
    /// Median time of one user's list, µs.
    pub recommend_p50_us: f64,
    /// 99th percentile of one user's list, µs.
    pub recommend_p99_us: f64,
}

/// The whole evaluation: the served model's (the blend's) figures at the top, every model's under `models`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    /// The cut-off.
    pub k: usize,
    /// The served model's figures.
    #[serde(flatten)]
    pub served: ModelReport,
    /// Catalogue size used for coverage.
    pub catalog_items: usize,
    /// Per model.
    pub models: std::collections::BTreeMap<String, ModelReport>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Gini coefficient of non-negative values (0 when all are equal or all zero).
pub fn gini(values: &[f64]) -> f64 {
    let n = values.len();
    let total: f64 = values.iter().sum();
    if n == 0 || total <= 0.0 {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let weighted: f64 = v.iter().enumerate().map(|(i, x)| (i as f64 + 1.0) * x).sum();
    (2.0 * weighted) / (n as f64 * total) - (n as f64 + 1.0) / n as f64
}

struct Case {
    user: u32,
    relevant: HashSet<u32>,
    /// Test items never seen in training (so no model can return them) still count as relevant.
    unknown_relevant: usize,
    exclude: Vec<u32>,
}

fn score_model(d: &Dataset, model: &dyn Recommender, cases: &[Case], k: usize, fit_ms: f64) -> ModelReport {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(1);
    let per = cases.len().div_ceil(threads).max(1);
    let results: Vec<(Vec<u32>, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|c| {
                            let q = Query { history: d.sequence(c.user), exclude: &c.exclude, context_item: None };
                            let t = Instant::now();
                            let list = model.recommend(d, &q, k);
                            let us = t.elapsed().as_secs_f64() * 1e6;
                            (list.into_iter().map(|s| s.item).collect::<Vec<u32>>(), us)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("an evaluation thread panicked")).collect()
    });
    let (mut recall, mut ndcg, mut hits) = (0.0, 0.0, 0usize);
    let mut shown: HashSet<u32> = HashSet::new();
    let mut exposure = vec![0f64; d.merchants.len()];
    let mut lat: Vec<f64> = Vec::with_capacity(cases.len());
    for (c, (list, us)) in cases.iter().zip(&results) {
        lat.push(*us);
        let rel = c.relevant.len() + c.unknown_relevant;
        let mut dcg = 0.0;
        let mut h = 0usize;
        for (r, &i) in list.iter().take(k).enumerate() {
            if d.n_catalogue == 0 || (i as usize) < d.n_catalogue {
                shown.insert(i);
            }
            let m = d.item_merchant[i as usize];
            if m != UNKNOWN {
                exposure[m as usize] += 1.0;
            }
            if c.relevant.contains(&i) {
                h += 1;
                dcg += 1.0 / ((r + 2) as f64).log2();
            }
        }
        let idcg: f64 = (0..rel.min(k)).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
        if rel > 0 {
            recall += h as f64 / rel as f64;
            ndcg += if idcg > 0.0 { dcg / idcg } else { 0.0 };
        }
        hits += usize::from(h > 0);
    }
    let n = cases.len().max(1) as f64;
    lat.sort_by(|a, b| a.total_cmp(b));
    let catalogue = catalogue_size(d);
    ModelReport {
        recall: recall / n,
        ndcg: ndcg / n,
        hit_rate: hits as f64 / n,
        catalog_coverage: if catalogue == 0 { 0.0 } else { shown.len() as f64 / catalogue as f64 },
        merchant_gini: (d.n_catalogue > 0).then(|| gini(&exposure)),
        users: cases.len(),
        fit_ms,
        recommend_p50_us: percentile(&lat, 0.5),
        recommend_p99_us: percentile(&lat, 0.99),
    }
}

/// The catalogue's size: the catalogue file's items when given, else every item of the training data.
fn catalogue_size(d: &Dataset) -> usize {
    if d.n_catalogue > 0 { d.n_catalogue } else { d.n_items() }
}

fn timed<M: Recommender>(mut m: M, d: &Dataset) -> (Arc<M>, f64) {
    let t = Instant::now();
    m.fit(d);
    (Arc::new(m), t.elapsed().as_secs_f64() * 1e3)
}

/// Evaluates every model at `k`: fitted on `train` (and the catalogue `items`, possibly empty),
/// judged on `test`.
pub fn evaluate(train: &[Interaction], test: &[Interaction], items: &[ItemInfo], k: usize) -> EvalReport {
    let d = Dataset::build(train, items);
    let mut by_user: HashMap<u32, (HashSet<u32>, HashSet<&str>)> = HashMap::new();
    for e in test {
        let Some(u) = d.users.get(&e.user) else { continue };
        let entry = by_user.entry(u).or_default();
        match d.items.get(&e.item) {
            Some(i) => {
                entry.0.insert(i);
            }
            None => {
                entry.1.insert(e.item.as_str());
            }
        }
    }
    let mut cases: Vec<Case> = by_user
        .into_iter()
        .map(|(user, (relevant, unknown))| {
            let mut exclude: Vec<u32> = d.user_items.row(user as usize).0.to_vec();
            exclude.sort_unstable();
            Case { user, relevant, unknown_relevant: unknown.len(), exclude }
        })
        .collect();
    cases.sort_by_key(|c| c.user);

    let (popular, popular_ms) = timed(Popular::default(), &d);
    let (covisit, covisit_ms) = timed(CoVisit::default(), &d);
    let (ease, ease_ms) = timed(Ease::default(), &d);
    let (ials, ials_ms) = timed(Ials::default(), &d);
    let blend = Blend::of(
        &d,
        popular.clone(),
        Arc::new(std::sync::RwLock::new((*covisit).clone())),
        ease.clone(),
        ials.clone(),
    );
    let blend_ms = popular_ms + covisit_ms + ease_ms + ials_ms;

    let mut models = std::collections::BTreeMap::new();
    models.insert("popular".to_string(), score_model(&d, popular.as_ref(), &cases, k, popular_ms));
    models.insert("covisit".to_string(), score_model(&d, covisit.as_ref(), &cases, k, covisit_ms));
    models.insert("ease".to_string(), score_model(&d, ease.as_ref(), &cases, k, ease_ms));
    models.insert("ials".to_string(), score_model(&d, ials.as_ref(), &cases, k, ials_ms));
    let served = score_model(&d, &blend, &cases, k, blend_ms);
    models.insert("blend".to_string(), served.clone());
    EvalReport { k, served, catalog_items: catalogue_size(&d), models }
}
