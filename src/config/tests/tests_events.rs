//! Unit tests of `[events]` and `[notify]`: defaults, the secret required with a URL and checked
//! at start, lists of waits from a variable, and the secrets never printed.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{err, load};

/// A valid Standard Webhooks secret (32 bytes of key), easy to grep for.
const SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFi";
const SLACK: &str = "https://hooks.slack.com/services/T000/B000/s3cretPATHpart";

#[test]
fn events_are_recorded_but_not_sent_by_default() {
    let s = load(&[]).expect("defaults are valid");
    let e = &s.events;
    assert_eq!((e.url.as_deref(), e.secret.is_none()), (None, true));
    assert_eq!(
        (e.timeout, e.poll, e.retry_for_hours),
        (Duration::from_secs(10), Duration::from_secs(1), 72)
    );
    let waits: Vec<u64> = e.retry.iter().map(Duration::as_secs).collect();
    assert_eq!(waits, [5, 30, 120, 600, 1800, 3600]);
    assert_eq!(e.window(), Duration::from_secs(72 * 3600));
    assert!(s.notify.slack_url.is_none());
}

#[test]
fn a_url_needs_a_secret_and_the_error_says_which_variable_to_set() {
    let e = err(&[("RECONCILER_EVENTS__URL", "https://shop.example/hooks/reconciler")]);
    assert_eq!(e.key(), Some("events.secret"));
    assert!(e.to_string().contains("RECONCILER_EVENTS__SECRET"), "{e}");
    let s = load(&[
        ("RECONCILER_EVENTS__URL", "https://shop.example/hooks/reconciler"),
        ("RECONCILER_EVENTS__SECRET", SECRET),
    ])
    .expect("valid");
    assert_eq!(s.events.url.as_deref(), Some("https://shop.example/hooks/reconciler"));
    assert_eq!(s.events.secret.as_ref().map(|k| k.expose_secret()), Some(SECRET));
}

#[test]
fn a_bad_secret_or_url_stops_the_start_without_being_quoted() {
    let secret_like = "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFi";
    let e = err(&[("RECONCILER_EVENTS__SECRET", secret_like)]);
    assert_eq!(e.key(), Some("events.secret"));
    assert!(e.to_string().contains("must start with whsec_"), "{e}");
    assert!(!e.to_string().contains(secret_like), "{e}");
    let e = err(&[("RECONCILER_EVENTS__SECRET", "whsec_c2hvcnQ=")]);
    assert!(e.to_string().contains("24 to 64 bytes"), "{e}");
    let e = err(&[("RECONCILER_EVENTS__URL", "shop.example/hooks")]);
    assert_eq!(e.key(), Some("events.url"));
    assert!(e.to_string().contains("must start with http:// or https://"), "{e}");
    let e = err(&[(
        "RECONCILER_NOTIFY__SLACK_URL",
        "hooks.slack.com/services/T000/B000/s3cretPATHpart",
    )]);
    assert_eq!(e.key(), Some("notify.slack_url"));
    assert!(!e.to_string().contains("s3cretPATHpart"), "{e}");
}

#[test]
fn waits_come_as_a_list_or_as_text_and_none_is_zero() {
    let s = load(&[("RECONCILER_EVENTS__RETRY_SECS", "[1, 2,3]")]).expect("valid");
    let waits: Vec<u64> = s.events.retry.iter().map(Duration::as_secs).collect();
    assert_eq!(waits, [1, 2, 3]);
    for text in ["1 2 3", "1,2,3", "\"1\",\"2\",\"3\"", "[\"1\", 2, 3]"] {
        let s = load(&[("RECONCILER_EVENTS__RETRY_SECS", text)]).expect(text);
        assert_eq!(
            s.events.retry.iter().map(Duration::as_secs).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }
    let huge = ["[5, 315360001]", "18446744073709551615", "[1, 2"];
    for bad in ["", "[]", "[1, 0]", "[1, soon]", "-1"].into_iter().chain(huge) {
        let e = err(&[("RECONCILER_EVENTS__RETRY_SECS", bad)]);
        assert_eq!(e.key(), Some("events.retry_secs"), "{bad}: {e}");
        let why = ["list of whole seconds", "must be at most 315360000 (ten years)"];
        assert!(why.iter().any(|w| e.to_string().contains(w)), "{bad}: {e}");
    }
    let e = err(&[("RECONCILER_EVENTS__RETRY_FOR_HOURS", "0")]);
    assert_eq!(e.key(), Some("events.retry_for_hours"));
}

#[test]
fn the_secret_and_the_slack_url_are_never_printed() {
    let s = load(&[
        ("RECONCILER_EVENTS__URL", "https://shop.example/hooks/reconciler"),
        ("RECONCILER_EVENTS__SECRET", SECRET),
        ("RECONCILER_NOTIFY__SLACK_URL", SLACK),
    ])
    .expect("valid");
    assert_eq!(s.notify.slack_url.as_ref().map(|u| u.expose_secret()), Some(SLACK));
    let out = s.redacted_toml();
    assert!(!out.contains("c2VjcmV0LWtleS1mb3ItdGVzdHMt"), "{out}");
    assert!(
        !out.contains("s3cretPATHpart") && !out.contains("hooks.slack.com"),
        "{out}"
    );
    assert!(
        out.contains("secret = \"***\"") && out.contains("slack_url = \"***\""),
        "{out}"
    );
    assert!(out.contains("url = \"https://shop.example/hooks/reconciler\""), "{out}");
    assert!(!format!("{s:?}").contains("s3cretPATHpart"), "Debug redacts too");
}

#[test]
fn a_password_in_the_events_url_is_never_printed() {
    let s = load(&[
        (
            "RECONCILER_EVENTS__URL",
            "https://shopuser:SHOPPASS@shop.example/hooks?token=T0KEN&x=1",
        ),
        ("RECONCILER_EVENTS__SECRET", SECRET),
    ])
    .expect("valid");
    let out = s.redacted_toml();
    assert!(!out.contains("SHOPPASS") && !out.contains("T0KEN"), "{out}");
    assert!(
        out.contains("url = \"https://shopuser:***@shop.example/hooks?token=***&x=1\""),
        "{out}"
    );
}
