//! The Mongoose shop of docs/schema.md: its own unique `orderRef_1` is reused, cash-on-delivery
//! orders without an `orderRef` never meet a unique index of the reconciler's, on both commit
//! strategies; an index name taken with another key is a start-up error naming it (exit 2); and
//! `check` reports the plan without creating anything.

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use phonepe_sim::Answer;

use super::{both_strategies, once};
use crate::support::{shop_schema, World};

/// `name → (key, unique, partial filter)` of every index on `collection`.
fn indexes(w: &World, collection: &str) -> Vec<(String, Document, bool, Option<Document>)> {
    use futures_util::TryStreamExt;
    let models: Vec<IndexModel> = w
        .block(async {
            w.db.collection::<Document>(collection)
                .list_indexes()
                .await?
                .try_collect()
                .await
        })
        .expect("list indexes");
    models
        .into_iter()
        .map(|m| {
            let o = m.options.unwrap_or_default();
            (
                o.name.unwrap_or_default(),
                m.keys,
                o.unique == Some(true),
                o.partial_filter_expression,
            )
        })
        .collect()
}

/// A cash-on-delivery order as the shop writes it: no `orderRef` at all.
fn cod_order(w: &World, n: u32) {
    w.block(w.orders().insert_one(doc! {
        "orderStatus": "PLACED", "payment": { "provider": "cod" }, "totalAmount": 250.0,
        "lineItems": [{ "product": "tee", "qty": 1 }], "note": format!("COD {n}"),
    }))
    .expect("the shop's insert of a COD order is accepted");
}

#[test]
fn a_mongoose_shop_keeps_its_indexes_and_its_cash_on_delivery_orders() {
    for (server, strategy) in both_strategies() {
        // The shop as Mongoose built it: `orderRef: {type: String, unique: true}`.
        let w = World::on_with_schema(server, "poison_mongoose", shop_schema());
        let unique = IndexOptions::builder()
            .name("orderRef_1".to_string())
            .unique(true)
            .build();
        let model = IndexModel::builder()
            .keys(doc! { "orderRef": 1 })
            .options(unique)
            .build();
        w.block(w.orders().create_index(model)).expect("the shop's index");
        w.insert_product("tee", 10);
        w.insert_order("MG-1", 129950, 600, &[("tee", 1, None)]);
        w.sim.script("MG-1", vec![Answer::completed(129950)]);
        assert!(
            once(&w, &[]).success(),
            "{strategy}: starts beside the shop's orderRef_1"
        );
        assert_eq!(w.status("MG-1").0, "confirmed", "{strategy}");
        let listed = indexes(&w, "shoporders");
        let on_ref: Vec<&String> = listed
            .iter()
            .filter(|(_, k, _, _)| k.keys().eq(["orderRef"]))
            .map(|(n, ..)| n)
            .collect();
        assert_eq!(on_ref, ["orderRef_1"], "{strategy}: reused, not duplicated");

        // A shop whose orderRef index was never built (COD orders: two of them, no orderRef).
        let w = World::on_with_schema(server, "poison_cod", shop_schema());
        w.insert_product("tee", 10);
        cod_order(&w, 1);
        cod_order(&w, 2);
        w.insert_order("COD-PAID", 129950, 600, &[("tee", 1, None)]);
        w.sim.script("COD-PAID", vec![Answer::completed(129950)]);
        assert!(once(&w, &[]).success(), "{strategy}: starts with orders without an id");
        assert_eq!(w.status("COD-PAID").0, "confirmed", "{strategy}");
        cod_order(&w, 3);
        cod_order(&w, 4);
        let (_, key, unique, partial) = indexes(&w, "shoporders")
            .into_iter()
            .find(|(n, ..)| n == "reconciler_id")
            .expect("the reconciler's id index");
        assert_eq!(key, doc! { "orderRef": 1 });
        assert!(unique, "{strategy}: ids that exist stay unique");
        assert_eq!(
            partial,
            Some(doc! { "orderRef": { "$exists": true, "$type": "string" } })
        );
        let dup = w.block(w.orders().insert_one(doc! { "orderRef": "COD-PAID" }));
        assert!(
            dup.is_err(),
            "{strategy}: a second order with the same id is still refused"
        );
        let eligible = indexes(&w, "shoporders")
            .into_iter()
            .find(|(n, ..)| n == "reconciler_eligible")
            .and_then(|(.., p)| p);
        assert!(eligible.is_some(), "{strategy}: the eligible index is partial");
    }
}

#[test]
fn an_index_name_taken_with_another_key_stops_the_start_naming_it_and_check_creates_nothing() {
    let w = World::new("poison_index_conflict");
    w.insert_order("IC-1", 100, 600, &[("tee", 1, None)]);
    w.sim.script("IC-1", vec![Answer::pending()]);
    let before = indexes(&w, &w.schema.orders.collection).len();
    let check = w
        .reconciler_command(&["check", "IC-1"])
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{out}");
    assert!(out.contains("index: create `reconciler_id`"), "{out}");
    assert!(out.contains("index: create `reconciler_eligible`"), "{out}");
    assert_eq!(
        indexes(&w, &w.schema.orders.collection).len(),
        before,
        "check creates nothing"
    );

    let taken = IndexOptions::builder().name("reconciler_eligible".to_string()).build();
    let model = IndexModel::builder()
        .keys(doc! { "legacyStatus": 1 })
        .options(taken)
        .build();
    w.block(w.orders().create_index(model))
        .expect("an index under the reconciler's name");
    let run = w
        .reconciler_command(&["once"])
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("once");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`reconciler_eligible`") && err.contains("dropIndex"),
        "{err}"
    );
    assert_eq!(w.status("IC-1").0, "draft", "nothing reconciled");
}
