//! Operator commands (README.md, "Commands"): `check` (what PhonePe says about one order and what
//! the reconciler would do; `--apply` does it) and `selftest` (a throwaway draft through the whole
//! path, then cleaned up). Both use the service's own functions (the gateway, `decide`,
//! `settle::settle`), so what they show is what the service does.

use anyhow::{anyhow, Context as _};
use mongodb::bson::{doc, Bson, DateTime, Document};

use crate::actors::Env;
use crate::config::Settings;
use crate::domain::decision::late_payment;
use crate::domain::Outcome;
use crate::domain::{decide, Decision, MerchantTransactionId, Order, PaymentStatus, Status, StatusError, StatusReport};
use crate::ops::Health;
use crate::phonepe::CallError;
use crate::schema::own;
use crate::setup::{build_env, prepare_env, Indexes};
use crate::store::payments::{LeftDraft, PaymentSeen};
use crate::store::By;

fn describe(answer: &Result<StatusReport, StatusError>) -> String {
    match answer {
        Ok(r) => format!(
            "code {} state {:?} amount {} merchant {} transactionId {}",
            r.code,
            r.state,
            r.amount.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            r.merchant_id.as_deref().unwrap_or("-"),
            r.transaction_id.as_deref().unwrap_or("-"),
        ),
        Err(e) => format!("error: {e}"),
    }
}

/// PhonePe's answer about `mtid` through the gateway (a permit of the budget every instance
/// shares: operator calls count against it too); `Err` when no call could be made.
async fn ask(env: &Env, mtid: &MerchantTransactionId) -> anyhow::Result<Result<StatusReport, StatusError>> {
    Ok(CallError::split(env.phonepe.status(mtid).await)?)
}

/// `draft-reconciler check <merchantTransactionId> [--apply]`.
pub fn check(settings: Settings, mtid: &str, apply: bool) -> anyhow::Result<u8> {
    let mtid = match MerchantTransactionId::parse(mtid) {
        Ok(mtid) => mtid,
        Err(problem) => {
            // A usage error: the argument can never name an order.
            eprintln!("draft-reconciler: merchantTransactionId {problem}");
            return Ok(2);
        }
    };
    actix::System::new().block_on(async move {
        let (env, indexes) = prepare_env(settings.clone(), Health::new(settings.job.interval), Indexes::Plan).await?;
        for step in &indexes {
            println!("index: {step}");
        }
        if let Some(warning) = crate::actors::scanner::lookback_warning(&settings.job) {
            println!("warning: {warning}");
        }
        let answer = ask(&env, &mtid).await?;
        println!("PhonePe: {}", describe(&answer));
        let Some(doc) = env.store.find_by_mtid(mtid.as_str()).await? else {
            println!(
                "order: none with merchantTransactionId {mtid} in database {}",
                settings.mongodb.database
            );
            return Ok(1);
        };
        let schema = env.store.schema();
        println!(
            "order, as read through [schema] (collection {}):",
            schema.orders.collection
        );
        schema.read_order(&doc).iter().for_each(|l| println!("  {l}"));
        let order = match Order::parse(&doc, schema) {
            Ok(o) => o,
            Err(e) => {
                println!("order: cannot be reconciled: {e}");
                return unparsed(&env, &doc, &answer, apply).await;
            }
        };
        println!(
            "order: status {} paymentStatus {} amount {}",
            order.status.as_str(),
            order.payment_status.as_str(),
            order.amount
        );
        let decision = decide(&order, &answer, DateTime::now(), &env.policy);
        println!("decision: {decision:?}");
        if !apply {
            println!("dry run: nothing changed (add --apply to act on the decision)");
            return Ok(0);
        }
        match decision {
            Decision::StopWatching => {
                println!("nothing to apply: the order is settled");
                return Ok(0);
            }
            // Rescheduling needs the order's lease, which only the service's scanner takes.
            Decision::Reschedule { .. } | Decision::Retry { .. } | Decision::PauseCalls { .. } => {
                println!("nothing to apply: no final answer yet; the service asks PhonePe again later");
                return Ok(0);
            }
            _ => {}
        }
        let outcome = crate::settle::settle(&env.settler(), &order, decision)
            .await
            .context("applying the decision")?;
        println!("applied: {}", outcome.as_str());
        Ok(0)
    })
}

/// An order whose document cannot be reconciled (exit 1): still, a completed payment PhonePe
/// reports for it after it left `draft` unpaid is recorded with `--apply` (exit 0), as the
/// webhook would.
async fn unparsed(
    env: &Env,
    doc: &Document,
    answer: &Result<StatusReport, StatusError>,
    apply: bool,
) -> anyhow::Result<u8> {
    let schema = env.store.schema();
    let (Some(target), Ok(report)) = (LeftDraft::of_doc(doc, schema), answer) else {
        return Ok(1);
    };
    let payment = crate::schema::read_payment_status(doc, schema);
    let Some(Decision::RecordPayment {
        code,
        transaction_id,
        paid_amount,
    }) = late_payment(target.status, payment, report, &env.policy.merchant_id)
    else {
        return Ok(1);
    };
    println!("decision: record the payment PhonePe reports (the order left draft unpaid)");
    if !apply {
        println!("dry run: nothing changed (add --apply to record it)");
        return Ok(1);
    }
    let seen = PaymentSeen {
        code,
        transaction_id,
        paid_amount,
    };
    let recorded = crate::settle::record_late_payment(&env.store, &target, &seen, By::Reconciler.into()).await?;
    println!(
        "applied: {}",
        if recorded {
            "payment recorded, needs_review"
        } else {
            "already_processed"
        }
    );
    Ok(0)
}

