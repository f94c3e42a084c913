//! Test support: a real SecantusDB on a free port (or `MONGODB_URI`), a fresh database per test,
//! the phonepe-sim in-process over real HTTP, fixtures, counts, and polling with a deadline;
//! [`tools`] finds the operations tools (pm2, prometheus) some suites run.

mod server;
pub mod tools;

pub use server::*;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use draft_reconciler::config::{CommitStrategy, Settings};
use draft_reconciler::schema::Schema;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::{Client, Collection, Database};
use phonepe_sim::{SimConfig, SimHandle};
use secrecy::ExposeSecret;

/// A database server shared by every test of one test binary.
pub struct DbServer {
    /// `mongodb://host:port` without a database path, and the query string to append.
    base: String,
    query: String,
    _child: Option<Child>,
}

/// The repository root.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn secantusd() -> PathBuf {
    if let Ok(p) = std::env::var("SECANTUSD") {
        return p.into();
    }
    let p = manifest_dir().join(".venv/bin/secantusd-py");
    assert!(
        p.exists(),
        "SecantusDB is not installed: run scripts/setup-dev.sh (or set MONGODB_URI)"
    );
    p
}

/// The commit strategy the suite runs with: `RECONCILER_TEST_STRATEGY` (default `auto`).
pub fn test_strategy() -> CommitStrategy {
    match std::env::var("RECONCILER_TEST_STRATEGY").as_deref() {
        Ok("journal") => CommitStrategy::Journal,
        Ok("transaction") => CommitStrategy::Transaction,
        _ => CommitStrategy::Auto,
    }
}

/// The shop schema the suite runs on: `RECONCILER_TEST_SCHEMA` = `default` (the reconciler's own
/// names) or `shop` ([`shop_schema`]). Test bodies are written in default names; the helpers
/// translate through the schema.
pub fn test_schema() -> Schema {
    match std::env::var("RECONCILER_TEST_SCHEMA").as_deref() {
        Ok("shop") => shop_schema(),
        Ok("default") | Ok("") | Err(_) => Schema::default(),
        Ok(other) => panic!("RECONCILER_TEST_SCHEMA={other}: expected default or shop"),
    }
}

/// A typical Mongoose shop (docs/schema.md): renamed collections and fields, a dotted payment
/// status, upper-case words, rupee amounts, per-size stock under other names.
pub fn shop_schema() -> Schema {
    let text = r#"
        [orders]
        collection = "shoporders"
        id = "orderRef"
        status = "orderStatus"
        payment_status = "payment.status"
        amount = "totalAmount"
        amount_unit = "rupees"
        items = "lineItems"
        item_product = "product"
        item_quantity = "qty"
        item_size = "variant"
        [orders.status_values]
        draft = "DRAFT"
        confirmed = "PLACED"
        cancelled = "CANCELLED"
        needs_review = "ON_HOLD"
        committing = "LOCKED"
        refunded = "REFUNDED"
        [orders.payment_status_values]
        pending = "PENDING"
        paid = "SUCCESS"
        failed = "FAILED"
        refund_pending = "REFUNDING"
        refunded = "REFUNDED"
        [products]
        collection = "inventory"
        stock = "available"
        sizes = "variants"
        size_name = "label"
        size_stock = "available"
    "#;
    let s: Schema = toml::from_str(text).expect("shop schema");
    s.validate().expect("valid shop schema");
    s
}

/// `schema` as the binary's variables (`RECONCILER_SCHEMA__ORDERS__COLLECTION`, ...).
pub fn schema_env(schema: &Schema) -> Vec<(String, String)> {
    schema
        .describe()
        .into_iter()
        .map(|(k, v)| (format!("RECONCILER_{}", k.replace('.', "__").to_uppercase()), v))
        .collect()
}

/// The same, as the value of `RECONCILER_JOB__COMMIT_STRATEGY` for the real binary.
pub fn test_strategy_name() -> &'static str {
    match test_strategy() {
        CommitStrategy::Journal => "journal",
        CommitStrategy::Transaction => "transaction",
        CommitStrategy::Auto => "auto",
    }
}

/// Documents of `collection` (`orders` and `products` are the schema's) in `w`'s database
/// matching `filter` (in default names, translated by [`World::shop_query`]).
pub fn count(w: &World, collection: &str, filter: Document) -> u64 {
    let collection = match collection {
        "orders" => &w.schema.orders.collection,
        "products" => &w.schema.products.collection,
        other => other,
    };
    let filter = w.shop_query(&filter);
    w.block(w.db.collection::<Document>(collection).count_documents(filter))
        .unwrap()
}

