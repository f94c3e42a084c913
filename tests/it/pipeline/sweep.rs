//! Drafts the indexed query cannot match (irregular ids, `createdAt` of other types) are
//! reconciled or parked by the sweep; watched cancellations and their share of the pool.

use std::time::Duration;

use draft_reconciler::domain::Outcome;
use mongodb::bson::{doc, Bson, DateTime};
use phonepe_sim::Answer;

use super::{assert_untouched, ANCIENT, OLD};
use crate::support::World;

/// The store, connected to `w`'s database, and the eligibility the service derives from `w`'s
/// settings (5-minute lookback, 30-minute timeout + 24-hour watch).
fn store_of(w: &World) -> (draft_reconciler::store::Store, draft_reconciler::store::Eligibility) {
    let store = w.store();
    let e = draft_reconciler::store::Eligibility {
        lookback: w.settings.job.lookback,
        watch_horizon: Some(w.settings.job.pending_timeout + w.settings.job.late_payment_watch),
    };
    (store, e)
}

fn ms_ago(secs: i64) -> i64 {
    DateTime::now().timestamp_millis() - secs * 1000
}

/// An ObjectId whose embedded time is `secs` ago.
fn object_id_aged(secs: i64) -> Bson {
    let mut bytes = mongodb::bson::oid::ObjectId::new().bytes();
    let t = u32::try_from(ms_ago(secs) / 1000).unwrap();
    bytes[..4].copy_from_slice(&t.to_be_bytes());
    Bson::ObjectId(mongodb::bson::oid::ObjectId::from_bytes(bytes))
}

