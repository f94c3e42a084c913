//! Documents shops really have: `createdAt` in any epoch unit (or none that is plausible), a
//! status word in another case, product references stored as the hex string of an ObjectId;
//! and a draft inserted while the scanner sleeps with `lookback < interval`.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime};
use phonepe_sim::Answer;

use super::once;
use crate::support::{eventually, free_port, http_get, Running, World};

const OLD_MS: i64 = 600_000;

fn insert_with_created_at(w: &World, mtid: &str, created: Bson) {
    w.insert_order(mtid, 100, 600, &[("tee", 1, None)]);
    w.update_order(
        doc! { "merchantTransactionId": mtid },
        doc! { "$set": { "createdAt": created } },
    );
    w.sim.script(mtid, vec![Answer::completed(100)]);
}

#[test]
fn created_at_in_any_epoch_unit_is_read_and_an_implausible_one_is_parked() {
    let w = World::new("poison_epoch_units");
    w.insert_product("tee", 100);
    let ms = DateTime::now().timestamp_millis() - OLD_MS;
    let readable = [
        ("EP-S", Bson::Int64(ms / 1_000)),
        (
            "EP-S32",
            Bson::Int32(i32::try_from(ms / 1_000).expect("seconds fit an Int32")),
        ),
        ("EP-MS", Bson::Int64(ms)),
        ("EP-US", Bson::Int64(ms * 1_000)),
        ("EP-USD", Bson::Double(ms as f64 * 1_000.0)),
        ("EP-NS", Bson::Int64(ms * 1_000_000)),
    ];
    for (mtid, created) in &readable {
        insert_with_created_at(&w, mtid, created.clone());
    }
    let implausible = [
        ("EP-17", Bson::Int32(17)),
        ("EP-1970", Bson::DateTime(DateTime::from_millis(ms / 1_000))), // `new Date(seconds)`
        // A century ahead (microseconds in a Date would be the year 58,000, which SecantusDB
        // cannot store).
        (
            "EP-2126",
            Bson::DateTime(DateTime::from_millis(ms + 100 * 365 * 86_400_000)),
        ),
    ];
    for (mtid, created) in &implausible {
        insert_with_created_at(&w, mtid, created.clone());
    }

    assert!(once(&w, &[]).success());
    for (mtid, created) in readable {
        assert_eq!(w.status(mtid).0, "confirmed", "{mtid}: {created:?}");
        assert_eq!(
            w.order(mtid).get("createdAt"),
            Some(&created),
            "{mtid}: never rewritten"
        );
    }
    for (mtid, _) in implausible {
        assert_eq!(w.status(mtid).0, "needs_review", "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("invalid_order"), "{mtid}");
        let code = w
            .order(mtid)
            .get_document("reconciliation")
            .unwrap()
            .get_str("lastCode")
            .unwrap()
            .to_string();
        assert!(code.contains(&w.schema.orders.created_at), "{mtid}: {code}");
        assert_eq!(w.calls_for(mtid), 0, "{mtid}: parked before any PhonePe call");
    }
}

/// The Prometheus text's value of an unlabelled gauge.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn swap_case(word: &str) -> String {
    word.chars()
        .map(|c| match c.is_ascii_lowercase() {
            true => c.to_ascii_uppercase(),
            false => c.to_ascii_lowercase(),
        })
        .collect()
}

#[test]
fn a_status_word_in_another_case_is_counted_and_left_alone() {
    let w = World::new("poison_near_miss");
    let o = &w.schema.orders;
    let (status, pay) = (o.status.clone(), o.payment_status.clone());
    for (mtid, status_word, pay_word) in [
        (
            "NM-1",
            swap_case(&o.status_values.draft),
            o.payment_status_values.pending.clone(),
        ),
        (
            "NM-2",
            swap_case(&o.status_values.draft),
            o.payment_status_values.pending.clone(),
        ),
        (
            "NM-3",
            o.status_values.draft.clone(),
            swap_case(&o.payment_status_values.pending),
        ),
    ] {
        w.insert_order(mtid, 100, 600, &[("tee", 1, None)]);
        let set = doc! { &status: status_word, &pay: pay_word };
        w.block(w.orders().update_one(doc! { &o.id: mtid }, doc! { "$set": set }))
            .unwrap();
    }
    let port = free_port();
    let _service = Running(
        w.reconciler_command(&["run"])
            .env("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{port}"))
            .spawn()
            .expect("start draft-reconciler"),
    );
    eventually(Duration::from_secs(60), "the near-miss gauge counts 3 orders", || {
        http_get(port, "/metrics")
            .is_some_and(|(_, text)| gauge(&text, "reconciler_status_word_near_misses") == Some(3.0))
    });
    for mtid in ["NM-1", "NM-2"] {
        assert!(
            w.history(mtid).is_empty(),
            "{mtid}: a near-miss draft is not reconciled"
        );
        assert_eq!(w.calls_for(mtid), 0, "{mtid}");
    }
}

