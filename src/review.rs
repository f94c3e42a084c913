//! `draft-reconciler review`: the operator's way through the `needs_review` queue
//! (docs/operations.md, "What an operator does with `needs_review`"). `list` and `show` only read
//! (`show` asks PhonePe once, within the budget); `resolve` acts through the service's own guarded
//! writes: `fulfil` (after PhonePe verifies the payment, the service's stock commit), `refund`
//! (`refund.rs`), `cancel` (`review/cancel.rs`), each recorded `by: operator` with the note. Exit
//! codes: 0 done, 1 refused (with the reason), 2 usage.

use anyhow::Context as _;
use mongodb::bson::{Bson, DateTime, Document};
use serde_json::json;

use crate::actors::Env;
use crate::cli::{ResolveAction, ReviewCommand};
use crate::config::Settings;
use crate::domain::{Order, PaymentStatus, Status};
use crate::refund::{Pushed, Refunder};
use crate::schema::own;
use crate::schema::{OrdersSchema, Schema};
use crate::store::commit::confirm_transition;
use crate::store::refunds::{AutoRefund, PendingRefund, REFUND_KEY};
use crate::store::By;
use crate::store::{CommitOutcome, Lease};

/// Run one `review` subcommand; returns the exit code.
pub fn execute(cmd: ReviewCommand, settings: Settings) -> anyhow::Result<u8> {
    let sys = actix_rt::System::new();
    sys.block_on(async move {
        let health = crate::ops::Health::new(settings.job.interval);
        let env = crate::setup::build_env(settings, health).await?;
        match cmd {
            ReviewCommand::List { reason, json } => list(&env, reason.as_deref(), json).await,
            ReviewCommand::Show {
                merchant_transaction_id,
            } => show(&env, &merchant_transaction_id).await,
            ReviewCommand::Resolve {
                merchant_transaction_id,
                action,
                note,
            } => resolve_cli(&env, &merchant_transaction_id, action, note).await,
        }
    })
}

pub(crate) fn text<'a>(d: &'a Document, key: &str) -> &'a str {
    d.get_str(key).unwrap_or("-")
}

/// The reconciler's own names: documents are read here after `Schema::order_from_shop`, and
/// handed to the store (which speaks the shop's names) as they were stored.
pub(crate) fn names() -> &'static OrdersSchema {
    static DEFAULT: std::sync::LazyLock<Schema> = std::sync::LazyLock::new(Schema::default);
    &DEFAULT.orders
}

pub(crate) fn own_text<'a>(d: &'a Document, path: &str) -> &'a str {
    d.get_document(own::RECONCILIATION_KEY)
        .and_then(|r| r.get_str(own::key(path)))
        .unwrap_or("-")
}

