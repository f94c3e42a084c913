//! Unit tests of `src/phonepe/wire.rs`.

use super::*;

const SECRET_ISH: &str = "customer@ybl";

fn success_body(amount: &str, state: &str) -> String {
    format!(
        r#"{{"success":true,"code":"PAYMENT_SUCCESS","message":"Your payment is successful.",
          "data":{{"merchantId":"MERCHANTUAT","merchantTransactionId":"ORD-1001",
          "transactionId":"T2311","amount":{amount},"state":"{state}","responseCode":"SUCCESS",
          "paymentInstrument":{{"type":"UPI","utr":"206850679072","vpa":"{SECRET_ISH}"}}}}}}"#
    )
}

fn coded(code: &str, state: Option<&str>) -> String {
    match state {
        Some(s) => format!(
            r#"{{"success":false,"code":"{code}","message":"m","data":{{"merchantId":"MERCHANTUAT",
              "merchantTransactionId":"ORD-1001","transactionId":"T9","amount":49900,"state":"{s}",
              "responseCode":"ZM","paymentInstrument":{{"type":"UPI","vpa":"{SECRET_ISH}"}}}}}}"#
        ),
        None => format!(r#"{{"success":false,"code":"{code}","message":"m"}}"#),
    }
}

fn state_of(status: u16, body: &str) -> PaymentState {
    match parse_status(status, body.as_bytes()) {
        Ok(r) => r.state,
        Err(e) => panic!("HTTP {status} {body} gave {e:?}"),
    }
}

fn kind_of(status: u16, body: &str) -> TransientKind {
    match parse_status(status, body.as_bytes()) {
        Err(StatusError::Transient { kind, detail }) => {
            assert!(
                !detail.contains(SECRET_ISH) && !detail.contains('{'),
                "detail leaks body: {detail}"
            );
            kind
        }
        other => panic!("HTTP {status} {body:?} gave {other:?}"),
    }
}

#[test]
fn success_carries_merchant_amount_and_transaction() {
    let r = parse_status(200, success_body("49900", "COMPLETED").as_bytes()).unwrap();
    assert_eq!(
        r,
        StatusReport {
            code: "PAYMENT_SUCCESS".into(),
            state: PaymentState::Completed,
            merchant_id: Some("MERCHANTUAT".into()),
            amount: Some(Paise(49900)),
            transaction_id: Some("T2311".into()),
        }
    );
}

#[test]
fn every_documented_business_code() {
    let cases = [
        ("PAYMENT_ERROR", Some("FAILED"), PaymentState::Failed),
        ("PAYMENT_DECLINED", Some("FAILED"), PaymentState::Failed),
        ("TIMED_OUT", Some("FAILED"), PaymentState::Failed),
        ("PAYMENT_ERROR", None, PaymentState::Failed),
        ("TIMED_OUT", None, PaymentState::Failed),
        ("PAYMENT_PENDING", Some("PENDING"), PaymentState::Pending),
        ("PAYMENT_PENDING", None, PaymentState::Pending),
        ("TRANSACTION_NOT_FOUND", None, PaymentState::NotFound),
    ];
    for (code, state, expected) in cases {
        assert_eq!(state_of(200, &coded(code, state)), expected, "{code} {state:?}");
    }
    let failed = parse_status(200, coded("PAYMENT_DECLINED", Some("FAILED")).as_bytes()).unwrap();
    assert_eq!(failed.code, "PAYMENT_DECLINED");
    assert_eq!(failed.amount, Some(Paise(49900)));
    // Whatever HTTP status PhonePe uses for "not found", the code decides.
    for status in [200, 400, 404] {
        let body = r#"{"success":false,"code":"TRANSACTION_NOT_FOUND","message":"No transaction","data":{}}"#;
        assert_eq!(state_of(status, body), PaymentState::NotFound, "HTTP {status}");
    }
}

