//! PhonePe API v1: the product's client against a spawned phonepe-sim, over TCP. The simulator
//! is written from PhonePe's documentation independently of the client, so each test checks the
//! client's reading of PhonePe against the simulator's (the signature, the prefix, every answer
//! and failure). Each test reads as the scenario it proves. No sleeps: every effect is observed
//! through the client's answer or `calls()`.

use std::time::Duration;

use draft_reconciler::config::PhonePeSettings;
use draft_reconciler::domain::{MerchantTransactionId, Paise, PaymentState, StatusError, StatusReport, TransientKind};
use draft_reconciler::phonepe::PhonePeClient;
use phonepe_sim::{Answer, Call, SimConfig, SimHandle};
use secrecy::SecretString;

use crate::phonepe_v2::Ask;

fn sim(cfg: SimConfig) -> SimHandle {
    SimHandle::spawn(cfg).expect("spawn phonepe-sim")
}

fn settings(base_url: &str) -> PhonePeSettings {
    PhonePeSettings {
        base_url: base_url.to_string(),
        merchant_id: "MERCHANTUAT".into(),
        salt_key: Some(SecretString::from("test-salt-key")),
        salt_index: Some(1),
        api_version: Default::default(),
        client_id: None,
        client_secret: None,
        client_version: None,
        oauth_base_url: String::new(),
        request_timeout: Duration::from_secs(5),
    }
}

fn client_for(sim: &SimHandle) -> PhonePeClient {
    PhonePeClient::new(&settings(&sim.base_url())).expect("client")
}

fn mtid(s: &str) -> MerchantTransactionId {
    MerchantTransactionId::parse(s).expect("valid mtid")
}

fn transient_kind(r: Result<StatusReport, StatusError>) -> TransientKind {
    match r {
        Err(StatusError::Transient { kind, .. }) => kind,
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn statuses(sim: &SimHandle) -> Vec<u16> {
    sim.calls().iter().map(|c| c.http_status).collect()
}

#[tokio::test]
async fn signed_call_gets_the_scripted_answer() {
    let sim = sim(SimConfig::default());
    sim.script("ORD-1001", vec![Answer::completed(49900).transaction("T2311")]);
    let report = client_for(&sim).ask(&mtid("ORD-1001")).await.unwrap();
    assert_eq!(
        report,
        StatusReport {
            code: "PAYMENT_SUCCESS".into(),
            state: PaymentState::Completed,
            merchant_id: Some("MERCHANTUAT".into()),
            amount: Some(Paise(49900)),
            transaction_id: Some("T2311".into()),
        }
    );
    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (
            calls[0].merchant_transaction_id.as_str(),
            calls[0].http_status,
            calls[0].code.as_deref()
        ),
        ("ORD-1001", 200, Some("PAYMENT_SUCCESS"))
    );
    assert!(calls[0].at_ms > 1_600_000_000_000);
}

#[tokio::test]
async fn every_business_state_reaches_the_client() {
    let sim = sim(SimConfig::default());
    sim.script("F1", vec![Answer::failed()]);
    sim.script("F2", vec![Answer::failed().code("PAYMENT_DECLINED")]);
    sim.script("F3", vec![Answer::failed().code("TIMED_OUT")]);
    sim.script("P1", vec![Answer::pending()]);
    sim.script("N1", vec![Answer::not_found()]);
    sim.script("M1", vec![Answer::completed(100).merchant("SOMEONE_ELSE")]);
    let client = client_for(&sim);
    let state = |id: &'static str| {
        let client = client.clone();
        async move { client.ask(&mtid(id)).await.unwrap() }
    };
    assert_eq!(state("F1").await.state, PaymentState::Failed);
    assert_eq!(state("F2").await.code, "PAYMENT_DECLINED");
    assert_eq!(state("F3").await.code, "TIMED_OUT");
    assert_eq!(state("P1").await.state, PaymentState::Pending);
    assert_eq!(state("N1").await.state, PaymentState::NotFound);
    assert_eq!(
        state("UNSCRIPTED").await.state,
        PaymentState::NotFound,
        "nobody scripted it"
    );
    // The simulator reports the other merchant; the decision table, not the client, refuses it.
    assert_eq!(state("M1").await.merchant_id.as_deref(), Some("SOMEONE_ELSE"));
}

