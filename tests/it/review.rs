//! The operator's review queue (`draft-reconciler review list|show|resolve`, the real binary)
//! and refunds through PhonePe exactly once (`src/refund.rs`, its poller driven pass by pass).

use std::process::{Output, Stdio};
use std::time::Duration;

use draft_reconciler::actors::Budget;
use draft_reconciler::phonepe::{Gateway, PhonePeClient};
use draft_reconciler::refund::{poll_due, Refunder};
use draft_reconciler::store::refunds::refund_id;
use draft_reconciler::store::By;
use mongodb::bson::{doc, Document};
use phonepe_sim::{Answer, RefundAnswer};

use crate::support::{eventually, eventually_ok, World};

mod audit;
mod cancel;
mod crash;
mod late;
mod paid;
mod refunds;

const WAIT: Duration = Duration::from_secs(60);

/// `draft-reconciler <args>` against `w`, output captured.
fn review(w: &World, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut c = w.reconciler_command(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.env("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1");
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().expect("run draft-reconciler")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A paid order parked as `insufficient_stock` (product `tee` has `stock`, the order wants 2).
fn parked_paid(w: &World, mtid: &str, stock: i64) {
    w.insert_product("tee", stock);
    w.insert_order(mtid, 49900, 600, &[("tee", 2, None)]);
    w.sim.script(mtid, vec![Answer::completed(49900)]);
    w.once();
    assert_eq!(w.status(mtid), ("needs_review".into(), "paid".into()));
    assert_eq!(w.reason(mtid).as_deref(), Some("insufficient_stock"));
}

fn refund_doc(w: &World, mtid: &str) -> Document {
    w.order(mtid)
        .get_document("reconciliation")
        .and_then(|r| r.get_document("refund"))
        .cloned()
        .unwrap_or_default()
}

/// One pass of the service's refund poller (with `auto` as `refunds.auto`).
fn poll(w: &World, auto: &[&str]) {
    let auto: Vec<String> = auto.iter().map(|s| s.to_string()).collect();
    let store = w.store();
    w.block(async {
        let phonepe = gateway(w);
        let r = Refunder {
            store: &store,
            phonepe: &phonepe,
            poll_interval: Duration::from_millis(1),
            by: By::Reconciler,
            operator: None,
        };
        poll_due(&r, &auto).await.expect("poll");
    });
}

/// A PhonePe gateway to `w`'s simulator with a budget of its own (another instance's). Build it
/// on the runtime that uses it.
fn gateway(w: &World) -> Gateway {
    let client = PhonePeClient::new(&w.settings.phonepe).expect("client");
    Gateway::new(client, std::sync::Arc::new(Budget::per_minute(6000)))
}

/// Refund attempt `attempt`'s id for `mtid`.
fn rid(mtid: &str, attempt: i64) -> String {
    refund_id(mtid, attempt)
}

fn last_history(w: &World, mtid: &str) -> Document {
    w.history(mtid).last().cloned().expect("a history entry")
}

#[test]
fn fulfil_after_a_restock_confirms_once_and_short_stock_leaves_it_parked() {
    let w = World::new("review_fulfil");
    parked_paid(&w, "RV-F1", 1);
    let short = review(&w, &["review", "resolve", "RV-F1", "fulfil"], &[]);
    assert_eq!(code(&short), 1, "{}", text(&short));
    assert!(text(&short).contains("insufficient_stock"), "{}", text(&short));
    assert_eq!(w.status("RV-F1"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 1);
    assert_eq!(
        w.paid_amount("RV-F1"),
        Some(49900),
        "still parked: what was paid stays recorded"
    );
    for h in w
        .history("RV-F1")
        .iter()
        .filter(|h| h.get_str("by").ok() == Some("operator"))
    {
        assert_eq!(h.get_str("from").ok(), Some("needs_review"), "{h:?}");
    }

    w.block(
        w.products()
            .update_one(doc! {"_id": "tee"}, w.shop_query(&doc! {"$set": {"stock": 5}})),
    )
    .expect("restock");
    let done = review(
        &w,
        &["review", "resolve", "RV-F1", "fulfil", "--note", "restocked"],
        &[],
    );
    assert_eq!(code(&done), 0, "{}", text(&done));
    assert_eq!(w.status("RV-F1"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 3);
    let h = last_history(&w, "RV-F1");
    assert_eq!(h.get_str("by").ok(), Some("operator"), "{h:?}");
    assert_eq!(h.get_str("from").ok(), Some("needs_review"), "{h:?}");
    assert_eq!(h.get_str("to").ok(), Some("confirmed"), "{h:?}");
    assert_eq!(h.get_str("note").ok(), Some("restocked"), "{h:?}");
    let entries = w.history("RV-F1").len();

    let again = review(&w, &["review", "resolve", "RV-F1", "fulfil"], &[]);
    assert_eq!(code(&again), 1, "{}", text(&again));
    assert_eq!(w.stock("tee"), 3, "never deducted twice");
    assert_eq!(w.history("RV-F1").len(), entries);
}

/// `fulfil` confirms only what PhonePe verifies now: a completed payment to this merchant of
/// exactly the order's amount. An `amount_mismatch` is refused until its document is corrected;
/// a payment PhonePe no longer reports as completed is refused even with stock on the shelf.
#[test]
fn fulfil_confirms_only_a_payment_phonepe_verifies_for_the_orders_amount() {
    let w = World::new("review_fulfil_verified");
    w.insert_product("tee", 10);
    w.insert_order("RV-V1", 100_000, 600, &[("tee", 1, None)]);
    w.sim.script("RV-V1", vec![Answer::completed(99_900)]);
    w.once();
    assert_eq!(w.reason("RV-V1").as_deref(), Some("amount_mismatch"));

    let refused = review(&w, &["review", "resolve", "RV-V1", "fulfil"], &[]);
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert!(text(&refused).contains("99900"), "{}", text(&refused));
    assert_eq!(w.status("RV-V1"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 10, "nothing deducted for an unverified amount");

    // The operator corrects the order to what was really charged, then fulfils it.
    let mut corrected = w.order("RV-V1");
    corrected.insert("amount", 99_900_i64);
    let id = corrected.get("_id").cloned().expect("_id");
    w.block(
        w.orders()
            .replace_one(doc! { "_id": id }, w.schema.order_to_shop(&corrected)),
    )
    .expect("correct the amount");
    let done = review(&w, &["review", "resolve", "RV-V1", "fulfil"], &[]);
    assert_eq!(code(&done), 0, "{}", text(&done));
    assert_eq!(w.status("RV-V1"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 9);

    // Parked for stock, restocked, but PhonePe now reports the payment failed.
    w.insert_product("cap", 1);
    w.insert_order("RV-V2", 49900, 600, &[("cap", 2, None)]);
    w.sim.script("RV-V2", vec![Answer::completed(49900)]);
    w.once();
    assert_eq!(w.reason("RV-V2").as_deref(), Some("insufficient_stock"));
    w.block(
        w.products()
            .update_one(doc! {"_id": "cap"}, w.shop_query(&doc! {"$set": {"stock": 5}})),
    )
    .expect("restock");
    w.sim.script("RV-V2", vec![Answer::failed()]);
    let unverified = review(&w, &["review", "resolve", "RV-V2", "fulfil"], &[]);
    assert_eq!(code(&unverified), 1, "{}", text(&unverified));
    assert!(text(&unverified).contains("nothing confirmed"), "{}", text(&unverified));
    assert_eq!(w.status("RV-V2"), ("needs_review".into(), "paid".into()));
    assert_eq!(
        w.stock("cap"),
        5,
        "nothing deducted for a payment PhonePe does not confirm"
    );
}

#[test]
fn refund_is_made_exactly_once_even_when_the_first_call_times_out() {
    let w = World::new("review_refund_timeout");
    parked_paid(&w, "RV-R1", 0);
    // PhonePe makes the refund but answers after our 1 s timeout.
    w.sim.state().delay_refund(&rid("RV-R1", 1), Duration::from_secs(3));
    let timeout = [("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "1")];
    let first = review(
        &w,
        &["review", "resolve", "RV-R1", "refund", "--note", "customer asked"],
        &timeout,
    );
    assert_eq!(code(&first), 0, "{}", text(&first));
    assert_eq!(w.status("RV-R1"), ("needs_review".into(), "refund_pending".into()));
    assert_eq!(
        refund_doc(&w, "RV-R1").get_str("id").ok(),
        Some(rid("RV-R1", 1).as_str())
    );
    let h = last_history(&w, "RV-R1");
    assert_eq!(h.get_str("by").ok(), Some("operator"));
    assert_eq!(h.get_str("note").ok(), Some("customer asked"));

    eventually(WAIT, "the poller finishes the refund", || {
        poll(&w, &[]);
        w.status("RV-R1").0 == "refunded"
    });
    assert_eq!(w.status("RV-R1"), ("refunded".into(), "refunded".into()));
    assert_eq!(
        w.sim.state().refund_requests(&rid("RV-R1", 1)),
        1,
        "after the timeout PhonePe's status is asked, not a second request"
    );
    assert!(w.sim.state().refund_status_calls(&rid("RV-R1", 1)) >= 1);
    assert_eq!(w.sim.state().refunds_created(&rid("RV-R1", 1)), 1, "one refund only");
    assert_eq!(w.stock("tee"), 0, "stock never moves on a refund");

    let again = review(&w, &["review", "resolve", "RV-R1", "refund"], &[]);
    assert_eq!(code(&again), 1, "{}", text(&again));
    assert_eq!(
        refund_doc(&w, "RV-R1").get_str("id").ok(),
        Some(rid("RV-R1", 1).as_str())
    );
}

#[test]
fn a_failed_refund_parks_the_order_again_and_the_next_refund_has_a_new_id() {
    let w = World::new("review_refund_failed");
    parked_paid(&w, "RV-R2", 0);
    w.sim
        .state()
        .script_refund(&rid("RV-R2", 1), vec![RefundAnswer::Pending, RefundAnswer::Failed]);
    let first = review(&w, &["review", "resolve", "RV-R2", "refund"], &[]);
    assert_eq!(code(&first), 0, "{}", text(&first));
    eventually(WAIT, "PhonePe's FAILED is recorded", || {
        poll(&w, &[]);
        w.reason("RV-R2").as_deref() == Some("refund_failed")
    });
    assert_eq!(w.status("RV-R2"), ("needs_review".into(), "paid".into()));

    let second = review(&w, &["review", "resolve", "RV-R2", "refund"], &[]);
    assert_eq!(code(&second), 0, "{}", text(&second));
    assert_eq!(
        refund_doc(&w, "RV-R2").get_str("id").ok(),
        Some(rid("RV-R2", 2).as_str())
    );
    eventually(WAIT, "the second refund completes", || {
        poll(&w, &[]);
        w.status("RV-R2").0 == "refunded"
    });
    assert_eq!(w.sim.state().refunds_created(&rid("RV-R2", 1)), 1);
    assert_eq!(w.sim.state().refunds_created(&rid("RV-R2", 2)), 1);
}

#[test]
fn auto_refunds_take_only_the_configured_reasons() {
    let w = World::new("review_auto");
    parked_paid(&w, "RV-A1", 0);
    w.insert_order("RV-A2", 100, 600, &[("tee", 1, None)]);
    w.sim.script("RV-A2", vec![Answer::completed(999)]);
    w.once();
    assert_eq!(w.reason("RV-A2").as_deref(), Some("amount_mismatch"));

    poll(&w, &[]);
    assert_eq!(w.status("RV-A1").1, "paid", "refunds.auto empty: a person decides");
    eventually(WAIT, "the auto refund completes", || {
        poll(&w, &["insufficient_stock"]);
        w.status("RV-A1").0 == "refunded"
    });
    assert_eq!(w.sim.state().refunds_created(&rid("RV-A1", 1)), 1);
    assert_eq!(w.status("RV-A2"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.sim.state().refund_requests(&rid("RV-A2", 1)), 0);
    let h = w.history("RV-A1");
    assert!(h
        .iter()
        .any(|e| e.get_str("by").ok() == Some("reconciler") && e.get_str("refundId").is_ok()));
}

#[test]
fn two_shells_refunding_at_once_make_one_refund() {
    let w = World::new("review_concurrent");
    parked_paid(&w, "RV-C1", 0);
    let spawn = || {
        let mut c = w.reconciler_command(&["review", "resolve", "RV-C1", "refund"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().expect("a"), b.wait_with_output().expect("b"));
    let mut codes = [code(&a), code(&b)];
    codes.sort_unstable();
    assert_eq!(codes, [0, 1], "{}\n{}", text(&a), text(&b));
    assert_eq!(w.sim.state().refund_requests(&rid("RV-C1", 1)), 1);
    assert_eq!(w.sim.state().refunds_created(&rid("RV-C1", 1)), 1);
    let asked = w
        .history("RV-C1")
        .iter()
        .filter(|h| h.get_str("refundId").is_ok())
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn cancel_closes_an_unpaid_order_only_and_refusals_change_nothing() {
    let w = World::new("review_cancel");
    parked_paid(&w, "RV-P1", 0);
    w.insert_raw(
        doc! { "merchantTransactionId": "RV-X1", "status": "needs_review", "paymentStatus": "pending",
        "amount": 100, "items": [], "reconciliation": { "reason": "invalid_order" }, "history": [] },
    );

    let paid = review(&w, &["review", "resolve", "RV-P1", "cancel"], &[]);
    assert_eq!(code(&paid), 1, "{}", text(&paid));
    assert!(text(&paid).contains("paid"), "{}", text(&paid));
    assert_eq!(w.status("RV-P1"), ("needs_review".into(), "paid".into()));

    let ok = review(
        &w,
        &["review", "resolve", "RV-X1", "cancel", "--note", "test order"],
        &[],
    );
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    assert_eq!(w.status("RV-X1"), ("cancelled".into(), "pending".into()));
    assert_eq!(w.reason("RV-X1").as_deref(), Some("operator_cancelled"));
    let h = last_history(&w, "RV-X1");
    assert_eq!(
        (h.get_str("by").ok(), h.get_str("note").ok()),
        (Some("operator"), Some("test order"))
    );

    let again = review(&w, &["review", "resolve", "RV-X1", "cancel"], &[]);
    assert_eq!(code(&again), 1, "{}", text(&again));
    assert_eq!(w.history("RV-X1").len(), 1);
    let unknown = review(&w, &["review", "resolve", "NO-SUCH", "refund"], &[]);
    assert_eq!(code(&unknown), 1, "{}", text(&unknown));
    let usage = review(&w, &["review", "resolve", "RV-P1", "burn"], &[]);
    assert_eq!(code(&usage), 2, "{}", text(&usage));
    let no_refund = review(&w, &["review", "resolve", "RV-X1", "refund"], &[]);
    assert_eq!(code(&no_refund), 1, "{}", text(&no_refund));
}

#[test]
fn list_and_show_print_the_queue() {
    let w = World::new("review_list");
    parked_paid(&w, "RV-L1", 0);
    w.insert_order("RV-L2", 100, 600, &[("tee", 1, None)]);
    w.sim.script("RV-L2", vec![Answer::completed(999)]);
    w.once();

    let all = review(&w, &["review", "list", "--json"], &[]);
    assert_eq!(code(&all), 0, "{}", text(&all));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&all.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let l1 = lines
        .iter()
        .find(|l| l["merchantTransactionId"] == "RV-L1")
        .expect("RV-L1 listed");
    assert_eq!(l1["reason"], "insufficient_stock");
    assert_eq!(l1["amount"], 49900);
    assert_eq!(l1["paymentStatus"], "paid");
    assert!(l1["parkedAt"].is_string(), "{l1}");

    let only = review(&w, &["review", "list", "--json", "--reason", "amount_mismatch"], &[]);
    let out = String::from_utf8_lossy(&only.stdout).to_string();
    assert!(out.contains("RV-L2") && !out.contains("RV-L1"), "{out}");
    let table = review(&w, &["review", "list"], &[]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("RV-L1"),
        "{}",
        text(&table)
    );

    let show = review(&w, &["review", "show", "RV-L2"], &[]);
    assert_eq!(code(&show), 0, "{}", text(&show));
    let out = String::from_utf8_lossy(&show.stdout).to_string();
    assert!(
        out.contains("amount_mismatch") && out.contains("history:") && out.contains("phonepe now:"),
        "{out}"
    );
    assert!(
        !out.contains("Asha") && !out.contains("+9198"),
        "no customer data: {out}"
    );
}

/// A fulfil racing a refund: the commit is guarded by `paid`, so an order whose refund was
/// recorded meanwhile is not confirmed and no stock moves (either strategy).
#[test]
fn fulfil_never_confirms_an_order_being_refunded() {
    use draft_reconciler::domain::{Order, Status};
    use draft_reconciler::store::commit::confirm_transition;
    use draft_reconciler::store::{CommitOutcome, Lease};
    let w = World::new("review_fulfil_vs_refund");
    parked_paid(&w, "RV-FR", 0);
    w.sim.state().delay_refund(&rid("RV-FR", 1), Duration::from_secs(2));
    let before = w.order("RV-FR");
    let r = review(&w, &["review", "resolve", "RV-FR", "refund"], &[]);
    assert_eq!(code(&r), 0, "{}", text(&r));
    w.block(
        w.products()
            .update_one(doc! {"_id": "tee"}, w.shop_query(&doc! {"$set": {"stock": 5}})),
    )
    .expect("restock");
    let store = w.store();
    let outcome = w.block(async {
        let strategy = store
            .resolve_strategy(w.settings.job.commit_strategy)
            .await
            .expect("strategy");
        let order = Order::parse(&w.schema.order_to_shop(&before), &w.schema).expect("order");
        let mut t = confirm_transition("OPERATOR_FULFIL", None).by(By::Operator);
        t.from = Status::NeedsReview;
        let lease = Lease {
            owner: "test",
            ttl: Duration::from_secs(60),
            now: mongodb::bson::DateTime::now(),
        };
        store.commit(strategy, &order, &t, &lease).await.expect("commit")
    });
    assert_eq!(outcome, CommitOutcome::AlreadyProcessed);
    assert_eq!(w.status("RV-FR"), ("needs_review".into(), "refund_pending".into()));
    assert_eq!(w.stock("tee"), 5, "no stock moved");
}

/// The refund calls of both APIs against the simulator: the same id asked twice is one refund,
/// and its status is read back (v1 through the status API with the refund's id, v2 through
/// `/payments/v2/refund/{id}/status`).
#[tokio::test]
async fn refund_calls_of_both_apis_are_idempotent_per_refund_id() {
    use crate::phonepe_v2::Ask;
    use draft_reconciler::phonepe::client::{RefundRequest, RefundState};
    use draft_reconciler::phonepe::V2Credentials;
    use phonepe_sim::{SimConfig, SimHandle};
    use secrecy::SecretString;
    let sim = SimHandle::spawn(SimConfig::default()).expect("sim");
    let mut settings =
        draft_reconciler::config::Settings::for_tests("mongodb://127.0.0.1:1/x", &sim.base_url()).phonepe;
    settings.merchant_id = SimConfig::default().merchant_id;
    settings.salt_key = Some(SecretString::from(SimConfig::default().salt_key));
    let creds = V2Credentials {
        client_id: "TESTCLIENT".into(),
        client_secret: SecretString::from("test-client-secret"),
        client_version: "1".into(),
        oauth_base_url: sim.oauth_base_url(),
    };
    let clients = [
        ("V1", PhonePeClient::new(&settings).expect("v1")),
        ("V2", PhonePeClient::new_v2(&settings, creds).expect("v2")),
    ];
    for (api, client) in clients {
        let id = format!("ORD-{api}-R1");
        sim.state()
            .script_refund(&id, vec![RefundAnswer::Pending, RefundAnswer::Completed]);
        let req = RefundRequest {
            refund_id: &id,
            original: "ORD-1",
            amount: 49900,
            callback_url: "",
        };
        assert_eq!(client.ask_refund(&req).await.expect(api), RefundState::Pending);
        assert_eq!(client.ask_refund(&req).await.expect(api), RefundState::Pending);
        assert_eq!(sim.state().refund_requests(&id), 2, "{api}");
        assert_eq!(sim.state().refunds_created(&id), 1, "{api}: one refund per id");
        assert_eq!(client.ask_refund_status(&id).await.expect(api), RefundState::Pending);
        assert_eq!(client.ask_refund_status(&id).await.expect(api), RefundState::Completed);
    }
}

/// The running service polls a refund the operator asked for, and refunds the reasons in
/// `refunds.auto` on its own; a reason that is not a review reason is a configuration error.
#[test]
fn the_service_finishes_refunds_and_makes_the_automatic_ones() {
    let w = World::new("review_service");
    parked_paid(&w, "RV-S1", 0);
    w.insert_order("RV-S2", 49900, 600, &[("tee", 2, None)]);
    w.sim.script("RV-S2", vec![Answer::completed(49900)]);
    w.once();
    w.sim
        .state()
        .script_refund(&rid("RV-S1", 1), vec![RefundAnswer::Pending]);
    let r = review(&w, &["review", "resolve", "RV-S1", "refund"], &[]);
    assert_eq!(code(&r), 0, "{}", text(&r));

    let bad = review(
        &w,
        &["config"],
        &[("RECONCILER_REFUNDS__AUTO", "[\"insufficent_stock\"]")],
    );
    assert_eq!(code(&bad), 2, "{}", text(&bad));
    assert!(
        text(&bad).contains("refunds.auto") && text(&bad).contains("not a review reason"),
        "{}",
        text(&bad)
    );

    let mut c = w.reconciler_command(&["run"]);
    c.env("RECONCILER_JOB__INTERVAL_SECS", "1")
        .env("RECONCILER_REFUNDS__POLL_INTERVAL_SECS", "1")
        .env("RECONCILER_REFUNDS__AUTO", "insufficient_stock");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("service.log");
    c.stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("log"));
    let _service = crate::support::Running(c.spawn().expect("run"));
    eventually_ok(WAIT, "the service refunds RV-S2", || {
        if w.status("RV-S2") == ("refunded".into(), "refunded".into()) {
            return Ok(());
        }
        Err(format!(
            "{:?}\n{}",
            w.order("RV-S2"),
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    });
    assert_eq!(
        w.status("RV-S1"),
        ("needs_review".into(), "refund_pending".into()),
        "still pending at PhonePe"
    );
    w.sim
        .state()
        .script_refund(&rid("RV-S1", 1), vec![RefundAnswer::Completed]);
    eventually(WAIT, "the service finishes RV-S1's refund", || {
        w.status("RV-S1").0 == "refunded"
    });
    assert_eq!(w.sim.state().refunds_created(&rid("RV-S1", 1)), 1);
    assert_eq!(w.sim.state().refund_requests(&rid("RV-S1", 1)), 1);
    assert_eq!(w.sim.state().refunds_created(&rid("RV-S2", 1)), 1);
    assert_eq!(w.stock("tee"), 0);
}

/// A refund gives back what PhonePe reports paid (an `amount_mismatch` paid another amount than
/// the order's), and nothing is recorded when PhonePe does not confirm a completed payment.
#[test]
fn a_refund_gives_back_what_phonepe_reports_paid_and_only_that() {
    let w = World::new("review_refund_amount");
    w.insert_product("tee", 0);
    w.insert_order("RV-M1", 100, 600, &[("tee", 1, None)]);
    w.sim.script("RV-M1", vec![Answer::completed(999)]);
    w.insert_order("RV-M2", 100, 600, &[("tee", 1, None)]);
    w.sim.script("RV-M2", vec![Answer::completed(100)]);
    w.once();
    assert_eq!(w.reason("RV-M1").as_deref(), Some("amount_mismatch"));
    assert_eq!(w.reason("RV-M2").as_deref(), Some("insufficient_stock"));

    let r = review(&w, &["review", "resolve", "RV-M1", "refund"], &[]);
    assert_eq!(code(&r), 0, "{}", text(&r));
    assert_eq!(w.sim.state().refund_amount(&rid("RV-M1", 1)), Some(999));
    assert_eq!(refund_doc(&w, "RV-M1").get_i64("amount").ok(), Some(999));

    w.sim.script("RV-M2", vec![Answer::failed()]);
    let before = w.order("RV-M2");
    let refused = review(&w, &["review", "resolve", "RV-M2", "refund"], &[]);
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert!(text(&refused).contains("nothing refunded"), "{}", text(&refused));
    assert_eq!(w.order("RV-M2"), before, "nothing recorded");
    assert_eq!(w.sim.state().refund_requests(&rid("RV-M2", 1)), 0);
}
