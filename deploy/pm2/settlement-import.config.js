// PM2: the daily import of PhonePe's settlement reports (docs/operations.md, Settlement reports).
// From the repository root, next to the service's own ecosystem.config.js:
//
//   pm2 start deploy/pm2/settlement-import.config.js     # then: pm2 save
//
// Every day at 09:30 (the server's local time) it imports the reports downloaded into
// DRAFT_RECONCILER_SETTLEMENT_DIR (default: settlement/ in the repository) in the last 8 days:
// importing a report again changes nothing, so overlapping downloads are fine. PM2 also runs it
// once at `pm2 start`. It exits when done (autorestart off): `pm2 status` shows it `stopped`
// between runs, and its exit code in `pm2 describe draft-reconciler-settlement` (0: imported,
// 2: a file was rejected, nothing of it written; the reason is in logs/settlement-err.log).
// Secrets (MONGODB_URI, PHONEPE_*) come from the environment `pm2 start` is run in, as for the
// service; never write them into this file.
const path = require("path");

const root = path.resolve(__dirname, "..", "..");
const logDir = process.env.DRAFT_RECONCILER_LOG_DIR || path.join(root, "logs");
const bin = process.env.DRAFT_RECONCILER_BIN || path.join(root, "target", "release", "draft-reconciler");
const dir = process.env.DRAFT_RECONCILER_SETTLEMENT_DIR || path.join(root, "settlement");

module.exports = {
  apps: [
    {
      name: "draft-reconciler-settlement",
      // A shell only to list the files: the import itself is the binary, no Node.js in it.
      script: "/bin/sh",
      args: [
        "-c",
        'find "$SETTLEMENT_DIR" -maxdepth 1 -type f \\( -name "*.csv" -o -name "*.xlsx" \\) -mtime -8 -print0 ' +
          '| xargs -0 -r "$DRAFT_RECONCILER_BIN" settlement import',
      ],
      cwd: root, // config/default.toml and config/production.toml are read from here
      interpreter: "none",
      exec_mode: "fork",
      instances: 1,
      autorestart: false, // a one-shot job, started again by the cron below
      cron_restart: "30 9 * * *",
      out_file: path.join(logDir, "settlement-out.log"),
      error_file: path.join(logDir, "settlement-err.log"),
      merge_logs: true,
      env: {
        NODE_ENV: "production",
        LOG_FORMAT: "json",
        SETTLEMENT_DIR: dir,
        DRAFT_RECONCILER_BIN: bin,
      },
    },
  ],
};