#[tokio::test]
async fn wrong_salt_is_rejected_with_401() {
    let sim = sim(SimConfig::default());
    sim.script("ORD-1", vec![Answer::completed(100)]);
    let mut s = settings(&sim.base_url());
    s.salt_key = Some(SecretString::from("not-the-salt"));
    let r = PhonePeClient::new(&s).unwrap().ask(&mtid("ORD-1")).await;
    assert_eq!(
        r,
        Err(StatusError::Rejected {
            code: "AUTHORIZATION_FAILED".into(),
            http_status: 401
        })
    );
    let mut s = settings(&sim.base_url());
    s.salt_index = Some(2);
    let r = PhonePeClient::new(&s).unwrap().ask(&mtid("ORD-1")).await;
    assert!(
        matches!(r, Err(StatusError::Rejected { http_status: 401, .. })),
        "{r:?}"
    );
    assert_eq!(statuses(&sim), [401, 401]);
    assert_eq!(sim.calls()[0].code.as_deref(), Some("AUTHORIZATION_FAILED"));
}

#[tokio::test]
async fn wrong_merchant_is_rejected() {
    let sim = sim(SimConfig::default());
    let mut s = settings(&sim.base_url());
    s.merchant_id = "OTHERMERCHANT".into();
    let r = PhonePeClient::new(&s).unwrap().ask(&mtid("ORD-1")).await;
    assert_eq!(
        r,
        Err(StatusError::Rejected {
            code: "AUTHORIZATION_FAILED".into(),
            http_status: 401
        })
    );
}

#[tokio::test]
async fn prefix_is_in_the_url_but_not_in_the_checksum() {
    let hermes = sim(SimConfig {
        path_prefix: "/apis/hermes/".into(),
        ..SimConfig::default()
    });
    assert!(hermes.base_url().ends_with("/apis/hermes"), "{}", hermes.base_url());
    hermes.script("ORD-1", vec![Answer::pending()]);
    // A trailing '/' on the configured base URL is fine too.
    let with_slash = PhonePeClient::new(&settings(&format!("{}/", hermes.base_url()))).unwrap();
    assert_eq!(
        with_slash.ask(&mtid("ORD-1")).await.unwrap().state,
        PaymentState::Pending
    );

    // Forgetting the prefix reaches no PhonePe route: an empty 404, never acted upon.
    let no_prefix = PhonePeClient::new(&settings(&format!("http://{}", hermes.addr()))).unwrap();
    assert_eq!(
        transient_kind(no_prefix.ask(&mtid("ORD-1")).await),
        TransientKind::Malformed
    );

    let bare = sim(SimConfig {
        path_prefix: String::new(),
        ..SimConfig::default()
    });
    bare.script("ORD-1", vec![Answer::completed(5)]);
    assert_eq!(
        client_for(&bare).ask(&mtid("ORD-1")).await.unwrap().amount,
        Some(Paise(5))
    );
}

#[tokio::test]
async fn fourth_call_in_a_minute_is_rate_limited_at_three() {
    let sim = sim(SimConfig {
        rate_limit_per_minute: Some(3),
        ..SimConfig::default()
    });
    sim.script("ORD-1", vec![Answer::pending()]);
    let client = client_for(&sim);
    for _ in 0..3 {
        assert_eq!(client.ask(&mtid("ORD-1")).await.unwrap().state, PaymentState::Pending);
    }
    assert_eq!(client.ask(&mtid("ORD-1")).await, Err(StatusError::RateLimited));
    assert_eq!(statuses(&sim), [200, 200, 200, 429]);
    assert_eq!(sim.calls()[3].code.as_deref(), Some("TOO_MANY_REQUESTS"));
    sim.set_rate_limit(None);
    assert!(client.ask(&mtid("ORD-1")).await.is_ok());
}

