//! A model test of the journal commit strategy: two or three drivers of the same commits, stepped
//! one database write at a time in seeded random interleavings against the real store, with
//! crashes between steps, recovery passes, marker sweeps, clocks that lag the true time by up to
//! a minute, and leases that expire while their driver still runs. After every schedule, once
//! everything is recovered and swept: no stock is negative (the guards never let it be), for every
//! product (and every size) `initial - stock == Σ quantities of confirmed orders`, no order is left
//! `committing`, no marker is left, and each order was settled exactly once.
//!
//! Each schedule is reproducible from its seed: `JOURNAL_MODEL_SEED=<seed>` runs that one alone;
//! `JOURNAL_MODEL_SCHEDULES=<n>` sets how many are explored (default 300).

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{int, World};
use draft_reconciler::domain::{Item, MerchantTransactionId, Order, Paise, PaymentStatus, Status};
use draft_reconciler::store::commit::confirm_transition;
use draft_reconciler::store::journal::{Driver, Step, MARKERS, MARKER_GRACE};
use draft_reconciler::store::{CommitRules, Recovery, Store, StoreError};
use mongodb::bson::{doc, Bson, DateTime, Document};

/// The lease of every driver in the model (logical time).
const LEASE: Duration = Duration::from_secs(10);
/// How far a driver's clock may lag the true time: the design tolerates up to half the grace.
const MAX_SKEW_MS: i64 = 50_000;

struct Model<'a> {
    w: &'a World,
    store: Store,
    rng: fastrand::Rng,
    seed: u64,
    /// True time, ms since the epoch.
    t: i64,
    /// Each live driver with how far its clock lags (ms) and how often it gets to run (a slow
    /// one stalls, like a process in a long GC pause or behind a network partition).
    drivers: Vec<(Driver, i64, u32)>,
    /// product id → (initial stock, initial size stocks).
    initial: HashMap<String, (i64, HashMap<String, i64>)>,
    orders: Vec<(String, Vec<Item>)>,
    log: Vec<String>,
}

