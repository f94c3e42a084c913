//! Demo helper for `scripts/demo.sh`: `demo seed <mongodb-uri> <sim-base-url> [config.toml]`
//! writes products and draft orders of every kind and scripts phonepe-sim's answers for them;
//! `demo report <mongodb-uri> [config.toml]` prints each order's status, reason and the stock
//! left. With a config file, its `[schema]` section is the shop's mapping: documents are written
//! and read through it (`Schema::order_to_shop`, `order_from_shop`, ...), in the shop's names.

use draft_reconciler::schema::Schema;
use mongodb::bson::{doc, DateTime, Document};
use serde_json::json;

const MINUTE: i64 = 60_000;

/// (merchantTransactionId, age in minutes, amount, items, PhonePe's scripted answer or null, expected).
type DemoOrder = (
    &'static str,
    i64,
    i64,
    Vec<(&'static str, i64, Option<&'static str>)>,
    serde_json::Value,
    &'static str,
);

/// (merchantTransactionId, age in minutes, amount, items, PhonePe's scripted answer or null).
fn orders() -> Vec<DemoOrder> {
    vec![
        (
            "DEMO-PAID",
            10,
            49900,
            vec![("tee", 2, None), ("mug", 1, None)],
            json!({"state": "COMPLETED", "amount": 49900}),
            "confirmed, stock deducted",
        ),
        (
            "DEMO-SIZED",
            11,
            29900,
            vec![("shirt", 1, Some("M"))],
            json!({"state": "COMPLETED", "amount": 29900}),
            "confirmed, size M deducted",
        ),
        (
            "DEMO-AMOUNT",
            12,
            49900,
            vec![("tee", 1, None)],
            json!({"state": "COMPLETED", "amount": 100}),
            "needs_review: amount_mismatch",
        ),
        (
            "DEMO-SHORT",
            13,
            99900,
            vec![("tee", 1, None), ("poster", 5, None)],
            json!({"state": "COMPLETED", "amount": 99900}),
            "needs_review: insufficient_stock, nothing deducted",
        ),
        (
            "DEMO-FAILED",
            14,
            49900,
            vec![("tee", 1, None)],
            json!({"state": "FAILED", "code": "PAYMENT_DECLINED"}),
            "cancelled: payment_failed",
        ),
        (
            "DEMO-PENDING",
            15,
            49900,
            vec![("tee", 1, None)],
            json!({"state": "PENDING"}),
            "still draft, checked again later",
        ),
        (
            "DEMO-STALE",
            120,
            49900,
            vec![("tee", 1, None)],
            json!({"state": "PENDING"}),
            "cancelled: pending_timeout",
        ),
        (
            "DEMO-NEVER",
            90,
            49900,
            vec![("tee", 1, None)],
            serde_json::Value::Null,
            "cancelled: not_found",
        ),
        (
            "DEMO-FLAKY",
            16,
            49900,
            vec![("mug", 1, None)],
            json!({"httpStatus": 503}),
            "still draft: PhonePe 503, retried later",
        ),
        (
            "DEMO-FRESH",
            1,
            49900,
            vec![("tee", 1, None)],
            json!({"state": "COMPLETED", "amount": 49900}),
            "left alone: inside the 5-minute lookback",
        ),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") if (4..=5).contains(&args.len()) => seed(&args[2], &args[3], &schema(args.get(4))?).await,
        Some("report") if (3..=4).contains(&args.len()) => report(&args[2], &schema(args.get(3))?).await,
        _ => anyhow::bail!(
            "usage: demo seed <mongodb-uri> <sim-base-url> [config.toml] | demo report <mongodb-uri> [config.toml]"
        ),
    }
}

/// The `[schema]` section of `config` (defaults without one), validated like the service does.
fn schema(config: Option<&String>) -> anyhow::Result<Schema> {
    let Some(path) = config else {
        return Ok(Schema::default());
    };
    let mut table: toml::Table = std::fs::read_to_string(path)?.parse()?;
    let schema: Schema = match table.remove("schema") {
        Some(v) => v.try_into()?,
        None => Schema::default(),
    };
    schema.validate()?;
    Ok(schema)
}

async fn db(uri: &str) -> anyhow::Result<mongodb::Database> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client
        .default_database()
        .ok_or_else(|| anyhow::anyhow!("the URI needs a database path"))
}

