//! `draft-reconciler events list|show|replay`: the operator's view of `reconciler_events`. Reads
//! and re-queues only; the service sends. Needs MongoDB, never PhonePe.

use anyhow::Context as _;
use mongodb::bson::{doc, Bson, DateTime, Document};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::cli::EventsCommand;
use crate::config::Settings;
use crate::store::events::{field, int, Channel, FAILED};
use crate::store::Store;

/// Run one `events` subcommand; returns the exit code.
pub fn execute(cmd: EventsCommand, settings: Settings) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let store = Store::connect(settings.mongodb.uri.expose_secret(), &settings.mongodb.database)
            .await
            .context("mongodb.uri is not a usable MongoDB connection string")?
            .with_schema(std::sync::Arc::new(settings.schema.clone()));
        store.ping().await.context("MongoDB (mongodb.uri) does not answer")?;
        match cmd {
            EventsCommand::List { failed, order, json } => list(&store, failed, order, json).await,
            EventsCommand::Show { id } => show(&store, &id).await,
            EventsCommand::Replay { id, order, since } => replay(&store, id, order, since).await,
        }
    })
}

/// A time as the CLI prints it (RFC 3339, UTC), or `null`.
fn time(b: Option<&Bson>) -> Value {
    match b {
        Some(Bson::DateTime(t)) => Value::String(crate::store::outbox::rfc3339(*t)),
        _ => Value::Null,
    }
}

/// A stored value as JSON, times in RFC 3339.
fn plain(b: &Bson) -> Value {
    match b {
        Bson::DateTime(t) => Value::String(crate::store::outbox::rfc3339(*t)),
        Bson::Document(d) => Value::Object(d.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        Bson::Array(a) => Value::Array(a.iter().map(plain).collect()),
        other => other.clone().into_relaxed_extjson(),
    }
}

/// One line of `events list --json` (the fixed shape, docs/events.md).
pub fn summary(e: &Document) -> Value {
    let d = Channel::Shop.record(e);
    json!({
        "id": e.get_str("_id").ok(),
        "type": e.get_str(field::TYPE).ok(),
        "merchantTransactionId": e.get_str(field::MTID).ok(),
        "createdAt": time(e.get(field::CREATED_AT)),
        "state": e.get_str(field::STATE).ok(),
        "attempts": int(d.and_then(|d| d.get(field::ATTEMPTS))).unwrap_or(0),
        "lastStatus": int(d.and_then(|d| d.get(field::LAST_STATUS))),
        "deliveredAt": time(e.get(field::DELIVERED_AT)),
    })
}

async fn list(store: &Store, failed: bool, order: Option<String>, as_json: bool) -> anyhow::Result<u8> {
    let mut filter = Document::new();
    if failed {
        filter.insert(field::STATE, FAILED);
    }
    if let Some(mtid) = order {
        filter.insert(field::MTID, mtid);
    }
    let events = store.list_events(filter).await.context("listing events")?;
    if !as_json {
        println!(
            "{:<28} {:<24} {:<24} {:<24} {:<9} {:>8} {:>6} DELIVERED",
            "ID", "TYPE", "MERCHANT TXN ID", "CREATED", "STATE", "ATTEMPTS", "LAST"
        );
    }
    for e in &events {
        let s = summary(e);
        if as_json {
            println!("{s}");
            continue;
        }
        let text = |k: &str| s[k].as_str().unwrap_or("-").to_string();
        let last = s["lastStatus"].as_i64().map_or("-".into(), |n| n.to_string());
        println!(
            "{:<28} {:<24} {:<24} {:<24} {:<9} {:>8} {:>6} {}",
            text("id"),
            text("type"),
            text("merchantTransactionId"),
            text("createdAt"),
            text("state"),
            s["attempts"],
            last,
            text("deliveredAt")
        );
    }
    Ok(0)
}

async fn show(store: &Store, id: &str) -> anyhow::Result<u8> {
    let Some(e) = store.find_event(id).await.context("reading the event")? else {
        eprintln!("events: no event has id {id}");
        return Ok(1);
    };
    let view = json!({
        "id": e.get_str("_id").ok(),
        "type": e.get_str(field::TYPE).ok(),
        "merchantTransactionId": e.get_str(field::MTID).ok(),
        "createdAt": time(e.get(field::CREATED_AT)),
        "state": e.get_str(field::STATE).ok(),
        "deliveredAt": time(e.get(field::DELIVERED_AT)),
        "deliveries": e.get(field::DELIVERIES).map_or(Value::Null, plain),
        "slack": e.get(field::SLACK).map_or(Value::Null, plain),
        "body": super::send::body(&e).parse::<Value>().unwrap_or(Value::Null),
    });
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(0)
}

async fn replay(
    store: &Store,
    id: Option<String>,
    order: Option<String>,
    since: Option<DateTime>,
) -> anyhow::Result<u8> {
    let mut filter = Document::new();
    if let Some(id) = id {
        filter.insert("_id", id);
    }
    if let Some(mtid) = order {
        filter.insert(field::MTID, mtid);
    }
    if let Some(since) = since {
        filter.insert(field::CREATED_AT, doc! { "$gte": since });
    }
    let n = store
        .replay_events(filter, DateTime::now())
        .await
        .context("queueing events again")?;
    if n == 0 {
        eprintln!("events: no event matches; nothing queued");
        return Ok(1);
    }
    println!("events: {n} event(s) queued again under the same ids; the service sends them (events.url)");
    Ok(0)
}
