//! Unit tests of `src/phonepe/wire_v2.rs`.

use super::*;

const VPA: &str = "customer@ybl";
const ME: &str = "MERCHANTUAT";

fn order(state: &str, amount: &str, attempt: &str) -> String {
    format!(
        r#"{{"orderId":"OMO1","merchantOrderId":"ORD-1","state":"{state}","amount":{amount},
           "expireAt":1711867462542,"paymentDetails":[{attempt}]}}"#
    )
}

fn attempt(state: &str, amount: i64) -> String {
    format!(
        r#"{{"paymentMode":"UPI_QR","transactionId":"OM9","timestamp":1,"amount":{amount},"state":"{state}",
           "rail":{{"type":"UPI","vpa":"{VPA}"}}}}"#
    )
}

fn parse(status: u16, body: &str) -> Result<StatusReport, StatusError> {
    parse_order_status(status, body.as_bytes(), "ORD-1", ME)
}

fn kind_of(status: u16, body: &str) -> TransientKind {
    match parse(status, body) {
        Err(StatusError::Transient { kind, detail }) => {
            assert!(
                !detail.contains(VPA) && !detail.contains('{'),
                "detail leaks body: {detail}"
            );
            kind
        }
        other => panic!("HTTP {status} {body} gave {other:?}"),
    }
}

#[test]
fn completed_carries_amount_transaction_and_the_token_merchant() {
    let r = parse(200, &order("COMPLETED", "49900", &attempt("COMPLETED", 49900))).unwrap();
    assert_eq!(
        r,
        StatusReport {
            code: "COMPLETED".into(),
            state: PaymentState::Completed,
            merchant_id: Some(ME.into()),
            amount: Some(Paise(49900)),
            transaction_id: Some("OM9".into()),
        }
    );
}

#[test]
fn a_merchant_id_in_the_answer_wins_so_another_merchant_is_a_mismatch() {
    let body = r#"{"merchantId":"OTHER","orderId":"O","state":"COMPLETED","amount":5,"expireAt":1}"#;
    assert_eq!(parse(200, body).unwrap().merchant_id.as_deref(), Some("OTHER"));
}

#[test]
fn each_state_maps_to_the_v1_domain_state() {
    let state = |s: &str| parse(200, &order(s, "100", &attempt(s, 100))).unwrap().state;
    assert_eq!(state("FAILED"), PaymentState::Failed);
    assert_eq!(state("PENDING"), PaymentState::Pending);
    let created = r#"{"orderId":"O","state":"CREATED","amount":100,"expireAt":1}"#;
    assert_eq!(parse(200, created).unwrap().state, PaymentState::Pending);
    let failed_no_amount = r#"{"orderId":"O","state":"FAILED","expireAt":1,"errorCode":"TXN_AUTO_FAILED"}"#;
    assert_eq!(parse(200, failed_no_amount).unwrap().code, "FAILED");
    let nf = parse(404, r#"{"code":"ORDER_NOT_FOUND","message":"No order"}"#).unwrap();
    assert_eq!(
        (nf.state, nf.code.as_str()),
        (PaymentState::NotFound, "ORDER_NOT_FOUND")
    );
}

#[test]
fn unknown_state_is_an_unknown_code_never_a_decision() {
    assert_eq!(
        kind_of(200, &order("SETTLED", "100", &attempt("COMPLETED", 100))),
        TransientKind::UnknownCode
    );
    assert_eq!(
        kind_of(200, r#"{"orderId":"O","state":"completed","amount":1,"expireAt":1}"#),
        TransientKind::UnknownCode,
        "states are case-sensitive"
    );
    assert!(matches!(
        parse(200, r#"{"state":"<script>alert(1)</script>","amount":1}"#),
        Err(StatusError::Transient { detail, .. }) if !detail.contains("script")
    ));
}

#[test]
fn completed_without_a_usable_amount_is_malformed() {
    let a = attempt("COMPLETED", 100);
    assert_eq!(kind_of(200, &order("COMPLETED", "null", &a)), TransientKind::Malformed);
    assert_eq!(
        kind_of(200, &order("COMPLETED", "\"100\"", &a)),
        TransientKind::Malformed
    );
    assert_eq!(kind_of(200, &order("COMPLETED", "100.5", &a)), TransientKind::Malformed);
    assert_eq!(
        kind_of(200, r#"{"orderId":"O","state":"COMPLETED","expireAt":1}"#),
        TransientKind::Malformed
    );
}

#[test]
fn a_latest_attempt_contradicting_completed_is_malformed() {
    assert_eq!(
        kind_of(200, &order("COMPLETED", "100", &attempt("FAILED", 100))),
        TransientKind::Malformed
    );
    assert_eq!(
        kind_of(200, &order("COMPLETED", "100", &attempt("COMPLETED", 99))),
        TransientKind::Malformed,
        "the attempt's amount must be the order's"
    );
    let earlier_failed = format!("{},{}", attempt("FAILED", 100), attempt("COMPLETED", 100));
    assert_eq!(
        parse(200, &order("COMPLETED", "100", &earlier_failed)).unwrap().state,
        PaymentState::Completed,
        "only the latest attempt counts"
    );
    assert_eq!(
        kind_of(
            200,
            r#"{"orderId":"O","state":"COMPLETED","amount":1,"expireAt":1,"paymentDetails":{}}"#
        ),
        TransientKind::Malformed
    );
}

#[test]
fn malformed_bodies_and_transport_classes() {
    assert_eq!(kind_of(200, "<html>"), TransientKind::Malformed);
    assert_eq!(kind_of(200, "[1]"), TransientKind::Malformed);
    assert_eq!(kind_of(200, r#"{"orderId":"O","amount":1}"#), TransientKind::Malformed);
    assert_eq!(kind_of(200, r#"{"state":7}"#), TransientKind::Malformed);
    assert_eq!(
        kind_of(404, "<html>Not Found</html>"),
        TransientKind::Malformed,
        "wrong URL"
    );
    assert_eq!(kind_of(404, r#"{"message":"x"}"#), TransientKind::Malformed);
    assert_eq!(kind_of(302, r#"{"code":"MOVED"}"#), TransientKind::Malformed);
    assert_eq!(kind_of(503, ""), TransientKind::Server);
    assert_eq!(parse(429, "").unwrap_err(), StatusError::RateLimited);
    assert!(matches!(
        parse(401, ""),
        Err(StatusError::Rejected { http_status: 401, .. })
    ));
    assert!(matches!(
        parse(400, r#"{"code":"INVALID_MERCHANT_ORDER_ID","message":"m"}"#),
        Err(StatusError::Refused { code, http_status: 400 }) if code == "INVALID_MERCHANT_ORDER_ID"
    ));
    assert!(matches!(
        parse(404, r#"{"code":"SOMETHING_ELSE","message":"m"}"#),
        Err(StatusError::Refused { http_status: 404, .. })
    ));
}

#[test]
fn an_answer_about_another_order_is_refused() {
    let body = order("COMPLETED", "100", &attempt("COMPLETED", 100));
    assert!(parse_order_status(200, body.as_bytes(), "ORD-1", ME).is_ok());
    assert!(matches!(
        parse_order_status(200, body.as_bytes(), "ORD-2", ME),
        Err(StatusError::Transient {
            kind: TransientKind::Malformed,
            ..
        })
    ));
}
