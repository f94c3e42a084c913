// PM2: from the repository root,
//
//   cargo build --release
//   pm2 start deploy/pm2/ecosystem.config.js      # then: pm2 save && pm2 startup
//
// Runs the release binary directly (`interpreter: "none"`: no Node.js in the process). Secrets
// (PHONEPE_SALT_KEY, MONGODB_URI, PHONEPE_MERCHANT_ID, PHONEPE_SALT_INDEX, ...) come from the
// environment `pm2 start` is run in; never write them into this file.
//
// Two optional overrides, used by the test suite (tests/it/pm2.rs) and handy for odd layouts:
//   DRAFT_RECONCILER_BIN      the binary to run (default: target/release/draft-reconciler)
//   DRAFT_RECONCILER_LOG_DIR  where the three log files go (default: logs/ in the repository)
const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const logDir = process.env.DRAFT_RECONCILER_LOG_DIR || path.join(root, "logs");

module.exports = {
  apps: [
    {
      name: "draft-reconciler",
      script: process.env.DRAFT_RECONCILER_BIN || path.join(root, "target", "release", "draft-reconciler"),
      args: "run",
      cwd: root, // config/default.toml and config/production.toml are read from here
      interpreter: "none",
      exec_mode: "fork",
      instances: 1, // several instances are safe (leases), but one respects the PhonePe budget
      autorestart: true,
      max_memory_restart: "500M",
      // 1 s, doubling up to 15 s between restarts, reset after 30 s of uptime: a crash loop
      // (exit 1 after a restart storm, MongoDB down at start) backs off instead of spinning.
      exp_backoff_restart_delay: 1000,
      kill_timeout: 35000, // SIGTERM → graceful shutdown waits up to 30 s for in-flight orders
      // The three files the original job documented. merge_logs: no "-0" instance suffix.
      out_file: path.join(logDir, "out.log"),
      error_file: path.join(logDir, "err.log"),
      log_file: path.join(logDir, "combined.log"),
      merge_logs: true,
      env: {
        NODE_ENV: "production", // selects config/production.toml
        LOG_FORMAT: "json", // one JSON object per line, whatever the terminal
      },
    },
  ],
};
