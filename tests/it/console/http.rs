//! The console's HTTP contract without a browser: CSRF, sessions (forged, expired, ended),
//! logout, the answers to what is not documented, the cookie, throttled logins and the metrics.

use draft_reconciler::store::events;
use mongodb::bson::{doc, DateTime};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use sha2::{Digest, Sha256};

use super::{event_types, last_history, parked_paid, serve, sessions, start, Console, ASHA, RAVI, WAIT};
use crate::support::{eventually, free_port, http_get, wait_for_port, World};

/// One answer.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }
}

/// A browser-less client of one console: its own cookie, no redirects followed.
pub struct Client<'w> {
    w: &'w World,
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub cookie: Option<String>,
}

pub(super) fn encode(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encoding for a form value (every byte but unreserved ones).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl<'w> Client<'w> {
    pub fn new(w: &'w World, console: &Console) -> Client<'w> {
        let http = w
            .block(async { reqwest::Client::builder().redirect(Policy::none()).build() })
            .expect("client");
        Client {
            w,
            base: console.base.clone(),
            http,
            cookie: None,
        }
    }

    pub(super) fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        self.try_send(req).expect("request")
    }

    /// The reply, or `None` when the connection broke before one was read.
    fn try_send(&self, req: reqwest::RequestBuilder) -> Option<Reply> {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        self.w.block(async {
            let r = req.send().await.ok()?;
            let (status, headers) = (r.status().as_u16(), r.headers().clone());
            Some(Reply {
                status,
                headers,
                body: r.text().await.ok()?,
            })
        })
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(form));
        self.send(req)
    }

    /// Sign in; on success the session cookie is kept.
    pub fn login(&mut self, (name, password): (&str, &str)) -> Reply {
        let r = self.post("/login", &[("name", name), ("password", password)]);
        if let Some(set) = r.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()) {
            self.cookie = set.split(';').next().map(str::to_string);
        }
        r
    }

    /// This session's CSRF token, from the form every page carries.
    pub fn csrf(&self) -> String {
        self.hidden("/", "csrf")
    }
}

fn refund_id(mtid: &str) -> String {
    draft_reconciler::store::refunds::refund_id(mtid, 1)
}

#[test]
fn a_post_without_or_with_a_stale_csrf_token_is_refused_and_writes_nothing() {
    let w = World::new("console_csrf");
    parked_paid(&w, "CS-1", 0);
    let console = serve(&w);
    let mut old = Client::new(&w, &console);
    assert_eq!(old.login(ASHA).status, 303);
    let stale = old.csrf();
    let mut a = Client::new(&w, &console);
    assert_eq!(a.login(ASHA).status, 303);
    let fresh = a.csrf();
    assert_ne!(stale, fresh, "one token per session");
    let before = w.order("CS-1");
    let short = &fresh[..fresh.len() - 1];
    for form in [
        vec![("note", "no token")],
        vec![("csrf", stale.as_str())],
        vec![("csrf", "")],
        vec![("csrf", short)],
    ] {
        let r = a.post("/orders/CS-1/refund", &form);
        assert_eq!(r.status, 403, "{form:?}: {}", r.body);
        assert!(r.body.contains("nothing was done"), "{}", r.body);
    }
    let r = a.post("/logout", &[("csrf", stale.as_str())]);
    assert_eq!(r.status, 403, "logout needs this session's token too");
    assert_eq!(a.get("/").status, 200, "still signed in");
    assert_eq!(w.order("CS-1"), before, "nothing written");
    assert_eq!(
        w.sim.state().refund_requests(&refund_id("CS-1")),
        0,
        "PhonePe never asked"
    );
    // The session's own token does act (the refused requests could have written).
    let r = a.act("CS-1", "refund", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Done."), "{}", r.body);
    assert_eq!(w.status("CS-1"), ("needs_review".into(), "refund_pending".into()));
    assert_eq!(w.sim.state().refund_requests(&refund_id("CS-1")), 1);
}

#[test]
fn forged_and_expired_session_ids_get_the_login_page_and_write_nothing() {
    let w = World::new("console_forged");
    parked_paid(&w, "CS-2", 0);
    let console = serve(&w);
    let before = w.order("CS-2");
    let mut forged = Client::new(&w, &console);
    for id in ["A".repeat(43), "x".into(), "a.b".into()] {
        forged.cookie = Some(format!("reconciler_console={id}"));
        for path in ["/", "/status", "/orders/CS-2", "/orders/CS-2/refund"] {
            let r = forged.get(path);
            assert_eq!((r.status, r.location()), (303, Some("/login")), "{path}");
        }
        let r = forged.post("/orders/CS-2/refund", &[("csrf", "whatever")]);
        assert_eq!((r.status, r.location()), (303, Some("/login")));
    }
    assert_eq!(w.order("CS-2"), before, "nothing written");

    let mut a = Client::new(&w, &console);
    assert_eq!(a.login(ASHA).status, 303);
    assert_eq!(a.get("/").status, 200);
    let csrf = a.csrf();
    // Idle for 13 hours (the TTL monitor may not have run: the read checks the time itself).
    let long_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 13 * 3600 * 1000);
    let coll =
        w.db.collection::<mongodb::bson::Document>(draft_reconciler::console::session::COLLECTION);
    let seen = a.hidden("/orders/CS-2/refund", "seen");
    w.block(coll.update_many(doc! {}, doc! { "$set": { "seenAt": long_ago } }))
        .expect("age the session");
    let r = a.post(
        "/orders/CS-2/refund",
        &[("csrf", csrf.as_str()), ("seen", seen.as_str())],
    );
    assert_eq!((r.status, r.location()), (303, Some("/login")), "{}", r.body);
    assert_eq!(a.get("/").location(), Some("/login"));
    assert!(sessions(&w).is_empty(), "the expired session is deleted when read");
    assert_eq!(w.order("CS-2"), before, "nothing written");
}

