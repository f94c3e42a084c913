//! The real `draft-reconciler` binary: configuration errors, redaction, the `run` service with
//! its ops HTTP and graceful shutdown, two processes racing over the same orders, and the
//! PhonePe budget as PhonePe sees it; every metric family after a run; the operator commands
//! `check` and `selftest`; and the help texts.

mod check;
mod config;
mod race;
mod service;

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{self, reconciler_bin, World, MERCHANT, SALT};
use phonepe_sim::Answer;

/// A salt key that is easy to grep for in output.
const LOUD_SALT: &str = "S3CRET-SALT-do-not-print-4f1a";

fn base_env(w: &World) -> HashMap<&'static str, String> {
    // The suite's schema as variables (names leaked: a handful per test).
    let schema = support::schema_env(&w.schema)
        .into_iter()
        .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v));
    let mut env = HashMap::from([
        ("MONGODB_URI", w.uri.clone()),
        ("PHONEPE_BASE_URL", w.sim.base_url()),
        ("PHONEPE_MERCHANT_ID", MERCHANT.to_string()),
        ("PHONEPE_SALT_KEY", SALT.to_string()),
        ("PHONEPE_SALT_INDEX", "1".to_string()),
        ("RECONCILER_OPS__LISTEN", String::new()),
        ("LOG_FORMAT", "json".to_string()),
        ("LOG_LEVEL", "debug".to_string()),
        ("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "6000".to_string()),
        (
            "RECONCILER_JOB__COMMIT_STRATEGY",
            support::test_strategy_name().to_string(),
        ),
    ]);
    env.extend(schema);
    env
}

fn command(env: &HashMap<&'static str, String>, args: &[&str]) -> Command {
    let mut c = Command::new(reconciler_bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v)));
    c.stdin(Stdio::null());
    c
}

fn output(env: &HashMap<&'static str, String>, args: &[&str]) -> Output {
    command(env, args).output().expect("run draft-reconciler")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn settle_fixture(w: &World, n: usize) {
    w.insert_product("tee", 1000);
    for i in 0..n {
        let mtid = format!("ORD-{i:03}");
        w.insert_order(&mtid, 49900, 600, &[("tee", 1, None)]);
        w.sim.script(&mtid, vec![Answer::completed(49900)]);
    }
}

fn kill_term(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "could not signal the service");
}

/// Neither the salt key, nor any X-VERIFY header value, nor customer fields are in `logs`.
fn assert_no_secrets(logs: &str, mtids: &[&str]) {
    use draft_reconciler::phonepe::checksum::{status_path, x_verify};
    assert!(!logs.contains(LOUD_SALT), "salt key leaked into logs");
    assert!(!logs.contains("###"), "an X-VERIFY value leaked into logs");
    for mtid in mtids {
        let header = x_verify(&status_path(MERCHANT, mtid), LOUD_SALT, 1);
        let digest = header.split("###").next().unwrap();
        assert!(!logs.contains(digest), "X-VERIFY of {mtid} leaked into logs");
    }
    for customer in ["Asha Rao", "+919800000000", "asha@example.com"] {
        assert!(!logs.contains(customer), "customer data {customer} leaked into logs");
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    support::eventually_some(limit, "the service exits", || child.try_wait().unwrap())
}
