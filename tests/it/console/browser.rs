//! The console in a real browser: headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromedriver`, installed by `scripts/browser-tools.sh`; `CHROMIUM` / `CHROMEDRIVER` point
//! elsewhere). Without them each test is skipped loudly, unless `OPS_REQUIRE_TOOLS=1` (CI), which
//! fails it. One browser at a time (a lock), each with a fresh profile.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use fantoccini::{ClientBuilder, Locator};
use mongodb::bson::{doc, DateTime};
use phonepe_sim::Answer;

use super::{last_history, parked_paid, serve, sessions, Console, ASHA, WAIT};
use crate::support::{eventually, free_port, wait_for_port, Running, World};

fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var(var).map_or_else(|_| PathBuf::from(default), PathBuf::from);
    p.exists().then_some(p)
}

/// A browser session: chromedriver on a free port, Chromium headless with a fresh profile.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<fantoccini::Client>,
    base: String,
    _driver: Running,
    _profile: tempfile::TempDir,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// A browser for `console`, or `None` (said loudly) when Chromium is not installed.
pub fn browser(console: &Console) -> Option<Browser> {
    static ONE: Mutex<()> = Mutex::new(());
    let (Some(chromium), Some(driver)) = (
        tool("CHROMIUM", "/usr/bin/chromium"),
        tool("CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) else {
        let why = "chromium / chromedriver are not installed (scripts/browser-tools.sh installs them)";
        assert!(std::env::var("OPS_REQUIRE_TOOLS").as_deref() != Ok("1"), "{why}");
        eprintln!("\n!!!!!!!! SKIPPED a console browser test: {why}\n");
        return None;
    };
    let guard = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let port = free_port();
    let child = std::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Running(child);
    wait_for_port(port, WAIT);
    let profile = tempfile::tempdir().expect("profile dir");
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,800",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", profile.path().display())])
    .collect::<Vec<_>>();
    let mut caps = fantoccini::wd::Capabilities::new();
    caps.insert("browserName".into(), "chrome".into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium, "args": args }),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = rt
        .block_on(
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .expect("a WebDriver session");
    Some(Browser {
        rt,
        client: Some(client),
        base: console.base.clone(),
        _driver: driver,
        _profile: profile,
        _one_at_a_time: guard,
    })
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
    }
}

impl Browser {
    fn c(&self) -> &fantoccini::Client {
        self.client.as_ref().expect("open")
    }

    pub fn goto(&self, path: &str) {
        self.rt
            .block_on(self.c().goto(&format!("{}{path}", self.base)))
            .expect("goto");
    }

    pub fn path(&self) -> String {
        self.rt
            .block_on(self.c().current_url())
            .expect("url")
            .path()
            .to_string()
    }

    pub fn title(&self) -> String {
        self.rt.block_on(self.c().title()).expect("title")
    }

    pub fn text(&self, css: &str) -> String {
        self.rt
            .block_on(async { self.c().find(Locator::Css(css)).await?.text().await })
            .unwrap_or_default()
    }

    pub fn count(&self, css: &str) -> usize {
        self.rt
            .block_on(self.c().find_all(Locator::Css(css)))
            .map_or(0, |v| v.len())
    }

