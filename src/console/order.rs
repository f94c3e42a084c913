//! `GET /orders/{merchantTransactionId}`: one order as the reconciler reads it: its fields
//! through the `[schema]` mapping (the shop's field named beside each), `reconciliation`, the
//! refund, the whole history with who did what, the events the shop was sent, and for a
//! parked order the three actions (each a link to its confirmation page). Never asks PhonePe:
//! what PhonePe said is what the order recorded (`lastCode`, `paidAmount`, the history).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use mongodb::bson::{Bson, Document};

use super::html::{amount, field, frame, order_href, plain, value, when};
use super::{auth, events, internal, Console};
use crate::domain::Status;
use crate::review::{names, paid_amount};
use crate::schema::own;
use crate::store::events::{field as ev, Channel};
use crate::store::refunds::{AUTO_REFUND_KEY, REFUND_KEY};

/// The order named in the path, as stored and in the reconciler's names; or the page to answer.
pub async fn load(c: &Console, id: &str) -> Result<(Document, Document), Response> {
    match c.0.env.store.find_by_mtid(id).await {
        Ok(Some(d)) => {
            let view = c.0.env.store.schema().order_from_shop(&d);
            Ok((d, view))
        }
        Ok(None) => Err(plain(
            StatusCode::NOT_FOUND,
            "No such order",
            "No order has this merchantTransactionId.",
        )),
        Err(e) => Err(internal("reading an order", &e)),
    }
}

pub async fn page(
    State(c): State<Console>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let session = match auth::required(&c, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Path(id)) = id else {
        return super::not_found().await;
    };
    let (_, view) = match load(&c, &id).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let events = match events::of_order(&c.0.env.store, &id).await {
        Ok(e) => e,
        Err(e) => return internal("reading an order's events", &e),
    };
    let parked = view.get_str(&names().status).ok().and_then(Status::parse) == Some(Status::NeedsReview);
    let recon = view.get_document(own::RECONCILIATION_KEY).ok();
    let main = html! {
        h1 { "Order " (id) }
        @if parked {
            p.note {
                "Parked for a person: " strong { (recon.and_then(|r| r.get_str("reason").ok()).unwrap_or("—")) }
                @if let Some(a) = crate::review::attention(&view) { " — " (a) }
            }
            div.actions {
                @for (action, label) in [("fulfil", "Fulfil…"), ("refund", "Refund…"), ("cancel", "Cancel…")] {
                    a.button href={ (order_href(&id)) "/" (action) } { (label) }
                }
            }
        }
        h2 { "The order" }
        (fields(&c, &view))
        h2 { "Reconciliation" }
        (reconciliation(&view))
        h2 { "History" }
        (history(&view))
        h2 { "Events" }
        (event_table(&events))
        p { a href="/" { "Back to the review queue" } }
    };
    frame(StatusCode::OK, &format!("Order {id}"), Some(&session), main).into_response()
}

/// The mapped fields, each with the shop's field name when it differs from the reconciler's.
fn fields(c: &Console, view: &Document) -> Markup {
    let shop = &c.0.env.store.schema().orders;
    let ours = names();
    let rows = [
        ("merchantTransactionId", &ours.id, &shop.id),
        ("status", &ours.status, &shop.status),
        ("paymentStatus", &ours.payment_status, &shop.payment_status),
        ("createdAt", &ours.created_at, &shop.created_at),
        ("updatedAt", &ours.updated_at, &shop.updated_at),
    ];
    let paise = crate::review::amount(view);
    let items = view.get_array(&ours.items).ok();
    html! {
        dl {
            @for (label, key, theirs) in rows {
                dt { (label) @if key != theirs { " (" code { (theirs) } ")" } }
                dd { (field(view, key)) }
            }
            dt { "amount" @if ours.amount != shop.amount { " (" code { (shop.amount) } ")" } }
            dd { (amount(paise)) @if let Some(p) = paise { " (" (p) " paise)" } }
            dt { "paid, as PhonePe reported" }
            dd { (amount(paid_amount(view))) }
        }
        @if let Some(items) = items {
            h2 { "Items" }
            div.box { table {
                thead { tr { th { "Product" } th { "Quantity" } th { "Size" } } }
                tbody { @for item in items {
                    @if let Some(i) = item.as_document() {
                        tr {
                            td { (field(i, &ours.item_product)) }
                            td.num { (field(i, &ours.item_quantity)) }
                            td { (i.get(&ours.item_size).map_or("—".into(), value)) }
                        }
                    } @else {
                        tr { td colspan="3" { (value(item)) } }
                    }
                } }
            } }
        }
    }
}