impl Model<'_> {
    fn now(&self) -> DateTime {
        DateTime::from_millis(self.t)
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {}: {what}\nschedule:\n  {}\n(rerun with JOURNAL_MODEL_SEED={})",
            self.seed,
            self.log.join("\n  "),
            self.seed
        );
    }

    /// Two or three products (one sized), two or three orders of one to three items each, stock
    /// small enough that some orders are short and roll back.
    fn setup(&mut self) {
        let p = |k: usize, seed: u64| format!("s{seed}-p{k}");
        for k in 0..2 {
            let stock = self.rng.i64(2..8);
            let id = p(k, self.seed);
            self.w
                .block(self.store_products().insert_one(doc! { "_id": &id, "stock": stock }))
                .unwrap();
            self.initial.insert(id, (stock, HashMap::new()));
        }
        let (m, l) = (self.rng.i64(1..5), self.rng.i64(1..5));
        let sized = p(2, self.seed);
        self.w
            .block(self.store_products().insert_one(doc! {
                "_id": &sized, "stock": m + l, "sizes": [ { "size": "M", "stock": m }, { "size": "L", "stock": l } ],
            }))
            .unwrap();
        self.initial.insert(
            sized.clone(),
            (m + l, HashMap::from([("M".into(), m), ("L".into(), l)])),
        );
        let n_orders = self.rng.usize(2..=3);
        for o in 0..n_orders {
            let items: Vec<Item> = (0..self.rng.usize(1..=3))
                .map(|_| {
                    let k = self.rng.usize(0..3);
                    Item {
                        product_id: Bson::String(p(k, self.seed)),
                        quantity: self.rng.i64(1..4),
                        size: (k == 2).then(|| if self.rng.bool() { "M" } else { "L" }.to_string()),
                    }
                })
                .collect();
            self.orders.push((format!("S{}-O{o}", self.seed), items));
        }
        for (mtid, items) in &self.orders {
            let docs: Vec<Document> = items
                .iter()
                .map(|it| {
                    let mut d = doc! { "productId": it.product_id.clone(), "quantity": it.quantity };
                    if let Some(s) = &it.size {
                        d.insert("size", s);
                    }
                    d
                })
                .collect();
            self.w
                .block(self.store_orders().insert_one(doc! {
                    "_id": mtid, "merchantTransactionId": mtid, "status": "draft", "paymentStatus": "pending",
                    "amount": 100, "items": docs, "createdAt": self.now(), "history": [],
                }))
                .unwrap();
        }
    }

    fn store_products(&self) -> mongodb::Collection<Document> {
        self.w.db.collection("products")
    }

    fn store_orders(&self) -> mongodb::Collection<Document> {
        self.w.db.collection("orders")
    }

    /// One driver in three is slow: it runs an eighth as often as the others.
    fn speed(&mut self) -> u32 {
        if self.rng.u32(0..3) == 0 {
            1
        } else {
            8
        }
    }

    fn skew(&mut self) -> i64 {
        self.rng.i64(0..=MAX_SKEW_MS)
    }

    /// The committer of each order begins its commit (the payment was verified).
    fn begin_all(&mut self) {
        for (mtid, items) in self.orders.clone() {
            let order = Order {
                id: Bson::String(mtid.clone()),
                merchant_transaction_id: MerchantTransactionId::parse(&mtid).unwrap(),
                status: Status::Draft,
                payment_status: PaymentStatus::Pending,
                amount: Paise(100),
                items,
                created_at: self.now(),
                attempts: 0,
                errors: 0,
                unreadable: 0,
                rejections: 0,
                reason: None,
            };
            let t = confirm_transition("PAYMENT_SUCCESS", Some("T".into()));
            let until = DateTime::from_millis(self.t + LEASE.as_millis() as i64);
            let begun = self
                .w
                .block(self.store.begin_journal(&order, &t, "committer", until, self.now()))
                .unwrap_or_else(|e| self.fail(format!("begin {mtid}: {e}")));
            let driver = begun.unwrap_or_else(|| self.fail(format!("{mtid} was not a draft")));
            let skew = self.skew();
            self.log.push(format!("t={} begin {mtid} skew={skew}", self.t));
            let speed = self.speed();
            self.drivers.push((driver, skew, speed));
        }
    }

    fn step_one(&mut self) {
        let total: u32 = self.drivers.iter().map(|d| d.2).sum();
        let mut pick = self.rng.u32(0..total);
        let k = self
            .drivers
            .iter()
            .position(|d| {
                let hit = pick < d.2;
                pick = pick.saturating_sub(d.2);
                hit
            })
            .unwrap_or(0);
        let (mut driver, skew, speed) = self.drivers.swap_remove(k);
        let now = DateTime::from_millis(self.t - skew);
        self.log.push(format!(
            "t={} step {} (its clock {})",
            self.t,
            driver.commit_id(),
            now.timestamp_millis()
        ));
        match self.w.block(driver.step(&self.store, now)) {
            Ok(Step::More) => self.drivers.push((driver, skew, speed)),
            Ok(Step::Done(outcome)) => self.log.push(format!("  done: {outcome:?}")),
            Err(e) if now >= driver.deadline() => self.log.push(format!("  stopped at its deadline: {e}")),
            // The write was bounded by the (logical) time left and the real one took longer: the
            // driver stops there, its write landed or not — a crash mid-write.
            Err(e) if ran_out_of_time(&e) => self.log.push(format!("  ran out of time mid-write: {e}")),
            Err(e) => self.fail(format!("driver failed before its deadline: {e}")),
        }
    }

    fn recover_one(&mut self) {
        let claimed = self
            .w
            .block(self.store.claim_for_recovery("recovery", self.now(), LEASE))
            .unwrap_or_else(|e| self.fail(format!("recovery claim: {e}")));
        if let Some((mtid, driver)) = claimed {
            let driver = driver.unwrap_or_else(|e| self.fail(format!("unreadable journal of {mtid}: {e}")));
            let skew = self.skew();
            self.log
                .push(format!("t={} recovery claims {mtid} skew={skew}", self.t));
            let speed = self.speed();
            self.drivers.push((driver, skew, speed));
        }
    }

    fn sweep(&mut self) {
        let mut report = Recovery::default();
        self.w
            .block(self.store.sweep_ended_journals(self.now(), &mut report))
            .unwrap_or_else(|e| self.fail(format!("sweep: {e}")));
        self.log.push(format!("t={} sweep {report:?}", self.t));
    }

    fn products(&self) -> Vec<Document> {
        use futures_util::TryStreamExt;
        let ids: Vec<&String> = self.initial.keys().collect();
        self.w
            .block(async {
                self.store_products()
                    .find(doc! { "_id": { "$in": ids } })
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .unwrap()
    }

    fn check_no_negative_stock(&self) {
        for p in self.products() {
            let id = p.get_str("_id").unwrap_or("?");
            if int(p.get("stock")) < 0 {
                self.fail(format!("{id} stock went negative: {p}"));
            }
            for s in p.get_array("sizes").map(|a| a.to_vec()).unwrap_or_default() {
                let s = s.as_document().cloned().unwrap_or_default();
                if int(s.get("stock")) < 0 {
                    self.fail(format!("{id} size stock went negative: {p}"));
                }
            }
        }
    }

    /// Long after everything: recover what is left, sweep, and check the books.
    fn finish_and_check(&mut self) {
        self.t += 86_400_000;
        self.drivers.clear(); // every driver is long past its deadline
        loop {
            let claimed = self
                .w
                .block(self.store.claim_for_recovery("final", self.now(), LEASE))
                .unwrap_or_else(|e| self.fail(format!("final claim: {e}")));
            let Some((mtid, driver)) = claimed else { break };
            let mut driver = driver.unwrap_or_else(|e| self.fail(format!("unreadable journal of {mtid}: {e}")));
            self.log.push(format!("t={} final recovery of {mtid}", self.t));
            loop {
                match self.w.block(driver.step(&self.store, self.now())) {
                    Ok(Step::More) => {}
                    Ok(Step::Done(_)) => break,
                    Err(e) => self.fail(format!("final recovery of {mtid}: {e}")),
                }
            }
        }
        self.t += 86_400_000;
        self.sweep();
        self.check_no_negative_stock();
        self.check_books();
    }

    fn check_books(&self) {
        let mut deducted: HashMap<(String, Option<String>), i64> = HashMap::new();
        for (mtid, items) in &self.orders {
            let o = self
                .w
                .block(self.store_orders().find_one(doc! { "_id": mtid }))
                .unwrap()
                .unwrap();
            let status = o.get_str("status").unwrap_or("?");
            let history = o.get_array("history").map(|h| h.len()).unwrap_or(0);
            if history != 1 {
                self.fail(format!("{mtid} settled {history} times: {o}"));
            }
            match status {
                "confirmed" => {
                    for it in items {
                        let pid = it.product_id.as_str().unwrap().to_string();
                        *deducted.entry((pid, it.size.clone())).or_default() += it.quantity;
                    }
                }
                "needs_review" => {}
                other => self.fail(format!("{mtid} ended {other}")),
            }
        }
        for p in self.products() {
            let id = p.get_str("_id").unwrap().to_string();
            let (initial, sizes) = &self.initial[&id];
            let markers = p.get_array(MARKERS).map(|a| a.len()).unwrap_or(0);
            if markers != 0 {
                self.fail(format!("{id} keeps {markers} markers: {p}"));
            }
            if sizes.is_empty() {
                let want = initial - deducted.get(&(id.clone(), None)).copied().unwrap_or(0);
                if int(p.get("stock")) != want {
                    self.fail(format!("{id}: stock {} but {want} expected: {p}", int(p.get("stock"))));
                }
                continue;
            }
            // Sized items move their size only (job.sized_items_decrement_total = false).
            if int(p.get("stock")) != *initial {
                self.fail(format!("{id}: the total moved: {p}"));
            }
            for s in p.get_array("sizes").unwrap() {
                let s = s.as_document().unwrap();
                let name = s.get_str("size").unwrap().to_string();
                let want = sizes[&name] - deducted.get(&(id.clone(), Some(name.clone()))).copied().unwrap_or(0);
                if int(s.get("stock")) != want {
                    self.fail(format!(
                        "{id} size {name}: {} but {want} expected: {p}",
                        int(s.get("stock"))
                    ));
                }
            }
        }
    }

    fn run(&mut self) {
        self.setup();
        self.begin_all();
        for _ in 0..80 {
            match self.rng.u32(0..100) {
                0..=54 if !self.drivers.is_empty() => self.step_one(),
                55..=59 if !self.drivers.is_empty() => {
                    let k = self.rng.usize(0..self.drivers.len());
                    let (d, _, _) = self.drivers.swap_remove(k);
                    self.log
                        .push(format!("t={} crash of a driver of {}", self.t, d.commit_id()));
                }
                60..=74 => self.recover_one(),
                75..=81 => self.sweep(),
                82..=91 => self.t += self.rng.i64(0..3_000),
                // Past a lease but within a lagging driver's skew: two drivers overlap.
                92..=97 => self.t += LEASE.as_millis() as i64 + self.rng.i64(0..=MAX_SKEW_MS),
                // Past every deadline and the markers' retention: sweeps can act.
                _ => self.t += (LEASE + MARKER_GRACE).as_millis() as i64 + self.rng.i64(0..60_000),
            }
        }
        self.finish_and_check();
        self.clean_up();
    }

    /// Remove this schedule's documents, so the collections stay small however many run.
    fn clean_up(&self) {
        let orders: Vec<&String> = self.orders.iter().map(|(m, _)| m).collect();
        let products: Vec<&String> = self.initial.keys().collect();
        self.w
            .block(self.store_orders().delete_many(doc! { "_id": { "$in": orders } }))
            .unwrap();
        self.w
            .block(self.store_products().delete_many(doc! { "_id": { "$in": products } }))
            .unwrap();
    }
}

/// A write cut by the driver's bound: client-side, or server-side (`MaxTimeMSExpired`, code 50).
fn ran_out_of_time(e: &StoreError) -> bool {
    match e {
        StoreError::Timeout { .. } => true,
        StoreError::Mongo { error: source, .. } => matches!(
            *source.kind,
            mongodb::error::ErrorKind::Command(ref c) if c.code == 50
        ),
        _ => false,
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("JOURNAL_MODEL_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n: u64 = std::env::var("JOURNAL_MODEL_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    (1..=n).collect()
}

/// The store of `w` as the model's drivers use it: leases of `LEASE`, sized items move their
/// size only.
fn model_store(w: &World) -> Store {
    w.block(Store::connect(&w.uri, w.db.name()))
        .expect("connect")
        .with_rules(CommitRules {
            sized_items_decrement_total: false,
            lease_ttl: LEASE,
        })
}

#[test]
fn no_interleaving_of_journal_drivers_deducts_twice_or_restores_what_was_not_deducted() {
    let w = World::new("journal_model");
    let store = model_store(&w);
    // The service's indexes: without them every recovery claim and sweep scans the orders of
    // every schedule run before.
    w.block(store.ensure_indexes()).expect("indexes");
    let started = std::time::Instant::now();
    let seeds = seeds();
    for &seed in &seeds {
        let mut m = Model {
            w: &w,
            store: store.clone(),
            rng: fastrand::Rng::with_seed(seed),
            seed,
            t: DateTime::now().timestamp_millis(),
            drivers: vec![],
            initial: HashMap::new(),
            orders: vec![],
            log: vec![],
        };
        m.run();
    }
    eprintln!(
        "journal model: {} schedules explored in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The reviewer's case, step by step: the committer applied the first item and then stalled past
/// its lease (its clock lags, so it still thinks it has time); a recovery claimed the commit and
/// finished it; then the committer goes on with the second item. It must find the marker and
/// deduct nothing: markers outlive every driver that could still act.
#[test]
fn a_driver_that_outlives_its_lease_finds_the_markers_and_deducts_nothing() {
    let w = World::new("journal_stale_driver");
    let store = model_store(&w);
    w.insert_product("tee", 10);
    w.insert_product("cap", 10);
    let id = w.insert_order("ORD-S", 100, 600, &[("tee", 2, None), ("cap", 3, None)]);
    let mut order = Order::parse(&w.order("ORD-S"), &Default::default()).expect("order");
    order.id = id;
    let t0 = DateTime::now().timestamp_millis();
    let at = |ms: i64| DateTime::from_millis(t0 + ms);
    let t = confirm_transition("PAYMENT_SUCCESS", None);
    let mut committer = w
        .block(store.begin_journal(&order, &t, "committer", at(LEASE.as_millis() as i64), at(0)))
        .unwrap()
        .expect("a draft");
    assert_eq!(w.block(committer.step(&store, at(1))).unwrap(), Step::More); // tee deducted
    assert_eq!(w.stock("tee"), 8);

    // 20 s later (past the 10 s lease) a recovery claims the commit and finishes it.
    let (_, recovery) = w
        .block(store.claim_for_recovery("recovery", at(20_000), LEASE))
        .unwrap()
        .expect("the lease expired");
    let mut recovery = recovery.expect("journal");
    let outcome = loop {
        if let Step::Done(o) = w.block(recovery.step(&store, at(20_001))).unwrap() {
            break o;
        }
    };
    assert_eq!(outcome, draft_reconciler::store::CommitOutcome::Committed);
    assert_eq!((w.stock("tee"), w.stock("cap")), (8, 7));

    // The committer's clock lags 15 s: at true time 21 s it believes it is 6 s, before its
    // deadline, and goes on where it stopped.
    let outcome = loop {
        match w.block(committer.step(&store, at(6_000))).unwrap() {
            Step::More => {}
            Step::Done(o) => break o,
        }
    };
    assert_eq!(outcome, draft_reconciler::store::CommitOutcome::Committed);
    assert_eq!((w.stock("tee"), w.stock("cap")), (8, 7), "deducted once");

    // Markers go once no driver can act any more, and not before.
    let mut r = Recovery::default();
    w.block(store.sweep_ended_journals(at(25_000), &mut r)).unwrap();
    assert_eq!(r.markers_cleared, 0, "too early to sweep");
    let later = at(20_001 + (LEASE + MARKER_GRACE).as_millis() as i64 + 1);
    w.block(store.sweep_ended_journals(later, &mut r)).unwrap();
    assert_eq!(r.markers_cleared, 2);
    for p in ["tee", "cap"] {
        assert_eq!(w.product(p).get_array(MARKERS).map(|a| a.len()).unwrap_or(0), 0);
    }
    assert_eq!((w.stock("tee"), w.stock("cap")), (8, 7));
    assert_eq!(w.history("ORD-S").len(), 1);
}

/// Shutdown and escalation give this process's leases back, but never the lease of an order it
/// is committing: its commit may still be running, and a recovery elsewhere would drive it too.
#[test]
fn releasing_leases_keeps_the_lease_of_an_order_being_committed() {
    let w = World::new("release_committing");
    let store = w.block(Store::connect(&w.uri, w.db.name())).expect("connect");
    w.insert_product("tee", 5);
    w.insert_order("ORD-C", 100, 600, &[("tee", 1, None)]);
    let claimed = w.insert_order("ORD-D", 100, 600, &[("tee", 1, None)]);
    let now = DateTime::now();
    let mut order = Order::parse(&w.order("ORD-C"), &Default::default()).expect("order");
    order.status = Status::Draft;
    let until = DateTime::from_millis(now.timestamp_millis() + 60_000);
    let t = confirm_transition("PAYMENT_SUCCESS", None);
    w.block(store.begin_journal(&order, &t, "me", until, now))
        .unwrap()
        .expect("a draft");
    assert_eq!(w.block(store.claim_ids(&[claimed], "me", now, LEASE)).unwrap().len(), 1);

    assert_eq!(w.block(store.release_leases("me")).unwrap(), 1, "only the plain claim");

    let lease_owner = |m: &str| {
        w.order(m)
            .get_document("reconciliation")
            .ok()
            .and_then(|r| r.get_str("leaseOwner").ok().map(str::to_string))
    };
    assert_eq!(lease_owner("ORD-D"), None);
    assert_eq!(lease_owner("ORD-C").as_deref(), Some("me"));
    assert_eq!(w.status("ORD-C").0, "committing");
    let stolen = w.block(store.claim_for_recovery("other", now, LEASE)).unwrap();
    assert!(stolen.is_none(), "no recovery may drive it while its lease runs");
}
