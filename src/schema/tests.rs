use super::*;
use mongodb::bson::{doc, Decimal128};

fn shop() -> Schema {
    let text = r#"
        [orders]
        collection = "shopOrders"
        id = "orderRef"
        status = "orderStatus"
        payment_status = "payment.status"
        amount = "totalAmount"
        amount_unit = "rupees"
        items = "lineItems"
        item_product = "product"
        item_quantity = "qty"
        [orders.status_values]
        draft = "DRAFT"
        confirmed = "CONFIRMED"
        [products]
        collection = "inventory"
        stock = "available"
    "#;
    toml::from_str(text).unwrap()
}

#[test]
fn the_defaults_are_the_reconcilers_own_names_and_valid() {
    let s = Schema::default();
    s.validate().unwrap();
    assert_eq!(s.orders.collection, "orders");
    assert_eq!(s.orders.payment_status, "paymentStatus");
    assert_eq!(s.orders.status_values.word(Status::NeedsReview), "needs_review");
    assert_eq!(s.products.size_stock, "stock");
    assert_eq!(
        toml::from_str::<Schema>("").unwrap(),
        s,
        "an empty section changes nothing"
    );
}

#[test]
fn a_partial_mapping_keeps_the_other_defaults() {
    let s = shop();
    s.validate().unwrap();
    assert_eq!(s.orders.status_values.word(Status::Draft), "DRAFT");
    assert_eq!(s.orders.status_values.word(Status::Cancelled), "cancelled");
    assert_eq!(s.orders.status_values.parse("CONFIRMED"), Some(Status::Confirmed));
    assert_eq!(s.orders.status_values.parse("confirmed"), None);
    assert_eq!(s.orders.payment_status_values.parse("paid"), Some(PaymentStatus::Paid));
    assert_eq!(s.products.collection, "inventory");
    assert_eq!(s.products.sizes, "sizes");
}

#[test]
fn unknown_keys_are_refused() {
    let e = toml::from_str::<Schema>("[orders]\nstatuss = \"x\"").unwrap_err();
    assert!(e.to_string().contains("statuss"), "{e}");
}

