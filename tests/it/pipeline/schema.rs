//! A shop's own schema (`[schema]`, docs/schema.md), on the typical Mongoose mapping whatever
//! `RECONCILER_TEST_SCHEMA` says: the shop's other fields are never touched, rupee amounts are
//! converted exactly, and an amount that is no rupee amount parks the order naming the field.

use draft_reconciler::domain::Outcome;
use mongodb::bson::{doc, Bson, DateTime, Document};
use phonepe_sim::Answer;

use super::OLD;
use crate::support::{shop_schema, World};

/// `d` without the fields the reconciler may write: the mapped status words, `updatedAt`, its own.
fn shop_part(w: &World, mut d: Document) -> Document {
    for own in [
        "reconciliation",
        "history",
        &w.schema.orders.status,
        &w.schema.orders.updated_at,
    ] {
        draft_reconciler::schema::remove_path(&mut d, own);
    }
    draft_reconciler::schema::remove_path(&mut d, &w.schema.orders.payment_status);
    d
}

/// A shop order in the shop's own names, with fields the reconciler knows nothing about.
fn shop_order(mtid: &str, rupees: Bson, created: DateTime) -> Document {
    doc! {
        "orderRef": mtid, "orderStatus": "DRAFT",
        "payment": { "status": "PENDING", "provider": "phonepe", "attempt": 2 },
        "totalAmount": rupees, "currency": "INR",
        "lineItems": [
            { "product": "tee", "qty": 2, "price": 499.75, "name": "Tee" },
            { "product": "shirt", "qty": 1, "variant": "M", "price": 300.0 },
        ],
        "customer": { "name": "Asha Rao", "phone": "+919800000000" },
        "tags": ["web", "festive"], "createdAt": created, "updatedAt": created, "__v": 0,
    }
}

#[test]
fn the_shops_own_fields_are_untouched_and_rupees_are_exact() {
    let w = World::with_schema("shop_fields", shop_schema());
    w.block(w.products().insert_many([
        doc! { "_id": "tee", "available": 10, "name": "Tee", "price": 499.75 },
        doc! { "_id": "shirt", "available": 5, "sku": "SH-1",
        "variants": [{ "label": "M", "available": 2, "color": "blue" }, { "label": "L", "available": 3 }] },
    ]))
    .unwrap();
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - OLD * 1000);
    // 1299.5 rupees: the confirmation requires PhonePe's 129950 paise exactly.
    w.block(
        w.orders()
            .insert_one(shop_order("SHOP-1", Bson::Double(1299.5), created)),
    )
    .unwrap();
    let before = w.stored_order("SHOP-1");
    let products_before: Vec<Document> = ["tee", "shirt"].map(|p| w.stored_product(p)).to_vec();
    w.sim.script("SHOP-1", vec![Answer::completed(129_950)]);

    let summary = w.once();

    assert_eq!(summary.get(Outcome::Confirmed), 1, "{summary}");
    let after = w.stored_order("SHOP-1");
    assert_eq!(after.get_str("orderStatus").unwrap(), "PLACED");
    assert_eq!(
        after.get_document("payment").unwrap(),
        &doc! { "status": "SUCCESS", "provider": "phonepe", "attempt": 2 },
        "payment.status set, payment.provider kept"
    );
    assert_eq!(shop_part(&w, after.clone()), shop_part(&w, before.clone()));
    assert_ne!(
        after.get("updatedAt"),
        before.get("updatedAt"),
        "updatedAt is the mapped updated_at"
    );
    assert_eq!(
        (w.stock("tee"), w.size_stock("shirt", "M"), w.size_stock("shirt", "L")),
        (8, 1, 3)
    );
    for (p, before) in ["tee", "shirt"].iter().zip(products_before) {
        let mut after = w.stored_product(p);
        let mut before = before;
        for d in [&mut after, &mut before] {
            d.remove("available");
            d.remove("reconcilerCommits");
            if let Ok(v) = d.get_array_mut("variants") {
                v.iter_mut()
                    .filter_map(|e| e.as_document_mut())
                    .for_each(|e| drop(e.remove("available")));
            }
        }
        assert_eq!(after, before, "{p}: only the stock counts change");
    }
}

#[test]
fn a_rupee_amount_that_is_not_exact_parks_the_order_naming_the_field() {
    let w = World::with_schema("shop_amounts", shop_schema());
    w.insert_product("tee", 10);
    w.insert_sized_product("shirt", &[("M", 2)]);
    let created = DateTime::from_millis(DateTime::now().timestamp_millis() - OLD * 1000);
    let cases = [
        ("SHOP-3DEC", Bson::Double(1299.555)),
        ("SHOP-TEXT", Bson::String("1299.50".into())),
        ("SHOP-NULL", Bson::Null),
    ];
    for (mtid, amount) in &cases {
        w.block(w.orders().insert_one(shop_order(mtid, amount.clone(), created)))
            .unwrap();
        w.sim.script(mtid, vec![Answer::completed(129_955)]);
    }

    w.once();

    for (mtid, _) in &cases {
        let o = w.stored_order(mtid);
        assert_eq!(o.get_str("orderStatus").unwrap(), "ON_HOLD", "{mtid}");
        assert_eq!(w.reason(mtid).as_deref(), Some("invalid_order"), "{mtid}");
        let code = w.history(mtid)[0].get_str("code").unwrap().to_string();
        assert!(code.contains("`totalAmount`"), "{mtid}: {code}");
        assert!(!code.contains("1299"), "{mtid}: the value is not repeated: {code}");
        assert_eq!(w.calls_for(mtid), 0, "{mtid}: never sent to PhonePe");
    }
    assert_eq!(
        (w.stock("tee"), w.size_stock("shirt", "M")),
        (10, 2),
        "nothing deducted"
    );
}