/// Orders matching `filter`.
pub fn count_orders(w: &World, filter: Document) -> u64 {
    count(w, "orders", filter)
}

/// Orders not settled yet: drafts, and orders the journal strategy is committing right now.
pub fn unsettled(w: &World) -> u64 {
    count_orders(w, doc! { "status": { "$in": ["draft", "committing"] } })
}

/// An integer field (stored as int32 or int64) as `i64`; panics on anything else.
pub fn int(b: Option<&Bson>) -> i64 {
    match b {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The same, 0 when the field is absent (a counter never incremented).
pub fn int_or_zero(b: Option<&Bson>) -> i64 {
    b.map_or(0, |b| int(Some(b)))
}

/// How far one call may arrive late at the simulator on a loaded machine (the trip from the
/// permit through the HTTP client to the simulator's log): the allowance of [`assert_paced`].
pub const SEND_JITTER_MS: u64 = 1_000;

/// The budget's ceiling as PhonePe sees it, from arrival times in any order: every k + 1
/// consecutive calls span at least `k * period_ms`, less one constant [`SEND_JITTER_MS`]. A late
/// call shortens the gap after it but not a longer window, so load does not fail this; a budget
/// that hands out permits faster than one per `period_ms` fails it once its surplus over a
/// window exceeds the allowance (over n calls, (n - 1) times the shortfall of each gap).
pub fn assert_paced(arrivals_ms: &[u64], period_ms: u64) {
    let mut at = arrivals_ms.to_vec();
    at.sort_unstable();
    // With x_i = at_i - i * period, "at_j - at_i >= (j - i) * period - allowance" for every
    // i < j is "x never falls more than the allowance below an earlier x".
    let x = |i: usize| at[i] as i64 - (i as u64 * period_ms) as i64;
    let (mut top, mut worst) = (0usize, (0usize, 0usize, 0i64));
    for j in 1..at.len() {
        if x(j - 1) > x(top) {
            top = j - 1;
        }
        if x(top) - x(j) > worst.2 {
            worst = (top, j, x(top) - x(j));
        }
    }
    let (i, j, short) = worst;
    assert!(
        short <= SEND_JITTER_MS as i64,
        "{} calls within {} ms, the budget allows one per {period_ms} ms ({short} ms short, \
         {SEND_JITTER_MS} ms allowed): arrivals {at:?}",
        j - i + 1,
        at[j] - at[i],
    );
}

/// How often the `eventually` helpers look again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The deadline of one `eventually` wait: `limit` from its start. Past it, the wait fails
/// naming `what` it waited for and, when the probe said, what it saw last.
struct Patience {
    limit: Duration,
    until: Instant,
}

impl Patience {
    fn new(limit: Duration) -> Patience {
        Patience {
            limit,
            until: Instant::now() + limit,
        }
    }

    /// Panic if the time is up; `last` is what the probe saw on its last look ("" for nothing).
    fn check(&self, what: &str, last: &dyn std::fmt::Display) {
        if Instant::now() < self.until {
            return;
        }
        let limit = self.limit;
        let last = last.to_string();
        if last.is_empty() {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        panic!("timed out after {limit:?} waiting for: {what}\nlast seen: {last}");
    }
}

/// Poll `probe` until it returns `Ok`, and return its value; or fail after `limit` with `what`
/// and the last `Err` (what the probe saw, for the failure message). The other `eventually`
/// helpers are this one.
pub fn eventually_ok<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let patience = Patience::new(limit);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => patience.check(what, &last),
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Poll `probe` until it finds something, and return it; or fail after `limit` with `what`.
pub fn eventually_some<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    eventually_ok(limit, what, || probe().ok_or(""))
}

/// Poll `cond` until it is true, or fail after `limit` with `what`.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    eventually_some(limit, what, || cond().then_some(()));
}

/// [`eventually`] inside a runtime: poll an async `cond` until it is true, or fail after
/// `limit` with `what`.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    let patience = Patience::new(limit);
    while !cond().await {
        patience.check(what, &"");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// One test's world: a fresh database, a simulator, settings pointing at both, and a private
/// tokio runtime for seeding and inspecting the database from the test thread.
pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub db: Database,
    pub uri: String,
    pub sim: SimHandle,
    pub settings: Settings,
    /// The shop's schema this world's documents are stored in ([`test_schema`]).
    pub schema: Schema,
}

pub const MERCHANT: &str = "MERCHANTUAT";
pub const SALT: &str = "test-salt-key";

impl World {
    /// A world on the default server: the replica-set-like one, or the standalone one when
    /// `RECONCILER_TEST_SERVER=standalone` (how `scripts/test.sh` reruns the suite).
    pub fn new(test: &str) -> World {
        Self::on(default_server(), test)
    }

    pub fn on(server: &DbServer, test: &str) -> World {
        Self::build(server, test, SALT, test_schema())
    }

    /// A world whose PhonePe (and settings) use `salt` as the salt key.
    pub fn with_salt(test: &str, salt: &str) -> World {
        Self::build(default_server(), test, salt, test_schema())
    }

    /// A world on `server` and `schema`, whatever the suite's environment says.
    pub fn on_with_schema(server: &DbServer, test: &str, schema: Schema) -> World {
        Self::build(server, test, SALT, schema)
    }

    /// A world on `schema` whatever `RECONCILER_TEST_SCHEMA` says.
    pub fn with_schema(test: &str, schema: Schema) -> World {
        Self::build(default_server(), test, SALT, schema)
    }

    fn build(server: &DbServer, test: &str, salt: &str, schema: Schema) -> World {
        let (uri, name) = server.fresh_uri(test);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(Client::with_uri_str(&uri)).expect("mongodb client");
        let db = client.database(&name);
        let sim = SimHandle::spawn(SimConfig {
            merchant_id: MERCHANT.into(),
            salt_key: salt.into(),
            salt_index: 1,
            path_prefix: "/apis/pg-sandbox".into(),
            rate_limit_per_minute: None,
            latency: Duration::ZERO,
        })
        .expect("phonepe-sim");
        let mut settings = Settings::for_tests(&uri, &sim.base_url());
        settings.phonepe.salt_key = Some(secrecy::SecretString::from(salt));
        settings.job.lookback = Duration::from_secs(300);
        settings.job.rate_limit_per_minute = 6000;
        settings.job.commit_strategy = test_strategy();
        settings.schema = schema.clone();
        World {
            rt,
            db,
            uri,
            sim,
            settings,
            schema,
        }
    }

    /// Run a driver action (or any future) to completion on this world's runtime.
    pub fn block<F: std::future::IntoFuture>(&self, f: F) -> F::Output {
        self.rt.block_on(f.into_future())
    }

    /// A store on this world's database and schema.
    pub fn store(&self) -> draft_reconciler::store::Store {
        self.block(draft_reconciler::store::Store::connect(&self.uri, self.db.name()))
            .expect("connect")
            .with_schema(std::sync::Arc::new(self.schema.clone()))
    }

    /// The schema's orders collection.
    pub fn orders(&self) -> Collection<Document> {
        self.db.collection(&self.schema.orders.collection)
    }

    /// The schema's products collection.
    pub fn products(&self) -> Collection<Document> {
        self.db.collection(&self.schema.products.collection)
    }

    /// A filter or update written in default names, in the schema's: top-level field names
    /// (also inside `$set`, `$inc`, `$or`, ...) and the status words compared or set.
    pub fn shop_query(&self, q: &Document) -> Document {
        let (o, p, def) = (&self.schema.orders, &self.schema.products, Schema::default());
        let names = [
            (def.orders.id.as_str(), o.id.as_str()),
            (&def.orders.status, &o.status),
            (&def.orders.payment_status, &o.payment_status),
            (&def.orders.amount, &o.amount),
            (&def.orders.created_at, &o.created_at),
            (&def.orders.updated_at, &o.updated_at),
            (&def.orders.items, &o.items),
            (&def.products.stock, &p.stock),
            (&def.products.sizes, &p.sizes),
        ];
        let mut out = Document::new();
        for (k, v) in q {
            let v = match v {
                Bson::Document(d) if k.starts_with('$') => Bson::Document(self.shop_query(d)),
                Bson::Array(a) if k.starts_with('$') => Bson::Array(
                    a.iter()
                        .map(|e| match e {
                            Bson::Document(d) => Bson::Document(self.shop_query(d)),
                            other => other.clone(),
                        })
                        .collect(),
                ),
                v if k == &def.orders.status || k == &def.orders.payment_status => self.words(k, v),
                v => v.clone(),
            };
            let k = names.iter().find(|(d, _)| d == k).map_or(k.as_str(), |(_, s)| s);
            out.insert(k, v);
        }
        out
    }

    /// A top-level order or product field's name in the schema (`paymentStatus` → `payment.status`).
    pub fn shop_field(&self, default_name: &str) -> String {
        let q = self.shop_query(&doc! { default_name: 1 });
        q.keys().next().expect("one key").clone()
    }

    /// Status words in a value compared with or set to the `field` (`status`/`paymentStatus`).
    fn words(&self, field: &str, v: &Bson) -> Bson {
        use draft_reconciler::schema::{PaymentStatusWords, StatusWords};
        let o = &self.schema.orders;
        match v {
            Bson::String(w) if field == "status" => match StatusWords::default().parse(w) {
                Some(s) => Bson::String(o.status_values.word(s).into()),
                None => v.clone(),
            },
            Bson::String(w) => match PaymentStatusWords::default().parse(w) {
                Some(p) => Bson::String(o.payment_status_values.word(p).into()),
                None => v.clone(),
            },
            Bson::Array(a) => Bson::Array(a.iter().map(|e| self.words(field, e)).collect()),
            Bson::Document(d) => Bson::Document(d.iter().map(|(k, v)| (k.clone(), self.words(field, v))).collect()),
            other => other.clone(),
        }
    }

    /// Update one order: `filter` and `update` in default names.
    pub fn update_order(&self, filter: Document, update: Document) {
        let r = self.block(
            self.orders()
                .update_one(self.shop_query(&filter), self.shop_query(&update)),
        );
        assert_eq!(r.expect("update order").matched_count, 1, "no order matches {filter:?}");
    }

    pub fn insert_product(&self, id: &str, stock: i64) {
        self.insert_raw_product(doc! { "_id": id, "stock": stock });
    }

    /// A product document as given, in default names (sizes only, odd totals, duplicates).
    pub fn insert_raw_product(&self, d: Document) {
        self.block(self.products().insert_one(self.schema.product_to_shop(&d)))
            .expect("insert product");
    }

    pub fn insert_sized_product(&self, id: &str, sizes: &[(&str, i64)]) {
        let total: i64 = sizes.iter().map(|s| s.1).sum();
        let sizes: Vec<Document> = sizes.iter().map(|(s, n)| doc! { "size": *s, "stock": *n }).collect();
        self.insert_raw_product(doc! { "_id": id, "stock": total, "sizes": sizes });
    }

    /// A draft order `age_secs` old for `amount` paise with `items` (productId, quantity, size).
    pub fn insert_order(&self, mtid: &str, amount: i64, age_secs: i64, items: &[(&str, i64, Option<&str>)]) -> Bson {
        let items: Vec<Document> = items
            .iter()
            .map(|(p, q, s)| {
                let mut d = doc! { "productId": *p, "quantity": *q };
                if let Some(s) = s {
                    d.insert("size", *s);
                }
                d
            })
            .collect();
        let created = DateTime::from_millis(DateTime::now().timestamp_millis() - age_secs * 1000);
        self.insert_raw(doc! {
            "merchantTransactionId": mtid, "status": "draft", "paymentStatus": "pending", "amount": amount,
            "items": items, "createdAt": created, "updatedAt": created,
            "customer": { "name": "Asha Rao", "phone": "+919800000000", "email": "asha@example.com" },
            "history": [],
        })
    }

    /// An order document in default names (stored in the schema's), with a fresh ObjectId.
    pub fn insert_raw(&self, mut d: Document) -> Bson {
        let id = Bson::ObjectId(ObjectId::new());
        d.insert("_id", id.clone());
        self.insert_stored(d);
        id
    }

    /// An order document in default names (stored in the schema's), `_id` as given.
    pub fn insert_stored(&self, d: Document) {
        self.block(self.orders().insert_one(self.schema.order_to_shop(&d)))
            .expect("insert order");
    }

    /// The order as stored, in the schema's names.
    pub fn stored_order(&self, mtid: &str) -> Document {
        self.block(self.orders().find_one(doc! { &self.schema.orders.id: mtid }))
            .expect("find order")
            .unwrap_or_else(|| panic!("order {mtid} not found"))
    }

    /// The order in default names (amounts in paise).
    pub fn order(&self, mtid: &str) -> Document {
        self.schema.order_from_shop(&self.stored_order(mtid))
    }

    pub fn status(&self, mtid: &str) -> (String, String) {
        let o = self.order(mtid);
        (
            o.get_str("status").unwrap_or("?").to_string(),
            o.get_str("paymentStatus").unwrap_or("?").to_string(),
        )
    }

    pub fn reason(&self, mtid: &str) -> Option<String> {
        self.order(mtid)
            .get_document("reconciliation")
            .ok()
            .and_then(|r| r.get_str("reason").ok())
            .map(str::to_string)
    }

    /// `reconciliation.paidAmount` (what PhonePe reported paid), when it is an Int64.
    pub fn paid_amount(&self, mtid: &str) -> Option<i64> {
        let o = self.order(mtid);
        o.get_document("reconciliation").ok()?.get_i64("paidAmount").ok()
    }

    pub fn history(&self, mtid: &str) -> Vec<Document> {
        self.order(mtid)
            .get_array("history")
            .map(|a| a.iter().filter_map(|h| h.as_document().cloned()).collect())
            .unwrap_or_default()
    }

    /// The product as stored, in the schema's names.
    pub fn stored_product(&self, product: &str) -> Document {
        self.block(self.products().find_one(doc! { "_id": product }))
            .expect("find product")
            .unwrap_or_else(|| panic!("product {product} not found"))
    }

    /// The product in default names.
    pub fn product(&self, product: &str) -> Document {
        self.schema.product_from_shop(&self.stored_product(product))
    }

    pub fn stock(&self, product: &str) -> i64 {
        match self.product(product).get("stock") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            other => panic!("stock of {product} is {other:?}"),
        }
    }

    pub fn size_stock(&self, product: &str, size: &str) -> i64 {
        let p = self.product(product);
        let sizes = p.get_array("sizes").expect("sizes");
        sizes
            .iter()
            .filter_map(|s| s.as_document())
            .find(|s| s.get_str("size").ok() == Some(size))
            .and_then(|s| {
                s.get("stock")
                    .and_then(Bson::as_i64)
                    .or_else(|| s.get("stock").and_then(Bson::as_i32).map(i64::from))
            })
            .expect("size stock")
    }

    /// Every order document, in default names (translated from the world's schema).
    pub fn all_orders(&self) -> Vec<Document> {
        self.block(async {
            use futures_util::TryStreamExt;
            let stored: Vec<Document> = self
                .orders()
                .find(doc! {})
                .await
                .expect("find orders")
                .try_collect()
                .await
                .expect("read orders");
            stored.iter().map(|o| self.schema.order_from_shop(o)).collect()
        })
    }

    /// Calls the simulator received for `mtid`.
    pub fn calls_for(&self, mtid: &str) -> usize {
        self.sim
            .calls()
            .iter()
            .filter(|c| c.merchant_transaction_id == mtid)
            .count()
    }

    /// Run `draft-reconciler once` in-process (its own actix System, on this thread).
    pub fn once(&self) -> draft_reconciler::actors::Summary {
        draft_reconciler::app::once(self.settings.clone()).expect("once")
    }
}

impl World {
    /// `draft-reconciler <args>` wired to this world: its database, its simulator and salt key,
    /// ops HTTP off, the suite's commit strategy, output discarded. Nothing is inherited from the
    /// test's environment but `PATH`; callers add or override variables with `.env(..)`.
    pub fn reconciler_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(reconciler_bin());
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MONGODB_URI", &self.uri)
            .env("PHONEPE_BASE_URL", self.sim.base_url())
            .env("PHONEPE_MERCHANT_ID", MERCHANT)
            .env(
                "PHONEPE_SALT_KEY",
                self.settings
                    .phonepe
                    .salt_key
                    .as_ref()
                    .map_or("", |s| s.expose_secret()),
            )
            .env("PHONEPE_SALT_INDEX", "1")
            .env("RECONCILER_OPS__LISTEN", "")
            .env("RECONCILER_JOB__COMMIT_STRATEGY", test_strategy_name())
            .envs(schema_env(&self.schema))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

/// A child process that is killed (and reaped) when dropped, so a failing test never leaves a
/// service running behind it. Derefs to the `Child`.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Paths of the built binaries.
pub fn reconciler_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_draft-reconciler"))
}

/// A minimal HTTP/1.0 GET against 127.0.0.1:`port`: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}
