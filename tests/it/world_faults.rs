//! Faults the world injects, against the real binary: MongoDB going away and coming back on the
//! same port and data, server-side failpoints (`configureFailPoint` / `failCommand`, SecantusDB
//! with `--enable-test-commands`), and PhonePe storms (timeouts, 429, rejected credentials).
//! Each test has its own SecantusDB when it breaks the database, so failpoints and outages do not
//! reach the other tests; assertions are on database outcomes and on the calls PhonePe saw, and
//! each failpoint is armed when only the step it names can hit it and shown used up afterwards.

use crate::support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{count_orders, eventually, http_get, DbServer, World, SALT};
use draft_reconciler::config::CommitStrategy;
use mongodb::bson::{doc, Document};
use phonepe_sim::Answer;

const SETTLE: Duration = Duration::from_secs(30);

/// The service, killed when dropped.
struct Service {
    child: Child,
    ops: u16,
}

impl Service {
    fn start(w: &World, extra: &[(&str, &str)]) -> Service {
        Self::start_with_salt(w, SALT, extra)
    }

    fn start_with_salt(w: &World, salt: &str, extra: &[(&str, &str)]) -> Service {
        let ops = support::free_port();
        let child = w
            .reconciler_command(&["run"])
            .env("PHONEPE_SALT_KEY", salt)
            .env("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{ops}"))
            .env("RECONCILER_JOB__INTERVAL_SECS", "1")
            .env("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "1")
            .env("RECONCILER_JOB__LEASE_TTL_SECS", "10")
            .env("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "600")
            .env("RECONCILER_JOB__MAX_ORDERS_PER_RUN", "50")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(service_logs())
            .stderr(service_logs())
            .spawn()
            .expect("start draft-reconciler");
        Service { child, ops }
    }

    fn status(&self, path: &str) -> Option<u16> {
        http_get(self.ops, path).map(|(s, _)| s)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

/// Where the service's output goes: the test's own output with `SHOW_SERVICE_LOGS` set, else
/// nowhere.
fn service_logs() -> Stdio {
    if std::env::var_os("SHOW_SERVICE_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn orders(w: &World, prefix: &str, n: usize, age_secs: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mtid = format!("{prefix}-{i:02}");
            w.insert_order(&mtid, 49900, age_secs, &[("tee", 1, None)]);
            w.sim.script(&mtid, vec![Answer::completed(49900)]);
            mtid
        })
        .collect()
}

fn confirmed(w: &World, mtids: &[String]) -> bool {
    mtids.iter().all(|m| w.status(m).0 == "confirmed")
}

fn assert_once(w: &World, mtids: &[String]) {
    for m in mtids {
        assert_eq!(w.status(m), ("confirmed".into(), "paid".into()), "{m}");
        assert_eq!(w.history(m).len(), 1, "{m} settled once: {:?}", w.history(m));
    }
}

#[test]
fn mongodb_going_away_and_coming_back_is_ridden_out_and_the_backlog_caught_up() {
    let data = tempfile::tempdir().expect("tempdir");
    let storage = data.path().to_str().expect("utf-8 path").to_string();
    let port = support::free_port();
    let db = support::start_secantus_on(port, &storage, &[]);
    let w = World::on(&DbServer::on_port(port), "outage");
    w.insert_product("tee", 100);
    let before = orders(&w, "A", 3, 600);
    // Young orders: eligible only after the 12 s lookback, i.e. during the outage.
    let during = orders(&w, "B", 3, 0);
    let eligible_at = Instant::now() + Duration::from_secs(12);
    let mut svc = Service::start(&w, &[("RECONCILER_JOB__LOOKBACK_SECS", "12")]);

    eventually(SETTLE, "the first orders settle", || confirmed(&w, &before));
    eventually(SETTLE, "/readyz is 200 with MongoDB up", || {
        svc.status("/readyz") == Some(200)
    });
    assert!(
        during.iter().all(|m| w.status(m).0 == "draft"),
        "the young orders wait for the outage"
    );

    support::stop_secantus(db, port);
    eventually(SETTLE, "/readyz is 503 while MongoDB is down", || {
        svc.status("/readyz") == Some(503)
    });
    // The outage lasts until the young orders are due: they pile up as a backlog.
    eventually(SETTLE, "the young orders become due", || Instant::now() >= eligible_at);
    assert!(svc.alive(), "the service rides out the outage");
    assert_eq!(svc.status("/healthz"), Some(200), "the process itself stays live");

    let db = support::start_secantus_on(port, &storage, &[]);
    eventually(SETTLE, "/readyz is 200 again", || svc.status("/readyz") == Some(200));
    eventually(SETTLE, "the backlog is caught up", || confirmed(&w, &during));
    assert_once(&w, &before);
    assert_once(&w, &during);
    assert_eq!(w.stock("tee"), 94, "six orders, six units, each once");
    assert!(svc.alive());
    drop(svc);
    support::stop_secantus(db, port);
}

/// The application name the service gives its MongoDB client (`Store::connect`, `src/store/mod.rs`):
/// failpoints are scoped to it, so the test's own commands never fire them.
const SERVICE_APP: &str = "draft-reconciler";

/// Arm SecantusDB's `failCommand` for the service's connections only (its appName).
fn fail_command(w: &World, mode: Document, data: Document) {
    let mut data = data;
    data.insert("appName", SERVICE_APP);
    w.block(
        w.db.client()
            .database("admin")
            .run_command(doc! { "configureFailPoint": "failCommand", "mode": mode, "data": data }),
    )
    .expect("configureFailPoint (needs --enable-test-commands)");
}

/// Does the armed failpoint still fire on `command` (`update` or `commitTransaction`)? Sends
/// one such command from a client with the service's appName, so SecantusDB treats it like the
/// service's own: an error, a closed connection or a write concern error means the failpoint
/// still had firings left, i.e. the service's step did not use them up. `run_command` is never
/// retried by the driver, so the probe consumes at most one firing and sees it. `tries` probes
/// are sent (the failpoint's `skip` + 1, so a skip left over is not mistaken for "used up").
fn failpoint_fires_on(w: &World, command: &str, tries: i32) -> bool {
    (0..tries).any(|_| probe_fires(w, command))
}

fn probe_fires(w: &World, command: &str) -> bool {
    let mut opts = w
        .block(mongodb::options::ClientOptions::parse(&w.uri))
        .expect("parse uri");
    opts.app_name = Some(SERVICE_APP.into());
    let reply = w.block(async {
        let client = mongodb::Client::with_options(opts).expect("probe client");
        let db = client.database(w.db.name());
        match command {
            "update" => {
                db.run_command(doc! {
                    "update": "failpoint_probe",
                    "updates": [{ "q": { "_id": 1 }, "u": { "$inc": { "n": 1 } }, "upsert": true }],
                })
                .await
            }
            "commitTransaction" => {
                let mut s = client.start_session().await.expect("probe session");
                s.start_transaction().await.expect("probe transaction");
                db.collection::<Document>("failpoint_probe")
                    .insert_one(doc! {})
                    .session(&mut s)
                    .await
                    .expect("probe insert");
                let r = client
                    .database("admin")
                    .run_command(doc! { "commitTransaction": 1 })
                    .session(&mut s)
                    .await;
                let _ = s.abort_transaction().await;
                r
            }
            other => panic!("no probe for {other}"),
        }
    });
    match reply {
        Ok(d) => d.contains_key("writeConcernError"),
        Err(_) => true,
    }
}

/// When a phase's failpoint is armed, so that the command it names can only come from the step
/// the phase is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// Before the order exists, with nothing in flight or eligible: the service's next `update`
    /// is the claim of the order inserted next.
    BeforeClaim,
    /// While the order's PhonePe call is in flight (claimed, answer delayed): the service's next
    /// `update` / `commitTransaction` commands are that order's commit.
    DuringCall,
}

struct Phase {
    what: &'static str,
    command: &'static str,
    armed: Armed,
    mode: Document,
    data: Document,
}

/// How long the simulator holds each answer in a `DuringCall` phase, while the test arms the
/// failpoint (the service's request timeout is raised to 5 s for it).
const HELD_ANSWER_MS: u64 = 3000;

/// The phases, in order. The transaction phases need transactions: under the journal strategy
/// (`RECONCILER_TEST_STRATEGY=journal`) there is no `commitTransaction` to fail.
fn phases(transactions: bool) -> Vec<Phase> {
    let commit = |what, mode, data| Phase {
        what,
        command: "commitTransaction",
        armed: Armed::DuringCall,
        mode,
        data,
    };
    let mut v = Vec::new();
    if transactions {
        v.push(commit(
            "commit fails with a transient transaction error (twice)",
            doc! { "times": 2 },
            doc! { "failCommands": ["commitTransaction"], "errorCode": 112, "errorLabels": ["TransientTransactionError"] },
        ));
        v.push(commit(
            "commit succeeds but answers with a write concern error (unknown commit result)",
            doc! { "times": 1 },
            doc! { "failCommands": ["commitTransaction"], "writeConcernError": { "code": 91, "errmsg": "shutting down" } },
        ));
        v.push(commit(
            "the connection closes on commit",
            doc! { "times": 1 },
            doc! { "failCommands": ["commitTransaction"], "closeConnection": true },
        ));
    }
    v.push(Phase {
        // The commit's first update is the order's (both strategies), the second the stock
        // deduction: skip one, fail one. WriteConflict: inside a transaction it is labelled
        // TransientTransactionError (the whole transaction is retried); under the journal it
        // fails the commit, which recovery rolls forward. (Not 91 ShutdownInProgress: the
        // driver would mark the server unknown and wait for its monitor, which tests the
        // driver rather than us.)
        what: "the stock update hits a write conflict",
        command: "update",
        armed: Armed::DuringCall,
        mode: doc! { "skip": 1, "times": 1 },
        data: doc! { "failCommands": ["update"], "errorCode": 112 },
    });
    v.push(Phase {
        what: "the claim loses its connection",
        command: "update",
        armed: Armed::BeforeClaim,
        mode: doc! { "times": 1 },
        data: doc! { "failCommands": ["update"], "closeConnection": true },
    });
    v
}

/// Nothing of the service's is still writing: every order settled and (journal strategy) the
/// stock markers of finished commits cleared, so an armed failpoint cannot be used up by them.
fn quiet(w: &World) {
    eventually(SETTLE, "the last commit's markers are cleared", || {
        w.product("tee")
            .get_array("reconcilerCommits")
            .map_or(true, |m| m.is_empty())
    });
}

/// One order through one phase: armed at the moment only the named step can hit the failpoint,
/// settled exactly once, and the failpoint used up (so the step really failed and was retried).
fn run_phase(w: &World, i: usize, p: &Phase) -> String {
    let mtid = format!("P{i}");
    let arm = || fail_command(w, p.mode.clone(), p.data.clone());
    quiet(w);
    if p.armed == Armed::BeforeClaim {
        arm();
    }
    w.insert_order(&mtid, 49900, 600, &[("tee", 1, None)]);
    let mut answer = Answer::completed(49900);
    if p.armed == Armed::DuringCall {
        answer.delay_ms = Some(HELD_ANSWER_MS);
    }
    w.sim.script(&mtid, vec![answer]);
    if p.armed == Armed::DuringCall {
        eventually(SETTLE, &format!("{mtid} is claimed and its call in flight"), || {
            w.calls_for(&mtid) == 1
        });
        arm();
    }
    let one = [mtid.clone()];
    eventually(SETTLE, &format!("{mtid} settles when {}", p.what), || {
        confirmed(w, &one)
    });
    assert_once(w, &one);
    assert!(
        !failpoint_fires_on(w, p.command, 1 + p.mode.get_i32("skip").unwrap_or(0)),
        "{}: the failpoint on {} still had firings left, so the step never failed",
        p.what,
        p.command
    );
    fail_command(w, doc! { "times": 0 }, doc! {});
    mtid
}

#[test]
fn server_side_failures_are_retried_without_double_effects() {
    let (port, _db) = support::start_secantus(&["--enable-test-commands"]);
    let w = World::on(&DbServer::on_port(port), "failpoints");
    w.insert_product("tee", 100);
    let svc_timeout = [("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "5")];
    let mut svc = Service::start(&w, &svc_timeout);
    let transactions = support::test_strategy() != CommitStrategy::Journal;
    if !transactions {
        eprintln!("journal strategy: the commitTransaction phases do not apply (no transactions)");
    }
    let settled: Vec<String> = phases(transactions)
        .iter()
        .enumerate()
        .map(|(i, p)| run_phase(&w, i, p))
        .collect();
    assert_once(&w, &settled);
    assert_eq!(
        w.stock("tee"),
        100 - settled.len() as i64,
        "stock deducted exactly once per order"
    );
    assert!(svc.alive());
}

#[test]
fn a_phonepe_timeout_storm_changes_nothing_opens_the_breaker_and_recovers() {
    let w = World::new("phonepe_storm");
    w.insert_product("tee", 100);
    let all = orders(&w, "S", 30, 600);
    // Every call outlives the 1 s request timeout.
    w.sim.set_latency(Duration::from_secs(3));
    let mut svc = Service::start(&w, &[]);

    // Five failures in a row open the breaker (30 s): calls stop well short of one per order.
    eventually(SETTLE, "the first calls time out", || w.sim.calls().len() >= 5);
    let observed_until = Instant::now() + Duration::from_secs(8);
    eventually(Duration::from_secs(20), "an 8 s look at the storm", || {
        Instant::now() >= observed_until
    });
    let during = w.sim.calls().len();
    assert!(
        during <= 12,
        "the breaker stopped calls a dead PhonePe cannot answer: {during} calls for 30 orders"
    );
    assert_eq!(
        count_orders(&w, doc! { "status": "draft" }),
        30,
        "nothing changed state"
    );
    assert_eq!(count_orders(&w, doc! { "history.0": { "$exists": true } }), 0);
    assert_eq!(w.stock("tee"), 100);

    // PhonePe recovers: the next probe is answered and everything settles.
    w.sim.set_latency(Duration::ZERO);
    eventually(
        Duration::from_secs(90),
        "every order settles after PhonePe recovers",
        || confirmed(&w, &all),
    );
    assert_once(&w, &all);
    assert_eq!(w.stock("tee"), 70);
    assert!(svc.alive());
}

#[test]
fn a_429_storm_or_rejected_credentials_pause_calls_instead_of_burning_the_budget() {
    // PhonePe allows 3 calls a minute here: the 4th is a 429, and every caller pauses 60 s.
    let limited = World::new("phonepe_429");
    limited.insert_product("tee", 100);
    let a = orders(&limited, "R", 20, 600);
    limited.sim.set_rate_limit(Some(3));
    // Our salt key is not the one PhonePe knows: every call is a 401, calls pause 5 min.
    let rejected = World::new("phonepe_401");
    rejected.insert_product("tee", 100);
    let b = orders(&rejected, "U", 20, 600);

    let mut svc_limited = Service::start(&limited, &[]);
    let mut svc_rejected = Service::start_with_salt(&rejected, "not-the-salt-phonepe-knows", &[]);

    eventually(SETTLE, "a 429 comes back", || {
        limited.sim.calls().iter().any(|c| c.http_status == 429)
    });
    eventually(SETTLE, "a 401 comes back", || {
        rejected.sim.calls().iter().any(|c| c.http_status == 401)
    });
    let look_until = Instant::now() + Duration::from_secs(8);
    eventually(Duration::from_secs(20), "an 8 s look", || Instant::now() >= look_until);

    // At most the calls already in flight (4 reconcilers) follow the first refusal.
    let (calls_a, calls_b) = (limited.sim.calls().len(), rejected.sim.calls().len());
    assert!(calls_a <= 3 + 4, "429: {calls_a} calls for {} orders", a.len());
    assert!(calls_b <= 4, "401: {calls_b} calls for {} orders", b.len());
    // Only the answered calls changed anything; the refused ones changed nothing.
    let settled = count_orders(&limited, doc! { "status": "confirmed" });
    assert!(settled <= 3, "{settled}");
    assert_eq!(count_orders(&limited, doc! { "status": "draft" }), 20 - settled);
    assert_eq!(limited.stock("tee"), 100 - settled as i64);
    assert_eq!(count_orders(&rejected, doc! { "status": "draft" }), 20);
    assert_eq!(count_orders(&rejected, doc! { "history.0": { "$exists": true } }), 0);
    assert_eq!(rejected.stock("tee"), 100);
    assert!(svc_limited.alive() && svc_rejected.alive());
}

/// `reconciliation.<field>` of `mtid` as a number (0 when absent).
fn counter(w: &World, mtid: &str, field: &str) -> i64 {
    let o = w.order(mtid);
    crate::support::int_or_zero(o.get_document("reconciliation").ok().and_then(|r| r.get(field)))
}

/// PhonePe answers 500 to every call for `outage`, with 10 paid orders waiting; returns how long
/// after PhonePe came back every order was confirmed, and the calls made during the outage.
fn settle_after_outage(w: &World, svc: &mut Service, all: &[String], outage: Duration) -> (Duration, usize) {
    eventually(SETTLE, "the first calls fail", || !w.sim.calls().is_empty());
    let back_at = Instant::now() + outage;
    eventually(outage * 2, "the outage lasts", || Instant::now() >= back_at);
    let during = w.sim.calls().len();
    assert_eq!(
        count_orders(w, doc! { "status": "draft" }),
        all.len() as u64,
        "nothing changed"
    );
    assert_eq!(w.stock("tee"), 100);
    w.sim.set_down(None);
    let back = Instant::now();
    eventually(
        Duration::from_secs(150),
        "every order settles after PhonePe is back",
        || confirmed(w, all),
    );
    let took = back.elapsed();
    assert_once(w, all);
    assert_eq!(w.stock("tee"), 100 - all.len() as i64);
    assert!(svc.alive());
    (took, during)
}

#[test]
fn after_a_phonepe_outage_the_backlog_settles_at_the_budgets_pace_not_at_the_next_scan() {
    let w = World::new("outage_recovery");
    w.insert_product("tee", 100);
    let all = orders(&w, "O", 10, 600);
    w.sim.set_down(Some(500));
    // A 600 s scan interval: only the first scan finds the orders, so the scan is not what brings
    // them back. A lifted budget (120/min) scales the 30/min scenario.
    let mut svc = Service::start(
        &w,
        &[
            ("RECONCILER_JOB__INTERVAL_SECS", "600"),
            ("RECONCILER_JOB__LEASE_TTL_SECS", "300"),
            ("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "10"),
            ("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "120"),
        ],
    );
    let (took, during) = settle_after_outage(&w, &mut svc, &all, Duration::from_secs(15));
    eprintln!("15 s outage at 120/min: {during} calls during it, all settled {took:?} after PhonePe returned");
    // Expected: one failure pause (≤ 8 s) until the probe, then 10 calls 0.5 s apart (about
    // 13 s); the next scan would be 600 s away. The bound is generous for a loaded machine.
    assert!(
        took <= Duration::from_secs(120),
        "settled {took:?} after PhonePe returned"
    );
    // The breaker kept a dead PhonePe at about one call per pause (the budget allowed 30+).
    assert!(during <= 16, "{during} calls during a 15 s outage");
    for m in &all {
        assert_eq!(counter(&w, m, "errors"), 0, "{m}: the outage is not the order's error");
    }
}

/// The real scenario, measured by hand: `cargo test --features fault-injection --test it --
/// --ignored --nocapture outage_of_50_s` (`OUTAGE_SECS` to change the outage).
#[test]
#[ignore = "a 50 s outage plus recovery at the default budget: a measurement, run by hand"]
fn outage_of_50_s_at_the_default_budget_measurement() {
    let w = World::new("outage_50s");
    w.insert_product("tee", 100);
    let all = orders(&w, "M", 10, 600);
    w.sim.set_down(Some(500));
    let mut svc = Service::start(
        &w,
        &[
            ("RECONCILER_JOB__INTERVAL_SECS", "60"),
            ("RECONCILER_JOB__LEASE_TTL_SECS", "300"),
            ("RECONCILER_PHONEPE__REQUEST_TIMEOUT_SECS", "10"),
            ("RECONCILER_JOB__RATE_LIMIT_PER_MINUTE", "30"),
            ("RECONCILER_JOB__MAX_ORDERS_PER_RUN", "20"),
        ],
    );
    // The phase against the 60 s scan matters: 50 s ends 10 s before the second scan; set
    // OUTAGE_SECS=65 for an outage that ends just after it.
    let secs = std::env::var("OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let (took, during) = settle_after_outage(&w, &mut svc, &all, Duration::from_secs(secs));
    eprintln!("{secs} s outage at 30/min, 4 reconcilers, 60 s interval: {during} calls during it, all settled {took:?} after PhonePe returned");
    assert!(took <= Duration::from_secs(30), "{took:?}");
}

#[test]
fn a_permit_granted_before_a_pause_is_not_spent_in_it() {
    let w = World::new("permit_before_pause");
    w.insert_product("tee", 100);
    let all = orders(&w, "P", 6, 600);
    w.sim.set_rate_limit(Some(1));
    // Reconciler 1 holds its first permit for 2 s before calling; meanwhile reconciler 0 spends
    // PhonePe's one call a minute and meets a 429, which pauses calls for a minute.
    let mut svc = Service::start(
        &w,
        &[
            ("RECONCILER_JOB__RECONCILERS", "2"),
            ("RECONCILER_FAULTS", "reconciler.before_call#1=delay2000@1"),
        ],
    );
    eventually(SETTLE, "a 429 comes back", || {
        w.sim.calls().iter().any(|c| c.http_status == 429)
    });
    let look_until = Instant::now() + Duration::from_secs(5);
    eventually(Duration::from_secs(20), "a 5 s look", || Instant::now() >= look_until);
    let calls = w.sim.calls();
    let limited = calls.iter().filter(|c| c.http_status == 429).count();
    assert_eq!(limited, 1, "the held permit was not spent in the pause: {calls:?}");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(count_orders(&w, doc! { "status": "confirmed" }), 1);
    assert_eq!(count_orders(&w, doc! { "status": "draft" }), all.len() as u64 - 1);
    assert!(svc.alive());
}