#[test]
fn logout_ends_the_session_for_every_copy_of_the_cookie() {
    let w = World::new("console_logout");
    let console = serve(&w);
    let mut a = Client::new(&w, &console);
    assert_eq!(a.login(ASHA).status, 303);
    let mut copy = Client::new(&w, &console);
    copy.cookie = a.cookie.clone();
    assert_eq!(copy.get("/").status, 200);
    assert_eq!(sessions(&w).len(), 1);
    let r = a.post("/logout", &[("csrf", a.csrf().as_str())]);
    assert_eq!((r.status, r.location()), (303, Some("/login")));
    let cleared = r
        .headers
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(sessions(&w).is_empty(), "logout deletes the session");
    assert_eq!(
        copy.get("/").location(),
        Some("/login"),
        "the cookie is dead everywhere"
    );
    assert_eq!(a.get("/status").location(), Some("/login"));
}

#[test]
fn the_listener_answers_only_what_it_documents() {
    let w = World::new("console_paths");
    parked_paid(&w, "CS-4", 0);
    let console = serve(&w);
    let mut a = Client::new(&w, &console);
    let csp = draft_reconciler::console::CONTENT_SECURITY_POLICY;
    let check = |r: &Reply, what: &str| {
        let h = |k: &str| r.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(h("content-security-policy"), csp, "{what}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(h("x-frame-options"), "DENY", "{what}");
        assert!(r.headers.get("server").is_none(), "no server banner: {what}");
        for leak in ["panicked", "RUST_BACKTRACE", "src/", "mongodb://", "MongoDB error"] {
            assert!(!r.body.contains(leak), "{what} leaks {leak}: {}", r.body);
        }
    };
    for path in [
        "/nope",
        "/orders",
        "/orders/",
        "/login/",
        "/.git/config",
        "/static/",
        "/index.html",
        "/console.css/x",
        "/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let r = a.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(r.body.contains("There is no page here."), "{path}: {}", r.body);
        assert_eq!(
            r.headers.get("cache-control").map(|v| v.to_str().unwrap_or("")),
            Some("no-store")
        );
        check(&r, path);
    }
    let css = a.get("/console.css");
    assert_eq!(css.status, 200);
    assert_eq!(
        css.headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("")),
        Some("text/css; charset=utf-8")
    );
    check(&css, "css");
    let put = a.send(a.http.put(format!("{}/", a.base)));
    assert_eq!(put.status, 405);
    check(&put, "PUT /");
    // A body over the limit is refused unread. The server answers and closes with the rest of
    // the body unread, so the client may see the connection reset before it reads the 400:
    // either is a refusal, and neither may sign anyone in.
    let huge = "x".repeat(64 * 1024);
    let req = a
        .http
        .post(format!("{}/login", a.base))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("name", "asha"), ("password", huge.as_str())]));
    if let Some(r) = a.try_send(req) {
        assert_eq!(r.status, 400, "a body over the limit is refused unread: {}", r.body);
        check(&r, "huge");
    }
    assert!(sessions(&w).is_empty(), "a refused body signs nobody in");
    let json = a.send(
        a.http
            .post(format!("{}/login", a.base))
            .header(CONTENT_TYPE, "application/json")
            .body("{\"name\":\"asha\"}"),
    );
    assert_eq!(json.status, 400);
    check(&json, "json login");

    assert_eq!(a.login(ASHA).status, 303);
    let r = a.get("/orders/NOPE-1");
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("No order has this merchantTransactionId."),
        "{}",
        r.body
    );
    check(&r, "unknown order");
    for path in ["/orders/CS-4/burn", "/orders/CS-4/refund/x"] {
        assert_eq!(a.get(path).status, 404, "{path}");
        assert_eq!(a.post(path, &[("csrf", a.csrf().as_str())]).status, 404, "{path}");
    }
    let r = a.get("/?reason=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("<script>"), "{}", r.body);
    check(&r, "queue");
    // Plain HTTP on a port nobody configured: the ops listener is off in `console serve`.
    assert_eq!(http_get(console.port, "/metrics").map(|r| r.0), Some(404));
}

