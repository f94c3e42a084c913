//! Found by the audit of issues 21, 22 and 25: a signed COMPLETED callback for a `draft` the
//! reconciler cannot read (a field of the wrong type, a `paymentStatus` other than `pending`)
//! was answered 200 `ignored`, and the reconciler then parks the draft `invalid_order` without
//! asking PhonePe: the customer paid and nothing recorded it. The payment is recorded on the
//! draft (parked `invalid_order`, `paymentStatus: paid`, `paidAmount`), as on every order that
//! has no recorded payment.

use mongodb::bson::{doc, Bson, DateTime};
use phonepe_sim::{Answer, WebhookVersion};

use super::late::Hooked;
use crate::support::World;

const AMOUNT: i64 = 10_000;

/// A signed COMPLETED callback of `AMOUNT` for `mtid` (v1 for even `i`, v2 for odd), answered 200.
fn deliver_completed(w: &World, hooked: &Hooked, mtid: &str, i: usize) {
    let version = [WebhookVersion::V1, WebhookVersion::V2][i % 2];
    let hook = w
        .sim
        .state()
        .webhook(mtid, version, Some(Answer::completed(AMOUNT)))
        .expect("signed");
    assert_eq!(hooked.deliver(w, &hook), 200, "{mtid}");
}

#[test]
fn a_completed_callback_for_a_draft_that_cannot_be_reconciled_is_recorded() {
    let w = World::new("audit_invalid_draft_paid");
    w.insert_product("tee", 10);
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 600_000);
    let rows = [
        // The amount as rupees text: the document cannot be parsed.
        ("AU-TEXT", doc! { "paymentStatus": "pending", "amount": "100.00" }),
        // Items of the wrong type.
        (
            "AU-ITEMS",
            doc! { "paymentStatus": "pending", "amount": AMOUNT, "items": "tee" },
        ),
        // A draft whose paymentStatus is not pending.
        ("AU-PSTAT", doc! { "paymentStatus": "unpaid", "amount": AMOUNT }),
    ];
    for (mtid, fields) in &rows {
        let mut d = doc! {
            "merchantTransactionId": *mtid, "status": "draft",
            "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
            "updatedAt": created, "history": [],
        };
        d.extend(fields.clone());
        w.insert_raw(d);
    }
    let hooked = Hooked::start(&w, &[]);
    for (i, (mtid, _)) in rows.iter().enumerate() {
        deliver_completed(&w, &hooked, mtid, i);
        assert_eq!(
            w.status(mtid),
            ("needs_review".into(), "paid".into()),
            "{mtid}: the payment is recorded"
        );
        assert_eq!(w.paid_amount(mtid), Some(AMOUNT), "{mtid}");
        assert_eq!(
            w.reason(mtid).as_deref(),
            Some("invalid_order"),
            "{mtid}: the document needs a person"
        );
        let h = w.history(mtid);
        assert_eq!(h.len(), 1, "{mtid}: {h:?}");
        assert_eq!(h[0].get_str("by").ok(), Some("webhook"), "{mtid}");
        assert_eq!(h[0].get_str("from").ok(), Some("draft"), "{mtid}");
    }
    // A second delivery records nothing more.
    let again = w
        .sim
        .state()
        .webhook("AU-TEXT", WebhookVersion::V1, Some(Answer::completed(AMOUNT)))
        .expect("signed");
    assert_eq!(hooked.deliver(&w, &again), 200);
    assert_eq!(w.history("AU-TEXT").len(), 1);
    assert_eq!(w.stock("tee"), 10, "nothing deducted");
}

/// The same for a draft whose status is the draft word only loosely (another case, an array
/// holding it): the reconciler never claims it, so the callback's payment was dropped. It is
/// recorded, guarded by the status as stored; a status that is not a draft at all stays untouched.
#[test]
fn a_completed_callback_for_a_draft_whose_status_reads_only_loosely_is_recorded() {
    use draft_reconciler::domain::Status;
    let w = World::new("audit_loose_draft_paid");
    w.insert_product("tee", 10);
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 600_000);
    let word = w.schema.orders.status_values.word(Status::Draft).to_string();
    let swapped: String = word
        .chars()
        .map(|c| match c.is_ascii_uppercase() {
            true => c.to_ascii_lowercase(),
            false => c.to_ascii_uppercase(),
        })
        .collect();
    let rows = [
        ("AU-CASE", Bson::String(swapped)),
        ("AU-ARRAY", Bson::Array(vec![Bson::String(word.clone())])),
        ("AU-OTHER", Bson::String("shipped".into())),
    ];
    for (mtid, status) in &rows {
        w.insert_raw(doc! {
            "merchantTransactionId": *mtid, "status": "draft", "paymentStatus": "pending",
            "amount": AMOUNT, "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
            "updatedAt": created, "history": [],
        });
        let o = &w.schema.orders;
        w.block(
            w.orders()
                .update_one(doc! { &o.id: *mtid }, doc! { "$set": { &o.status: status.clone() } }),
        )
        .expect("set the status");
    }
    let hooked = Hooked::start(&w, &[]);
    for (i, (mtid, _)) in rows.iter().enumerate() {
        deliver_completed(&w, &hooked, mtid, i);
    }
    for mtid in ["AU-CASE", "AU-ARRAY"] {
        assert_eq!(
            w.status(mtid),
            ("needs_review".into(), "paid".into()),
            "{mtid}: the payment is recorded"
        );
        assert_eq!(w.paid_amount(mtid), Some(AMOUNT), "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("invalid_order"), "{mtid}");
        assert_eq!(w.history(mtid).len(), 1, "{mtid}");
    }
    let other = w.stored_order("AU-OTHER");
    assert_eq!(
        draft_reconciler::schema::get_path(&other, &w.schema.orders.status).and_then(Bson::as_str),
        Some("shipped"),
        "not a draft: untouched"
    );
    assert!(w.history("AU-OTHER").is_empty());
    assert_eq!(w.stock("tee"), 10, "nothing deducted");
}

