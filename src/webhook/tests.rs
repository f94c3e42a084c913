use super::*;
use crate::domain::Paise;
use crate::phonepe::checksum::x_verify;
use axum::http::HeaderValue;
use serde_json::json;

const SALT: &str = "test-salt-key";
const MERCHANT: &str = "MERCHANTUAT";
const USER: &str = "phonepe-hook";
const PASS: &str = "s3cret-pass";
/// `printf '%s' 'phonepe-hook:s3cret-pass' | sha256sum`
const AUTH_VECTOR: &str = "378315097e0c4a45acd664a0a5915e48de4608f7bd59342b488a48e6bf952bf5";

fn keys() -> Keys<'static> {
    Keys {
        merchant_id: MERCHANT,
        salt_key: Some(SALT),
        salt_index: 1,
        v2_authorization: Some(v2_authorization(USER, PASS)),
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).expect("header"));
    }
    h
}

fn status_json(code: &str, state: &str, amount: Option<i64>, mtid: &str) -> Value {
    let mut data = json!({
        "merchantId": "MERCHANTUAT", "merchantTransactionId": mtid, "transactionId": "T1",
        "state": state, "responseCode": "SUCCESS",
    });
    if let Some(a) = amount {
        data["amount"] = json!(a);
    }
    json!({ "success": code == "PAYMENT_SUCCESS", "code": code, "message": "m", "data": data })
}

/// A v1 callback: (body, X-VERIFY) signed with `salt`.
fn v1(inner: &Value, salt: &str) -> (Vec<u8>, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(inner.to_string());
    let sig = x_verify(&encoded, salt, 1);
    (json!({ "response": encoded }).to_string().into_bytes(), sig)
}

fn v1_verify(inner: &Value, salt: &str) -> Result<Delivery, Reply> {
    let (body, sig) = v1(inner, salt);
    verify(&keys(), &headers(&[("x-verify", &sig)]), &body)
}

fn v2_body(event: &str, payload: Value) -> Vec<u8> {
    json!({ "event": event, "payload": payload }).to_string().into_bytes()
}

fn v2_verify(auth: &str, body: &[u8]) -> Result<Delivery, Reply> {
    verify(&keys(), &headers(&[("authorization", auth)]), body)
}

fn completed_payload(mtid: &str, amount: Value) -> Value {
    json!({
        "merchantOrderId": mtid, "orderId": "OMO1", "state": "COMPLETED", "amount": amount,
        "paymentDetails": [
            { "transactionId": "OM-old", "state": "FAILED", "errorCode": "TXN_DECLINED" },
            { "transactionId": "OM-new", "state": "COMPLETED" },
        ],
    })
}

fn expect_err(r: Result<Delivery, Reply>) -> Reply {
    match r {
        Ok(d) => panic!("expected a refusal, got {d:?}"),
        Err(reply) => reply,
    }
}

#[test]
fn v2_authorization_is_sha256_hex_of_username_colon_password() {
    assert_eq!(v2_authorization(USER, PASS), AUTH_VECTOR);
}

#[test]
fn a_signed_v1_callback_is_the_status_answer_it_carries() {
    let d = v1_verify(
        &status_json("PAYMENT_SUCCESS", "COMPLETED", Some(49_900), "ORD-1"),
        SALT,
    )
    .expect("valid");
    assert_eq!(d.mtid.as_str(), "ORD-1");
    assert_eq!(d.event, event::V1_COMPLETED);
    assert!(d.settles);
    assert_eq!(d.report.state, PaymentState::Completed);
    assert_eq!(d.report.amount, Some(Paise(49_900)));
    assert_eq!(d.report.merchant_id.as_deref(), Some("MERCHANTUAT"));
    assert_eq!(d.report.transaction_id.as_deref(), Some("T1"));
    let failed = v1_verify(&status_json("PAYMENT_ERROR", "FAILED", None, "ORD-1"), SALT).expect("valid");
    assert_eq!(
        (failed.event, failed.report.state),
        (event::V1_FAILED, PaymentState::Failed)
    );
}