#[test]
fn the_queue_counts_each_reason_filters_by_one_and_lists_the_oldest_first() {
    let w = World::new("console_queue");
    // Three paid orders parked one after another; the last then under another reason.
    parked_paid(&w, "CQ-1", 0);
    for mtid in ["CQ-2", "CQ-3"] {
        w.insert_order(mtid, 49900, 600, &[("tee", 2, None)]);
        w.sim.script(mtid, vec![phonepe_sim::Answer::completed(49900)]);
        w.once();
        assert_eq!(w.reason(mtid).as_deref(), Some("insufficient_stock"));
    }
    w.update_order(
        doc! { "merchantTransactionId": "CQ-3" },
        doc! { "$set": { "reconciliation.reason": "phonepe_rejected" } },
    );
    let console = serve(&w);
    let mut a = Client::new(&w, &console);
    assert_eq!(a.login(ASHA).status, 303);
    let all = a.get("/");
    assert_eq!(all.status, 200);
    for count in ["All (3)", "insufficient_stock (2)", "phonepe_rejected (1)"] {
        assert!(all.body.contains(count), "{count}: {}", all.body);
    }
    let at = |body: &str, mtid: &str| body.find(&format!("/orders/{mtid}\"")).unwrap_or(usize::MAX);
    assert!(
        at(&all.body, "CQ-1") < at(&all.body, "CQ-2"),
        "oldest first: {}",
        all.body
    );
    assert!(at(&all.body, "CQ-3") < usize::MAX, "{}", all.body);
    let one = a.get("/?reason=phonepe_rejected");
    assert_eq!(one.status, 200);
    assert!(at(&one.body, "CQ-3") < usize::MAX, "{}", one.body);
    for other in ["CQ-1", "CQ-2"] {
        assert_eq!(at(&one.body, other), usize::MAX, "{other} is not shown: {}", one.body);
    }
    assert!(
        one.body.contains("All (3)"),
        "the counts stay those of every parked order"
    );
    let none = a.get("/?reason=merchant_mismatch");
    assert!(none.body.contains("Nothing is parked"), "{}", none.body);
}

