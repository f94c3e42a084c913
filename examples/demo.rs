//! Demo helper for `scripts/demo.sh`: `demo seed <mongodb-uri> <sim-base-url>` writes products
//! and draft orders of every kind and scripts phonepe-sim's answers for them; `demo seed-v2` adds
//! the two orders of the API v2 part; `demo webhook <sim-base-url> <mtid> <url>` has the simulator
//! send PhonePe's v2 webhook for an order; `demo settled <mongodb-uri> <mtid>...` succeeds once
//! none of them is a draft; `demo report <mongodb-uri>` prints each order's status, reason and the
//! stock left.
//!
//! With `DEMO_CONFIG=<file.toml>`, that file's `[schema]` section is the shop's mapping
//! (docs/schema.md): documents are written and read through it (`Schema::order_to_shop`,
//! `order_from_shop`, ...), so they are stored in the shop's names.

use std::sync::OnceLock;

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

/// The API v2 part: one order settled by a v2 status call, one by a v2 webhook inside the lookback.
fn v2_orders() -> Vec<DemoOrder> {
    vec![
        (
            "DEMO-V2",
            10,
            29900,
            vec![("mug", 1, None)],
            json!({"state": "COMPLETED", "amount": 29900}),
            "confirmed via API v2 (OAuth token, v2 status)",
        ),
        (
            "DEMO-HOOK",
            2,
            19900,
            vec![("tee", 1, None)],
            json!({"state": "COMPLETED", "amount": 19900}),
            "confirmed by the v2 webhook, inside the lookback",
        ),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("seed") if args.len() == 4 => seed(&args[2], &args[3]).await,
        Some("seed-v2") if args.len() == 4 => insert_orders(&db(&args[2]).await?, &args[3], v2_orders()).await,
        Some("webhook") if args.len() == 5 => webhook(&args[2], &args[3], &args[4]).await,
        Some("settled") if args.len() >= 4 => settled(&args[2], &args[3..]).await,
        Some("report") if args.len() == 3 => report(&args[2]).await,
        _ => anyhow::bail!(
            "usage: demo seed|seed-v2 <mongodb-uri> <sim-base-url> | demo webhook <sim-base-url> <mtid> <url> \
             | demo settled <mongodb-uri> <mtid>... | demo report <mongodb-uri>"
        ),
    }
}

async fn db(uri: &str) -> anyhow::Result<mongodb::Database> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client
        .default_database()
        .ok_or_else(|| anyhow::anyhow!("the URI needs a database path"))
}

/// The `[schema]` section of `$DEMO_CONFIG` (defaults without one), validated like the service does.
fn schema() -> &'static Schema {
    fn read() -> anyhow::Result<Schema> {
        let Some(path) = std::env::var_os("DEMO_CONFIG").filter(|p| !p.is_empty()) else {
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
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| read().unwrap_or_else(|e| panic!("DEMO_CONFIG [schema]: {e}")))
}

fn orders_of(db: &mongodb::Database) -> mongodb::Collection<Document> {
    db.collection(&schema().orders.collection)
}

/// One order by id, read back into the reconciler's default names.
async fn find_order(db: &mongodb::Database, mtid: &str) -> anyhow::Result<Option<Document>> {
    let o = orders_of(db).find_one(doc! { &schema().orders.id: mtid }).await?;
    Ok(o.map(|o| schema().order_from_shop(&o)))
}

async fn seed(uri: &str, sim: &str) -> anyhow::Result<()> {
    let db = db(uri).await?;
    db.drop().await?;
    let products = db.collection::<Document>(&schema().products.collection);
    let stock = [
        doc! { "_id": "tee", "stock": 20 },
        doc! { "_id": "mug", "stock": 10 },
        doc! { "_id": "poster", "stock": 2 },
        doc! { "_id": "shirt", "stock": 5, "sizes": [{ "size": "M", "stock": 2 }, { "size": "L", "stock": 3 }] },
    ];
    products
        .insert_many(stock.iter().map(|p| schema().product_to_shop(p)))
        .await?;
    insert_orders(&db, sim, orders()).await?;
    println!("seeded {} draft orders and 4 products", orders().len());
    Ok(())
}

/// Insert `list` as drafts and script the simulator's answer for each.
async fn insert_orders(db: &mongodb::Database, sim: &str, list: Vec<DemoOrder>) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let admin = admin_root(sim);
    for (mtid, age, amount, items, answer, _) in list {
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
        orders_of(db)
            .insert_one(schema().order_to_shop(&doc! {
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
    Ok(())
}

/// The simulator's root (its admin API) from its PG base URL.
fn admin_root(sim: &str) -> String {
    sim.trim_end_matches('/')
        .rsplit_once("/apis")
        .map(|(root, _)| root.to_string())
        .unwrap_or_else(|| sim.to_string())
}

/// Have the simulator send PhonePe's v2 webhook about `mtid` to `url`; print what the receiver said.
async fn webhook(sim: &str, mtid: &str, url: &str) -> anyhow::Result<()> {
    let r = reqwest::Client::new()
        .post(format!("{}/__sim/webhooks", admin_root(sim)))
        .json(&json!({ "url": url, "merchantTransactionId": mtid, "version": "v2" }))
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "sending the webhook: {status} {body}");
    println!("phonepe-sim delivered the v2 webhook for {mtid}: {body}");
    Ok(())
}

/// Succeed once none of `mtids` is a draft any more.
async fn settled(uri: &str, mtids: &[String]) -> anyhow::Result<()> {
    let db = db(uri).await?;
    for mtid in mtids {
        let o = find_order(&db, mtid).await?;
        let status = o.as_ref().and_then(|o| o.get_str("status").ok()).unwrap_or("draft");
        anyhow::ensure!(status != "draft", "{mtid} is still a draft");
    }
    Ok(())
}

async fn report(uri: &str) -> anyhow::Result<()> {
    use futures_util::TryStreamExt;
    let db = db(uri).await?;
    println!(
        "{:<14} {:<13} {:<8} {:<20} expected",
        "order", "status", "payment", "reason"
    );
    for (mtid, .., expected) in orders().into_iter().chain(v2_orders()) {
        let Some(o) = find_order(&db, mtid).await? else {
            continue;
        };
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
        .collection::<Document>(&schema().products.collection)
        .find(doc! {})
        .await?
        .try_collect()
        .await?;
    let products = products.iter().map(|p| schema().product_from_shop(p));
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