#[test]
fn validation_names_the_key_of_each_mistake() {
    type Edit = fn(&mut Schema);
    let cases: Vec<(Edit, &str)> = vec![
        (|s| s.orders.status = String::new(), "schema.orders.status"),
        (|s| s.orders.amount = "a..b".into(), "schema.orders.amount"),
        (|s| s.orders.amount = "$amount".into(), "schema.orders.amount"),
        (
            |s| s.orders.payment_status = "status".into(),
            "schema.orders.payment_status",
        ),
        (
            |s| s.orders.payment_status = "status.payment".into(),
            "schema.orders.payment_status",
        ),
        (
            |s| s.orders.status = "reconciliation.status".into(),
            "schema.orders.status",
        ),
        (|s| s.orders.amount = "history".into(), "schema.orders.amount"),
        (|s| s.orders.id = "_id".into(), "schema.orders.id"),
        (|s| s.orders.item_size = "productId".into(), "schema.orders.item_size"),
        (
            |s| s.products.stock = "reconcilerCommits".into(),
            "schema.products.stock",
        ),
        (|s| s.products.sizes = "stock".into(), "schema.products.sizes"),
        (|s| s.products.size_stock = "size".into(), "schema.products.size_stock"),
        (
            |s| s.products.collection = "orders".into(),
            "schema.products.collection",
        ),
        (
            |s| s.orders.collection = "system.users".into(),
            "schema.orders.collection",
        ),
        (|s| s.orders.collection = String::new(), "schema.orders.collection"),
        (
            |s| s.orders.status_values.cancelled = "draft".into(),
            "schema.orders.status_values.cancelled",
        ),
        (
            |s| s.orders.status_values.refunded = String::new(),
            "schema.orders.status_values.refunded",
        ),
        (
            |s| s.orders.payment_status_values.refunded = "paid".into(),
            "schema.orders.payment_status_values.refunded",
        ),
        // The key the operator changed is named, even when it comes first.
        (
            |s| s.orders.status_values.draft = "confirmed".into(),
            "schema.orders.status_values.draft",
        ),
        (
            |s| s.orders.updated_at = "history.at".into(),
            "schema.orders.updated_at",
        ),
    ];
    for (edit, key) in cases {
        let mut s = Schema::default();
        edit(&mut s);
        let e = s.validate().unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn dotted_paths_are_followed_into_subdocuments() {
    let d = doc! { "payment": { "status": "PAID", "n": 1 }, "flat": 2 };
    assert_eq!(get_path(&d, "payment.status"), Some(&Bson::String("PAID".into())));
    assert_eq!(get_path(&d, "flat"), Some(&Bson::Int32(2)));
    assert_eq!(get_path(&d, "payment.missing"), None);
    assert_eq!(get_path(&d, "flat.x"), None, "a scalar has no fields");
}

#[test]
fn rupees_become_exact_paise() {
    let r = AmountUnit::Rupees;
    let cases: Vec<(Bson, i64)> = vec![
        (Bson::Double(199.99), 19999),
        (Bson::Double(0.29), 29),
        (Bson::Double(1.1), 110),
        (Bson::Double(499.0), 49900),
        (Bson::Double(1e6), 100_000_000),
        (Bson::Int32(12), 1200),
        (Bson::Int64(5), 500),
        (Bson::Decimal128("199.99".parse::<Decimal128>().unwrap()), 19999),
        (Bson::Decimal128("1.5E+2".parse::<Decimal128>().unwrap()), 15000),
        (Bson::Decimal128("2.50".parse::<Decimal128>().unwrap()), 250),
    ];
    for (v, paise) in cases {
        assert_eq!(amount_paise(Some(&v), r), Ok(paise), "{v:?}");
    }
}

#[test]
fn rupees_with_a_third_decimal_or_not_a_number_are_refused() {
    let r = AmountUnit::Rupees;
    let refused: Vec<Bson> = vec![
        Bson::Double(199.999),
        Bson::Double(0.001),
        Bson::Double(f64::NAN),
        Bson::Double(f64::INFINITY),
        Bson::Double(1e300),
        Bson::Decimal128("1.005".parse::<Decimal128>().unwrap()),
        Bson::Decimal128("NaN".parse::<Decimal128>().unwrap()),
        Bson::String("199.99".into()),
        Bson::Boolean(true),
        Bson::Int64(i64::MAX),
    ];
    for v in refused {
        assert!(amount_paise(Some(&v), r).is_err(), "{v:?}");
    }
    assert_eq!(amount_paise(None, r), Err("is missing".into()));
}

#[test]
fn paise_stay_integers() {
    let p = AmountUnit::Paise;
    assert_eq!(amount_paise(Some(&Bson::Int64(49900)), p), Ok(49900));
    assert!(amount_paise(Some(&Bson::Double(499.0)), p).is_err());
    assert!(amount_paise(Some(&Bson::String("1".into())), p).is_err());
}

#[test]
fn decimal_text_is_read_exactly() {
    assert_eq!(decimal_paise("12.3"), Ok(1230));
    assert_eq!(decimal_paise("-0"), Ok(0));
    assert_eq!(decimal_paise("0.10"), Ok(10));
    assert_eq!(decimal_paise("1E-2"), Ok(1));
    assert!(decimal_paise("1E-3").is_err());
    assert!(decimal_paise(".").is_err());
    assert!(decimal_paise("1e").is_err());
    assert!(decimal_paise("12a").is_err());
}

#[test]
fn the_mapping_is_described_key_by_key() {
    let d = shop().describe();
    assert_eq!(d["schema.orders.payment_status"], "payment.status");
    assert_eq!(d["schema.orders.amount_unit"], "rupees");
    assert_eq!(d["schema.orders.status_values.draft"], "DRAFT");
}

#[test]
fn documents_translate_to_the_shop_and_back() {
    let s = shop();
    let d = doc! {
        "_id": 7, "merchantTransactionId": "T-1", "status": "draft", "paymentStatus": "pending",
        "amount": 49950_i64, "createdAt": "2026-01-01T00:00:00Z",
        "items": [{ "productId": "p1", "quantity": 2, "size": "M" }, "odd"],
        "customer": { "name": "A" }, "reconciliation": { "attempts": 1 }, "history": [],
    };
    let shop_doc = s.order_to_shop(&d);
    assert_eq!(shop_doc.get_str("orderRef").unwrap(), "T-1");
    assert_eq!(shop_doc.get_str("orderStatus").unwrap(), "DRAFT");
    assert_eq!(
        get_path(&shop_doc, "payment.status"),
        Some(&Bson::String("pending".into()))
    );
    assert_eq!(shop_doc.get_f64("totalAmount").unwrap(), 499.5);
    let first = shop_doc.get_array("lineItems").unwrap()[0].as_document().unwrap();
    assert_eq!(
        (first.get_str("product").unwrap(), first.get_i32("qty").unwrap()),
        ("p1", 2)
    );
    assert_eq!(first.get_str("size").unwrap(), "M", "item_size keeps its default name");
    assert_eq!(shop_doc.get_document("customer").unwrap(), &doc! { "name": "A" });
    for gone in ["merchantTransactionId", "status", "paymentStatus", "amount", "items"] {
        assert!(!shop_doc.contains_key(gone), "{gone}");
    }
    let mut back = s.order_from_shop(&shop_doc);
    back.remove("payment");
    assert_eq!(back, d);
}

#[test]
fn broken_values_stay_broken_in_the_shops_names() {
    let s = shop();
    let d = doc! { "status": "paid", "amount": 499.0, "paymentStatus": 3 };
    let shop_doc = s.order_to_shop(&d);
    assert_eq!(shop_doc.get_str("orderStatus").unwrap(), "paid");
    assert!(amount_paise(shop_doc.get("totalAmount"), AmountUnit::Rupees).is_err());
    let p = s.product_to_shop(&doc! { "_id": "p", "stock": 3, "sizes": [{ "size": "M", "stock": 1 }] });
    assert_eq!(
        p,
        doc! { "_id": "p", "available": 3, "sizes": [{ "size": "M", "stock": 1 }] }
    );
}

/// A shop order as the `shop()` mapping stores it.
fn shop_order() -> Document {
    doc! {
        "_id": 7, "orderRef": "ORD-7", "orderStatus": "DRAFT",
        "payment": { "status": "pending", "provider": "phonepe" }, "totalAmount": 1299.5,
        "lineItems": [{ "product": "tee", "qty": 2, "size": "M" }], "createdAt": mongodb::bson::DateTime::now(),
    }
}

#[test]
fn orders_are_parsed_through_the_mapping() {
    let o = crate::domain::Order::parse(&shop_order(), &shop()).expect("parses");
    assert_eq!(o.merchant_transaction_id.as_str(), "ORD-7");
    assert_eq!(o.status, Status::Draft);
    assert_eq!(o.payment_status, PaymentStatus::Pending);
    assert_eq!(o.amount, crate::domain::Paise(129_950));
    assert_eq!((o.items[0].quantity, o.items[0].size.as_deref()), (2, Some("M")));
    // The default names mean nothing on this mapping.
    let default_doc = Schema::default().order_to_shop(&shop().order_from_shop(&shop_order()));
    let e = crate::domain::Order::parse(&default_doc, &shop()).expect_err("default names");
    assert_eq!(e.field, "orderRef", "{e}");
}

#[test]
fn a_bad_mapped_field_is_named_as_the_shop_spells_it() {
    let cases: [(&str, Bson, &str); 5] = [
        ("totalAmount", Bson::Double(12.345), "totalAmount"),
        ("totalAmount", Bson::String("1299.50".into()), "totalAmount"),
        ("orderStatus", Bson::String("draft".into()), "orderStatus"),
        (
            "lineItems",
            Bson::Array(vec![doc! { "product": 1, "qty": 0 }.into()]),
            "lineItems.0.qty",
        ),
        ("orderRef", Bson::Int32(7), "orderRef"),
    ];
    for (field, value, named) in cases {
        let mut d = shop_order();
        d.insert(field, value.clone());
        let e = crate::domain::Order::parse(&d, &shop()).expect_err(field);
        assert_eq!(e.field, named, "{field}={value:?}: {e}");
        assert!(
            !e.to_string().contains("12.345") && !e.to_string().contains("1299.50"),
            "{e}"
        );
    }
    let mut d = shop_order();
    d.insert("payment", doc! { "status": "PAID" });
    let e = crate::domain::Order::parse(&d, &shop()).expect_err("unmapped payment word");
    assert_eq!(e.field, "payment.status", "{e}");
}

#[test]
fn check_reads_each_mapped_field_with_its_meaning() {
    let lines = shop().read_order(&shop_order());
    let has = |l: &str| lines.iter().any(|x| x == l);
    assert!(has("orderStatus \"DRAFT\" → draft"), "{lines:#?}");
    assert!(has("payment.status \"pending\" → pending"), "{lines:#?}");
    assert!(has("totalAmount 1299.5 rupees → 129950 paise"), "{lines:#?}");
    assert!(has("lineItems.0: product \"tee\", qty 2, size \"M\""), "{lines:#?}");
    let mut d = shop_order();
    d.insert("orderStatus", "PLACED");
    d.insert("totalAmount", 1.005);
    let lines = shop().read_order(&d);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("orderStatus \"PLACED\" → not a word")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("totalAmount 1.005 rupees → unreadable")),
        "{lines:#?}"
    );
}

