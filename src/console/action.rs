//! `/orders/{id}/{fulfil|refund|cancel}`. The GET is the confirmation page: what will happen,
//! read from the stored order alone (it never asks PhonePe), and what PhonePe will be asked when
//! the operator confirms; or, when the stored state already refuses it, the reason `review
//! resolve` gives. The POST (CSRF token, optional note) runs [`crate::review::resolve`] as the
//! signed-in operator and shows the result: done, refused with the reason, or an error, with what
//! PhonePe reported.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use mongodb::bson::Document;
use serde::Deserialize;

use super::html::{amount, frame, order_href, plain};
use super::{auth, count_action, order, Console};
use crate::cli::ResolveAction;
use crate::review::{cancel_route, paid_amount, route, CancelRoute, Resolution, Route, PAID_TO_US};
use crate::telemetry::labels::console_action;

/// The longest note the console records.
pub const NOTE_MAX: usize = 1000;

fn parse(action: &str) -> Option<(ResolveAction, &'static str)> {
    match action {
        "fulfil" => Some((ResolveAction::Fulfil, console_action::FULFIL)),
        "refund" => Some((ResolveAction::Refund, console_action::REFUND)),
        "cancel" => Some((ResolveAction::Cancel, console_action::CANCEL)),
        _ => None,
    }
}

type PathParts = Result<Path<(String, String)>, axum::extract::rejection::PathRejection>;

/// `GET`: the confirmation page.
pub async fn confirm(State(c): State<Console>, headers: HeaderMap, path: PathParts) -> Response {
    let session = match auth::required(&c, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some((id, action, label)) = path.ok().and_then(|Path((id, a))| parse(&a).map(|(a, l)| (id, a, l))) else {
        return super::not_found().await;
    };
    let (_, view) = match order::load(&c, &id).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let title = format!("{} order {id}", verb(label));
    let main = match plan(&view, action) {
        Err(why) => html! {
            h1 { (title) }
            p.refused role="alert" { "This cannot be done: " (why) }
            p { a href=(order_href(&id)) { "Back to the order" } }
        },
        Ok(plan) => html! {
            h1 { (title) " — confirm" }
            h2 { "What will happen" }
            p { (plan.will) }
            h2 { "What PhonePe will be asked" }
            p { (plan.phonepe) }
            form method="post" action={ (order_href(&id)) "/" (label) } {
                input type="hidden" name="csrf" value=(session.csrf());
                label for="note" { "Note for the order's history" @if !plan.note_required { " (optional)" } }
                textarea #note name="note" maxlength=(NOTE_MAX) required[plan.note_required] {}
                div.actions {
                    button type="submit" { "Confirm: " (label) }
                    a.button.light href=(order_href(&id)) { "Back" }
                }
            }
        },
    };
    frame(StatusCode::OK, &title, Some(&session), main).into_response()
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    note: Option<String>,
}

/// `POST`: the action, as `review resolve` runs it, and its result.
pub async fn act(
    State(c): State<Console>,
    headers: HeaderMap,
    path: PathParts,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let session = match auth::required(&c, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some((id, action, label)) = path.ok().and_then(|Path((id, a))| parse(&a).map(|(a, l)| (id, a, l))) else {
        return super::not_found().await;
    };
    let form = form.ok().map(|Form(f)| f);
    if let Err(r) = auth::csrf(&session, form.as_ref().and_then(|f| f.csrf.as_deref())) {
        return r;
    }
    let note = form
        .and_then(|f| f.note)
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > NOTE_MAX) {
        let why = format!("The note is longer than {NOTE_MAX} characters: nothing was done.");
        return plain(StatusCode::BAD_REQUEST, "Note too long", &why);
    }
    tracing::info!(operator = %session.user, action = label, merchantTransactionId = %id, "console: an operator confirmed an action");
    let result = crate::review::resolve(&c.0.env, &id, action, note, Some(&session.user)).await;
    let title = format!("{} order {id}", verb(label));
    let (status, main) = match &result {
        Ok(r) => {
            count_action(
                label,
                if r.is_done() {
                    console_action::DONE
                } else {
                    console_action::REFUSED
                },
            );
            (StatusCode::OK, outcome(&id, r))
        }
        Err(e) => {
            count_action(label, console_action::ERROR);
            tracing::error!(error = %format!("{e:#}"), merchantTransactionId = %id, "console: an action failed");
            let main = html! {
                p.refused role="alert" {
                    "The action failed: the database did not answer as expected. The order may not have \
                     changed; open it to see its state before trying again."
                }
                p { a href=(order_href(&id)) { "Open the order" } }
            };
            (StatusCode::INTERNAL_SERVER_ERROR, main)
        }
    };
    let main = html! { h1 { (title) } (main) };
    frame(status, &title, Some(&session), main).into_response()
}

fn outcome(id: &str, r: &Resolution) -> Markup {
    html! {
        @if r.is_done() {
            p.done role="status" { strong { "Done. " } (r.text()) }
        } @else {
            p.refused role="alert" { strong { "Refused: " } (r.text()) }
        }
        @if let Some(p) = r.phonepe() {
            h2 { "What PhonePe reported" }
            p { (p) }
        }
        p { a href=(order_href(id)) { "Open the order" } " · " a href="/" { "Back to the review queue" } }
    }
}

fn verb(label: &str) -> &'static str {
    match label {
        "fulfil" => "Fulfil",
        "refund" => "Refund",
        _ => "Cancel",
    }
}