#[test]
fn sessions_keep_only_a_hash_and_the_cookie_is_http_only_strict_and_secure_by_default() {
    let w = World::new("console_cookie");
    let console = start(
        &w,
        &["console", "serve"],
        &[("RECONCILER_CONSOLE__SECURE_COOKIES", "true")],
    );
    let mut a = Client::new(&w, &console);
    let r = a.login(RAVI);
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r
        .headers
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a cookie");
    let (pair, attributes) = set.split_once(';').expect("attributes");
    assert_eq!(attributes, " Path=/; HttpOnly; SameSite=Strict; Secure");
    let id = pair
        .strip_prefix("__Host-reconciler_console=")
        .expect("the __Host- name");
    assert_eq!(id.len(), 43, "256 bits, URL-safe base64");
    let stored = sessions(&w);
    assert_eq!(stored.len(), 1);
    let s = &stored[0];
    assert_eq!(
        s.get_str("_id").ok(),
        Some(hex::encode(Sha256::digest(id.as_bytes()))).as_deref()
    );
    assert_eq!(s.get_str("user").ok(), Some("ravi"));
    assert!(
        !format!("{s:?}").contains(id),
        "the id itself is nowhere in the database"
    );
    assert_eq!(a.get("/").status, 200, "the cookie works");
}