    pub fn fill(&self, css: &str, text: &str) {
        self.rt
            .block_on(async {
                let e = self.c().find(Locator::Css(css)).await?;
                e.clear().await?;
                e.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("fill {css}: {e}"));
    }

    pub fn click(&self, css: &str) {
        self.rt
            .block_on(async { self.c().find(Locator::Css(css)).await?.click().await })
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Wait until the page's `h1` contains `want`.
    /// The main text of the result page headed exactly `title`, once it shows: the
    /// confirmation page before it is headed `title` too, with " — confirm" after it.
    pub fn result(&self, title: &str) -> String {
        eventually(WAIT, &format!("the result page {title:?}"), || self.text("h1") == title);
        self.text("main")
    }

    pub fn heading(&self, want: &str) {
        eventually(WAIT, &format!("a page headed {want:?}"), || {
            self.text("h1").contains(want)
        });
    }

    /// A PNG of the viewport, saved under the test target directory (and returned).
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("console-{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.rt
            .block_on(self.c().set_window_size(width, height))
            .expect("resize");
    }

    /// Sign in as `(name, password)` from the login page.
    pub fn sign_in(&self, (name, password): (&str, &str)) {
        self.goto("/login");
        self.fill("#name", name);
        self.fill("#password", password);
        self.click("main button[type=submit]");
    }

    /// Confirm the action on the confirmation page (with `note`).
    pub fn confirm(&self, note: &str) {
        if !note.is_empty() {
            self.fill("#note", note);
        }
        self.click("main button[type=submit]");
    }
}

#[test]
fn an_operator_signs_in_and_refunds_a_parked_order_with_its_confirmation() {
    let w = World::new("browser_refund");
    parked_paid(&w, "BR-1", 0);
    // Inside `run`: its refund poller finishes the refund PhonePe first answers PENDING.
    let console = super::start(&w, &["run"], &[]);
    let Some(b) = browser(&console) else { return };
    b.goto("/");
    assert_eq!(b.path(), "/login", "signed out: the login page");
    b.sign_in(ASHA);
    b.heading("Review queue");
    let queue = b.text("main");
    for seen in ["BR-1", "insufficient_stock", "₹499.00", "All (1)"] {
        assert!(queue.contains(seen), "{seen} in {queue}");
    }
    b.click("a[href='/orders/BR-1']");
    b.heading("Order BR-1");
    b.click("a[href='/orders/BR-1/refund']");
    b.heading("confirm");
    let plan = b.text("main");
    assert!(
        plan.contains("What will happen") && plan.contains("What PhonePe will be asked"),
        "{plan}"
    );
    assert_eq!(w.calls_for("BR-1"), 1, "the confirmation page never asks PhonePe");
    assert_eq!(w.status("BR-1"), ("needs_review".into(), "paid".into()));
    b.confirm("customer cancelled by phone");
    let result = b.result("Refund order BR-1");
    assert!(
        result.contains("Done.") && result.contains("refund of BR-1 recorded"),
        "{result}"
    );
    assert!(
        result.contains("What PhonePe reported") && result.contains("PENDING"),
        "{result}"
    );
    b.click("main a[href='/orders/BR-1']");
    b.heading("Order BR-1");
    eventually(WAIT, "the order page shows it refunded", || {
        b.goto("/orders/BR-1");
        b.text("main").contains("\nrefunded\n") && w.status("BR-1").0 == "refunded"
    });
    assert_eq!(w.status("BR-1"), ("refunded".into(), "refunded".into()));
    let asked = w.history("BR-1");
    let asked = asked
        .iter()
        .find(|h| h.get_str("reason").ok() == Some("refund_requested"))
        .expect("asked");
    assert_eq!(
        (asked.get_str("by").ok(), asked.get_str("operator").ok()),
        (Some("operator"), Some("asha"))
    );
    assert_eq!(asked.get_str("note").ok(), Some("customer cancelled by phone"));
    let h = last_history(&w, "BR-1");
    assert_eq!(
        (h.get_str("to").ok(), h.get_str("by").ok()),
        (Some("refunded"), Some("reconciler")),
        "{h:?}"
    );
    assert_eq!(w.stock("tee"), 0, "stock never moves on a refund");
    let order = b.text("main");
    assert!(
        order.contains("refunded") && order.contains("operator (asha)"),
        "{order}"
    );
    assert_eq!(
        b.count("a[href='/orders/BR-1/refund']"),
        0,
        "no actions once it left review"
    );
    b.goto("/");
    assert!(b.text("main").contains("0 parked orders"), "{}", b.text("main"));
}

#[test]
fn fulfil_after_a_restock_confirms_in_the_page_and_in_mongodb() {
    let w = World::new("browser_fulfil");
    parked_paid(&w, "BR-2", 1);
    let console = serve(&w);
    let Some(b) = browser(&console) else { return };
    b.sign_in(ASHA);
    b.heading("Review queue");
    b.goto("/orders/BR-2/fulfil");
    b.heading("confirm");
    b.confirm("");
    let short = b.result("Fulfil order BR-2");
    assert!(
        short.contains("Refused:") && short.contains("insufficient_stock"),
        "{short}"
    );
    assert_eq!(w.status("BR-2"), ("needs_review".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 1, "nothing deducted");

    w.block(
        w.products()
            .update_one(doc! {"_id": "tee"}, w.shop_query(&doc! {"$set": {"stock": 5}})),
    )
    .expect("restock");
    b.goto("/orders/BR-2/fulfil");
    b.heading("confirm");
    b.confirm("restocked on Monday");
    let done = b.result("Fulfil order BR-2");
    assert!(
        done.contains("Done.") && done.contains("confirmed; stock deducted"),
        "{done}"
    );
    assert_eq!(w.status("BR-2"), ("confirmed".into(), "paid".into()));
    assert_eq!(w.stock("tee"), 3);
    let h = last_history(&w, "BR-2");
    assert_eq!(h.get_str("operator").ok(), Some("asha"));
    assert_eq!(h.get_str("note").ok(), Some("restocked on Monday"));
    b.goto("/orders/BR-2");
    assert!(b.text("main").contains("confirmed"), "{}", b.text("main"));
}

#[test]
fn cancel_is_refused_for_a_paid_order_with_the_clis_reason() {
    let w = World::new("browser_cancel");
    parked_paid(&w, "BR-3", 0);
    let console = serve(&w);
    let Some(b) = browser(&console) else { return };
    b.sign_in(ASHA);
    b.heading("Review queue");
    b.goto("/orders/BR-3/cancel");
    let page = b.text("main");
    assert!(
        page.contains("This cannot be done: it was paid to this merchant: refund or fulfil it instead"),
        "{page}"
    );
    assert_eq!(b.count("main button[type=submit]"), 0, "nothing to confirm");
    assert_eq!(w.status("BR-3"), ("needs_review".into(), "paid".into()));

    // Recorded unpaid, but PhonePe reports the payment when asked: refused, payment recorded.
    w.insert_raw(doc! {
        "merchantTransactionId": "BR-4", "status": "needs_review", "paymentStatus": "pending",
        "amount": 49900_i64, "items": [{ "productId": "tee", "quantity": 1 }],
        "createdAt": DateTime::now(), "updatedAt": DateTime::now(),
        "reconciliation": { "reason": "phonepe_unreadable", "lastCode": "ERROR_MALFORMED" }, "history": [],
    });
    w.sim.script("BR-4", vec![Answer::completed(49900)]);
    b.goto("/orders/BR-4/cancel");
    b.heading("confirm");
    assert_eq!(w.calls_for("BR-4"), 0, "the confirmation page never asks PhonePe");
    b.confirm("customer says it failed");
    let refused = b.result("Cancel order BR-4");
    assert!(refused.contains("Refused:"), "{refused}");
    assert!(
        refused.contains("PhonePe reports a completed payment of 49900 paise to this merchant"),
        "{refused}"
    );
    assert!(refused.contains("What PhonePe reported"), "{refused}");
    assert_eq!(
        w.status("BR-4"),
        ("needs_review".into(), "paid".into()),
        "the payment is recorded"
    );
    let h = last_history(&w, "BR-4");
    assert_eq!(
        (h.get_str("reason").ok(), h.get_str("operator").ok()),
        (Some("payment_recorded"), Some("asha"))
    );
}

#[test]
fn a_wrong_password_is_refused_and_slowed_then_the_right_one_works() {
    let w = World::new("browser_login");
    let console = serve(&w);
    let Some(b) = browser(&console) else { return };
    for _ in 0..3 {
        b.sign_in((ASHA.0, "not my password"));
        eventually(WAIT, "refused", || b.text("main").contains("Wrong name or password."));
    }
    // The next attempt within a second of a failure is refused unverified. A loaded machine can
    // take longer than that between two attempts: each late one is one more failure, so keep on.
    let answered = |b: &Browser| {
        eventually(WAIT, "an answer to the sign-in", || {
            let main = b.text("main");
            main.contains("Wrong name or password.")
                || main.contains("Too many")
                || b.text("h1").contains("Review queue")
        })
    };
    let mut slowed = false;
    for _ in 0..10 {
        b.sign_in((ASHA.0, "still not it"));
        answered(&b);
        if b.text("main").contains("Too many failed sign-ins") {
            slowed = true;
            break;
        }
    }
    assert!(slowed, "{}", b.text("main"));
    assert!(b.text("main").contains("Try again in 1 s"), "{}", b.text("main"));
    assert!(sessions(&w).is_empty());
    eventually(WAIT, "the right password works after the wait", || {
        b.goto("/login");
        if b.path() != "/login" {
            return true; // signed in: the login page sends us to the queue
        }
        b.sign_in(ASHA);
        answered(&b);
        b.text("h1").contains("Review queue")
    });
    assert_eq!(sessions(&w).len(), 1);
}

#[test]
fn values_from_the_database_show_as_text_and_never_run() {
    let w = World::new("browser_escape");
    let id = "XSS-1\"><img src=x onerror=\"document.title='owned'\">";
    let script = "<script>document.title='owned'</script>";
    w.insert_raw(doc! {
        "merchantTransactionId": id, "status": "needs_review", "paymentStatus": "paid", "amount": 100_i64,
        "items": [{ "productId": "<b>tee</b>", "quantity": 1 }],
        "createdAt": DateTime::now(), "updatedAt": DateTime::now(),
        "reconciliation": { "reason": script, "lastError": "<svg onload=\"document.title='owned'\">" },
        "history": [{ "at": DateTime::now(), "from": "draft", "to": "needs_review", "by": "reconciler",
                      "note": script, "operator": "\"><b>x</b>" }],
    });
    let console = serve(&w);
    let Some(b) = browser(&console) else { return };
    b.sign_in(ASHA);
    b.heading("Review queue");
    let hostile = "main script, main img, main svg, main b, main iframe";
    assert_eq!(b.count(hostile), 0);
    assert!(b.text("main").contains(script), "{}", b.text("main"));
    b.click("main td a");
    b.heading("Order XSS-1");
    assert_eq!(b.count(hostile), 0);
    let page = b.text("main");
    for shown in [id, script, "<b>tee</b>", "\"><b>x</b>"] {
        assert!(page.contains(shown), "{shown} as text in {page}");
    }
    b.click("main .actions a");
    b.heading("confirm");
    assert_eq!(b.count(hostile), 0);
    assert!(
        b.title().starts_with("Fulfil order XSS-1\""),
        "the id is the title's text: {}",
        b.title()
    );
}

/// The README's picture: a few parked orders of different kinds on a desktop, and the order page
/// on a phone. Written under target/tmp; `CONSOLE_SCREENSHOT=docs/console.png` copies the first.
#[test]
fn screenshots_of_the_queue_and_an_order() {
    let w = World::new("browser_shots");
    let ago = |h: i64| DateTime::from_millis(DateTime::now().timestamp_millis() - h * 3600 * 1000);
    let parked = |mtid: &str, amount: i64, paid: Option<i64>, reason: &str, hours: i64| {
        let mut recon = doc! { "reason": reason, "lastCode": "PAYMENT_SUCCESS", "attempts": 1 };
        if let Some(p) = paid {
            recon.insert("paidAmount", p);
        }
        w.insert_raw(doc! {
            "merchantTransactionId": mtid, "status": "needs_review", "paymentStatus": "paid", "amount": amount,
            "items": [{ "productId": "kurta-indigo", "quantity": 1, "size": "M" }],
            "createdAt": ago(hours + 1), "updatedAt": ago(hours), "reconciliation": recon,
            "history": [{ "at": ago(hours), "from": "draft", "to": "needs_review", "by": "reconciler",
                          "reason": reason, "code": "PAYMENT_SUCCESS" }],
        });
    };
    parked("ORD-24-10481", 129_900, Some(129_900), "insufficient_stock", 30);
    parked("ORD-24-10502", 249_900, Some(239_900), "amount_mismatch", 20);
    parked("ORD-24-10533", 89_900, None, "merchant_mismatch", 6);
    parked("ORD-24-10547", 59_900, Some(59_900), "paid_after_cancel", 2);
    let console = serve(&w);
    let Some(b) = browser(&console) else { return };
    b.sign_in(ASHA);
    b.heading("Review queue");
    b.resize(1200, 640);
    let queue = b.screenshot("queue");
    b.resize(390, 844);
    b.goto("/orders/ORD-24-10502");
    b.heading("Order ORD-24-10502");
    b.screenshot("order-phone");
    if let Ok(to) = std::env::var("CONSOLE_SCREENSHOT") {
        std::fs::copy(&queue, crate::support::manifest_dir().join(to)).expect("copy the screenshot");
    }
}