/// A parked, unpaid order in review for `reason`, an hour old.
fn parked_unpaid(w: &World, mtid: &str, reason: &str) {
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
    w.insert_raw(doc! {
        "merchantTransactionId": mtid, "status": "needs_review", "paymentStatus": "pending",
        "amount": AMOUNT, "items": [{ "productId": "tee", "quantity": 1 }], "createdAt": created,
        "updatedAt": created, "history": [], "reconciliation": { "reason": reason },
    });
}

/// `review resolve <id> cancel` cancelled an order on one `BAD_REQUEST` to its status call
/// ("no payment can be made under it"), though the id is one PhonePe takes and the reconciler
/// itself retries such a refusal. A first refusal cancels nothing (exit 1); an order PhonePe
/// kept refusing (parked `phonepe_rejected`) can still be closed.
#[test]
fn cancel_after_one_refused_status_call_cancels_nothing() {
    let w = World::new("audit_cancel_refused");
    w.insert_product("tee", 5);
    parked_unpaid(&w, "AU-CN-400", "phonepe_unreadable");
    w.sim
        .script("AU-CN-400", vec![Answer::http_error(400).code("BAD_REQUEST")]);
    let out = super::review(&w, &["review", "resolve", "AU-CN-400", "cancel"], &[]);
    assert_eq!(super::code(&out), 1, "{}", super::text(&out));
    assert!(super::text(&out).contains("BAD_REQUEST"), "{}", super::text(&out));
    assert_eq!(w.calls_for("AU-CN-400"), 1, "PhonePe was asked");
    assert_eq!(
        w.status("AU-CN-400"),
        ("needs_review".into(), "pending".into()),
        "nothing cancelled"
    );
    assert!(w.history("AU-CN-400").is_empty());

    parked_unpaid(&w, "AU-CN-REJ", "phonepe_rejected");
    w.sim
        .script("AU-CN-REJ", vec![Answer::http_error(400).code("BAD_REQUEST")]);
    let out = super::review(&w, &["review", "resolve", "AU-CN-REJ", "cancel"], &[]);
    assert_eq!(super::code(&out), 0, "{}", super::text(&out));
    assert_eq!(w.status("AU-CN-REJ").0, "cancelled");
}

/// Found by the audit: when the database refused a write, `review resolve` (and every log line
/// carrying a database error) printed the driver's whole error: a validator's `errInfo`, which
/// echoes the document's values (here the customer's e-mail), and the raw server response in
/// hex. The error now says the operation, the code and the message without quoted values.
#[test]
fn a_refused_write_never_prints_the_documents_values() {
    let w = World::new("audit_refusal_values");
    w.insert_product("tee", 0);
    w.insert_order("AU-VAL", 49900, 600, &[("tee", 2, None)]);
    w.sim.script("AU-VAL", vec![Answer::completed(49900)]);
    w.once();
    assert_eq!(w.status("AU-VAL"), ("needs_review".into(), "paid".into()));
    // The shop's validator, which its own old document no longer passes: every update of it is
    // refused, and MongoDB explains why with the value it considered.
    let validator = doc! { "$jsonSchema": { "properties": { "customer": { "properties": {
        "email": { "enum": ["someone@else.example"] },
    } } } } };
    w.block(w.db.run_command(doc! { "collMod": &w.schema.orders.collection, "validator": validator }))
        .expect("collMod validator");
    let out = super::review(&w, &["review", "resolve", "AU-VAL", "refund"], &[]);
    let said = super::text(&out);
    assert_ne!(super::code(&out), 0, "{said}");
    assert!(said.contains("121"), "the error code is said: {said}");
    for secret in [
        "asha@example.com",
        "Asha",
        "+919800000000",
        "consideredValue",
        "RawDocumentBuf",
    ] {
        assert!(!said.contains(secret), "{secret} printed: {said}");
    }
    assert_eq!(
        w.status("AU-VAL"),
        ("needs_review".into(), "paid".into()),
        "nothing refunded"
    );
}