#[test]
fn a_product_reference_stored_as_the_hex_of_its_object_id_is_found() {
    let w = World::new("poison_product_hex");
    let oid = ObjectId::new();
    w.insert_raw_product(doc! { "_id": oid, "stock": 5 });
    let hex_id = ObjectId::new();
    w.insert_raw_product(doc! { "_id": hex_id.to_hex(), "stock": 5 });
    let hex = oid.to_hex();
    w.insert_order("HEX-1", 100, 600, &[(hex.as_str(), 2, None)]);
    w.insert_order("OID-1", 100, 590, &[("placeholder", 1, None)]);
    let items = w.shop_field("items");
    let product = &w.schema.orders.item_product;
    let quantity = &w.schema.orders.item_quantity;
    w.block(w.orders().update_one(
        doc! { &w.schema.orders.id: "OID-1" },
        doc! { "$set": { items: [{ product: hex_id, quantity: 1 }] } },
    ))
    .unwrap();
    for mtid in ["HEX-1", "OID-1"] {
        w.sim.script(mtid, vec![Answer::completed(100)]);
    }

    assert!(once(&w, &[]).success());
    assert_eq!(w.status("HEX-1").0, "confirmed", "{:?}", w.reason("HEX-1"));
    assert_eq!(w.status("OID-1").0, "confirmed", "{:?}", w.reason("OID-1"));
    let stock = |id: Bson| {
        let p = w
            .block(w.products().find_one(doc! { "_id": id }))
            .unwrap()
            .expect("product");
        crate::support::int(w.schema.product_from_shop(&p).get("stock"))
    };
    assert_eq!(stock(Bson::ObjectId(oid)), 3);
    assert_eq!(stock(Bson::String(hex_id.to_hex())), 4);
}

#[test]
fn a_draft_inserted_while_the_scanner_sleeps_is_asked_when_due_with_a_short_lookback() {
    const LOOKBACK_SECS: i64 = 5;
    let w = World::new("poison_short_lookback");
    w.insert_product("tee", 10);
    let port = free_port();
    let _service = Running(
        w.reconciler_command(&["run"])
            .env("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{port}"))
            .env("RECONCILER_JOB__INTERVAL_SECS", "60")
            .env("RECONCILER_JOB__LOOKBACK_SECS", LOOKBACK_SECS.to_string())
            .spawn()
            .expect("start draft-reconciler"),
    );
    eventually(Duration::from_secs(60), "the first scan", || {
        http_get(port, "/metrics").is_some_and(|(_, text)| text.contains("reconciler_scan_runs_total{result=\"ok\"} 1"))
    });
    w.insert_order("LATE-1", 100, 0, &[("tee", 1, None)]);
    w.sim.script("LATE-1", vec![Answer::completed(100)]);
    let due = u64::try_from(DateTime::now().timestamp_millis() + LOOKBACK_SECS * 1000).unwrap();
    // Well before the interval's tick (60 s after the start).
    eventually(Duration::from_secs(45), "LATE-1 confirmed", || {
        w.status("LATE-1").0 == "confirmed"
    });
    let first = w
        .sim
        .calls()
        .iter()
        .filter(|c| c.merchant_transaction_id == "LATE-1")
        .map(|c| c.at_ms)
        .min();
    let first = first.expect("a status call");
    assert!(first + 1_000 >= due, "asked {} ms before it was due", due - first);
    assert!(first <= due + 15_000, "asked {} ms after it became due", first - due);
}