#[tokio::test]
async fn fail_twice_then_succeed() {
    let sim = sim(SimConfig::default());
    sim.script(
        "ORD-1",
        vec![
            Answer::http_error(500),
            Answer::http_error(503),
            Answer::completed(49900),
        ],
    );
    let client = client_for(&sim);
    assert_eq!(transient_kind(client.ask(&mtid("ORD-1")).await), TransientKind::Server);
    assert_eq!(transient_kind(client.ask(&mtid("ORD-1")).await), TransientKind::Server);
    for _ in 0..2 {
        let r = client.ask(&mtid("ORD-1")).await.unwrap();
        assert_eq!((r.state, r.amount), (PaymentState::Completed, Some(Paise(49900))));
    }
    assert_eq!(statuses(&sim), [500, 503, 200, 200]);
    assert_eq!(sim.calls()[0].code.as_deref(), Some("INTERNAL_SERVER_ERROR"));
}

#[tokio::test]
async fn malformed_bodies_are_transient() {
    let sim = sim(SimConfig::default());
    sim.script("HTML", vec![Answer::raw("<html><body>502 Bad Gateway</body></html>")]);
    sim.script("STRAMT", vec![Answer::raw(
        r#"{"success":true,"code":"PAYMENT_SUCCESS","data":{"merchantId":"MERCHANTUAT","amount":"49900","state":"COMPLETED"}}"#,
    )]);
    sim.script("EMPTY", vec![Answer::raw("")]);
    let client = client_for(&sim);
    for id in ["HTML", "STRAMT", "EMPTY"] {
        assert_eq!(
            transient_kind(client.ask(&mtid(id)).await),
            TransientKind::Malformed,
            "{id}"
        );
    }
    assert!(sim.calls().iter().all(|c| c.code.is_none() && c.http_status == 200));
}

/// A code that contradicts `data.state` (PAYMENT_PENDING over a COMPLETED payment) is never
/// taken as either: transient, so nothing is settled on it. A scripted 429 is rate limiting.
#[tokio::test]
async fn contradicting_answers_are_malformed_and_a_scripted_429_is_rate_limiting() {
    let sim = sim(SimConfig::default());
    sim.script("CONTRA", vec![Answer::completed(49900).code("PAYMENT_PENDING")]);
    sim.script("LIMITED", vec![Answer::http_error(429)]);
    let client = client_for(&sim);
    assert_eq!(
        transient_kind(client.ask(&mtid("CONTRA")).await),
        TransientKind::Malformed
    );
    assert_eq!(client.ask(&mtid("LIMITED")).await, Err(StatusError::RateLimited));
    assert_eq!(statuses(&sim), [200, 429]);
}

#[tokio::test]
async fn answer_slower_than_the_client_timeout_is_a_timeout() {
    let sim = sim(SimConfig::default());
    sim.script("SLOW", vec![Answer::completed(100).delay(30_000)]);
    let mut s = settings(&sim.base_url());
    s.request_timeout = Duration::from_millis(200);
    let client = PhonePeClient::new(&s).unwrap();
    assert_eq!(transient_kind(client.ask(&mtid("SLOW")).await), TransientKind::Timeout);
    // The simulator logged the call on arrival; dropping it must not wait for the 30 s answer
    // (the bound is half of that, so a loaded machine cannot reach it).
    assert_eq!(statuses(&sim), [200]);
    let started = std::time::Instant::now();
    drop(sim);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "drop took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn default_latency_applies_unless_an_answer_sets_its_own() {
    let sim = sim(SimConfig::default());
    sim.set_latency(Duration::from_secs(3));
    sim.script("QUICK", vec![Answer::pending().delay(0)]);
    let mut s = settings(&sim.base_url());
    s.request_timeout = Duration::from_millis(500);
    let client = PhonePeClient::new(&s).unwrap();
    assert_eq!(transient_kind(client.ask(&mtid("OTHER")).await), TransientKind::Timeout);
    assert!(client.ask(&mtid("QUICK")).await.is_ok());
}