#[test]
fn the_v1_signature_covers_the_base64_and_the_salt() {
    // The worked vector: sha256_hex("eyJhIjoxfQ==" + "test-salt-key")###1.
    assert_eq!(
        x_verify("eyJhIjoxfQ==", SALT, 1),
        "511f3b160ee2ab93b7183682cac25713e027033d2b9db3a527b9fa7b3ee1ace6###1"
    );
    let inner = status_json("PAYMENT_SUCCESS", "COMPLETED", Some(100), "ORD-1");
    let wrong_salt = expect_err(v1_verify(&inner, "another-salt"));
    assert_eq!(
        (wrong_salt.status, wrong_salt.result),
        (StatusCode::UNAUTHORIZED, result::BAD_SIGNATURE)
    );
    // A body changed after signing.
    let (body, sig) = v1(&inner, SALT);
    let other = v1(&status_json("PAYMENT_SUCCESS", "COMPLETED", Some(1), "ORD-1"), SALT).0;
    let tampered = expect_err(verify(&keys(), &headers(&[("x-verify", &sig)]), &other));
    assert_eq!(tampered.status, StatusCode::UNAUTHORIZED);
    // Another salt index.
    let index2 = sig.replace("###1", "###2");
    let r = expect_err(verify(&keys(), &headers(&[("x-verify", &index2)]), &body));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // No signature at all.
    let none = expect_err(verify(&keys(), &HeaderMap::new(), &body));
    assert_eq!((none.status, none.event), (StatusCode::UNAUTHORIZED, event::UNKNOWN));
}

#[test]
fn unreadable_v1_callbacks_are_400_naming_what_is_wrong_without_quoting_it() {
    let k = keys();
    let not_json = expect_err(verify(&k, &headers(&[("x-verify", "x###1")]), b"nope"));
    assert_eq!(
        (not_json.status, not_json.result),
        (StatusCode::BAD_REQUEST, result::MALFORMED)
    );
    let no_response = expect_err(verify(&k, &headers(&[("x-verify", "x###1")]), b"{\"r\":1}"));
    assert!(no_response.message.contains("`response`"), "{}", no_response.message);
    // Signed, but not base64.
    let sig = x_verify("%%%", SALT, 1);
    let r = expect_err(verify(&k, &headers(&[("x-verify", &sig)]), b"{\"response\":\"%%%\"}"));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Signed, but the inner answer is incomplete: the status parser's rules apply.
    let r = expect_err(v1_verify(
        &status_json("PAYMENT_SUCCESS", "COMPLETED", None, "ORD-1"),
        SALT,
    ));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message.contains("data.amount"), "{}", r.message);
    let r = expect_err(v1_verify(
        &status_json("SOMETHING_NEW", "COMPLETED", Some(1), "ORD-1"),
        SALT,
    ));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let secret_ish = "ORD 1 asha@example.com";
    let r = expect_err(v1_verify(
        &status_json("PAYMENT_SUCCESS", "COMPLETED", Some(1), secret_ish),
        SALT,
    ));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.message.contains("asha"), "{}", r.message);
}

#[test]
fn a_v2_callback_with_the_right_authorization_parses_its_payload() {
    let body = v2_body("checkout.order.completed", completed_payload("ORD-2", json!(25_000)));
    let d = v2_verify(AUTH_VECTOR, &body).expect("valid");
    assert_eq!(d.mtid.as_str(), "ORD-2");
    assert_eq!(d.event, event::ORDER_COMPLETED);
    assert!(d.settles);
    assert_eq!(d.report.state, PaymentState::Completed);
    assert_eq!(d.report.amount, Some(Paise(25_000)));
    assert_eq!(
        d.report.merchant_id.as_deref(),
        Some(MERCHANT),
        "a payload naming no merchant is ours: PhonePe signed it with our credentials"
    );
    assert_eq!(d.report.transaction_id.as_deref(), Some("OM-new"), "the latest attempt");
    assert_eq!(d.report.code, "COMPLETED");
    // Hex case does not matter.
    assert!(v2_verify(&AUTH_VECTOR.to_uppercase(), &body).is_ok());
}