/// An amount in paise, when the field holds a whole number.
pub(crate) fn paise(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

pub(crate) fn amount(d: &Document) -> Option<i64> {
    paise(d.get(&names().amount))
}

/// What PhonePe reported paid (`reconciliation.paidAmount`, paise), when it was recorded.
pub(crate) fn paid_amount(d: &Document) -> Option<i64> {
    let reconciliation = d.get_document(own::RECONCILIATION_KEY).ok()?;
    paise(reconciliation.get(own::key(own::PAID_AMOUNT)))
}

fn or_dash(n: Option<i64>) -> String {
    n.map_or("-".into(), |a| a.to_string())
}

/// When the order was parked: its last `updatedAt`.
pub(crate) fn parked_at(d: &Document) -> Option<DateTime> {
    d.get_datetime(&names().updated_at).ok().copied()
}

/// The recorded refund's fields the queue shows (`null` without one).
pub(crate) fn refund_view(d: &Document) -> serde_json::Value {
    let Ok(r) = d
        .get_document(own::RECONCILIATION_KEY)
        .and_then(|r| r.get_document(REFUND_KEY))
    else {
        return serde_json::Value::Null;
    };
    let p = PendingRefund::of(d, names());
    json!({
        "id": r.get_str("id").ok(),
        "attempt": paise(r.get("attempt")),
        "amount": paise(r.get("amount")),
        "tries": p.as_ref().map(|p| p.tries),
        "flagged": r.get_bool("flagged").unwrap_or(false),
        "lastCode": r.get_str("lastCode").ok(),
        "failCode": r.get_str("failCode").ok(),
    })
}

/// What needs a person beyond the reason: a pending refund flagged after too many asks, or an
/// automatic refund that stopped.
pub(crate) fn attention(d: &Document) -> Option<String> {
    let payment = d.get_str(&names().payment_status).ok();
    let flagged = d
        .get_document(own::RECONCILIATION_KEY)
        .and_then(|r| r.get_document(REFUND_KEY))
        .and_then(|r| r.get_bool("flagged"))
        .unwrap_or(false);
    if flagged && payment == Some(PaymentStatus::RefundPending.as_str()) {
        return Some(format!(
            "refund_flagged: no final answer from PhonePe after {} asks",
            crate::refund::TRIES_TO_FLAG
        ));
    }
    let auto = AutoRefund::of(d);
    auto.stopped.then(|| {
        format!(
            "auto_refund_stopped after {} tries: {}",
            auto.tries,
            auto.last_error.as_deref().unwrap_or("-")
        )
    })
}

/// One line of `review list --json` (never the customer's data: only what the queue needs).
pub fn summary(d: &Document) -> serde_json::Value {
    let parked = parked_at(d);
    json!({
        "merchantTransactionId": text(d, &names().id),
        "reason": own_text(d, own::REASON),
        "amount": amount(d),
        "paidAmount": paid_amount(d),
        "paymentStatus": text(d, &names().payment_status),
        "parkedAt": parked.map(|t| t.try_to_rfc3339_string().unwrap_or_default()),
        "ageSecs": parked.map(|t| (DateTime::now().timestamp_millis() - t.timestamp_millis()) / 1000),
        "lastCode": own_text(d, own::LAST_CODE),
        "refund": refund_view(d),
        "attention": attention(d),
    })
}

async fn list(env: &Env, reason: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    let orders = env.store.parked(reason).await.context("listing parked orders")?;
    if !as_json {
        println!(
            "{:<28} {:<20} {:>10} {:>10} {:<15} {:>8} {:<24} ATTENTION",
            "MERCHANT TXN ID", "REASON", "AMOUNT", "PAID", "PAYMENT", "AGE (h)", "LAST CODE"
        );
    }
    for stored in &orders {
        let view = env.store.schema().order_from_shop(stored);
        let d = &view;
        let s = summary(d);
        if as_json {
            println!("{s}");
        } else {
            let age_h = s["ageSecs"].as_i64().unwrap_or(0) / 3600;
            println!(
                "{:<28} {:<20} {:>10} {:>10} {:<15} {:>8} {:<24} {}",
                text(d, &names().id),
                own_text(d, own::REASON),
                or_dash(amount(d)),
                or_dash(paid_amount(d)),
                text(d, &names().payment_status),
                age_h,
                own_text(d, own::LAST_CODE),
                attention(d).unwrap_or_else(|| "-".into())
            );
        }
    }
    Ok(0)
}

async fn show(env: &Env, mtid: &str) -> anyhow::Result<u8> {
    let Some(d) = env.store.find_by_mtid(mtid).await.context("reading the order")? else {
        eprintln!("review: no order has merchantTransactionId {mtid}");
        return Ok(1);
    };
    let d = env.store.schema().order_from_shop(&d);
    println!("order: {}", summary(&d));
    println!("status: {}", text(&d, &names().status));
    println!("paid (PhonePe, paise): {}", or_dash(paid_amount(&d)));
    if let Some(note) = attention(&d) {
        println!("needs a person: {note}");
    }
    let auto = AutoRefund::of(&d);
    if auto.tries > 0 {
        println!(
            "automatic refund: {} tries, {}; last: {}",
            auto.tries,
            if auto.stopped { "stopped" } else { "will try again" },
            auto.last_error.as_deref().unwrap_or("-")
        );
    }
    if let Ok(history) = d.get_array(own::HISTORY) {
        println!("history:");
        for h in history {
            println!("  {}", h.clone().into_relaxed_extjson());
        }
    }
    match crate::domain::MerchantTransactionId::parse(mtid) {
        Ok(id) => match env.phonepe.status(&id).await {
            Ok(report) => println!("phonepe now: {report:?}"),
            Err(e) => println!("phonepe now: could not be asked: {e}"),
        },
        Err(e) => println!("phonepe now: not asked, the id is not one PhonePe takes: {e}"),
    }
    Ok(0)
}

/// What `resolve` came to. The CLI prints it and exits 0 (`Done`) or 1 (`Refused`); the console
/// shows it on the result page. An `Err` beside it is a failure (MongoDB), exit 1 too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// What was done (the CLI's stdout line after `review: `).
    Done {
        message: String,
        /// What PhonePe reported, when it was asked.
        phonepe: Option<String>,
    },
    /// Why nothing (more) was done: the CLI's reason on stderr, exit 1.
    Refused { reason: String, phonepe: Option<String> },
}