async fn seed(uri: &str, sim: &str, schema: &Schema) -> anyhow::Result<()> {
    let db = db(uri).await?;
    db.drop().await?;
    let products = db.collection::<Document>(&schema.products.collection);
    let stock = [
        doc! { "_id": "tee", "stock": 20 },
        doc! { "_id": "mug", "stock": 10 },
        doc! { "_id": "poster", "stock": 2 },
        doc! { "_id": "shirt", "stock": 5, "sizes": [{ "size": "M", "stock": 2 }, { "size": "L", "stock": 3 }] },
    ];
    products
        .insert_many(stock.iter().map(|p| schema.product_to_shop(p)))
        .await?;
    let http = reqwest::Client::new();
    let admin = sim
        .trim_end_matches('/')
        .rsplit_once("/apis")
        .map(|(root, _)| root.to_string())
        .unwrap_or_else(|| sim.to_string());
    for (mtid, age, amount, items, answer, _) in orders() {
        let items: Vec<Document> = items
            .into_iter()
            .map(|(p, q, s)| {
                let mut d = doc! { "productId": p, "quantity": q };
                if let Some(s) = s {
                    d.insert("size", s);
                }
                d
            })
            .collect();
        let created = DateTime::from_millis(DateTime::now().timestamp_millis() - age * MINUTE);
        db.collection::<Document>(&schema.orders.collection)
            .insert_one(schema.order_to_shop(&doc! {
                "merchantTransactionId": mtid, "status": "draft", "paymentStatus": "pending", "amount": amount,
                "items": items, "createdAt": created, "updatedAt": created, "history": [],
            }))
            .await?;
        if !answer.is_null() {
            let r = http
                .put(format!("{admin}/__sim/transactions/{mtid}"))
                .json(&json!({ "answers": [answer] }))
                .send()
                .await?;
            anyhow::ensure!(
                r.status().is_success(),
                "scripting {mtid}: {}",
                r.text().await.unwrap_or_default()
            );
        }
    }
    println!("seeded {} draft orders and 4 products", orders().len());
    Ok(())
}

async fn report(uri: &str, schema: &Schema) -> anyhow::Result<()> {
    use futures_util::TryStreamExt;
    let db = db(uri).await?;
    println!(
        "{:<14} {:<13} {:<8} {:<20} expected",
        "order", "status", "payment", "reason"
    );
    for (mtid, .., expected) in orders() {
        let o = db
            .collection::<Document>(&schema.orders.collection)
            .find_one(doc! { &schema.orders.id: mtid })
            .await?
            .map(|o| schema.order_from_shop(&o))
            .unwrap_or_default();
        let reason = o
            .get_document("reconciliation")
            .ok()
            .and_then(|r| r.get_str("reason").ok())
            .unwrap_or("-");
        println!(
            "{:<14} {:<13} {:<8} {:<20} {}",
            mtid,
            o.get_str("status").unwrap_or("?"),
            o.get_str("paymentStatus").unwrap_or("?"),
            reason,
            expected
        );
    }
    let products: Vec<Document> = db
        .collection::<Document>(&schema.products.collection)
        .find(doc! {})
        .await?
        .try_collect()
        .await?;
    let products = products.iter().map(|p| schema.product_from_shop(p));
    println!("\nstock left:");
    for p in products {
        println!(
            "  {:<8} {}  {}",
            p.get_str("_id").unwrap_or("?"),
            p.get("stock").map(|s| s.to_string()).unwrap_or_default(),
            p.get_array("sizes").map(|s| sizes_line(s)).unwrap_or_default()
        );
    }
    println!("(started with tee 20, mug 10, poster 2, shirt 5 = M 2 + L 3)");
    Ok(())
}

/// `sizes: [{size, stock}, ...]` as `= M 1 + L 3`.
fn sizes_line(sizes: &[mongodb::bson::Bson]) -> String {
    let parts: Vec<String> = sizes
        .iter()
        .filter_map(|s| s.as_document())
        .map(|s| {
            let stock = s.get("stock").map(|n| n.to_string()).unwrap_or_default();
            format!("{} {stock}", s.get_str("size").unwrap_or("?"))
        })
        .collect();
    format!("= {}", parts.join(" + "))
}
