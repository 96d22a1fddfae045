//! Platform governance: after-sales and reviews for buyers; cases, replies, deposit, score, penalties and
//! settlements for merchants; rules and decisions for the platform.
//!
//! Buyer routes (`Authorization: Bearer <session_token>`):
//!
//! | route | what |
//! |---|---|
//! | `POST /api/aftersales` `{order_id, line_no, kind, amount, reason, evidence?}` | open a case (`refund_only`, `return_refund`, `exchange`) |
//! | `GET /api/aftersales/{id}` | a case with its history |
//! | `POST /api/aftersales/{id}/return` `{company, number}` | upload the return waybill |
//! | `POST /api/aftersales/{id}/cancel` · `/escalate` | withdraw, or escalate a rejection to the platform |
//! | `POST /api/market/orders/{id}/lines/{line_no}/guarantee` `{kind, claim, reason}` | guarantee claim (保障单) |
//! | `POST /api/market/orders/{id}/lines/{line_no}/review` `{ratings, text?, images?}` | review a received line (text through `msg_sec_check`) |
//! | `POST /api/reviews/{id}/follow-up` `{text, images?}` · `/appeal` `{reason}` | follow up, appeal a moderation |
//! | `GET /api/merchants/{id}/reviews` · `/score` | published reviews and the merchant score |
//!
//! Merchant routes (`X-Merchant-Key: <key>`):
//!
//! | route | what |
//! |---|---|
//! | `GET /api/merchant/aftersales` | cases, newest first |
//! | `POST /api/merchant/aftersales/{id}/approve` · `/reject` `{reason}` · `/received` · `/refuse` `{reason}` · `/reship` `{company, number}` | answer a case |
//! | `POST /api/merchant/reviews/{id}/reply` `{text}` | reply to a review (once) |
//! | `GET /api/merchant/deposit` · `POST /api/merchant/deposit/exit` · `/refund` | deposit (保证金), exit, exit refund (as the platform's route) |
//! | `GET /api/merchant/deposit/refunds` | the exit refunds: WeChat Pay refunds per pay-in, manual payouts |
//! | `POST /api/merchant/deposit/pay` `{amount, idempotency_key, payer_openid}` | pay in or top up through WeChat Pay: pay params for `wx.requestPayment` |
//! | `GET /api/merchant/score` · `/penalties` · `/balances` · `/settlements` | score, penalty log, ledger, settlements |
//! | `POST /api/merchant/penalties/{id}/appeal` `{reason}` | appeal a penalty |
//! | `POST /api/merchant/settlements/{order_id}/payout` | withdraw a released settlement |
//!
//! Platform routes (`Authorization: Bearer <STOREFRONT_ADMIN_TOKEN>`):
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/governance/config` · `PUT` `{…GovernanceConfig}` | every governance policy |
//! | `PUT /admin/governance/commission-rules` `{…CommissionRule}` | add or change a commission rule |
//! | `GET /admin/governance/merchants/{id}/disputes` | a merchant's disputes |
//! | `POST /admin/governance/disputes/{id}/decide` `{outcome, refund?, payer?, note}` | decide a dispute |
//! | `POST /admin/governance/violations` `{merchant_id, rule_code, detail, order_id?, product_ids?}` | file a manual violation |
//! | `POST /admin/governance/penalties/{id}/confirm` · `/dismiss` `{note}` · `/appeal` `{upheld, note}` | review a penalty |
//! | `POST /admin/governance/reviews/{id}/moderate` `{status, note}` · `/appeal` `{restore}` | moderate a review |
//! | `POST /admin/governance/deposits/{merchant_id}/refund` | refund a leaving merchant's deposit through WeChat Pay (again: retry what failed); the refund rows |
//! | `GET /admin/governance/deposits/{merchant_id}/refunds` | a deposit's exit refunds |
//! | `POST /admin/governance/deposit-refunds/{id}/paid` `{reference}` | confirm a manual payout (a part WeChat Pay cannot refund) |
//! | `POST /admin/governance/orders/{id}/carrier-scan` `{at?}` | the carrier's first scan (from the tracking provider); feeds fake-shipment detection |
//! | `GET /admin/governance/settlements/{order_id}` | a settlement, its promoter attribution and its profit sharing (分账) |
//! | `GET /admin/governance/ledger/audit` | the ledger checked against itself |
//! | `POST /admin/governance/timers/run` `{advance_hours}` | emulator mode: run the timers as if time had passed |

use axum::extract::{Path, State};

use axum::Json;
use serde::Deserialize;
use serde_json::json;
use wxshop::market::MarketError;
use wxshop::market::governance::GovernanceConfig;
use wxshop::market::governance::aftersale::{Decision, DisputeKind, Payer, Waybill};
use wxshop::market::governance::commission::CommissionRule;
use wxshop::market::governance::review::{Ratings, ReviewStatus, TextVerdict};
use wxshop::market::{CaseRequest, Money, ReviewRequest};

use crate::AppState;
use crate::access::{MerchantAuth, Platform};
use crate::api::Body;
use crate::api::{Answer, ApiError, Buyer, ok};
use crate::routes::{Auth, Routes, doc};

pub fn routes() -> Routes {
    Routes::new("governance")
        .post("/api/aftersales", open_case, doc("Open an after-sales case", Auth::Buyer))
        .get("/api/aftersales/{id}", case, doc("An after-sales case with its history", Auth::Buyer))
        .post("/api/aftersales/{id}/return", upload_return, doc("Upload the return waybill", Auth::Buyer))
        .post("/api/aftersales/{id}/cancel", cancel_case, doc("Withdraw a case", Auth::Buyer))
        .post("/api/aftersales/{id}/escalate", escalate, doc("Escalate a rejection to the platform", Auth::Buyer))
        .post(
            "/api/market/orders/{id}/lines/{line_no}/guarantee",
            guarantee,
            doc("File a guarantee claim on an order line", Auth::Buyer),
        )
        .post(
            "/api/market/orders/{id}/lines/{line_no}/review",
            review,
            doc("Review a received order line", Auth::Buyer),
        )
        .post("/api/reviews/{id}/follow-up", follow_up, doc("Follow up a review", Auth::Buyer).body::<FollowUpBody>())
        .post(
            "/api/reviews/{id}/appeal",
            appeal_review,
            doc("Appeal a review's moderation", Auth::Buyer).body::<ReasonBody>(),
        )
        .get("/api/merchants/{id}/reviews", public_reviews, doc("A merchant's published reviews", Auth::Public))
        .get("/api/merchants/{id}/score", public_score, doc("A merchant's score", Auth::Public))
        .get(
            "/api/merchant/aftersales",
            merchant_cases,
            doc("The merchant's after-sales cases, newest first", Auth::Merchant),
        )
        .post(
            "/api/merchant/aftersales/{id}/{action}",
            answer_case,
            doc("Answer a case: action = approve, reject, received, refuse or reship", Auth::Merchant)
                .body::<AnswerBody>(),
        )
        .post(
            "/api/merchant/reviews/{id}/reply",
            reply,
            doc("Reply to a review (once)", Auth::Merchant).body::<TextBody>(),
        )
        .get("/api/merchant/deposit", deposit, doc("The merchant's deposit", Auth::Merchant))
        .post("/api/merchant/deposit/exit", deposit_exit, doc("Start leaving the platform", Auth::Merchant))
        .post("/api/merchant/deposit/refund", deposit_refund, doc("Refund the deposit on exit", Auth::Merchant))
        .post(
            "/api/merchant/deposit/pay",
            deposit_pay,
            doc("Pay in or top up the deposit through WeChat Pay", Auth::Merchant),
        )
        .get("/api/merchant/deposit/refunds", deposit_refunds, doc("The deposit's exit refunds", Auth::Merchant))
        .get("/api/merchant/score", score, doc("The merchant's score", Auth::Merchant))
        .get("/api/merchant/penalties", penalties, doc("The merchant's penalty log", Auth::Merchant))
        .post(
            "/api/merchant/penalties/{id}/appeal",
            appeal_penalty,
            doc("Appeal a penalty", Auth::Merchant).body::<ReasonBody>(),
        )
        .get("/api/merchant/balances", balances, doc("The merchant's ledger balances", Auth::Merchant))
        .get("/api/merchant/settlements", settlements, doc("The merchant's settlements", Auth::Merchant))
        .post(
            "/api/merchant/settlements/{order_id}/payout",
            payout,
            doc("Withdraw a released settlement", Auth::Merchant),
        )
        .get("/admin/governance/config", get_config, doc("Every governance policy", Auth::Platform))
        .put("/admin/governance/config", put_config, doc("Replace the governance policies", Auth::Platform))
        .put(
            "/admin/governance/commission-rules",
            put_commission,
            doc("Add or change a commission rule", Auth::Platform),
        )
        .get("/admin/governance/merchants/{id}/disputes", disputes, doc("A merchant's disputes", Auth::Platform))
        .post("/admin/governance/disputes/{id}/decide", decide, doc("Decide a dispute", Auth::Platform))
        .post(
            "/admin/governance/violations",
            file_violation,
            doc("File a manual violation", Auth::Platform).body::<ViolationBody>(),
        )
        .post(
            "/admin/governance/penalties/{id}/{action}",
            review_penalty,
            doc("Review a penalty: action = confirm, dismiss or appeal", Auth::Platform),
        )
        .post(
            "/admin/governance/reviews/{id}/{action}",
            moderate,
            doc("Moderate a review: action = moderate or appeal", Auth::Platform),
        )
        .post(
            "/admin/governance/deposits/{id}/refund",
            admin_deposit_refund,
            doc("Refund a leaving merchant's deposit through WeChat Pay", Auth::Platform),
        )
        .get(
            "/admin/governance/deposits/{id}/refunds",
            admin_deposit_refunds,
            doc("A deposit's exit refunds", Auth::Platform),
        )
        .post(
            "/admin/governance/deposit-refunds/{id}/paid",
            admin_deposit_refund_paid,
            doc("Confirm a manual deposit payout", Auth::Platform).body::<PaidBody>(),
        )
        .post(
            "/admin/governance/orders/{id}/carrier-scan",
            carrier_scan,
            doc("Record the carrier's first scan of an order's parcel", Auth::Platform),
        )
        .get(
            "/admin/governance/settlements/{order_id}",
            settlement,
            doc("A settlement, its promoter attribution and profit sharing", Auth::Platform),
        )
        .get("/admin/governance/ledger/audit", audit, doc("The ledger checked against itself", Auth::Platform))
        .post(
            "/admin/governance/timers/run",
            run_timers,
            doc("Emulator mode: run the timers as if time had passed", Auth::Platform).body::<RunBody>(),
        )
}

fn emulator_only(s: &AppState) -> Result<(), ApiError> {
    if s.emulator.is_none() {
        return Err(MarketError::Forbidden("only against the emulator".into()).into());
    }
    Ok(())
}

// ---------------------------------------------------------------- buyer

async fn open_case(State(s): State<AppState>, b: Buyer, Body(req): Body<CaseRequest>) -> Answer {
    ok(s.market.market.governance().aftersales().open_case(&b.openid, &req).await?)
}

async fn case(State(s): State<AppState>, b: Buyer, Path(id): Path<String>) -> Answer {
    let c = s.market.market.governance().aftersales().case(&id).await?;
    if c.buyer_id != b.openid {
        return Err(MarketError::NotFound { entity: "case", id }.into());
    }
    ok(c)
}

async fn upload_return(State(s): State<AppState>, b: Buyer, Path(id): Path<String>, Body(w): Body<Waybill>) -> Answer {
    ok(s.market.market.governance().aftersales().upload_return(&b.openid, &id, w).await?)
}

async fn cancel_case(State(s): State<AppState>, b: Buyer, Path(id): Path<String>) -> Answer {
    ok(s.market.market.governance().aftersales().cancel_case(&b.openid, &id).await?)
}

async fn escalate(State(s): State<AppState>, b: Buyer, Path(id): Path<String>) -> Answer {
    ok(s.market.market.governance().aftersales().escalate_case(&b.openid, &id).await?)
}

#[derive(Deserialize)]
struct GuaranteeBody {
    kind: DisputeKind,
    claim: Money,
    reason: String,
}

async fn guarantee(
    State(s): State<AppState>,
    b: Buyer,
    Path((order_id, line_no)): Path<(String, i64)>,
    Body(g): Body<GuaranteeBody>,
) -> Answer {
    ok(s.market
        .market
        .governance()
        .aftersales()
        .open_guarantee_claim(&b.openid, &order_id, line_no, g.kind, g.claim, &g.reason)
        .await?)
}

#[derive(Deserialize)]
struct ReviewBody {
    ratings: Ratings,
    #[serde(default)]
    text: String,
    #[serde(default)]
    images: Vec<String>,
}

/// WeChat's content check (`msg_sec_check` v2, scene "comment") of review text: its `suggest` decides
/// whether the review is published, held for moderation or rejected.
async fn text_verdict(s: &AppState, openid: &str, text: &str) -> Result<TextVerdict, ApiError> {
    if text.trim().is_empty() {
        return Ok(TextVerdict::Pass);
    }
    let r = s
        .client
        .security()
        .msg_sec_check(openid, wxshop::mp::security::Scene::Comment, text)
        .await
        .map_err(wxshop::market::MarketError::from)?;
    // An unknown suggestion is treated as "needs a person".
    Ok(TextVerdict::parse(&r.result.suggest).unwrap_or(TextVerdict::Review))
}

async fn review(
    State(s): State<AppState>,
    b: Buyer,
    Path((order_id, line_no)): Path<(String, i64)>,
    Body(r): Body<ReviewBody>,
) -> Answer {
    let verdict = text_verdict(&s, &b.openid, &r.text).await?;
    let req = ReviewRequest { order_id, line_no, ratings: r.ratings, text: r.text, images: r.images };
    ok(s.market.market.governance().reviews().submit_review(&b.openid, &req, verdict).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct FollowUpBody {
    text: String,
    #[serde(default)]
    images: Vec<String>,
}

async fn follow_up(State(s): State<AppState>, b: Buyer, Path(id): Path<String>, Body(f): Body<FollowUpBody>) -> Answer {
    let v = text_verdict(&s, &b.openid, &f.text).await?;
    ok(s.market.market.governance().reviews().follow_up_review(&b.openid, &id, &f.text, f.images, v).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

async fn appeal_review(
    State(s): State<AppState>,
    b: Buyer,
    Path(id): Path<String>,
    Body(r): Body<ReasonBody>,
) -> Answer {
    ok(s.market.market.governance().reviews().appeal_review(&b.openid, &id, &r.reason).await?)
}

async fn public_reviews(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    ok(s.market.market.governance().reviews().merchant_reviews(&id, false, 50).await?)
}

async fn public_score(State(s): State<AppState>, Path(id): Path<String>) -> Answer {
    ok(s.market.market.governance().reviews().merchant_score(&id).await?)
}

// ---------------------------------------------------------------- merchant

async fn merchant_cases(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().aftersales().merchant_cases(&me.0, 100).await?)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct AnswerBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    number: String,
}

async fn answer_case(
    State(s): State<AppState>,
    me: MerchantAuth,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<AnswerBody>>,
) -> Answer {
    let m = &s.market.market;
    let b = body.map(|Json(b)| b).unwrap_or_default();
    let c = match action.as_str() {
        "approve" => m.governance().aftersales().approve_case(&me.0, &id).await?,
        "reject" => m.governance().aftersales().reject_case(&me.0, &id, &b.reason).await?,
        "received" => m.governance().aftersales().confirm_return_received(&me.0, &id).await?,
        "refuse" => m.governance().aftersales().refuse_returned_goods(&me.0, &id, &b.reason).await?,
        "reship" => {
            m.governance()
                .aftersales()
                .ship_replacement(&me.0, &id, Waybill { company: b.company, number: b.number })
                .await?
        }
        other => return Err(MarketError::Invalid(format!("unknown action {other}")).into()),
    };
    ok(c)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct TextBody {
    text: String,
}

async fn reply(State(s): State<AppState>, me: MerchantAuth, Path(id): Path<String>, Body(t): Body<TextBody>) -> Answer {
    ok(s.market.market.governance().reviews().reply_review(&me.0, &id, &t.text).await?)
}

async fn deposit(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().deposits().refresh_deposit_requirement(&me.0).await?)
}

async fn deposit_exit(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().deposits().request_deposit_exit(&me.0).await?)
}

async fn deposit_refund(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().deposits().refund_deposit(&me.0).await?)
}

async fn deposit_refunds(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().deposits().deposit_refunds(&me.0).await?)
}

#[derive(Deserialize)]
struct DepositPayBody {
    amount: Money,
    idempotency_key: String,
    payer_openid: String,
}

/// Pays in (or tops up) the deposit through WeChat Pay: the payment notification credits it.
async fn deposit_pay(State(s): State<AppState>, me: MerchantAuth, Body(b): Body<DepositPayBody>) -> Answer {
    ok(s.market
        .market
        .governance()
        .deposits()
        .deposit_prepay(&me.0, b.amount, &b.payer_openid, &b.idempotency_key)
        .await?)
}

async fn score(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().reviews().merchant_score(&me.0).await?)
}

async fn penalties(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().penalties().penalty_log(&me.0).await?)
}

async fn appeal_penalty(
    State(s): State<AppState>,
    me: MerchantAuth,
    Path(id): Path<String>,
    Body(r): Body<ReasonBody>,
) -> Answer {
    ok(s.market.market.governance().penalties().appeal_penalty(&me.0, &id, &r.reason).await?)
}

async fn balances(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().merchant_balances(&me.0).await?)
}

async fn settlements(State(s): State<AppState>, me: MerchantAuth) -> Answer {
    ok(s.market.market.governance().settlements().merchant_settlements(&me.0, 100).await?)
}

async fn payout(State(s): State<AppState>, me: MerchantAuth, Path(order_id): Path<String>) -> Answer {
    ok(s.market.market.governance().settlements().payout_settlement(&me.0, &order_id).await?)
}

// ---------------------------------------------------------------- platform

async fn get_config(State(s): State<AppState>, _: Platform) -> Answer {
    ok(s.market.market.governance().governance_config().await?)
}

async fn put_config(State(s): State<AppState>, _: Platform, Body(cfg): Body<GovernanceConfig>) -> Answer {
    s.market.market.governance().set_governance_config(&cfg).await?;
    ok(cfg)
}

async fn put_commission(State(s): State<AppState>, _: Platform, Body(rule): Body<CommissionRule>) -> Answer {
    ok(s.market.market.governance().settlements().put_commission_rule(rule).await?)
}

async fn disputes(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Answer {
    ok(s.market.market.governance().aftersales().merchant_disputes(&id, 100).await?)
}

#[derive(Deserialize)]
struct DecideBody {
    outcome: String,
    #[serde(default)]
    refund: Money,
    #[serde(default)]
    payer: Option<Payer>,
    #[serde(default)]
    note: String,
}

async fn decide(State(s): State<AppState>, _: Platform, Path(id): Path<String>, Body(b): Body<DecideBody>) -> Answer {
    let decision = match b.outcome.as_str() {
        "buyer_wins" => Decision::BuyerWins { refund: b.refund, payer: b.payer.unwrap_or(Payer::Merchant) },
        "merchant_wins" => Decision::MerchantWins,
        other => return Err(MarketError::Invalid(format!("outcome {other}: buyer_wins or merchant_wins")).into()),
    };
    ok(s.market.market.governance().aftersales().decide_dispute(&id, decision, &b.note).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ViolationBody {
    merchant_id: String,
    rule_code: String,
    detail: String,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    product_ids: Vec<String>,
}

async fn file_violation(State(s): State<AppState>, _: Platform, Body(v): Body<ViolationBody>) -> Answer {
    let m = &s.market.market;
    ok(m.governance()
        .penalties()
        .file_violation(&v.merchant_id, &v.rule_code, &v.detail, v.order_id.as_deref(), v.product_ids)
        .await?)
}

#[derive(Deserialize, Default)]
struct DecisionBody {
    #[serde(default)]
    upheld: bool,
    #[serde(default)]
    restore: bool,
    #[serde(default)]
    note: String,
    #[serde(default)]
    status: Option<ReviewStatus>,
}

async fn review_penalty(
    State(s): State<AppState>,
    _: Platform,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<DecisionBody>>,
) -> Answer {
    let m = &s.market.market;
    let b = body.map(|Json(b)| b).unwrap_or_default();
    match action.as_str() {
        "confirm" => ok(m.governance().penalties().confirm_penalty(&id).await?),
        "dismiss" => ok(m.governance().penalties().dismiss_penalty(&id, &b.note).await?),
        "appeal" => ok(m.governance().penalties().decide_penalty_appeal(&id, b.upheld, &b.note).await?),
        other => Err(MarketError::Invalid(format!("unknown action {other}")).into()),
    }
}

async fn moderate(
    State(s): State<AppState>,
    _: Platform,
    Path((id, action)): Path<(String, String)>,
    Body(b): Body<DecisionBody>,
) -> Answer {
    let m = &s.market.market;
    match action.as_str() {
        "moderate" => {
            let to = b.status.ok_or_else(|| MarketError::Invalid("status is required".into()))?;
            ok(m.governance().reviews().moderate_review(&id, to, &b.note).await?)
        }
        "appeal" => ok(m.governance().reviews().decide_review_appeal(&id, b.restore).await?),
        other => Err(MarketError::Invalid(format!("unknown action {other}")).into()),
    }
}

/// Refunds a leaving merchant's deposit through WeChat Pay (after the exit check); called again, it
/// retries what failed. Answers the deposit with its refund rows.
async fn admin_deposit_refund(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Answer {
    ok(s.market.market.governance().deposits().refund_deposit(&id).await?)
}

async fn admin_deposit_refunds(State(s): State<AppState>, _: Platform, Path(id): Path<String>) -> Answer {
    ok(s.market.market.governance().deposits().deposit_refunds(&id).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PaidBody {
    reference: String,
}

/// The platform paid a manual deposit refund (a part no WeChat Pay payment can carry).
async fn admin_deposit_refund_paid(
    State(s): State<AppState>,
    _: Platform,
    Path(id): Path<String>,
    Body(b): Body<PaidBody>,
) -> Answer {
    ok(s.market.market.governance().deposits().deposit_refund_paid_manually(&id, &b.reference).await?)
}

#[derive(Deserialize, Default)]
struct ScanBody {
    #[serde(default)]
    at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The carrier's first scan of an order's parcel, as the platform's tracking provider reports it (its
/// webhook calls this). With `carrier_tracking` on, a parcel without one 48 h after shipping is judged a
/// fake shipment.
async fn carrier_scan(
    State(s): State<AppState>,
    _: Platform,
    Path(id): Path<String>,
    body: Option<Json<ScanBody>>,
) -> Answer {
    let m = &s.market.market;
    let at = body.and_then(|Json(b)| b.at).unwrap_or_else(|| m.now());
    m.governance().penalties().record_carrier_event(&id, at).await?;
    ok(json!({ "order_id": id, "first_scan_at": at }))
}

async fn settlement(State(s): State<AppState>, _: Platform, Path(order_id): Path<String>) -> Answer {
    let m = &s.market.market;
    let st = m.governance().settlements().settlement(&order_id).await?;
    ok(json!({ "settlement": st, "attribution": m.governance().settlements().attribution(&order_id).await?,
               "profit_share": m.governance().settlements().profit_share_of(&order_id).await? }))
}

async fn audit(State(s): State<AppState>, _: Platform) -> Answer {
    let a = s.market.market.governance().ledger_audit().await?;
    ok(json!({ "total": a.total, "mismatches": a.mismatches, "unbalanced": a.unbalanced,
               "clean": a.total == 0 && a.mismatches.is_empty() && a.unbalanced.is_empty() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RunBody {
    #[serde(default)]
    advance_hours: i64,
}

/// Emulator mode: runs the marketplace's timers as if `advance_hours` had passed (deadlines due by then
/// fire now), so the demo can show a 48-hour rule without waiting 48 hours.
async fn run_timers(State(s): State<AppState>, _: Platform, Body(b): Body<RunBody>) -> Answer {
    emulator_only(&s)?;
    if !(0..=24 * 400).contains(&b.advance_hours) {
        return Err(MarketError::Invalid("advance_hours within 0..=9600".into()).into());
    }
    let m = &s.market.market;
    let at = m.now() + chrono::Duration::hours(b.advance_hours);
    let mut fired = 0;
    for _ in 0..3 {
        fired += m.ops().run_due_timers(at).await?.fired;
    }
    ok(json!({ "fired": fired, "as_of": at }))
}
