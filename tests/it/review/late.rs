//! A payment PhonePe confirms after the order left `draft` is never dropped (docs/operations.md,
//! "A payment after settlement"): for each status an order can be in, a signed COMPLETED
//! callback (v1 and v2), `check --apply` and the reconciler's watch record it on the unpaid ones
//! (`paymentStatus: paid`, `paidAmount`, one history entry, parked `paid_after_cancel` or left
//! in review with its reason), once, counted in `reconciler_late_payments_total`; paid,
//! refunding, confirmed and refunded orders are left as they are.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use phonepe_sim::{deliver, Webhook};
use phonepe_sim::{Answer, WebhookVersion};

use super::{code, review, text, WAIT};
use crate::support::{eventually, eventually_some, free_port, http_get, wait_for_port, Running, World};

const AMOUNT: i64 = 10_000;

/// The real `draft-reconciler run` with the webhook (the simulator's dashboard credentials) and
/// ops HTTP on free ports; a scan interval and lookback long enough that only callbacks act.
pub(super) struct Hooked {
    _child: Running,
    pub hook: u16,
    pub ops: u16,
}

impl Hooked {
    pub fn start(w: &World, extra: &[(&str, &str)]) -> Hooked {
        let (hook, ops) = (free_port(), free_port());
        let mut c = w.reconciler_command(&["run"]);
        c.env("RECONCILER_WEBHOOK__LISTEN", format!("127.0.0.1:{hook}"))
            .env("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{ops}"))
            .env("PHONEPE_WEBHOOK_USERNAME", "webhook-user")
            .env("PHONEPE_WEBHOOK_PASSWORD", "webhook-pass")
            .env("RECONCILER_JOB__INTERVAL_SECS", "3600")
            .env("RECONCILER_JOB__LOOKBACK_SECS", "100000");
        for (k, v) in extra {
            c.env(k, v);
        }
        let child = Running(c.spawn().expect("start draft-reconciler"));
        wait_for_port(hook, Duration::from_secs(60));
        Hooked {
            _child: child,
            hook,
            ops,
        }
    }

    /// Deliver `webhook` as PhonePe does: again after a 503 (a loaded machine may miss the 3 s
    /// answer; the retry finds the work done). The first HTTP status that is not 503.
    pub fn deliver(&self, w: &World, webhook: &Webhook) -> u16 {
        let url = format!("http://127.0.0.1:{}/webhooks/phonepe", self.hook);
        eventually_some(WAIT, "a webhook answer other than 503", || {
            let status = w.block(deliver(&url, webhook)).expect("delivered");
            (status != 503).then_some(status)
        })
    }

    pub fn metrics(&self) -> String {
        http_get(self.ops, "/metrics").map(|(_, b)| b).unwrap_or_default()
    }
}

/// An order that left `draft`, `age` seconds old, nothing due (its next check a month away).
fn settled(w: &World, mtid: &str, status: &str, payment: &str, reason: &str, age: i64) {
    let now = DateTime::now().timestamp_millis();
    let created = DateTime::from_millis(now - age * 1000);
    let far = DateTime::from_millis(now + 30 * 86_400_000);
    w.insert_raw(doc! {
        "merchantTransactionId": mtid, "status": status, "paymentStatus": payment, "amount": AMOUNT,
        "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created, "updatedAt": created,
        "history": [], "reconciliation": { "reason": reason, "nextCheckAt": far },
    });
}

/// PhonePe's COMPLETED callback about `mtid`, for the full amount.
fn paid_callback(w: &World, mtid: &str, version: WebhookVersion) -> Webhook {
    w.sim
        .state()
        .webhook(mtid, version, Some(Answer::completed(AMOUNT)))
        .expect("a signed callback")
}

/// What a row ends as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    /// Parked `paid_after_cancel`, the payment recorded.
    Parked,
    /// Still in review with its reason, the payment recorded on it.
    RecordedOn,
    /// Untouched: its payment is recorded already, or it is settled.
    Untouched,
}