/// A one-tee draft for 49900 paise with `_id` = `id`, `createdAt` = `created` (absent when
/// `None`) and `paymentStatus` = `payment` (absent when `None`).
fn insert_irregular(w: &World, mtid: &str, id: Bson, created: Option<Bson>, payment: Option<&str>) {
    let mut d = doc! {
        "_id": id, "merchantTransactionId": mtid, "status": "draft", "amount": 49900_i64,
        "items": [{ "productId": "tee", "quantity": 1 }], "history": [],
    };
    if let Some(c) = created {
        d.insert("createdAt", c);
    }
    if let Some(p) = payment {
        d.insert("paymentStatus", p);
    }
    w.insert_stored(d);
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn drafts_the_indexed_query_cannot_match_are_reconciled_or_parked() {
    let w = World::new("irregular_drafts");
    w.insert_product("tee", 10);
    let iso = DateTime::from_millis(ms_ago(OLD)).try_to_rfc3339_string().unwrap();
    let paid: Vec<(&str, Bson, Option<Bson>)> = vec![
        ("ORD-ISO", object_id_aged(0), Some(Bson::String(iso))),
        ("ORD-MS64", object_id_aged(0), Some(Bson::Int64(ms_ago(OLD)))),
        ("ORD-MSF", object_id_aged(0), Some(Bson::Double(ms_ago(OLD) as f64))),
        ("ORD-OID", object_id_aged(OLD), None),
    ];
    for (mtid, id, created) in paid.iter().cloned() {
        insert_irregular(&w, mtid, id, created, Some("pending"));
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    }
    let never_asked = ["ORD-YESTERDAY", "ORD-YOUNG", "ORD-PAID-DRAFT", "ORD-NO-PAYSTATUS"];
    insert_irregular(
        &w,
        "ORD-YESTERDAY",
        Bson::String("order-yesterday".into()),
        Some(Bson::String("yesterday".into())),
        Some("pending"),
    );
    insert_irregular(&w, "ORD-YOUNG", object_id_aged(0), None, Some("pending"));
    let old = Some(Bson::DateTime(DateTime::from_millis(ms_ago(OLD))));
    insert_irregular(&w, "ORD-PAID-DRAFT", object_id_aged(OLD), old.clone(), Some("paid"));
    insert_irregular(&w, "ORD-NO-PAYSTATUS", object_id_aged(OLD), old, None);
    for mtid in never_asked {
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    }
    let (store, e) = store_of(&w);
    let swept = w.block(store.sweep(DateTime::now(), &e)).unwrap();
    assert_eq!(swept.drafts.len(), 7, "all but the young one: {swept:?}");
    // Candidate lists take the sweep's ids in turn, none lost or listed twice.
    let mut left = swept.clone();
    let now = DateTime::now();
    let first = w.block(store.candidates_with(now, &e, 3, &mut left)).unwrap();
    let second = w.block(store.candidates_with(now, &e, 10, &mut left)).unwrap();
    assert_eq!([first, second].concat(), swept.drafts);
    assert!(left.drafts.is_empty(), "{left:?}");
    assert_eq!(
        w.block(store.count_eligible(DateTime::now(), &e)).unwrap(),
        0,
        "none of them fits the indexed query"
    );

    let recorder = draft_reconciler::telemetry::prometheus_builder()
        .unwrap()
        .build_recorder();
    let summary = metrics::with_local_recorder(&recorder, || w.once());
    let text = recorder.handle().render();

    assert_eq!(gauge(&text, "reconciler_irregular_drafts"), Some(7.0), "{text}");
    assert_eq!(gauge(&text, "reconciler_eligible_backlog"), Some(7.0), "{text}");
    assert_eq!(summary.get(Outcome::Confirmed), 4, "{summary}");
    for (mtid, _, created) in &paid {
        assert_eq!(w.status(mtid), ("confirmed".into(), "paid".into()), "{mtid}");
        assert_eq!(w.calls_for(mtid), 1, "{mtid}");
        assert_eq!(
            w.order(mtid).get("createdAt"),
            created.as_ref(),
            "{mtid}: createdAt kept"
        );
    }
    assert_eq!(w.stock("tee"), 6, "one tee for each paid order");
    let parked = |mtid: &str, payment: &str, field: &str| {
        assert_eq!(w.status(mtid), ("needs_review".into(), payment.into()), "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("invalid_order"), "{mtid}");
        let h = w.history(mtid);
        let code = h[0].get_str("code").unwrap();
        assert!(code.contains(&format!("`{}`", w.shop_field(field))), "{mtid}: {code}");
    };
    parked("ORD-YESTERDAY", "pending", "createdAt");
    parked("ORD-PAID-DRAFT", "paid", "paymentStatus");
    let no_paystatus = w.order("ORD-NO-PAYSTATUS");
    assert_eq!(no_paystatus.get_str("status").unwrap(), "needs_review");
    assert!(no_paystatus.get("paymentStatus").is_none(), "left as the shop wrote it");
    assert!(w.history("ORD-NO-PAYSTATUS")[0]
        .get_str("code")
        .unwrap()
        .contains(&format!("`{}`", w.shop_field("paymentStatus"))));
    assert_eq!(w.order("ORD-YESTERDAY").get_str("createdAt").unwrap(), "yesterday");
    assert_untouched(&w, "ORD-YOUNG");
    for mtid in never_asked {
        assert_eq!(w.calls_for(mtid), 0, "{mtid} is never sent to PhonePe");
    }
    let swept = w.block(store.sweep(DateTime::now(), &e)).unwrap();
    assert!(swept.drafts.is_empty(), "nothing left: {swept:?}");
}

#[test]
fn a_watched_cancellation_with_an_irregular_created_at_is_still_watched() {
    let w = World::new("irregular_watch");
    w.insert_product("tee", 10);
    let cancelled = |mtid: &str, created: Bson, due_secs_ago: i64| {
        insert_irregular(&w, mtid, object_id_aged(0), Some(created), Some("pending"));
        w.update_order(
            doc! { "merchantTransactionId": mtid },
            doc! { "$set": { "status": "cancelled", "reconciliation.reason": "not_found",
            "reconciliation.nextCheckAt": DateTime::from_millis(ms_ago(due_secs_ago)) } },
        );
        w.sim.script(mtid, vec![Answer::completed(49900)]);
    };
    let iso = |secs| Bson::String(DateTime::from_millis(ms_ago(secs)).try_to_rfc3339_string().unwrap());
    cancelled("ORD-W-ISO", iso(ANCIENT), 0);
    cancelled("ORD-W-MS", Bson::Int64(ms_ago(ANCIENT)), 30 * 60); // overdue
    cancelled("ORD-W-EXPIRED", iso(3 * 86400), 3600); // past the 30 min + 24 h window
    let (store, e) = store_of(&w);
    let now = DateTime::now();
    let swept = w.block(store.sweep(now, &e)).unwrap();
    assert_eq!((swept.watches.len(), swept.overdue_watches), (2, 1), "{swept:?}");
    let counts = w.block(store.count_watches(now, &e, &swept)).unwrap();
    assert_eq!((counts.due, counts.overdue), (2, 1), "the sweep's watches are counted");

    w.once();

    for mtid in ["ORD-W-ISO", "ORD-W-MS"] {
        assert_eq!(w.status(mtid), ("needs_review".into(), "paid".into()), "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("paid_after_cancel"), "{mtid}");
    }
    assert_eq!(w.status("ORD-W-EXPIRED"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.calls_for("ORD-W-EXPIRED"), 0, "outside its window: not asked");
    assert_eq!(w.stock("tee"), 10);
}

#[test]
fn a_due_watch_gets_its_share_of_candidates_when_drafts_fill_the_pool() {
    let w = World::new("watch_share");
    let drafts: Vec<Bson> = (0..12)
        .map(|i| w.insert_order(&format!("ORD-D{i:02}"), 49900, OLD + 100 - i, &[("tee", 1, None)]))
        .collect();
    let watch = |mtid: &str, age: i64, due_secs_ago: i64| {
        let id = w.insert_order(mtid, 49900, age, &[("tee", 1, None)]);
        w.update_order(
            doc! { "_id": &id },
            doc! { "$set": { "status": "cancelled", "reconciliation.reason": "pending_timeout",
            "reconciliation.nextCheckAt": DateTime::from_millis(ms_ago(due_secs_ago)) } },
        );
        id
    };
    let overdue = watch("ORD-W1", ANCIENT + 60, 30 * 60);
    let due = watch("ORD-W2", ANCIENT, 60);
    watch("ORD-W-EXPIRED", 3 * 86400, 3600);
    let (store, e) = store_of(&w);
    let now = DateTime::now();

    let ids = w.block(store.candidates(now, &e, 8)).unwrap();
    let mut expected = vec![overdue.clone()];
    expected.extend(drafts[..3].iter().cloned());
    expected.push(due.clone());
    expected.extend(drafts[3..6].iter().cloned());
    assert_eq!(ids, expected, "every 4th place a due watch, oldest first");
    let counts = w.block(store.count_watches(now, &e, &Default::default())).unwrap();
    assert_eq!(
        (counts.due, counts.overdue),
        (2, 1),
        "ORD-W1 and ORD-W2 are due inside their window, only ORD-W1 longer than the grace"
    );

    let claimed = w.block(store.claim("A", now, Duration::from_secs(300), &e, 2)).unwrap();
    let claimed: Vec<String> = claimed.iter().map(|c| c.log_id()).collect();
    assert!(
        claimed.contains(&"ORD-W1".to_string()),
        "a claim of 2 with 12 drafts waiting still takes the watch: {claimed:?}"
    );
    assert_eq!(claimed.len(), 2, "{claimed:?}");
}

#[test]
fn a_not_found_order_paid_later_goes_to_review_after_its_first_watch_interval() {
    let w = World::new("late_payment_nf");
    w.insert_product("tee", 10);
    w.insert_order("ORD-NF", 49900, ANCIENT, &[("tee", 1, None)]);
    // Unknown to PhonePe: TRANSACTION_NOT_FOUND.
    w.once();
    assert_eq!(w.status("ORD-NF"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.reason("ORD-NF").as_deref(), Some("not_found"));
    let cancelled_at = w.history("ORD-NF")[0].get_datetime("at").unwrap().timestamp_millis();
    let next = w
        .order("ORD-NF")
        .get_document("reconciliation")
        .unwrap()
        .get_datetime("nextCheckAt")
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        next - cancelled_at,
        15 * 60 * 1000,
        "the first late-payment check is 15 minutes after the cancellation"
    );

    // Paid late at PhonePe; the re-check comes due.
    w.sim.script("ORD-NF", vec![Answer::completed(49900)]);
    w.update_order(
        doc! { "merchantTransactionId": "ORD-NF" },
        doc! { "$set": { "reconciliation.nextCheckAt": DateTime::now() } },
    );
    w.once();

    assert_eq!(w.status("ORD-NF"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason("ORD-NF").as_deref(), Some("paid_after_cancel"));
    assert_eq!(w.stock("tee"), 10, "a person decides: nothing deducted automatically");
    let h = w.history("ORD-NF");
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        (h[1].get_str("from").unwrap(), h[1].get_str("to").unwrap()),
        ("cancelled", "needs_review")
    );
}
