//! The real binary on PhonePe API v2: OAuth token, v2 status, the same decisions and commit.

use crate::support::{World, MERCHANT};
use phonepe_sim::Answer;

#[test]
fn once_under_api_v2_confirms_and_cancels_with_oauth_and_no_salt_key() {
    let w = World::new("v2_once");
    w.insert_product("p1", 5);
    w.insert_order("V2-PAID", 49900, 600, &[("p1", 2, None)]);
    w.insert_order("V2-FAILED", 1000, 600, &[("p1", 1, None)]);
    w.sim.script("V2-PAID", vec![Answer::completed(49900)]);
    w.sim.script("V2-FAILED", vec![Answer::failed()]);
    let v2 = w.sim.state().v2_config();
    let status = w
        .reconciler_command(&["once"])
        .env_remove("PHONEPE_SALT_KEY")
        .env_remove("PHONEPE_SALT_INDEX")
        .env("PHONEPE_MERCHANT_ID", MERCHANT)
        .env("PHONEPE_API_VERSION", "v2")
        .env("PHONEPE_CLIENT_ID", &v2.client_id)
        .env("PHONEPE_CLIENT_SECRET", &v2.client_secret)
        .env("PHONEPE_CLIENT_VERSION", &v2.client_version)
        .env("PHONEPE_OAUTH_BASE_URL", w.sim.oauth_base_url())
        .status()
        .expect("run once");
    assert_eq!(status.code(), Some(0));
    assert_eq!(w.status("V2-PAID"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.status("V2-FAILED"), ("cancelled".into(), "failed".into()));
    assert_eq!(w.stock("p1"), 3);
    let tokens = w.sim.state().token_stats();
    assert_eq!((tokens.issued, tokens.expired_used), (1, 0), "{tokens:?}");
    assert_eq!(w.calls_for("V2-PAID"), 1);
}

#[test]
fn under_api_v2_a_missing_client_secret_is_named_and_nothing_runs() {
    let w = World::new("v2_missing");
    let out = w
        .reconciler_command(&["once"])
        .env("PHONEPE_API_VERSION", "v2")
        .env("PHONEPE_CLIENT_ID", "TESTCLIENT")
        .env("PHONEPE_CLIENT_VERSION", "1")
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run once");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("phonepe.client_secret") && err.contains("PHONEPE_CLIENT_SECRET"),
        "{err}"
    );
}