#[tokio::test]
async fn calls_are_recorded_in_order_and_can_be_cleared() {
    let sim = sim(SimConfig::default());
    let client = client_for(&sim);
    for id in ["A", "B", "C"] {
        client.ask(&mtid(id)).await.unwrap();
    }
    let ids: Vec<_> = sim.calls().into_iter().map(|c| c.merchant_transaction_id).collect();
    assert_eq!(ids, ["A", "B", "C"]);
    assert!(sim.calls().windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    sim.clear_calls();
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn admin_api_scripts_configures_and_reports() {
    let sim = sim(SimConfig::default());
    let admin = reqwest::Client::new();
    let url = |p: &str| format!("http://{}/__sim/{p}", sim.addr());

    assert_eq!(admin.get(url("health")).send().await.unwrap().status(), 200);

    let script = serde_json::json!({"answers": [
        {"state": "PENDING"},
        {"httpStatus": 503},
        {"state": "FAILED", "code": "PAYMENT_DECLINED", "amount": 100}
    ]});
    let r = admin.put(url("transactions/ORD-9")).json(&script).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bad = serde_json::json!({"answers": [{"state": "COMPLETED"}]});
    let r = admin.put(url("transactions/ORD-9")).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400, "COMPLETED without amount is refused");

    let r = admin
        .put(url("config"))
        .json(&serde_json::json!({"rateLimitPerMinute": 2}))
        .send()
        .await
        .unwrap();
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["rateLimitPerMinute"], 2);
    assert_eq!(view["merchantId"], "MERCHANTUAT");
    assert!(
        !view.to_string().contains("test-salt-key"),
        "the admin API never shows the salt"
    );

    let client = client_for(&sim);
    assert_eq!(client.ask(&mtid("ORD-9")).await.unwrap().state, PaymentState::Pending);
    assert_eq!(transient_kind(client.ask(&mtid("ORD-9")).await), TransientKind::Server);
    assert_eq!(client.ask(&mtid("ORD-9")).await, Err(StatusError::RateLimited));
    admin
        .put(url("config"))
        .json(&serde_json::json!({"rateLimitPerMinute": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(client.ask(&mtid("ORD-9")).await.unwrap().code, "PAYMENT_DECLINED");

    let calls: Vec<Call> = admin.get(url("calls")).send().await.unwrap().json().await.unwrap();
    let seen: Vec<_> = calls
        .iter()
        .map(|c| (c.http_status, c.code.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        seen,
        [
            (200, "PAYMENT_PENDING".to_string()),
            (503, "INTERNAL_SERVER_ERROR".to_string()),
            (429, "TOO_MANY_REQUESTS".to_string()),
            (200, "PAYMENT_DECLINED".to_string()),
        ]
    );
    let raw: serde_json::Value = admin.get(url("calls")).send().await.unwrap().json().await.unwrap();
    assert_eq!(raw[0]["merchantTransactionId"], "ORD-9");
    assert!(raw[0]["atMs"].is_u64() && raw[0]["httpStatus"] == 200);

    assert_eq!(admin.delete(url("calls")).send().await.unwrap().status(), 204);
    assert!(sim.calls().is_empty());
}

#[test]
fn sim_outlives_the_runtimes_that_use_it() {
    let sim = sim(SimConfig::default());
    sim.script("ORD-1", vec![Answer::pending()]);
    for _ in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = rt.block_on(async { client_for(&sim).ask(&mtid("ORD-1")).await.unwrap().state });
        assert_eq!(state, PaymentState::Pending);
        drop(rt);
    }
    assert_eq!(sim.calls().len(), 2);
}