/// `reconciliation`'s fields, the refund's and the automatic refund's apart.
fn reconciliation(view: &Document) -> Markup {
    let Ok(r) = view.get_document(own::RECONCILIATION_KEY) else {
        return html! { p { "The reconciler has not touched this order." } };
    };
    let nested = [REFUND_KEY, AUTO_REFUND_KEY];
    html! {
        dl {
            @for (k, v) in r.iter().filter(|(k, _)| !nested.contains(&k.as_str())) {
                dt { (k) } dd { (value(v)) }
            }
        }
        @if let Ok(refund) = r.get_document(REFUND_KEY) {
            h2 { "Refund" }
            dl { @for (k, v) in refund { dt { (k) } dd { (value(v)) } } }
        }
        @if let Ok(auto) = r.get_document(AUTO_REFUND_KEY) {
            h2 { "Automatic refund" }
            dl { @for (k, v) in auto { dt { (k) } dd { (value(v)) } } }
        }
    }
}

/// Every history entry, oldest first, with who made it.
fn history(view: &Document) -> Markup {
    let entries: Vec<&Document> = view
        .get_array(own::HISTORY)
        .map(|a| a.iter().filter_map(Bson::as_document).collect())
        .unwrap_or_default();
    if entries.is_empty() {
        return html! { p { "No history yet." } };
    }
    let known = ["at", "from", "to", "by", "operator", "reason", "code", "note", "detail"];
    html! {
        div.box { table {
            thead { tr {
                th { "At" } th { "Change" } th { "By" } th { "Reason" } th { "Code" } th { "Note" } th { "Also" }
            } }
            tbody { @for h in entries {
                tr {
                    td { (h.get_datetime("at").map_or("—".into(), |t| when(*t))) }
                    td { (field(h, "from")) " → " (field(h, "to")) }
                    td { (field(h, "by")) @if let Ok(name) = h.get_str("operator") { " (" strong { (name) } ")" } }
                    td { (field(h, "reason")) }
                    td { (field(h, "code")) }
                    td { (h.get_str("note").unwrap_or("")) }
                    td {
                        @if let Ok(d) = h.get_str("detail") { (d) br; }
                        @for (k, v) in h.iter().filter(|(k, v)| !known.contains(&k.as_str()) && !matches!(v, Bson::Null)) {
                            code { (k) } ": " (value(v)) br;
                        }
                    }
                }
            } }
        } }
    }
}

fn event_table(events: &[Document]) -> Markup {
    if events.is_empty() {
        return html! { p { "No events for this order." } };
    }
    html! {
        div.box { table {
            thead { tr { th { "Event" } th { "Type" } th { "At" } th { "State" } th { "Delivered" } th { "Attempts" } th { "Last answer" } } }
            tbody { @for e in events {
                @let delivery = Channel::Shop.record(e).cloned().unwrap_or_default();
                tr {
                    td { code { (field(e, ev::ID)) } }
                    td { (field(e, ev::TYPE)) }
                    td { (field(e, ev::CREATED_AT)) }
                    td { (field(e, ev::STATE)) }
                    td { (field(e, ev::DELIVERED_AT)) }
                    td { (field(&delivery, ev::ATTEMPTS)) }
                    td { (field(&delivery, ev::LAST_STATUS)) }
                }
            } }
        } }
    }
}