impl Resolution {
    pub(crate) fn done(message: impl Into<String>) -> Resolution {
        Resolution::Done {
            message: message.into(),
            phonepe: None,
        }
    }

    pub(crate) fn refused(reason: impl Into<String>) -> Resolution {
        Resolution::Refused {
            reason: reason.into(),
            phonepe: None,
        }
    }

    /// The same, with what PhonePe reported.
    pub(crate) fn reported(mut self, what: impl Into<String>) -> Resolution {
        match &mut self {
            Resolution::Done { phonepe, .. } | Resolution::Refused { phonepe, .. } => *phonepe = Some(what.into()),
        }
        self
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Resolution::Done { .. })
    }

    /// The message (done) or the reason (refused).
    pub fn text(&self) -> &str {
        match self {
            Resolution::Done { message, .. } => message,
            Resolution::Refused { reason, .. } => reason,
        }
    }

    /// What PhonePe reported, when it was asked.
    pub fn phonepe(&self) -> Option<&str> {
        match self {
            Resolution::Done { phonepe, .. } | Resolution::Refused { phonepe, .. } => phonepe.as_deref(),
        }
    }
}

/// The CLI's operator name: the OS user (`USER`, else `LOGNAME`) when it is a plain name.
fn os_user() -> Option<String> {
    let name = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).ok()?;
    crate::console::settings::is_operator_name(&name).then_some(name)
}

/// `review resolve`: the shared [`resolve`], its result printed, the exit code.
async fn resolve_cli(env: &Env, mtid: &str, action: ResolveAction, note: Option<String>) -> anyhow::Result<u8> {
    let operator = os_user();
    match resolve(env, mtid, action, note, operator.as_deref()).await? {
        Resolution::Done { message, .. } => {
            println!("review: {message}");
            Ok(0)
        }
        Resolution::Refused { reason, .. } => {
            eprintln!("review: refused for {mtid}: {reason}");
            Ok(1)
        }
    }
}

/// What routes an action on a parked order, from its stored state alone (no PhonePe call): the
/// refusals that need no one asked, or the path it takes. `view` is in the reconciler's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Refuse(String),
    Fulfil,
    Refund,
    Cancel,
}

pub fn route(view: &Document, action: ResolveAction) -> Route {
    let status = view.get_str(&names().status).ok().and_then(Status::parse);
    let payment = view
        .get_str(&names().payment_status)
        .ok()
        .and_then(PaymentStatus::parse);
    if status != Some(Status::NeedsReview) {
        return Route::Refuse(format!("it is `{}`, not needs_review", text(view, &names().status)));
    }
    match (action, payment) {
        (_, Some(PaymentStatus::RefundPending)) => {
            Route::Refuse("a refund is pending at PhonePe; the service polls it".into())
        }
        (ResolveAction::Cancel, _) => Route::Cancel,
        (ResolveAction::Fulfil, Some(PaymentStatus::Paid)) => Route::Fulfil,
        (_, Some(PaymentStatus::Paid)) => Route::Refund,
        _ => Route::Refuse(format!(
            "its paymentStatus is `{}`, not paid",
            text(view, &names().payment_status)
        )),
    }
}

/// Resolve the parked order `mtid` with `action`, as `operator` (their name in the history
/// entry, `by: "operator"`): the one path of `review resolve` and the console.
pub async fn resolve(
    env: &Env,
    mtid: &str,
    action: ResolveAction,
    note: Option<String>,
    operator: Option<&str>,
) -> anyhow::Result<Resolution> {
    let Some(d) = env.store.find_by_mtid(mtid).await.context("reading the order")? else {
        return Ok(Resolution::refused("no order has this merchantTransactionId"));
    };
    let view = env.store.schema().order_from_shop(&d);
    let who = Who {
        note,
        operator: operator.map(str::to_string),
    };
    match route(&view, action) {
        Route::Refuse(why) => Ok(Resolution::refused(why)),
        Route::Cancel => cancel::cancel(env, mtid, &d, &view, who).await,
        Route::Fulfil => fulfil(env, mtid, &d, who).await,
        Route::Refund => refund(env, mtid, &d, who).await,
    }
}

