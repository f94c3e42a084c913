//! What a hostile audit of the console found (issue 26), each proved against the real binary
//! with outcomes in MongoDB and the simulator: another site's page posting to the console (the
//! login form included), a confirmation page left open while the order changed, an action cut
//! short by a closed tab.

use phonepe_sim::Answer;

use super::http::Client;
use super::{parked_paid, serve, sessions, ASHA, RAVI, WAIT};
use crate::support::{eventually, World};

fn refund_id(mtid: &str, attempt: i64) -> String {
    draft_reconciler::store::refunds::refund_id(mtid, attempt)
}

/// Login CSRF: an attacker's page that posts the attacker's own name and password to `/login`
/// would sign the victim's browser in as the attacker. Every POST from another site is refused
/// before it is read; the console's own forms (same-origin) and non-browser clients still work.
#[test]
fn a_post_from_another_sites_page_is_refused_the_login_form_included() {
    let w = World::new("console_cross_site");
    parked_paid(&w, "XS-1", 0);
    let console = serve(&w);
    let host = format!("127.0.0.1:{}", console.port);
    let own_origin = format!("http://{host}");
    let login = [("name", RAVI.0), ("password", RAVI.1)];
    let mut victim = Client::new(&w, &console);
    for headers in [
        vec![("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "https://evil.127.0.0.1.nip.io"),
        ],
        // A browser without Sec-Fetch-Site still names the page's origin.
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
    ] {
        let r = victim.post_with("/login", &login, &headers);
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
        assert!(r.headers.get("set-cookie").is_none(), "{headers:?}: no session cookie");
        assert!(r.body.contains("nothing was done"), "{}", r.body);
    }
    assert!(sessions(&w).is_empty(), "nobody was signed in");

    // The console's own form, as a browser posts it, signs in.
    let r = victim.post_with(
        "/login",
        &[("name", ASHA.0), ("password", ASHA.1)],
        &[("sec-fetch-site", "same-origin"), ("origin", own_origin.as_str())],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    victim.cookie = r
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    assert_eq!(victim.get("/").status, 200);

    // A signed-in operator's action from another site's page is refused too, token or not.
    let before = w.order("XS-1");
    let (csrf, seen) = (victim.csrf(), victim.hidden("/orders/XS-1/refund", "seen"));
    let form = [("csrf", csrf.as_str()), ("seen", seen.as_str())];
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "https://evil.example")],
    ] {
        let r = victim.post_with("/orders/XS-1/refund", &form, &headers);
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
        let r = victim.post_with("/logout", &[("csrf", csrf.as_str())], &headers);
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
    }
    assert_eq!(w.order("XS-1"), before, "nothing written");
    assert_eq!(
        w.sim.state().refund_requests(&refund_id("XS-1", 1)),
        0,
        "PhonePe never asked"
    );
    assert_eq!(sessions(&w).len(), 1, "still signed in");
    // The same form from the console's own page acts.
    let r = victim.post_with("/orders/XS-1/refund", &form, &[("sec-fetch-site", "same-origin")]);
    assert!(r.body.contains("Done."), "{}", r.body);
    assert_eq!(w.sim.state().refund_requests(&refund_id("XS-1", 1)), 1);
}

/// An operator opens the refund confirmation; meanwhile another operator's refund is refused by
/// PhonePe and the order is parked again as `refund_failed` (the other operator may now be
/// closing it with a note about a bank transfer). The first operator's confirm, from the page
/// drawn before, must not start a second refund: it is refused and nothing is asked or written.
#[test]
fn a_confirmation_page_left_open_while_the_order_changed_runs_nothing() {
    let w = World::new("console_stale_confirm");
    parked_paid(&w, "ST-1", 0);
    let console = serve(&w);
    let (mut a, mut r) = (Client::new(&w, &console), Client::new(&w, &console));
    assert_eq!((a.login(ASHA).status, r.login(RAVI).status), (303, 303));
    let stale = a.hidden("/orders/ST-1/refund", "seen");
    w.sim
        .state()
        .refuse_refund(&refund_id("ST-1", 1), "REVERSAL_WINDOW_EXCEEDED");
    let other = r.act("ST-1", "refund", &[]);
    assert!(other.body.contains("Refused:"), "{}", other.body);
    assert_eq!(w.reason("ST-1").as_deref(), Some("refund_failed"));
    let before = w.order("ST-1");

    let csrf = a.csrf();
    let late = a.post(
        "/orders/ST-1/refund",
        &[("csrf", csrf.as_str()), ("seen", stale.as_str())],
    );
    assert_eq!(late.status, 409, "{}", late.body);
    assert!(
        late.body.contains("changed since this confirmation page was opened"),
        "{}",
        late.body
    );
    let missing = a.post("/orders/ST-1/refund", &[("csrf", csrf.as_str())]);
    assert_eq!(
        missing.status, 409,
        "a form without the state it was drawn from: {}",
        missing.body
    );
    assert_eq!(w.order("ST-1"), before, "nothing written");
    assert_eq!(
        w.sim.state().refund_requests(&refund_id("ST-1", 2)),
        0,
        "no second refund asked of PhonePe"
    );
    // Drawn again, the page shows the new state and its confirm acts.
    let fresh = a.act("ST-1", "refund", &[]);
    assert!(fresh.body.contains("Done."), "{}", fresh.body);
    assert_eq!(w.sim.state().refund_requests(&refund_id("ST-1", 2)), 1);
}

/// The operator confirms a refund and closes the tab while PhonePe is slow to answer: the
/// request's handler is dropped with the connection, but the action must run to its end (the
/// refund asked for and recorded), never stop between two of its steps.
#[test]
fn an_action_runs_to_its_end_when_the_operator_closes_the_tab_mid_way() {
    let w = World::new("console_tab_closed");
    parked_paid(&w, "TC-1", 0);
    let console = serve(&w);
    let mut a = Client::new(&w, &console);
    assert_eq!(a.login(ASHA).status, 303);
    let (csrf, seen) = (a.csrf(), a.hidden("/orders/TC-1/refund", "seen"));
    let slow = Answer {
        delay_ms: Some(5000),
        ..Answer::completed(49900)
    };
    w.sim.script("TC-1", vec![slow]);
    let asked_before = status_calls(&w, "TC-1");
    // The tab is closed while PhonePe takes its time to answer the action's status call.
    a.post_and_leave(
        "/orders/TC-1/refund",
        &[("csrf", csrf.as_str()), ("seen", seen.as_str())],
        || status_calls(&w, "TC-1") > asked_before,
    );
    eventually(WAIT, "the refund is asked for and recorded", || {
        w.sim.state().refund_requests(&refund_id("TC-1", 1)) == 1 && w.status("TC-1").1 != "paid"
    });
    let asked = w
        .history("TC-1")
        .into_iter()
        .filter(|h| h.get_str("reason").ok() == Some("refund_requested"))
        .count();
    assert_eq!(asked, 1, "recorded once");
}

fn status_calls(w: &World, mtid: &str) -> usize {
    w.sim
        .state()
        .calls()
        .iter()
        .filter(|c| c.merchant_transaction_id == mtid)
        .count()
}