#[test]
fn wrong_passwords_are_slowed_unknown_names_alike_and_everything_is_counted() {
    let w = World::new("console_run");
    parked_paid(&w, "CS-6", 0);
    let ops = free_port();
    let console = start(&w, &["run"], &[("RECONCILER_OPS__LISTEN", &format!("127.0.0.1:{ops}"))]);
    wait_for_port(ops, WAIT);
    let mut a = Client::new(&w, &console);
    let unknown = a.login(("nobody", "guess"));
    let wrong = a.login((ASHA.0, "guess"));
    assert_eq!((unknown.status, wrong.status), (401, 401));
    assert!(unknown.body.contains("Wrong name or password.") && wrong.body.contains("Wrong name or password."));
    assert_eq!(a.login((ASHA.0, "guess 2")).status, 401);
    // Three failures from this address: two attempts at once, right away; at most one is let
    // through (the allowed one takes the next second), whatever this machine's speed.
    let (first, second) = {
        let (b, c) = (Client::new(&w, &console), Client::new(&w, &console));
        let form = |c: &Client| {
            c.http
                .post(format!("{}/login", c.base))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(encode(&[("name", ASHA.0), ("password", ASHA.1)]))
                .send()
        };
        w.block(async { futures_util::future::join(form(&b), form(&c)).await })
    };
    let statuses = [
        first.expect("first").status().as_u16(),
        second.expect("second").status().as_u16(),
    ];
    assert!(statuses.contains(&429), "{statuses:?}");
    let throttled = a.login(ASHA);
    if throttled.status == 429 {
        assert!(
            throttled.body.contains("Too many failed sign-ins"),
            "{}",
            throttled.body
        );
        assert!(throttled.headers.get("retry-after").is_some());
    }
    // The right password still works after the wait.
    eventually(WAIT, "the right password works after the wait", || {
        a.login(ASHA).status == 303
    });
    assert_eq!(a.get("/").status, 200);

    let done = a.act("CS-6", "refund", &[("note", "asked by phone")]);
    assert!(done.body.contains("Done."), "{}", done.body);
    // Refused from the stored state (no form on its page): the CLI's reason.
    let refused = a.post("/orders/CS-6/cancel", &[("csrf", a.csrf().as_str())]);
    assert!(
        refused.body.contains("Refused:") && refused.body.contains("a refund is pending"),
        "{}",
        refused.body
    );
    let h = last_history(&w, "CS-6");
    assert_eq!(
        (h.get_str("by").ok(), h.get_str("operator").ok()),
        (Some("operator"), Some("asha"))
    );
    assert_eq!(h.get_str("note").ok(), Some("asked by phone"));
    let status = a.get("/status").body;
    assert!(status.contains("running"), "inside run: {status}");

    let metrics = http_get(ops, "/metrics").expect("metrics").1;
    for line in [
        "reconciler_console_logins_total{result=\"wrong_password\"} 3",
        "reconciler_console_actions_total{action=\"refund\",result=\"done\"} 1",
        "reconciler_console_actions_total{action=\"cancel\",result=\"refused\"} 1",
        "reconciler_console_actions_total{action=\"fulfil\",result=\"error\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let count = |result: &str| {
        let prefix = format!("reconciler_console_logins_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count("throttled") >= 1 && count("ok") >= 1, "{metrics}");
    for secret in [ASHA.1, "guess", "$argon2id$"] {
        assert!(!metrics.contains(secret), "{secret} in metrics");
    }
}

#[test]
fn two_operators_on_one_order_one_wins_and_the_other_sees_why() {
    let w = World::new("console_two");
    parked_paid(&w, "CS-7", 0);
    let console = serve(&w);
    let (mut a, mut r) = (Client::new(&w, &console), Client::new(&w, &console));
    assert_eq!((a.login(ASHA).status, r.login(RAVI).status), (303, 303));
    let (ta, tr) = (a.csrf(), r.csrf());
    // Both opened the confirmation page while the order was parked.
    assert!(a.get("/orders/CS-7/refund").body.contains("Confirm: refund"));
    assert!(r.get("/orders/CS-7/refund").body.contains("Confirm: refund"));
    let (sa, sr) = (
        a.hidden("/orders/CS-7/refund", "seen"),
        r.hidden("/orders/CS-7/refund", "seen"),
    );
    let post = |c: &Client, token: &str, seen: &str| {
        c.http
            .post(format!("{}/orders/CS-7/refund", c.base))
            .header("cookie", c.cookie.clone().unwrap_or_default())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(&[("csrf", token), ("seen", seen)]))
            .send()
    };
    let (x, y) = w.block(async {
        let (x, y) = futures_util::future::join(post(&a, &ta, &sa), post(&r, &tr, &sr)).await;
        (
            x.expect("a").text().await.expect("body"),
            y.expect("r").text().await.expect("body"),
        )
    });
    let done = [&x, &y].iter().filter(|b| b.contains("Done.")).count();
    assert_eq!(done, 1, "exactly one wins:\n{x}\n----\n{y}");
    let loser = if x.contains("Done.") { &y } else { &x };
    assert!(loser.contains("Refused:"), "{loser}");
    assert!(
        [
            "someone else resolved it",
            "a refund is pending",
            "not needs_review",
            "changed since this confirmation page was opened"
        ]
        .iter()
        .any(|why| loser.contains(why)),
        "the other sees why: {loser}"
    );
    assert_eq!(w.sim.state().refunds_created(&refund_id("CS-7")), 1, "one refund");
    let asked: Vec<_> = w
        .history("CS-7")
        .into_iter()
        .filter(|h| h.get_str("reason").ok() == Some("refund_requested"))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    // The winner's refund request is one event; the loser's refused write records none.
    eventually(WAIT, "the refund request's one event", || {
        event_types(&w, "CS-7") == ["order.needs_review", "order.refund_requested"]
    });
}

#[test]
fn a_fulfil_from_the_console_records_its_one_event() {
    let w = World::new("console_fulfil_event");
    parked_paid(&w, "CS-11", 0);
    assert_eq!(event_types(&w, "CS-11"), ["order.needs_review"]);
    w.block(
        w.products()
            .update_one(doc! {"_id": "tee"}, w.shop_query(&doc! {"$set": {"stock": 5}})),
    )
    .expect("restock");
    let console = serve(&w);
    let mut a = Client::new(&w, &console);
    assert_eq!(a.login(ASHA).status, 303);
    // The confirmation page's form, kept for a second tab below.
    let seen = a.hidden("/orders/CS-11/fulfil", "seen");
    let form = [("csrf", a.csrf()), ("seen", seen)];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = a.post("/orders/CS-11/fulfil", &form);
    assert!(done.body.contains("Done."), "{}", done.body);
    assert_eq!(w.status("CS-11").0, "confirmed");
    // The console's process moves the event itself (no `run` here), exactly one.
    eventually(WAIT, "the fulfil's one event", || {
        event_types(&w, "CS-11") == ["order.needs_review", "order.confirmed"]
    });
    // Done again (a second tab, the same page): refused, and no second event.
    let again = a.post("/orders/CS-11/fulfil", &form);
    assert!(again.body.contains("Refused:"), "{}", again.body);
    assert_eq!(event_types(&w, "CS-11"), ["order.needs_review", "order.confirmed"]);
}

#[test]
fn the_cli_records_the_os_user_as_the_operator() {
    let w = World::new("console_cli_user");
    parked_paid(&w, "CS-8", 1);
    w.block(
        w.products()
            .update_one(doc! {"_id": "tee"}, w.shop_query(&doc! {"$set": {"stock": 5}})),
    )
    .expect("restock");
    let mut c = w.reconciler_command(&["review", "resolve", "CS-8", "fulfil", "--note", "restocked"]);
    c.env("USER", "meera");
    assert!(c.status().expect("review").success());
    let h = last_history(&w, "CS-8");
    assert_eq!(
        (h.get_str("by").ok(), h.get_str("operator").ok()),
        (Some("operator"), Some("meera"))
    );
    assert_eq!(h.get_str("to").ok(), Some("confirmed"));
}

#[test]
fn the_status_page_and_the_order_page_show_the_events_the_product_recorded() {
    let w = World::new("console_status");
    parked_paid(&w, "CS-9", 0);
    // A second order, cancelled by the same kind of pass: its event is the one failed below.
    w.insert_order("CS-10", 10_000, 600, &[("tee", 1, None)]);
    w.sim.script("CS-10", vec![phonepe_sim::Answer::failed()]);
    w.once();
    assert_eq!(w.status("CS-10").0, "cancelled");
    // The events as the product wrote them (nothing here spells a field of reconciler_events):
    // one pending per order (no `run` sent them); CS-10's then fails by the sender's own close.
    let store = w.store();
    let of = |mtid: &str| {
        w.block(store.list_events(doc! { events::field::MTID: mtid }))
            .expect("events")
    };
    let (parked, cancelled) = (of("CS-9"), of("CS-10"));
    assert_eq!((parked.len(), cancelled.len()), (1, 1), "{parked:?} {cancelled:?}");
    let id = |e: &mongodb::bson::Document| e.get_str(events::field::ID).expect("an id").to_string();
    let (parked_id, cancelled_id) = (id(&parked[0]), id(&cancelled[0]));
    let start = events::Channel::Shop.window_start(&cancelled[0]);
    let failed = store.close_event(
        events::Channel::Shop,
        &cancelled_id,
        0,
        start,
        events::FAILED,
        DateTime::now(),
    );
    assert!(w.block(failed).expect("close"), "the cancelled order's event failed");

    let console = serve(&w);
    let mut a = Client::new(&w, &console);
    assert_eq!(a.login(ASHA).status, 303);
    let status = a.get("/status").body;
    for seen in [
        "the console alone",
        "Instances running",
        "PhonePe budget",
        "Breaker",
        "closed",
        "Pending refunds",
        "Undelivered events",
    ] {
        assert!(status.contains(seen), "{seen} in {status}");
    }
    assert!(
        status.contains("1 waiting to be delivered") && status.contains("1 failed"),
        "{status}"
    );
    let order = a.get("/orders/CS-9").body;
    assert!(order.contains("<h2>Events</h2>"), "{order}");
    assert!(
        order.contains(&parked_id) && order.contains("order.needs_review") && !order.contains(&cancelled_id),
        "only CS-9's event: {order}"
    );
    let other = a.get("/orders/CS-10").body;
    assert!(
        other.contains(&cancelled_id) && other.contains("order.cancelled") && other.contains("<td>failed</td>"),
        "{other}"
    );
}

#[test]
fn hash_password_reads_one_line_and_prints_an_argon2id_phc_string() {
    use std::io::Write;
    let run = |input: &str| {
        let mut c = std::process::Command::new(crate::support::reconciler_bin());
        // No configuration at all: the command needs none.
        c.args(["console", "hash-password"]).env_clear();
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("output")
    };
    let out = run("  spaced pass word \nsecond line ignored\n");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let phc = String::from_utf8(out.stdout).expect("utf-8");
    let phc = phc.trim_end();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    use argon2::{Argon2, PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(phc).expect("a PHC string");
    assert!(
        Argon2::default()
            .verify_password(b"  spaced pass word ", &parsed)
            .is_ok(),
        "spaces kept"
    );
    assert_eq!(run("\n").status.code(), Some(2), "an empty password");
    assert_eq!(run("").status.code(), Some(2), "no line");
}