#[test]
fn v2_signature_failures_are_401() {
    let body = v2_body("checkout.order.completed", completed_payload("ORD-2", json!(1)));
    let wrong = expect_err(v2_verify(&v2_authorization(USER, "guess"), &body));
    assert_eq!(
        (wrong.status, wrong.result),
        (StatusCode::UNAUTHORIZED, result::BAD_SIGNATURE)
    );
    let truncated = expect_err(v2_verify(&AUTH_VECTOR[..63], &body));
    assert_eq!(truncated.status, StatusCode::UNAUTHORIZED);
    let unconfigured = Keys {
        v2_authorization: None,
        ..keys()
    };
    let r = expect_err(verify(
        &unconfigured,
        &headers(&[("authorization", AUTH_VECTOR)]),
        &body,
    ));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.message.contains("webhook.username"), "{}", r.message);
    // A bad signature is refused before the body is looked at.
    let r = expect_err(v2_verify("0", b"not json"));
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn v2_failed_and_pending_payloads_and_events() {
    let failed = json!({
        "merchantOrderId": "ORD-3", "state": "FAILED", "amount": 100, "errorCode": "PAYMENT_ERROR",
        "paymentDetails": [{ "transactionId": "OM-9", "state": "FAILED", "errorCode": "TXN_AUTO_FAILED" }],
    });
    let d = v2_verify(AUTH_VECTOR, &v2_body("checkout.order.failed", failed)).expect("valid");
    assert_eq!((d.event, d.report.state), (event::ORDER_FAILED, PaymentState::Failed));
    assert_eq!(
        d.report.code, "FAILED",
        "the order state, as the v2 status API reports it"
    );
    assert!(d.settles);
    let pending = json!({ "merchantOrderId": "ORD-3", "state": "PENDING" });
    let (_, r) = parse_v2_payload(&pending, MERCHANT).expect("valid");
    assert_eq!(
        (r.state, r.amount, r.code.as_str()),
        (PaymentState::Pending, None, "PENDING")
    );
    // An attempt failing is not the order failing.
    for ev in event::NON_SETTLING {
        let payload = json!({ "merchantOrderId": "ORD-3", "state": "FAILED" });
        let d = v2_verify(AUTH_VECTOR, &v2_body(ev, payload)).expect("valid");
        assert_eq!((d.event, d.settles), (ev, false));
    }
    let d = v2_verify(AUTH_VECTOR, &v2_body("something.new", pending.clone())).expect("valid");
    assert_eq!((d.event, d.settles), (event::OTHER, false));
    // An errorCode that does not look like a code is not stored.
    let odd = json!({ "merchantOrderId": "ORD-3", "state": "FAILED", "errorCode": "call +91 98000" });
    assert_eq!(parse_v2_payload(&odd, MERCHANT).expect("valid").1.code, "FAILED");
}