/// What the confirmation page says will happen.
pub struct Plan {
    pub will: String,
    pub phonepe: String,
    pub note_required: bool,
}

/// The plan for `action` on `view` (the reconciler's names), or the reason `review resolve`
/// would refuse it without asking PhonePe.
pub fn plan(view: &Document, action: ResolveAction) -> Result<Plan, String> {
    let order = amount(crate::review::amount(view));
    let status_asked = "The payment status of this order (one call within the PhonePe budget).";
    match route(view, action) {
        Route::Refuse(why) => Err(why),
        Route::Fulfil => Ok(Plan {
            will: format!(
                "If PhonePe reports a completed payment to this merchant of exactly {order} (the order's \
                 amount), the order's stock is deducted (all items or none) and it becomes confirmed. \
                 Anything else, or stock still short, leaves it parked and nothing is deducted."
            ),
            phonepe: status_asked.into(),
            note_required: false,
        }),
        Route::Refund => Ok(Plan {
            will: format!(
                "If PhonePe reports a completed payment to this merchant, a refund of the amount PhonePe \
                 reports paid (recorded: {}) is recorded on the order and then requested from PhonePe, \
                 exactly once. The order becomes refunded when PhonePe completes it (the service keeps \
                 asking while it is pending); if PhonePe fails or refuses it, the order stays parked. \
                 Stock does not move.",
                amount(paid_amount(view))
            ),
            phonepe: format!("{status_asked} Then the refund itself, and its status."),
            note_required: false,
        }),
        Route::Cancel => cancel_plan(view, status_asked),
    }
}

fn cancel_plan(view: &Document, status_asked: &str) -> Result<Plan, String> {
    match cancel_route(view) {
        CancelRoute::PaidToUs => Err(PAID_TO_US.into()),
        CancelRoute::RefundFailed(fail) => Ok(Plan {
            will: format!(
                "The order is closed as cancelled without asking PhonePe: it was paid and its refund \
                 through PhonePe failed ({fail}). Your note must say how the money went back to the customer."
            ),
            phonepe: "Nothing.".into(),
            note_required: true,
        }),
        CancelRoute::Ask(_) => Ok(Plan {
            will: "The order is closed as cancelled only if PhonePe reports no payment to this merchant \
                   (failed, unknown, pending past PhonePe's 20-minute expiry, or paid to another merchant). \
                   If PhonePe reports a completed payment to this merchant, nothing is cancelled and the \
                   payment is recorded on the order. Stock does not move."
                .into(),
            phonepe: status_asked.into(),
            note_required: false,
        }),
    }
}