fn reason_of(d: &Document) -> Option<String> {
    d.get_document("reconciliation")
        .ok()?
        .get_str("reason")
        .ok()
        .map(str::to_string)
}

/// Assert what `mtid` ended as after one payment from `by`, given what it was (`before`).
fn assert_row(w: &World, mtid: &str, before: &Document, then: Then, by: &str) {
    let after = w.order(mtid);
    match then {
        Then::Untouched => assert_eq!(after, *before, "{mtid} must be left as it was"),
        Then::Parked | Then::RecordedOn => {
            assert_eq!(w.status(mtid), ("needs_review".into(), "paid".into()), "{mtid}");
            assert_eq!(w.paid_amount(mtid), Some(AMOUNT), "{mtid}: what PhonePe reported paid");
            let (reason, history) = if then == Then::Parked {
                ("paid_after_cancel".to_string(), "paid_after_cancel")
            } else {
                (reason_of(before).expect("a reason"), "payment_recorded")
            };
            assert_eq!(w.reason(mtid), Some(reason), "{mtid}");
            let h = w.history(mtid);
            assert_eq!(h.len(), 1, "{mtid}: one history entry: {h:?}");
            let from = before.get_str("status").expect("status");
            assert_eq!(h[0].get_str("from").ok(), Some(from), "{mtid}");
            assert_eq!(h[0].get_str("to").ok(), Some("needs_review"), "{mtid}");
            assert_eq!(h[0].get_str("by").ok(), Some(by), "{mtid}");
            assert_eq!(h[0].get_str("reason").ok(), Some(history), "{mtid}");
        }
    }
}