#[test]
fn malformed_v2_payloads_are_400_naming_the_field() {
    let cases = [
        (json!({ "state": "COMPLETED", "amount": 1 }), "merchantOrderId"),
        (
            json!({ "merchantOrderId": "A B", "state": "COMPLETED", "amount": 1 }),
            "merchantOrderId",
        ),
        (
            json!({ "merchantOrderId": "ORD-4", "state": "PAID", "amount": 1 }),
            "state",
        ),
        (json!({ "merchantOrderId": "ORD-4", "amount": 1 }), "state"),
        (json!({ "merchantOrderId": "ORD-4", "state": "COMPLETED" }), "amount"),
        (
            json!({ "merchantOrderId": "ORD-4", "state": "COMPLETED", "amount": "100" }),
            "amount",
        ),
        (
            json!({ "merchantOrderId": "ORD-4", "state": "COMPLETED", "amount": 1.5 }),
            "amount",
        ),
    ];
    for (payload, field) in cases {
        let r = expect_err(v2_verify(
            AUTH_VECTOR,
            &v2_body("checkout.order.completed", payload.clone()),
        ));
        assert_eq!(
            (r.status, r.result),
            (StatusCode::BAD_REQUEST, result::MALFORMED),
            "{payload}"
        );
        assert!(r.message.contains(field), "{payload}: {}", r.message);
    }
    for body in [
        &b"[]"[..],
        b"{\"payload\":{}}",
        b"{\"event\":\"x\"}",
        b"{\"event\":\"x\",\"payload\":1}",
    ] {
        let r = expect_err(v2_verify(AUTH_VECTOR, body));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn bodies_are_bounded_in_size_and_time() {
    let big = HeaderMap::from_iter([(axum::http::header::CONTENT_LENGTH, HeaderValue::from(BODY_LIMIT + 1))]);
    let r = read_body(&big, Body::empty(), READ_TIMEOUT)
        .await
        .expect_err("too large");
    assert_eq!((r.status, r.result), (StatusCode::PAYLOAD_TOO_LARGE, result::MALFORMED));
    // Without a Content-Length, the limit holds while reading.
    let r = read_body(&HeaderMap::new(), Body::from(vec![b'x'; BODY_LIMIT + 1]), READ_TIMEOUT)
        .await
        .expect_err("too large");
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let r = read_body(&HeaderMap::new(), Body::from_stream(never), Duration::from_millis(50))
        .await
        .expect_err("too slow");
    assert_eq!((r.status, r.result), (StatusCode::REQUEST_TIMEOUT, result::MALFORMED));
    let ok = read_body(&HeaderMap::new(), Body::from("{}"), READ_TIMEOUT)
        .await
        .expect("read");
    assert_eq!(&ok[..], b"{}");
}

#[test]
fn event_labels_are_a_fixed_set() {
    assert_eq!(event::v2("checkout.order.completed"), event::ORDER_COMPLETED);
    assert_eq!(event::v2("pg.refund.failed"), "pg.refund.failed");
    assert_eq!(event::v2(&"x".repeat(500)), event::OTHER);
}

#[test]
fn a_v2_payload_without_merchant_is_ours_and_one_naming_another_is_kept() {
    let (_, r) = parse_v2_payload(&completed_payload("ORD-5", json!(1)), MERCHANT).expect("valid");
    assert_eq!(
        with_merchant_default(r, "MERCHANTUAT").merchant_id.as_deref(),
        Some("MERCHANTUAT")
    );
    let mut p = completed_payload("ORD-5", json!(1));
    p["merchantId"] = json!("OTHER");
    let (_, r) = parse_v2_payload(&p, MERCHANT).expect("valid");
    assert_eq!(
        with_merchant_default(r, "MERCHANTUAT").merchant_id.as_deref(),
        Some("OTHER")
    );
}

/// A v2 refund callback as PhonePe documents it is read as a refund event about the refunded
/// order (never as an order event); a payload without the refund's ids is 400 naming the field.
#[test]
fn v2_refund_callbacks_are_refund_events() {
    let payload = json!({
        "merchantId": MERCHANT, "merchantRefundId": "RF0011-1", "originalMerchantOrderId": "ORD-9",
        "refundId": "OMR1", "state": "COMPLETED", "amount": 100,
    });
    let d = v2_verify(AUTH_VECTOR, &v2_body("pg.refund.completed", payload.clone())).expect("valid");
    assert_eq!(
        (d.event, d.mtid.as_str(), d.refund.as_deref(), d.report.state, d.settles),
        (
            event::REFUND_COMPLETED,
            "ORD-9",
            Some("RF0011-1"),
            PaymentState::Completed,
            false
        )
    );
    let mut failed = payload.clone();
    failed["state"] = json!("FAILED");
    let d = v2_verify(AUTH_VECTOR, &v2_body("pg.refund.failed", failed)).expect("valid");
    assert_eq!((d.event, d.report.state), (event::REFUND_FAILED, PaymentState::Failed));
    for (field, broken) in [
        (
            "merchantRefundId",
            json!({ "originalMerchantOrderId": "ORD-9", "state": "COMPLETED" }),
        ),
        (
            "originalMerchantOrderId",
            json!({ "merchantRefundId": "R1", "state": "COMPLETED" }),
        ),
        (
            "state",
            json!({ "merchantRefundId": "R1", "originalMerchantOrderId": "ORD-9", "state": "DONE" }),
        ),
    ] {
        let r = expect_err(v2_verify(AUTH_VECTOR, &v2_body("pg.refund.completed", broken)));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.message.contains(field), "{field}: {}", r.message);
    }
}