#[test]
fn success_flag_is_ignored() {
    let body = success_body("49900", "COMPLETED").replace(r#""success":true"#, r#""success":false"#);
    assert_eq!(state_of(200, &body), PaymentState::Completed);
    let body = coded("PAYMENT_ERROR", Some("FAILED")).replace(r#""success":false"#, r#""success":true"#);
    assert_eq!(state_of(200, &body), PaymentState::Failed);
}

#[test]
fn rate_limits() {
    let documented =
        r#"{"success":false,"code":"TOO_MANY_REQUESTS","message":"Too many requests. Please try again.","data":{}}"#;
    for (status, body) in [
        (429, documented),
        (429, ""),
        (429, "<html>slow down</html>"),
        (200, documented),
    ] {
        assert_eq!(
            parse_status(status, body.as_bytes()),
            Err(StatusError::RateLimited),
            "{status} {body:?}"
        );
    }
}

#[test]
fn rejections() {
    let cases = [
        (
            401,
            r#"{"success":false,"code":"AUTHORIZATION_FAILED","message":"Key not found"}"#,
            "AUTHORIZATION_FAILED",
        ),
        (401, "", "AUTHORIZATION_FAILED"),
        (401, "<html>Unauthorized</html>", "AUTHORIZATION_FAILED"),
        (
            401,
            r#"{"success":false,"code":"PAYMENT_SUCCESS"}"#,
            "AUTHORIZATION_FAILED",
        ),
        (401, r#"{"success":false,"code":"BAD_REQUEST"}"#, "BAD_REQUEST"),
        (
            200,
            r#"{"success":false,"code":"AUTHORIZATION_FAILED","message":"x"}"#,
            "AUTHORIZATION_FAILED",
        ),
        (
            400,
            r#"{"success":false,"code":"AUTHORIZATION_FAILED","message":"x"}"#,
            "AUTHORIZATION_FAILED",
        ),
    ];
    for (status, body, code) in cases {
        assert_eq!(
            parse_status(status, body.as_bytes()),
            Err(StatusError::Rejected {
                code: code.into(),
                http_status: status
            }),
            "{status} {body:?}"
        );
    }
}

#[test]
fn bad_request_not_on_a_401_refuses_one_transaction_only() {
    for status in [400, 200, 404] {
        let body = r#"{"success":false,"code":"BAD_REQUEST","message":"Please check the inputs you have provided."}"#;
        let e = parse_status(status, body.as_bytes()).unwrap_err();
        assert_eq!(
            e,
            StatusError::Refused {
                code: "BAD_REQUEST".into(),
                http_status: status
            },
            "HTTP {status}"
        );
        assert_eq!(e.kind_label(), "refused");
        assert_eq!(e.code(), "BAD_REQUEST");
    }
}

#[test]
fn server_errors() {
    let ise = r#"{"success":false,"code":"INTERNAL_SERVER_ERROR","message":"There is an error"}"#;
    for (status, body) in [
        (500, ise),
        (500, "<html><body>500 Internal Server Error</body></html>"),
        (502, ""),
        (503, r#"{"success":true,"code":"PAYMENT_SUCCESS"}"#),
        (504, "gateway timeout"),
        (200, ise),
    ] {
        assert_eq!(kind_of(status, body), TransientKind::Server, "{status} {body:?}");
    }
}

#[test]
fn unknown_codes() {
    for body in [
        r#"{"success":false,"code":"PAYMENT_INITIATED","message":"m"}"#,
        r#"{"success":true,"code":"SOMETHING_NEW","data":{"state":"COMPLETED","amount":1,"merchantId":"M"}}"#,
        r#"{"success":false,"code":"customer@ybl paid","message":"m"}"#,
    ] {
        assert_eq!(kind_of(200, body), TransientKind::UnknownCode, "{body}");
    }
    match parse_status(200, br#"{"code":"NEW_CODE"}"#) {
        Err(StatusError::Transient { detail, .. }) => assert!(detail.contains("NEW_CODE"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_bodies_are_never_acted_on() {
    let no_data = r#"{"success":true,"code":"PAYMENT_SUCCESS","message":"m"}"#;
    let no_amount = r#"{"success":true,"code":"PAYMENT_SUCCESS","data":{"merchantId":"M","state":"COMPLETED"}}"#;
    let no_merchant = r#"{"success":true,"code":"PAYMENT_SUCCESS","data":{"amount":100,"state":"COMPLETED"}}"#;
    let empty_merchant =
        r#"{"success":true,"code":"PAYMENT_SUCCESS","data":{"merchantId":"","amount":100,"state":"COMPLETED"}}"#;
    let no_state = r#"{"success":true,"code":"PAYMENT_SUCCESS","data":{"merchantId":"M","amount":100}}"#;
    let data_string = r#"{"success":true,"code":"PAYMENT_SUCCESS","data":"COMPLETED"}"#;
    let cases: Vec<(u16, String)> = vec![
        (200, String::new()),
        (200, "   ".into()),
        (200, "<html><body>Service Unavailable</body></html>".into()),
        (200, "null".into()),
        (200, "[]".into()),
        (200, r#""PAYMENT_SUCCESS""#.into()),
        (200, "{}".into()),
        (200, r#"{"success":true}"#.into()),
        (200, r#"{"success":true,"code":42}"#.into()),
        (200, r#"{"success":true,"code":null}"#.into()),
        (200, r#"{"success":true,"code":"PAYMENT_SUCCESS""#.into()),
        (200, success_body(r#""49900""#, "COMPLETED")),
        (200, success_body("499.5", "COMPLETED")),
        (200, success_body("49900.0", "COMPLETED")),
        (200, success_body("1e3", "COMPLETED")),
        (200, success_body("18446744073709551615", "COMPLETED")),
        (200, success_body("null", "COMPLETED")),
        (200, success_body("49900", "PENDING")),
        (200, success_body("49900", "FAILED")),
        (200, success_body("49900", "completed")),
        (200, no_data.into()),
        (200, no_amount.into()),
        (200, no_merchant.into()),
        (200, empty_merchant.into()),
        (200, no_state.into()),
        (200, data_string.into()),
        (200, coded("PAYMENT_ERROR", Some("COMPLETED"))),
        (200, coded("PAYMENT_DECLINED", Some("PENDING"))),
        (200, coded("PAYMENT_PENDING", Some("COMPLETED"))),
        (200, coded("PAYMENT_PENDING", Some("FAILED"))),
        (404, success_body("49900", "COMPLETED")),
        (400, coded("PAYMENT_ERROR", Some("FAILED"))),
        (302, "<html>moved</html>".into()),
        (403, "<html>Forbidden</html>".into()),
    ];
    for (status, body) in cases {
        assert_eq!(kind_of(status, &body), TransientKind::Malformed, "HTTP {status} {body}");
    }
}

#[test]
fn details_say_what_was_wrong() {
    let detail = |status: u16, body: &str| match parse_status(status, body.as_bytes()) {
        Err(StatusError::Transient { detail, .. }) => detail,
        other => panic!("{other:?}"),
    };
    assert_eq!(detail(200, "<html>"), "HTTP 200 body is not JSON");
    assert_eq!(
        detail(200, r#"{"success":true,"code":"PAYMENT_SUCCESS","message":"m"}"#),
        "PAYMENT_SUCCESS without data.state"
    );
    assert_eq!(
        detail(200, &success_body(r#""49900""#, "COMPLETED")),
        "PAYMENT_SUCCESS with data.amount that is not a number"
    );
    assert_eq!(
        detail(200, &coded("PAYMENT_ERROR", Some("COMPLETED"))),
        "PAYMENT_ERROR with data.state contradicting it"
    );
    assert_eq!(detail(503, ""), "HTTP 503");
}

#[test]
fn the_stored_excerpt_names_the_problem_never_values_and_stays_short() {
    let bodies = [
        success_body(r#""49900""#, "COMPLETED"),
        r#"{"success":false,"code":"customer@ybl paid","message":"m"}"#.to_string(),
        format!(r#"{{"success":true,"code":"{}"}}"#, "X".repeat(500)),
        format!("<html>{SECRET_ISH} {}</html>", "y".repeat(500)),
    ];
    for body in bodies {
        let e = parse_status(200, body.as_bytes()).unwrap_err();
        let excerpt = e.excerpt();
        assert!(e.is_unreadable(), "{e:?}");
        assert!(excerpt.chars().count() <= 200, "{excerpt}");
        assert!(
            !excerpt.contains(SECRET_ISH) && !excerpt.contains("49900") && !excerpt.contains('{'),
            "{excerpt}"
        );
    }
    let e = parse_status(200, success_body(r#""49900""#, "COMPLETED").as_bytes()).unwrap_err();
    assert_eq!(
        e.excerpt(),
        "malformed: PAYMENT_SUCCESS with data.amount that is not a number"
    );
}

#[test]
fn answer_about_another_transaction_is_refused() {
    let body = success_body("49900", "COMPLETED");
    assert!(parse_status_for(200, body.as_bytes(), "ORD-1001").is_ok());
    assert_eq!(
        parse_status_for(200, body.as_bytes(), "ORD-2002").map_err(|e| e.kind_label()),
        Err("malformed")
    );
    // Absent merchantTransactionId is fine (PhonePe does not promise it on every code).
    assert!(parse_status_for(200, coded("PAYMENT_PENDING", None).as_bytes(), "ORD-2002").is_ok());
}

#[test]
fn only_code_like_strings_are_shown_in_details() {
    let shown = |code: &str| loggable_code(code) == code;
    assert!(shown("PAYMENT_2FA_REQUIRED"), "uppercase, digits and underscores");
    assert!(shown(&"A".repeat(64)), "64 characters");
    assert!(!shown(&"A".repeat(65)), "65 characters");
    assert!(!shown(""), "empty");
    assert!(!shown("payment_success"), "lowercase");
    assert!(!shown("A-B"), "a dash");
    assert!(!shown("A B"), "a space");
    match parse_status(200, br#"{"code":""}"#) {
        Err(StatusError::Transient {
            kind: TransientKind::UnknownCode,
            detail,
        }) => assert_eq!(detail, "undocumented code (not shown: not a code-like string)"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_found_keeps_what_its_data_says() {
    let body = r#"{"success":false,"code":"TRANSACTION_NOT_FOUND","message":"m",
        "data":{"merchantId":"MERCHANTUAT","transactionId":"T7","amount":100}}"#;
    assert_eq!(
        parse_status(404, body.as_bytes()).unwrap(),
        StatusReport {
            code: "TRANSACTION_NOT_FOUND".into(),
            state: PaymentState::NotFound,
            merchant_id: Some("MERCHANTUAT".into()),
            amount: Some(Paise(100)),
            transaction_id: Some("T7".into()),
        }
    );
    // No data at all: the code alone decides, nothing else is invented.
    let bare = parse_status(200, coded("TRANSACTION_NOT_FOUND", None).as_bytes()).unwrap();
    assert_eq!((bare.merchant_id, bare.amount, bare.transaction_id), (None, None, None));
}