/// `draft-reconciler selftest`.
pub fn selftest(settings: Settings) -> anyhow::Result<u8> {
    actix::System::new().block_on(async move {
        let env = build_env(settings.clone(), Health::new(settings.job.interval)).await?;
        println!(
            "selftest: MongoDB answers and indexes exist (database {})",
            settings.mongodb.database
        );
        let tag = format!(
            "SELFTEST-{}-{:04x}",
            DateTime::now().timestamp_millis(),
            fastrand::u16(..)
        );
        let result = selftest_order(&env, &tag).await;
        cleanup(&env, &tag).await?;
        println!("selftest: test order and product removed");
        match result {
            Ok(()) => {
                println!("selftest: OK");
                Ok(0)
            }
            Err(e) => {
                println!("selftest: FAILED: {e:#}");
                Ok(1)
            }
        }
    })
}

async fn selftest_order(env: &Env, tag: &str) -> anyhow::Result<()> {
    let schema = env.store.schema();
    let orders = env.store.database().collection::<Document>(&schema.orders.collection);
    let products = env.store.database().collection::<Document>(&schema.products.collection);
    let id = &schema.orders.id;
    let created = DateTime::from_millis(
        DateTime::now().timestamp_millis() - 60_000 - env.settings.job.lookback.as_millis() as i64,
    );
    products
        .insert_one(schema.product_to_shop(&doc! { "_id": tag, "stock": 1, "selftest": true }))
        .await?;
    // Inserted already leased to this process, so no running instance picks it up meanwhile.
    let lease_until = DateTime::from_millis(DateTime::now().timestamp_millis() + 300_000);
    orders
        .insert_one(schema.order_to_shop(&doc! {
            // The reconciler's default names; `order_to_shop` writes them as the shop spells them.
            "merchantTransactionId": tag, "status": Status::Draft.as_str(),
            "paymentStatus": PaymentStatus::Pending.as_str(), "amount": 100,
            "items": [{ "productId": tag, "quantity": 1 }],
            "createdAt": created, "updatedAt": created, "selftest": true, own::HISTORY: [],
            own::RECONCILIATION_KEY: {
                own::key(own::ATTEMPTS): 0, own::key(own::LEASE_OWNER): &env.owner,
                own::key(own::LEASE_UNTIL): lease_until,
            },
        }))
        .await?;
    println!("selftest: created draft order {tag}");
    let doc = orders
        .find_one(doc! { id: tag })
        .await?
        .context("test order vanished")?;
    let order = Order::parse(&doc, schema)?;
    let answer = ask(env, &order.merchant_transaction_id).await?;
    println!("selftest: PhonePe answered: {}", describe(&answer));
    if let Err(e) = &answer {
        return Err(anyhow!("PhonePe call failed: {e}"));
    }
    let decision = decide(&order, &answer, DateTime::now(), &env.policy);
    // The throwaway order is nobody's business: its transition records no event.
    let quiet = env.store.clone().without_events();
    let settler = crate::settle::Settler {
        store: &quiet,
        ..env.settler()
    };
    let outcome = crate::settle::settle(&settler, &order, decision).await?;
    let after = orders
        .find_one(doc! { id: tag })
        .await?
        .context("test order vanished")?;
    // The stored word read back through the mapping: our state's name, whatever the shop's word.
    let status = crate::schema::read_status(&after, schema).map_or("?", Status::as_str);
    let expected = match outcome {
        Outcome::Confirmed => Status::Confirmed,
        Outcome::Cancelled => Status::Cancelled,
        Outcome::NeedsReview => Status::NeedsReview,
        _ => Status::Draft,
    }
    .as_str();
    println!("selftest: reconciled as {} (status {status})", outcome.as_str());
    if status != expected {
        return Err(anyhow!(
            "order status is {status}, expected {expected} after {}",
            outcome.as_str()
        ));
    }
    Ok(())
}

async fn cleanup(env: &Env, tag: &str) -> anyhow::Result<()> {
    let (db, schema) = (env.store.database(), env.store.schema());
    db.collection::<Document>(&schema.orders.collection)
        .delete_many(doc! { &schema.orders.id: tag, "selftest": true })
        .await?;
    db.collection::<Document>(&schema.products.collection)
        .delete_many(doc! { "_id": Bson::String(tag.into()), "selftest": true })
        .await?;
    Ok(())
}
