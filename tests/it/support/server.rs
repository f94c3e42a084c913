//! The database servers the suites share: a SecantusDB started on a free port (or the server
//! `MONGODB_URI` names), a standalone one for the journal strategy, and helpers to start, stop
//! and wait for a server of a test's own.

use super::*;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Start `secantusd-py` on a free port, tied to this test process: a watchdog shell kills it
/// when the test binary exits, however it exits.
pub fn start_secantus(extra: &[&str]) -> (u16, Child) {
    let port = free_port();
    let child = start_secantus_on(port, ":memory:", extra);
    (port, child)
}

/// Start `secantusd-py` on `port` with its data in `storage` (a directory, so a restart on the
/// same port and path finds the same data; or `:memory:`), behind the same watchdog. Stop it
/// with [`stop_secantus`].
pub fn start_secantus_on(port: u16, storage: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "--host".to_string(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
    ];
    args.extend([
        "--storage-path".into(),
        storage.to_string(),
        "--log-level".into(),
        "WARNING".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let script = r#"bin="$1"; parent="$2"; shift 2; "$bin" "$@" & c=$!; trap 'kill $c 2>/dev/null; wait $c; exit 0' TERM INT; while kill -0 "$parent" 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 0.2; done; kill $c 2>/dev/null; wait $c"#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(secantusd())
        .arg(std::process::id().to_string())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start secantusd-py");
    wait_for_port(port, Duration::from_secs(90));
    child
}

/// Stop a server started by [`start_secantus_on`] cleanly (SIGTERM, wait for it to exit and
/// for its port to close), so it can be started again on the same data.
pub fn stop_secantus(mut child: Child, port: u16) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "SecantusDB still listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_for_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The replica-set-like server (transactions available), or `MONGODB_URI`.
pub fn db_server() -> &'static DbServer {
    static S: OnceLock<DbServer> = OnceLock::new();
    S.get_or_init(|| {
        if let Ok(uri) = std::env::var("MONGODB_URI") {
            let (base, rest) = split_uri(&uri);
            let query = rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
            return DbServer {
                base,
                query,
                _child: None,
            };
        }
        let (port, child) = start_secantus(&["--enable-test-commands"]);
        DbServer {
            base: format!("mongodb://127.0.0.1:{port}"),
            query: "?directConnection=true".into(),
            _child: Some(child),
        }
    })
}

/// A standalone-looking server (no transactions), for the commit-strategy tests.
pub fn standalone_server() -> &'static DbServer {
    static S: OnceLock<DbServer> = OnceLock::new();
    S.get_or_init(|| {
        let (port, child) = start_secantus(&["--standalone", "--enable-test-commands"]);
        DbServer {
            base: format!("mongodb://127.0.0.1:{port}"),
            query: "?directConnection=true".into(),
            _child: Some(child),
        }
    })
}

/// The server the suite runs against by default (see `World::new`).
pub fn default_server() -> &'static DbServer {
    match std::env::var("RECONCILER_TEST_SERVER").as_deref() {
        Ok("standalone") => standalone_server(),
        _ => db_server(),
    }
}

fn split_uri(uri: &str) -> (String, String) {
    let after_scheme = uri.find("://").map(|i| i + 3).unwrap_or(0);
    match uri[after_scheme..].find('/') {
        Some(i) => (
            uri[..after_scheme + i].to_string(),
            uri[after_scheme + i + 1..].to_string(),
        ),
        None => (uri.to_string(), String::new()),
    }
}

impl DbServer {
    /// A server this test started and manages itself, on 127.0.0.1:`port`.
    pub fn on_port(port: u16) -> DbServer {
        DbServer {
            base: format!("mongodb://127.0.0.1:{port}"),
            query: "?directConnection=true".into(),
            _child: None,
        }
    }

    /// A URI for a database no other test uses.
    pub fn fresh_uri(&self, test: &str) -> (String, String) {
        static N: AtomicU32 = AtomicU32::new(0);
        let name: String = format!("t{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), test)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
            .take(60)
            .collect();
        (format!("{}/{}{}", self.base, name, self.query), name)
    }
}
