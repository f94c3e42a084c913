//! Operator commands: `check` (dry run, `--apply`), `selftest`, and the help texts.

use std::collections::HashMap;

use mongodb::bson::doc;
use phonepe_sim::Answer;

use super::{assert_no_secrets, base_env, output, stdout, text, LOUD_SALT};
use crate::support::{count, World};

#[test]
fn check_is_a_dry_run_until_apply_and_apply_settles_exactly_once() {
    let w = World::with_salt("check_cmd", LOUD_SALT);
    w.insert_product("tee", 5);
    w.insert_order("CHK-1", 49900, 600, &[("tee", 2, None)]);
    w.sim
        .script("CHK-1", vec![Answer::completed(49900).transaction("T-CHK-1")]);
    let mut env = base_env(&w);
    env.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
    let before = w.order("CHK-1");

    let dry = output(&env, &["check", "CHK-1"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let out = stdout(&dry);
    assert!(out.contains("PhonePe: code PAYMENT_SUCCESS"), "{out}");
    assert!(out.contains("amount 49900") && out.contains("T-CHK-1"), "{out}");
    assert!(
        out.contains("order: status draft paymentStatus pending amount 49900"),
        "{out}"
    );
    assert!(out.contains("decision: Commit"), "{out}");
    assert!(out.contains("dry run: nothing changed"), "{out}");
    assert_eq!(w.calls_for("CHK-1"), 1, "PhonePe was asked");
    assert_eq!(w.order("CHK-1"), before, "a dry run writes nothing");
    assert_eq!(w.stock("tee"), 5);

    let apply = output(&env, &["check", "CHK-1", "--apply"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(stdout(&apply).contains("applied: confirmed"), "{}", text(&apply));
    assert_eq!(w.status("CHK-1"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 3);
    let history = w.history("CHK-1");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].get_str("transactionId").ok(), Some("T-CHK-1"));

    // Applying again finds the order settled: nothing is deducted twice.
    let again = output(&env, &["check", "CHK-1", "--apply"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(w.stock("tee"), 3);
    assert_eq!(w.history("CHK-1").len(), 1);
    for o in [&dry, &apply, &again] {
        assert_no_secrets(&text(o), &["CHK-1"]);
    }
}

#[test]
fn check_an_unknown_or_malformed_id_fails_and_touches_nothing() {
    let w = World::new("check_unknown");
    w.insert_order("CHK-KNOWN", 100, 600, &[("tee", 1, None)]);
    let env = base_env(&w);
    let before = w.order("CHK-KNOWN");

    let unknown = output(&env, &["check", "NO-SUCH-ORDER", "--apply"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        stdout(&unknown).contains("order: none with merchantTransactionId NO-SUCH-ORDER"),
        "{}",
        text(&unknown)
    );
    let malformed = output(&env, &["check", "has space"]);
    assert_eq!(malformed.status.code(), Some(2), "{}", text(&malformed));
    assert!(
        text(&malformed).contains("merchantTransactionId contains ' '"),
        "{}",
        text(&malformed)
    );
    let missing = output(&env, &["check"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));

    assert_eq!(count(&w, "orders", doc! {}), 1);
    assert_eq!(w.order("CHK-KNOWN"), before);
}

#[test]
fn selftest_passes_against_the_database_and_phonepe_and_leaves_nothing_behind() {
    let w = World::new("selftest");
    w.insert_product("tee", 7);
    w.insert_order("REAL-1", 100, 10, &[("tee", 1, None)]);
    let env = base_env(&w);

    let out = output(&env, &["selftest"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = stdout(&out);
    for step in [
        "selftest: MongoDB answers",
        "selftest: created draft order SELFTEST-",
        "selftest: PhonePe answered: code TRANSACTION_NOT_FOUND",
        "selftest: reconciled as rescheduled (status draft)",
        "selftest: test order and product removed",
        "selftest: OK",
    ] {
        assert!(t.contains(step), "missing {step:?} in:\n{t}");
    }
    let calls = w.sim.calls();
    assert_eq!(calls.len(), 1, "one status call: {calls:?}");
    assert!(calls[0].merchant_transaction_id.starts_with("SELFTEST-"));
    assert_eq!(calls[0].http_status, 200, "X-VERIFY accepted");
    assert_eq!(count(&w, "orders", doc! {}), 1, "only the shop's own order is left");
    assert_eq!(count(&w, "products", doc! {}), 1, "only the shop's own product is left");
    assert_eq!(count(&w, "orders", doc! { "selftest": true }), 0);
    assert_eq!(w.status("REAL-1").0, "draft", "the shop's orders are untouched");
    assert_eq!(w.stock("tee"), 7);

    // Wrong credentials: the step that failed is named, exit 1, and it still cleans up.
    let mut bad = base_env(&w);
    bad.insert("PHONEPE_SALT_KEY", LOUD_SALT.into());
    let out = output(&bad, &["selftest"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("selftest: FAILED: PhonePe call failed"),
        "{}",
        text(&out)
    );
    assert_eq!(w.sim.calls().last().map(|c| c.http_status), Some(401));
    assert_eq!(count(&w, "orders", doc! {}), 1);
    assert_eq!(count(&w, "products", doc! {}), 1);
    assert!(!text(&out).contains(LOUD_SALT));
}

#[test]
fn help_texts_name_every_command_and_the_exit_codes() {
    let env = HashMap::new();
    let top = output(&env, &["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let t = stdout(&top);
    for word in [
        "run",
        "once",
        "check",
        "selftest",
        "config",
        "--config <FILE>",
        "Exit codes: 0 ok, 1",
    ] {
        assert!(t.contains(word), "--help lacks {word:?}:\n{t}");
    }
    for (args, words) in [
        (
            &["check", "--help"][..],
            &["<MERCHANT_TRANSACTION_ID>", "--apply", "dry run", "Exit codes"][..],
        ),
        (&["selftest", "--help"], &["SELFTEST-", "clean up", "Exit codes"]),
        (&["run", "--help"], &["SIGTERM", "/metrics", "Exit codes"]),
        (&["once", "--help"], &["summary", "Exit codes"]),
        (&["config", "--help"], &["redacted", "Exit codes"]),
    ] {
        let o = output(&env, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let t = stdout(&o);
        for word in words {
            assert!(t.contains(word), "{args:?} lacks {word:?}:\n{t}");
        }
        assert!(
            t.lines().all(|l| l.len() <= 100),
            "{args:?}: a line longer than 100 columns:\n{t}"
        );
    }
    let usage = output(&env, &["reconcile"]);
    assert_eq!(usage.status.code(), Some(2), "unknown subcommand is a usage error");
    let version = output(&env, &["--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("draft-reconciler {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_prints_the_order_as_read_through_the_mapping() {
    let w = World::with_schema("check_schema", crate::support::shop_schema());
    w.insert_product("tee", 5);
    w.insert_order("CHK-SHOP", 129_950, 600, &[("tee", 2, None)]);
    w.sim.script("CHK-SHOP", vec![Answer::completed(129_950)]);
    let before = w.stored_order("CHK-SHOP");
    assert_eq!(before.get_f64("totalAmount").ok(), Some(1299.5), "stored in rupees");

    let dry = output(&base_env(&w), &["check", "CHK-SHOP"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let out = stdout(&dry);
    for line in [
        "orderRef \"CHK-SHOP\" → the id sent to PhonePe (CHK-SHOP)",
        "orderStatus \"DRAFT\" → draft",
        "payment.status \"PENDING\" → pending",
        "totalAmount 1299.5 rupees → 129950 paise",
        "lineItems.0: product \"tee\", qty 2, variant (missing)",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(out.contains("decision: Commit"), "{out}");
    assert_eq!(w.stored_order("CHK-SHOP"), before, "a dry run writes nothing");

    // A mapping mistake shows before anything runs: the status word is not the shop's.
    w.update_order(
        doc! { "merchantTransactionId": "CHK-SHOP" },
        doc! { "$set": { "orderStatus": "draft" } },
    );
    let wrong = output(&base_env(&w), &["check", "CHK-SHOP"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        stdout(&wrong).contains("orderStatus \"draft\" → not a word of schema.orders.status_values"),
        "{}",
        text(&wrong)
    );
}
