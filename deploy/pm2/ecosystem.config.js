// PM2: from the repository root, `cargo build --release && pm2 start deploy/pm2/ecosystem.config.js`.
// Runs the release binary directly (no Node interpreter). Secrets come from the environment
// PM2 is started with (or an `env_production` block you keep out of version control).
module.exports = {
  apps: [
    {
      name: "draft-reconciler",
      script: "./target/release/draft-reconciler",
      args: "run",
      interpreter: "none",
      exec_mode: "fork",
      instances: 1,
      autorestart: true,
      max_memory_restart: "500M",
      exp_backoff_restart_delay: 1000,
      kill_timeout: 35000, // graceful shutdown waits up to 30 s for in-flight orders
      out_file: "./logs/out.log",
      error_file: "./logs/err.log",
      log_file: "./logs/combined.log",
      merge_logs: true,
      env: {
        NODE_ENV: "production",
        LOG_FORMAT: "json",
      },
    },
  ],
};