/// The operator's note and name, for the history entry.
pub(crate) struct Who {
    pub note: Option<String>,
    pub operator: Option<String>,
}

async fn fulfil(env: &Env, mtid: &str, d: &Document, who: Who) -> anyhow::Result<Resolution> {
    let order = match Order::parse(d, env.store.schema()) {
        Ok(o) => o,
        Err(e) => {
            return Ok(Resolution::refused(format!(
                "the document still cannot be reconciled: {e}"
            )))
        }
    };
    // Nothing confirms without a verified amount: PhonePe is asked again (one permit), and the
    // payment must be complete, to this merchant, of exactly the order's amount (an
    // `amount_mismatch` is refunded, or its document corrected first).
    let paid = match crate::refund::verified_paid(&env.phonepe, mtid).await {
        Ok(paid) => paid,
        Err(why) => {
            let r = Resolution::refused(format!("nothing confirmed: {}", why.why()));
            return Ok(r.reported(why.why()));
        }
    };
    let reported = format!("a completed payment of {paid} paise to this merchant");
    if paid != order.amount.0 {
        let r = Resolution::refused(format!(
            "PhonePe reports {paid} paise paid, the order says {}: nothing confirmed \
             (refund it, or correct the order's amount and fulfil again)",
            order.amount.0
        ));
        return Ok(r.reported(reported));
    }
    // A fulfil short of stock leaves the order parked, with what PhonePe just verified as paid.
    let mut t = confirm_transition("OPERATOR_FULFIL", None)
        .by(By::Operator)
        .paid(Some(paid));
    t.from = Status::NeedsReview;
    t.note = who.note;
    t.operator = who.operator;
    let lease = Lease {
        owner: &env.owner,
        ttl: env.settings.job.lease_ttl,
        now: DateTime::now(),
    };
    let r = match env.store.commit(env.strategy, &order, &t, &lease).await? {
        CommitOutcome::Committed => Resolution::done(format!("{mtid} confirmed; stock deducted")),
        CommitOutcome::AlreadyProcessed => Resolution::refused("it changed meanwhile (someone else resolved it)"),
        short => Resolution::refused(format!(
            "{} ({}): nothing deducted, still parked",
            short.review_reason().map_or("cannot commit", |r| r.as_str()),
            short.product().unwrap_or_default()
        )),
    };
    Ok(r.reported(reported))
}

/// The refund and verification calls, made by the operator.
fn refunder<'a>(env: &'a Env, operator: Option<&'a str>) -> Refunder<'a> {
    Refunder {
        store: &env.store,
        phonepe: &env.phonepe,
        poll_interval: env.settings.refunds.poll_interval,
        by: By::Operator,
        operator,
    }
}

async fn refund(env: &Env, mtid: &str, d: &Document, who: Who) -> anyhow::Result<Resolution> {
    let r = refunder(env, who.operator.as_deref());
    let changed = "it changed meanwhile (someone else resolved it)";
    Ok(match crate::refund::start(&r, d, who.note.as_deref()).await? {
        None => Resolution::refused(changed),
        Some(Pushed::Completed) => Resolution::done(format!("{mtid} refunded")).reported("the refund COMPLETED"),
        Some(Pushed::Pending) => Resolution::done(format!(
            "refund of {mtid} recorded; not final at PhonePe yet, the service asks until it is (review show {mtid})"
        ))
        .reported("the refund is PENDING (or PhonePe could not be asked yet)"),
        Some(Pushed::Failed) => Resolution::refused(
            "PhonePe failed the refund; parked again (refund_failed): refund again (a new refund id) or cancel with a --note",
        )
        .reported("the refund FAILED"),
        Some(Pushed::Refused(code)) => Resolution::refused(format!(
            "PhonePe refused the refund ({code}); nothing refunded, parked again (refund_failed): \
             refund again (a new refund id) or cancel with a --note saying how the money went back"
        ))
        .reported(format!("the refund request was refused ({code})")),
        Some(Pushed::AlreadyFinished) => Resolution::refused(changed),
        Some(Pushed::Unverified(why)) => {
            Resolution::refused(format!("nothing refunded: {}", why.why())).reported(why.why())
        }
    })
}

mod cancel;

pub use cancel::{cancel_route, CancelRoute, PAID_TO_US};