#[test]
fn a_completed_callback_is_recorded_on_every_order_that_left_draft_unpaid() {
    use WebhookVersion::{V1, V2};
    let w = World::new("late_callbacks");
    w.insert_product("tee", 10);
    let month = 30 * 86_400;
    let rows = [
        (
            "LT-FAILED",
            "cancelled",
            "failed",
            "payment_failed",
            600,
            V1,
            Then::Parked,
        ),
        (
            "LT-WATCH",
            "cancelled",
            "pending",
            "pending_timeout",
            4_000,
            V2,
            Then::Parked,
        ),
        ("LT-OLD", "cancelled", "pending", "not_found", month, V1, Then::Parked),
        (
            "LT-OPER",
            "cancelled",
            "pending",
            "operator_cancelled",
            600,
            V2,
            Then::Parked,
        ),
        (
            "LT-UNREAD",
            "needs_review",
            "pending",
            "phonepe_unreadable",
            600,
            V1,
            Then::RecordedOn,
        ),
        (
            "LT-REJECT",
            "needs_review",
            "failed",
            "phonepe_rejected",
            600,
            V2,
            Then::RecordedOn,
        ),
        (
            "LT-PAID",
            "needs_review",
            "paid",
            "insufficient_stock",
            600,
            V1,
            Then::Untouched,
        ),
        (
            "LT-REFUNDING",
            "needs_review",
            "refund_pending",
            "amount_mismatch",
            600,
            V2,
            Then::Untouched,
        ),
        ("LT-CONFIRMED", "confirmed", "paid", "paid", 600, V1, Then::Untouched),
        (
            "LT-REFUNDED",
            "refunded",
            "refunded",
            "refunded",
            600,
            V2,
            Then::Untouched,
        ),
    ];
    for (mtid, status, payment, reason, age, _, _) in rows {
        settled(&w, mtid, status, payment, reason, age);
    }
    // Parked because its document cannot be reconciled: the payment is recorded all the same.
    w.insert_raw(doc! {
        "merchantTransactionId": "LT-INVALID", "status": "needs_review", "paymentStatus": "pending",
        "amount": "lots", "history": [], "reconciliation": { "reason": "invalid_order" },
    });
    let before: Vec<Document> = rows.iter().map(|r| w.order(r.0)).collect();
    let svc = Hooked::start(&w, &[]);

    for (mtid, .., version, _) in rows {
        assert_eq!(svc.deliver(&w, &paid_callback(&w, mtid, version)), 200, "{mtid}");
    }
    assert_eq!(svc.deliver(&w, &paid_callback(&w, "LT-INVALID", V2)), 200);
    for (row, before) in rows.iter().zip(&before) {
        assert_row(&w, row.0, before, row.6, "webhook");
    }
    assert_eq!(w.status("LT-INVALID"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.paid_amount("LT-INVALID"), Some(AMOUNT));
    assert_eq!(w.reason("LT-INVALID").as_deref(), Some("invalid_order"));
    assert_eq!(w.stock("tee"), 10, "nothing deducted for a late payment");

    // PhonePe delivers again: each payment stays recorded once.
    let after: Vec<Document> = rows.iter().map(|r| w.order(r.0)).collect();
    for (mtid, .., version, _) in rows {
        assert_eq!(svc.deliver(&w, &paid_callback(&w, mtid, version)), 200, "{mtid}");
    }
    for (row, after) in rows.iter().zip(&after) {
        assert_eq!(w.order(row.0), *after, "{}: a duplicate changes nothing", row.0);
    }
    let recorded = rows.iter().filter(|r| r.6 != Then::Untouched).count() + 1;
    let line = format!("reconciler_late_payments_total {recorded}");
    eventually(WAIT, "the late payments counted", || svc.metrics().contains(&line));
}

/// `check --apply` records a payment for a cancellation the reconciler no longer watches and
/// for a parked document it cannot parse; the reconciler's own watch records one it finds.
#[test]
fn check_apply_and_the_reconciler_record_a_late_payment_too() {
    let w = World::new("late_check");
    w.insert_product("tee", 10);
    settled(&w, "LC-OLD", "cancelled", "failed", "payment_failed", 30 * 86_400);
    settled(&w, "LC-PARKED", "needs_review", "pending", "phonepe_unreadable", 600);
    w.insert_raw(doc! {
        "merchantTransactionId": "LC-INVALID", "status": "needs_review", "paymentStatus": "pending",
        "amount": "lots", "history": [], "reconciliation": { "reason": "invalid_order" },
    });
    let before: Vec<Document> = ["LC-OLD", "LC-PARKED"].map(|m| w.order(m)).to_vec();
    for mtid in ["LC-OLD", "LC-PARKED", "LC-INVALID"] {
        w.sim.script(mtid, vec![Answer::completed(AMOUNT)]);
        let out = review(&w, &["check", mtid, "--apply"], &[]);
        assert_eq!(code(&out), 0, "{mtid}: {}", text(&out));
    }
    assert_row(&w, "LC-OLD", &before[0], Then::Parked, "reconciler");
    assert_row(&w, "LC-PARKED", &before[1], Then::RecordedOn, "reconciler");
    assert_eq!(w.status("LC-INVALID"), ("needs_review".into(), "paid".into()));
    // Again: nothing more.
    let out = review(&w, &["check", "LC-OLD", "--apply"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(w.history("LC-OLD").len(), 1);

    // A watched cancellation, due now: the reconciler's check records the payment.
    let now = DateTime::now().timestamp_millis();
    w.insert_raw(doc! {
        "merchantTransactionId": "LC-WATCH", "status": "cancelled", "paymentStatus": "pending",
        "amount": AMOUNT, "items": [{ "productId": "tee", "quantity": 1 }],
        "createdAt": DateTime::from_millis(now - 4_000_000), "history": [],
        "reconciliation": { "reason": "not_found", "nextCheckAt": DateTime::from_millis(now - 1000) },
    });
    let before = w.order("LC-WATCH");
    w.sim.script("LC-WATCH", vec![Answer::completed(AMOUNT)]);
    w.once();
    assert_row(&w, "LC-WATCH", &before, Then::Parked, "reconciler");
    assert_eq!(w.stock("tee"), 10);
}
