//! The operations tools some suites run for real: pm2 (`tests/it/pm2.rs`) and prometheus
//! (`tests/it/monitoring.rs`), as `scripts/ops-tools.sh` installs them into `.tools/`, or
//! where `PM2` / `PROMETHEUS` say.

use std::path::PathBuf;

use super::manifest_dir;

/// pm2 from `PM2`, else `.tools/pm2` (npm's `pm2`, installed by `scripts/ops-tools.sh`).
pub fn pm2_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PM2") {
        return p.into();
    }
    let p = manifest_dir().join(".tools/pm2/node_modules/.bin/pm2");
    assert!(
        p.exists(),
        "pm2 is not installed: run scripts/ops-tools.sh (installs it from npm into .tools/pm2) or set PM2"
    );
    p
}

/// prometheus from `PROMETHEUS`, else `.tools/prometheus` (Debian's package, unpacked by
/// `scripts/ops-tools.sh`), else one on `PATH`.
pub fn prometheus_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PROMETHEUS") {
        return p.into();
    }
    let local = manifest_dir().join(".tools/prometheus/usr/bin/prometheus");
    if local.exists() {
        return local;
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("prometheus"))
        .find(|p| p.exists());
    on_path
        .expect("prometheus is not installed: run scripts/ops-tools.sh (Debian's prometheus package) or set PROMETHEUS")
}
