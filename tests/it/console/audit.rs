//! What a hostile audit of the console found (issue 26), each proved against the real binary
//! with outcomes in MongoDB and the simulator: another site's page posting to the console (the
//! login form included), a confirmation page left open while the order changed, an action cut
//! short by a closed tab, idle connections starving the service beside the console.

use std::time::Duration;

use phonepe_sim::Answer;
use reqwest::header::CONTENT_TYPE;

use super::http::{encode, Client, Reply};
use super::{parked_paid, serve, sessions, users, ASHA, RAVI, WAIT};
use crate::support::{eventually, free_port, http_get, wait_for_port, Running, World};

/// What these tests (and `http.rs`'s actions) need of a client beyond its basics.
impl Client<'_> {
    /// The value of the hidden field `name` in the page at `path`.
    pub fn hidden(&self, path: &str, name: &str) -> String {
        let page = self.get(path).body;
        let field = format!("name=\"{name}\" value=\"");
        let at = page
            .find(&field)
            .unwrap_or_else(|| panic!("a {name} field in {path}: {page}"))
            + field.len();
        page[at..].split('"').next().expect("value").to_string()
    }

    /// Confirm `action` on `mtid` as its confirmation page would: this session's token and
    /// the state the page was drawn from (read now), and `extra` fields.
    pub fn act(&self, mtid: &str, action: &str, extra: &[(&str, &str)]) -> Reply {
        let path = format!("/orders/{mtid}/{action}");
        let (csrf, seen) = (self.csrf(), self.hidden(&path, "seen"));
        let mut form = vec![("csrf", csrf.as_str()), ("seen", seen.as_str())];
        form.extend_from_slice(extra);
        self.post(&path, &form)
    }

    /// A POST with extra headers (what a browser says about where the form comes from).
    pub fn post_with(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(form));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req)
    }

    /// A POST whose client closes the connection once `until` holds (a tab closed mid-way), on
    /// a plain socket so the close really reaches the server then.
    pub fn post_and_leave(&self, path: &str, form: &[(&str, &str)], until: impl FnMut() -> bool) {
        use std::io::Write;
        let host = self.base.trim_start_matches("http://").to_string();
        let body = encode(form);
        let cookie = self.cookie.clone().unwrap_or_default();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut socket = std::net::TcpStream::connect(&host).expect("connect");
        socket.write_all(request.as_bytes()).expect("send");
        eventually(WAIT, "the moment to leave", until);
        drop(socket);
    }
}

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

/// Anyone who can reach the console's port opens idle connections that never finish a request
/// (slowloris). Unbounded, they took every file descriptor of the process (here limited to 128,
/// as a service manager's default 1024 would be with more of them), and the reconciler in the
/// same process could no longer reach PhonePe: a paid draft stayed unsettled. The console now
/// serves a bounded number of connections; the service keeps settling.
#[test]
fn idle_connections_to_the_console_cannot_starve_the_reconciler_beside_it() {
    let w = World::new("console_idle_flood");
    let port = free_port();
    let users = users();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("RECONCILER_CONSOLE__LISTEN", listen.as_str()),
        ("RECONCILER_CONSOLE__USERS", users),
        ("RECONCILER_CONSOLE__SECURE_COOKIES", "false"),
    ];
    let _service = settles_through_a_flood(&w, port, &env, (128, 190));
    // And the console serves again once the connections are gone.
    let mut a = Client::new(&w, &super::Console::at(port));
    eventually(WAIT, "a sign-in works", || a.login(ASHA).status == 303);
}

/// The same flood on the webhook's listener, the one a shop exposes to the internet: the
/// reconciler beside it goes on settling, and callbacks are answered again once it is over.
#[test]
fn idle_connections_to_the_webhook_cannot_starve_the_reconciler_beside_it() {
    let w = World::new("webhook_idle_flood");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [("RECONCILER_WEBHOOK__LISTEN", listen.as_str())];
    // The webhook serves 100 connections: 220 idle ones are more than 192 descriptors.
    let _service = settles_through_a_flood(&w, port, &env, (192, 220));
    let answered = || http_get(port, "/webhooks/phonepe").map(|(status, _)| status);
    eventually(WAIT, "the webhook answers again", || answered() == Some(405));
}

/// `run` with `fds` descriptors and `env` (a listener on `port`), `flood` idle connections to
/// that port, then a paid draft: it is confirmed while the connections stay open. The
/// connections are closed on return; the service runs until the returned guard is dropped.
fn settles_through_a_flood(w: &World, port: u16, env: &[(&str, &str)], (fds, flood): (u32, usize)) -> Running {
    w.insert_product("tee", 5);
    let base = w.reconciler_command(&["run"]);
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$@\""))
        .arg("sh")
        .arg(base.get_program())
        .args(base.get_args())
        .env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.envs(env.iter().copied())
        .env("RECONCILER_JOB__INTERVAL_SECS", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let service = Running(c.spawn().expect("start draft-reconciler run"));
    wait_for_port(port, WAIT);
    // `flood` connections, each a request's first line and nothing more: more than the process
    // has descriptors to spare, fewer than the listener serves plus the kernel's queue of 128
    // (past it a connect would wait for the kernel's retries).
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let idle: Vec<std::net::TcpStream> = (0..flood)
        .filter_map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").ok()?;
            Some(s)
        })
        .collect();
    assert!(
        idle.len() >= flood - flood / 5,
        "the connections were made: {}",
        idle.len()
    );
    w.insert_order("FL-1", 49900, 600, &[("tee", 1, None)]);
    w.sim.script("FL-1", vec![Answer::completed(49900)]);
    eventually(
        WAIT,
        "the paid draft is settled while the connections stay open",
        || w.status("FL-1") == ("confirmed".into(), "paid".into()),
    );
    assert_eq!(w.product("tee").get_i64("stock").ok(), Some(4));
    drop(idle);
    service
}

/// An operator's password is reset (a new hash in `console.users`, the service restarted):
/// the sessions opened with the old password end, as they would for a removed name; another
/// operator's session lives on.
#[test]
fn a_password_reset_ends_the_sessions_opened_with_the_old_password() {
    let w = World::new("console_reset");
    let first = serve(&w);
    let (mut a, mut r) = (Client::new(&w, &first), Client::new(&w, &first));
    assert_eq!((a.login(ASHA).status, r.login(RAVI).status), (303, 303));
    let (old_a, old_r) = (a.cookie.clone(), r.cookie.clone());
    drop(first);
    let new_hash = draft_reconciler::console::password::hash("asha's new password").expect("hash");
    let others: Vec<&str> = users().split_whitespace().filter(|u| !u.starts_with("asha:")).collect();
    let reset = format!("asha:{new_hash} {}", others.join(" "));
    let second = super::start(&w, &["console", "serve"], &[("RECONCILER_CONSOLE__USERS", &reset)]);
    let (mut a, mut r) = (Client::new(&w, &second), Client::new(&w, &second));
    a.cookie = old_a;
    r.cookie = old_r;
    let stale = a.get("/");
    assert_eq!(stale.status, 303, "the old password's session is over: {}", stale.body);
    assert_eq!(r.get("/").status, 200, "the other operator's session lives on");
    let left: Vec<_> = sessions(&w)
        .iter()
        .filter_map(|s| s.get_str("user").ok().map(str::to_string))
        .collect();
    assert_eq!(left, vec!["ravi".to_string()], "the ended session is deleted");
    assert_eq!(a.login(("asha", "asha's new password")).status, 303);
}
