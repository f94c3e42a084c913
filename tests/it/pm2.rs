//! The PM2 deployment, for real: `pm2 start deploy/pm2/ecosystem.config.js` from the repository
//! root runs the binary (no Node interpreter), PM2 reports it `online`, it settles an order in
//! MongoDB, answers /healthz, writes JSON logs to the three files, and `pm2 delete` + `pm2 kill`
//! stop it.
//!
//! pm2 comes from npm, installed into `.tools/pm2` by `scripts/ops-tools.sh` (which
//! `scripts/test.sh` runs); set `PM2` to use another one. The daemon runs with a private
//! `PM2_HOME` in a temporary directory, so it never meets a PM2 the machine already runs.
//!
//! The ecosystem file runs `target/release/draft-reconciler` by default; building the release
//! profile on the CI machine would double the build time, so this test points the file's
//! `DRAFT_RECONCILER_BIN` override at the binary cargo built for the tests, and its
//! `DRAFT_RECONCILER_LOG_DIR` override at the temporary directory. Everything else (interpreter,
//! memory limit, backoff, `NODE_ENV=production`, JSON logs, cwd) is the file as shipped.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::tools::pm2_bin;
use crate::support::{eventually, manifest_dir, reconciler_bin, World, MERCHANT, SALT};
use phonepe_sim::Answer;
use serde_json::Value;

/// A PM2 daemon of our own; `pm2 kill` on drop, so a failing test leaves nothing running.
struct Pm2 {
    home: PathBuf,
    env: Vec<(String, String)>,
}

impl Pm2 {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(pm2_bin());
        c.args(args)
            .current_dir(manifest_dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("PM2_HOME", self.home.join("pm2"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Run a pm2 command to completion within `limit`; (exit code, stdout + stderr).
    fn run(&self, args: &[&str], limit: Duration) -> (Option<i32>, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        // Running: a command that does not finish is killed when the wait fails.
        let mut child = support::Running(
            self.command(args)
                .stdout(std::fs::File::create(&out).expect("out"))
                .stderr(std::fs::File::create(&err).expect("err"))
                .spawn()
                .expect("start pm2"),
        );
        let status = support::eventually_some(limit, &format!("pm2 {args:?} to finish"), || {
            child.try_wait().expect("wait")
        });
        let text = format!(
            "{}{}",
            std::fs::read_to_string(out).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        );
        (status.code(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, text) = self.run(args, Duration::from_secs(60));
        assert_eq!(code, Some(0), "pm2 {args:?} failed:\n{text}");
        text
    }

    /// `pm2 jlist`: the process list as JSON.
    fn jlist(&self) -> Vec<Value> {
        let text = self.ok(&["jlist"]);
        // pm2 may print a notice before the JSON array; the array is the last line.
        let json = text.lines().rev().find(|l| l.starts_with('[')).unwrap_or("[]");
        serde_json::from_str(json).unwrap_or_else(|e| panic!("pm2 jlist is not JSON ({e}):\n{text}"))
    }

    fn app(&self) -> Option<Value> {
        self.jlist().into_iter().find(|a| a["name"] == "draft-reconciler")
    }
}

impl Drop for Pm2 {
    fn drop(&mut self) {
        let _ = self.run(&["kill"], Duration::from_secs(60));
    }
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn pm2_runs_the_service_from_the_ecosystem_file_and_it_settles_orders() {
    let started = Instant::now();
    let w = World::new("pm2");
    w.insert_product("tee", 10);
    w.insert_order("PM2-ORD-1", 49900, 600, &[("tee", 2, None)]);
    w.sim.script("PM2-ORD-1", vec![Answer::completed(49900)]);

    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let env = [
        ("DRAFT_RECONCILER_BIN", reconciler_bin().display().to_string()),
        ("DRAFT_RECONCILER_LOG_DIR", logs.display().to_string()),
        ("MONGODB_URI", w.uri.clone()),
        ("PHONEPE_BASE_URL", w.sim.base_url()),
        ("PHONEPE_MERCHANT_ID", MERCHANT.into()),
        ("PHONEPE_SALT_KEY", SALT.into()),
        ("PHONEPE_SALT_INDEX", "1".into()),
        ("RECONCILER_OPS__LISTEN", format!("127.0.0.1:{port}")),
        ("RECONCILER_JOB__INTERVAL_SECS", "1".into()),
    ];
    let pm2 = Pm2 {
        home: tmp.path().to_path_buf(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    };

    pm2.ok(&["start", "deploy/pm2/ecosystem.config.js"]);

    // PM2 says it is online, running our binary directly with the shipped settings.
    let mut app = Value::Null;
    eventually(
        Duration::from_secs(60),
        "pm2 jlist shows draft-reconciler online",
        || {
            app = pm2.app().unwrap_or(Value::Null);
            app["pm2_env"]["status"] == "online"
        },
    );
    let env_of = &app["pm2_env"];
    assert_eq!(env_of["pm_exec_path"], reconciler_bin().display().to_string());
    assert_eq!(env_of["exec_interpreter"], "none", "no Node interpreter");
    assert_eq!(env_of["max_memory_restart"], 500 * 1024 * 1024, "500 MB limit");
    assert_eq!(env_of["exp_backoff_restart_delay"], 1000);
    assert_eq!(env_of["NODE_ENV"], "production");
    assert_eq!(env_of["pm_cwd"], manifest_dir().display().to_string());
    let pid = app["pid"].as_i64().expect("pid");
    assert!(alive(pid), "pid {pid} from pm2 jlist is running");

    // It works: the order is settled in MongoDB and the ops endpoints answer.
    eventually(Duration::from_secs(60), "PM2-ORD-1 confirmed", || {
        w.status("PM2-ORD-1").0 == "confirmed"
    });
    assert_eq!(w.stock("tee"), 8);
    eventually(Duration::from_secs(30), "/healthz answers 200 under PM2", || {
        support::http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    let app = pm2.app().expect("still listed");
    assert_eq!(app["pm2_env"]["restart_time"], 0, "no restarts: {app}");

    // The three log files; stdout is one JSON object per line, order lines carry the id.
    let (out, err, combined) = (logs.join("out.log"), logs.join("err.log"), logs.join("combined.log"));
    eventually(Duration::from_secs(30), "out.log has the order's JSON line", || {
        read(&out).contains("\"merchantTransactionId\":\"PM2-ORD-1\"")
    });
    assert!(err.exists(), "err.log exists");
    eventually(Duration::from_secs(30), "combined.log has stdout too", || {
        read(&combined).contains("PM2-ORD-1")
    });
    for line in read(&out).lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(!read(&combined).contains(SALT), "salt key in logs");

    // Stop: the process goes away, then the daemon.
    pm2.ok(&["delete", "draft-reconciler"]);
    assert!(pm2.app().is_none(), "deleted from the process list");
    eventually(Duration::from_secs(40), "the service process exits", || !alive(pid));
    let daemon_pid: i64 = read(&tmp.path().join("pm2/pm2.pid")).trim().parse().expect("pm2.pid");
    pm2.ok(&["kill"]);
    eventually(Duration::from_secs(20), "the PM2 daemon exits", || !alive(daemon_pid));
    eprintln!("pm2 test took {:?}", started.elapsed());
}