#[test]
fn sized_stock_paths_follow_the_mapping() {
    let mut s = shop();
    s.products.sizes = "variants".into();
    s.products.size_name = "label".into();
    s.products.size_stock = "available".into();
    assert_eq!(s.sizes_matched_stock(), "variants.$.available");
    assert_eq!(s.sizes_filtered_stock(), "variants.$[s].available");
    assert_eq!(s.size_filter(), "s.label");
}

#[test]
fn item_product_type_matches_an_object_id_by_its_hex_string_and_the_reverse() {
    use mongodb::bson::{bson, oid::ObjectId};
    let oid = ObjectId::parse_str("66f2d5a0a1b2c3d4e5f60718").unwrap();
    let hex = Bson::String(oid.to_hex());
    let mut s = Schema::default();
    assert_eq!(s.orders.item_product_type, ProductIdType::Auto, "the default");
    assert_eq!(s.product_ref(&hex), bson!({ "$in": [hex.clone(), oid] }));
    assert_eq!(
        s.product_ref(&Bson::ObjectId(oid)),
        bson!({ "$in": [oid, oid.to_hex()] })
    );
    assert_eq!(
        s.product_ref(&Bson::String("sku-2".into())),
        Bson::String("sku-2".into())
    );
    s.orders.item_product_type = ProductIdType::Objectid;
    assert_eq!(s.product_ref(&hex), Bson::ObjectId(oid));
    assert_eq!(
        s.product_ref(&Bson::String("sku-2".into())),
        Bson::String("sku-2".into())
    );
    s.orders.item_product_type = ProductIdType::String;
    assert_eq!(s.product_ref(&Bson::ObjectId(oid)), hex);
    let parsed: Schema = toml::from_str("[orders]\nitem_product_type = \"objectid\"\n").unwrap();
    assert_eq!(parsed.orders.item_product_type, ProductIdType::Objectid);
    assert!(toml::from_str::<Schema>("[orders]\nitem_product_type = \"uuid\"\n").is_err());
    assert_eq!(
        Schema::default()
            .describe()
            .get("schema.orders.item_product_type")
            .map(String::as_str),
        Some("auto")
    );
}
