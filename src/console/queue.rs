//! `GET /`: the review queue, oldest first: every parked order's reason, id, amount, what PhonePe
//! reported paid, when it was parked and its refund; the count per reason, and a filter by
//! reason (`?reason=`). The same view as `review list --json` ([`crate::review::summary`]).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::html::{amount, frame, order_href, segment};
use super::{auth, internal, Console};

/// Rows shown at most (the counts are of every parked order).
const ROWS: usize = 500;

#[derive(Deserialize)]
pub struct Filter {
    reason: Option<String>,
}

async fn render(c: &Console, headers: &HeaderMap, reason: Option<String>) -> Response {
    let session = match auth::required(c, headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let store = &c.0.env.store;
    let parked = match store.parked(None).await {
        Ok(p) => p,
        Err(e) => return internal("listing parked orders", &e),
    };
    let rows: Vec<Value> = parked
        .iter()
        .map(|d| crate::review::summary(&store.schema().order_from_shop(d)))
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(text(&r["reason"]).to_string()).or_default() += 1;
    }
    let reason = reason.filter(|r| !r.is_empty());
    let shown: Vec<&Value> = rows
        .iter()
        .filter(|r| reason.as_deref().is_none_or(|want| text(&r["reason"]) == want))
        .collect();
    let main = html! {
        h1 { "Review queue" }
        p { (rows.len()) " parked order" @if rows.len() != 1 { "s" } " need a person, oldest first." }
        ul.tags {
            li { a.on[reason.is_none()] href="/" { "All (" (rows.len()) ")" } }
            @for (r, n) in &counts {
                li { a.on[reason.as_deref() == Some(r.as_str())] href={ "/?reason=" (segment(r)) } { (r) " (" (n) ")" } }
            }
        }
        @if shown.is_empty() {
            p.note { "Nothing is parked" @if let Some(r) = &reason { " for " code { (r) } } "." }
        } @else {
            div.box { table {
                thead { tr {
                    th { "Order" } th { "Reason" } th { "Amount" } th { "Paid (PhonePe)" }
                    th { "Payment" } th { "Parked at" } th { "Refund" } th { "Attention" }
                } }
                tbody { @for r in shown.iter().take(ROWS) { (row(r)) } }
            } }
            @if shown.len() > ROWS { p.note { "The oldest " (ROWS) " are shown." } }
        }
    };
    frame(StatusCode::OK, "Review queue", Some(&session), main).into_response()
}

pub async fn page(
    State(c): State<Console>,
    headers: HeaderMap,
    filter: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let reason = filter.ok().and_then(|Query(f)| f.reason);
    render(&c, &headers, reason).await
}

/// `2026-12-04T17:57:03.391Z` as `2026-12-04 17:57:03 UTC`.
fn rfc3339(t: &str) -> String {
    let whole = t.split(['.', 'Z']).next().unwrap_or(t);
    format!("{} UTC", whole.replacen('T', " ", 1))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("—")
}

fn row(r: &Value) -> Markup {
    let id = text(&r["merchantTransactionId"]);
    html! {
        tr {
            td { a href=(order_href(id)) { (id) } }
            td { (text(&r["reason"])) }
            td.num { (amount(r["amount"].as_i64())) }
            td.num { (amount(r["paidAmount"].as_i64())) }
            td { (text(&r["paymentStatus"])) }
            td { (r["parkedAt"].as_str().map_or("—".into(), rfc3339)) }
            td { (refund_state(&r["refund"], text(&r["paymentStatus"]))) }
            td { (r["attention"].as_str().unwrap_or("—")) }
        }
    }
}

/// A refund's state in a few words: none, pending at PhonePe, failed, or what PhonePe said last.
pub fn refund_state(refund: &Value, payment: &str) -> String {
    if refund.is_null() {
        return "—".into();
    }
    let attempt = refund["attempt"].as_i64().unwrap_or(1);
    if payment == "refund_pending" {
        let tries = refund["tries"].as_u64().unwrap_or(0);
        let flagged = if refund["flagged"].as_bool().unwrap_or(false) {
            ", flagged"
        } else {
            ""
        };
        return format!("pending (attempt {attempt}, {tries} asks{flagged})");
    }
    match refund["failCode"].as_str() {
        Some(code) => format!("failed ({code}), attempt {attempt}"),
        None => format!("attempt {attempt}: {}", refund["lastCode"].as_str().unwrap_or("—")),
    }
}
