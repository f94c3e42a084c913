//! Command-line interface: the clap definitions and their help texts.
//!
//! The subcommands are part of the operator contract (README.md, Commands; docs/operations.md, Exit codes), so their help texts
//! say what each one does and what its exit codes mean: 0 ok, 1 runtime failure or escalation,
//! 2 usage or configuration error (clap itself exits 2 on a usage error).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::settlement::dates::Day;

const AFTER_HELP: &str = "\
Configuration: built-in defaults, then --config <file> (or ./config/default.toml and
./config/<APP_ENV|NODE_ENV>.toml), then MONGODB_URI, PHONEPE_MERCHANT_ID, PHONEPE_SALT_KEY,
PHONEPE_SALT_INDEX, PHONEPE_BASE_URL, LOG_LEVEL, LOG_FORMAT, then RECONCILER_<SECTION>__<KEY>
(e.g. RECONCILER_JOB__RATE_LIMIT_PER_MINUTE=600). `draft-reconciler config` shows the result.

Exit codes: 0 ok, 1 runtime failure or supervisor escalation, 2 usage or configuration error.";

/// Settles PhonePe draft orders whose payment webhook never arrived.
///
/// Finds draft orders that have waited too long, asks PhonePe for the real payment status,
/// and settles each one exactly once: confirm and deduct stock if paid, cancel if failed or
/// abandoned, park in needs_review if the money does not add up.
#[derive(Debug, Parser)]
#[command(
    name = "draft-reconciler",
    version,
    about,
    long_about,
    verbatim_doc_comment,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Config file to layer over the built-in defaults (replaces ./config/*.toml discovery).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The subcommand to run: `run` when none was given.
    pub fn subcommand(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run)
    }
}

// Help texts are wrapped by hand (verbatim_doc_comment) at 96 columns: clap wraps only with its
// `wrap_help` feature, and one more dependency for line breaks is not worth it.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the service (the default): the supervised reconciler plus the ops HTTP server.
    ///
    /// Scans for eligible drafts every job.interval_secs until SIGTERM/SIGINT, then finishes
    /// in-flight orders (up to 30 s) and releases their leases. Serves /metrics, /healthz and
    /// /readyz on ops.listen.
    ///
    /// Exit codes: 0 after a clean shutdown; 1 when actor restarts exceed
    /// supervisor.max_restarts within supervisor.restart_window_secs (so PM2/systemd restart
    /// the process) or on another runtime failure (MongoDB unreachable at start, ops.listen
    /// taken); 2 on a configuration error or an index conflict (named, with the fix).
    #[command(verbatim_doc_comment)]
    Run,
    /// Reconcile what is eligible now, once, print a summary and exit.
    ///
    /// Exit codes: 0 when the pass completed (even if some orders were parked for review or
    /// rescheduled); 1 when MongoDB is unreachable or PhonePe rejects the merchant
    /// configuration; 2 on a configuration error or an index conflict.
    #[command(verbatim_doc_comment)]
    Once,
    /// Show PhonePe's answer for one order and the decision the reconciler would take.
    ///
    /// Prints the indexes start-up would reuse or create (creating none), PhonePe's status
    /// answer, the order as stored, and the decision. A dry run: nothing is written unless
    /// --apply is given, which settles the order exactly as the service would (guarded by its
    /// status, so it is safe while the service runs).
    ///
    /// Exit codes: 0 when PhonePe was asked (and, with --apply, the decision applied); 1 when
    /// no order has this merchantTransactionId, the order cannot be reconciled, or
    /// MongoDB/PhonePe failed; 2 on a usage or configuration error, or an index conflict.
    #[command(verbatim_doc_comment)]
    Check {
        /// The order's merchantTransactionId.
        merchant_transaction_id: String,
        /// Apply the decision (confirm / cancel / park / reschedule) instead of only printing it.
        #[arg(long)]
        apply: bool,
    },
    /// End-to-end check of this deployment: create a test draft, reconcile it, verify, clean up.
    ///
    /// Creates a product and a draft order (merchantTransactionId SELFTEST-..., both marked
    /// `selftest: true`) in the configured database, asks PhonePe for its status with the
    /// configured credentials, decides, settles it through the same code as the service, checks
    /// the stored result, then deletes both documents. Against the PhonePe sandbox the test
    /// transaction is unknown, so the expected decision is a reschedule; what passes is MongoDB
    /// (writes, indexes), the PhonePe credentials (X-VERIFY accepted) and the settle path.
    ///
    /// Exit codes: 0 when every step passed; 1 when a step failed (the output names it; the
    /// test documents are removed either way); 2 on a configuration error.
    #[command(verbatim_doc_comment)]
    Selftest,
    /// Print the effective configuration as TOML, with secrets redacted.
    ///
    /// Exit codes: 0 when the configuration is valid; 2 (with one line naming the bad key)
    /// otherwise.
    #[command(verbatim_doc_comment)]
    Config,
    /// The review queue: list parked orders, show one, resolve it (fulfil, refund, cancel).
    ///
    /// Every action is a status-guarded change recorded in the order's history with
    /// by: "operator", the note and operator: $USER; safe while the service runs, and run twice
    /// it does nothing more. The operator's console (`console`) acts through the same function.
    ///
    /// Exit codes: 0 when done; 1 when refused (unknown order, wrong state, PhonePe refused or
    /// failed the refund, PhonePe reports the order paid, PhonePe unreachable) with the reason;
    /// 2 on a usage or configuration error.
    #[command(verbatim_doc_comment, subcommand)]
    Review(ReviewCommand),
    /// PhonePe's settlement reports: import them, matched against the orders, and report.
    ///
    /// `import` stores each report's rows (CSV or XLSX, as the PhonePe dashboard downloads
    /// them) and matches them: a payout for a confirmed order is recorded on it; a payment for
    /// an order that left draft unpaid is recorded and the order parked (`by: "settlement"`); a
    /// refund paid out settles the refund; anything else is a discrepancy. Importing a file
    /// again changes nothing. `report` prints the payouts per settlement day and every open
    /// discrepancy (docs/operations.md, Settlement reports).
    ///
    /// Exit codes: 0 done (discrepancies are printed, not errors); 2 when a file was rejected
    /// (a bad row: nothing of that file is written; the error names file, line and column) or
    /// on a usage or configuration error; 1 when MongoDB failed.
    #[command(verbatim_doc_comment, subcommand)]
    Settlement(SettlementCommand),
    /// The events the shop is told about (docs/events.md): list them, show one, send again.
    ///
    /// Every settlement is recorded as an event by the process that made it (run, once,
    /// check --apply, review); the service sends them to events.url. replay queues events
    /// again under the same ids and bodies (the shop dedupes by webhook-id); the service sends
    /// them. Safe while the service runs.
    ///
    /// Exit codes: 0 when done; 1 when no event matches (show, replay) or MongoDB failed; 2 on
    /// a usage or configuration error.
    #[command(verbatim_doc_comment, subcommand)]
    Events(EventsCommand),
    /// The operator's console: the review queue as web pages (docs/operations.md).
    ///
    /// Exit codes: 0 after a clean stop (serve) or a printed hash (hash-password); 1 on a
    /// runtime failure (MongoDB unreachable, console.listen taken); 2 on a usage or
    /// configuration error (console.listen unset for serve, no password on stdin).
    #[command(verbatim_doc_comment, subcommand)]
    Console(ConsoleCommand),
}

/// `events` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum EventsCommand {
    /// Events oldest first: id, type, order, created, state, attempts, last status, delivered.
    List {
        /// Only events the shop never accepted within events.retry_for_hours.
        #[arg(long)]
        failed: bool,
        /// Only the events of this order (its merchantTransactionId).
        #[arg(long, value_name = "ID")]
        order: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One event: its body as sent, and its deliveries.
    Show {
        /// The event's id (evt_..., the webhook-id the shop received).
        id: String,
    },
    /// Queue events for the shop again: same ids and bodies, attempts and window reset.
    #[command(verbatim_doc_comment)]
    Replay {
        /// The event's id (evt_...).
        #[arg(conflicts_with_all = ["order", "since"], required_unless_present_any = ["order", "since"])]
        id: Option<String>,
        /// Every event of this order (its merchantTransactionId).
        #[arg(long, value_name = "ID")]
        order: Option<String>,
        /// Every event recorded at or after this time, e.g. 2026-12-04T10:00:00Z.
        #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
        since: Option<mongodb::bson::DateTime>,
    },
}

/// An RFC 3339 time (`--since`).
fn rfc3339(s: &str) -> Result<mongodb::bson::DateTime, String> {
    mongodb::bson::DateTime::parse_rfc3339_str(s.trim())
        .map_err(|_| format!("`{s}` is not an RFC 3339 time like 2026-12-04T10:00:00Z"))
}

/// `console` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ConsoleCommand {
    /// Serve the console alone on console.listen (no scanner, no refund poller) until
    /// SIGTERM/SIGINT. `run` serves it too when console.listen is set.
    #[command(verbatim_doc_comment)]
    Serve,
    /// Read one line (a password) from stdin and print its argon2id PHC string, for
    /// console.users ("name:<the string>"). Needs no configuration.
    #[command(verbatim_doc_comment)]
    HashPassword,
}

/// `settlement` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum SettlementCommand {
    /// Import settlement reports (.csv or .xlsx), each all-or-nothing, and match their rows.
    Import {
        /// The report files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// One JSON object per file (and one for the open rows matched again) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Payouts per settlement day (rows, gross, fees, taxes, refunds, net) and open discrepancies.
    Report {
        /// First settlement day (India time), yyyy-mm-dd, inclusive.
        #[arg(long, value_name = "DATE", value_parser = iso_day)]
        from: Option<Day>,
        /// Last settlement day (India time), yyyy-mm-dd, inclusive.
        #[arg(long, value_name = "DATE", value_parser = iso_day)]
        to: Option<Day>,
        /// One JSON document, amounts in integer paise.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV, amounts in rupees with two decimals: the days, a blank line, the discrepancies.
        #[arg(long)]
        csv: bool,
    },
}

fn iso_day(s: &str) -> Result<Day, String> {
    Day::parse_iso(s).ok_or_else(|| format!("`{s}` is not a date as yyyy-mm-dd"))
}

/// `review` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ReviewCommand {
    /// Every parked order: reason, amount, payment status, age, last PhonePe code.
    List {
        /// Only orders parked for this reason (e.g. insufficient_stock).
        #[arg(long)]
        reason: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One order: as stored, its history, and PhonePe's answer now.
    Show {
        /// The order's merchantTransactionId.
        merchant_transaction_id: String,
    },
    /// Act on a parked order.
    ///
    /// fulfil: confirm and deduct stock through the same atomic commit as the service (after a
    /// restock); short stock again leaves it parked. refund: refund the paid amount through
    /// PhonePe, exactly once (a refusal by PhonePe is exit 1 with its code). cancel: asks PhonePe
    /// first and closes only an order PhonePe reports unpaid to this merchant (a merchant_mismatch
    /// may be closed; a refund_failed order only with --note saying how the money went back).
    #[command(verbatim_doc_comment)]
    Resolve {
        /// The order's merchantTransactionId.
        merchant_transaction_id: String,
        action: ResolveAction,
        /// Why, recorded in the order's history.
        #[arg(long)]
        note: Option<String>,
    },
}

/// What `review resolve` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResolveAction {
    Fulfil,
    Refund,
    Cancel,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("draft-reconciler").chain(args.iter().copied()))
    }

    fn command(args: &[&str]) -> Command {
        match parse(args) {
            Ok(cli) => cli.subcommand(),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        <Cli as CommandFactory>::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_run() {
        let cli = parse(&[]).expect("parses");
        assert_eq!(cli.command, None);
        assert_eq!(cli.subcommand(), Command::Run);
        assert_eq!(cli.config, None);
    }

    #[test]
    fn every_subcommand_parses() {
        assert_eq!(command(&["run"]), Command::Run);
        assert_eq!(command(&["once"]), Command::Once);
        assert_eq!(command(&["selftest"]), Command::Selftest);
        assert_eq!(command(&["config"]), Command::Config);
        assert_eq!(command(&["console", "serve"]), Command::Console(ConsoleCommand::Serve));
        assert_eq!(
            command(&["console", "hash-password"]),
            Command::Console(ConsoleCommand::HashPassword)
        );
        assert_eq!(
            command(&["settlement", "import", "a.csv", "b.xlsx", "--json"]),
            Command::Settlement(SettlementCommand::Import {
                files: vec!["a.csv".into(), "b.xlsx".into()],
                json: true,
            })
        );
        assert_eq!(
            command(&["settlement", "report", "--from", "2024-01-15", "--csv"]),
            Command::Settlement(SettlementCommand::Report {
                from: Day::parse_iso("2024-01-15"),
                to: None,
                json: false,
                csv: true,
            })
        );
        for bad in [
            &["settlement", "import"][..],
            &["settlement", "report", "--from", "15-01-2024"],
            &["settlement", "report", "--json", "--csv"],
        ] {
            assert_eq!(parse(bad).expect_err("usage").exit_code(), 2, "{bad:?}");
        }
        assert_eq!(
            command(&["review", "resolve", "MT1", "refund", "--note", "asked"]),
            Command::Review(ReviewCommand::Resolve {
                merchant_transaction_id: "MT1".into(),
                action: ResolveAction::Refund,
                note: Some("asked".into()),
            })
        );
        assert_eq!(
            parse(&["review", "resolve", "MT1", "burn"])
                .expect_err("action")
                .exit_code(),
            2
        );
        assert_eq!(
            command(&["events", "list", "--failed", "--order", "O1", "--json"]),
            Command::Events(EventsCommand::List {
                failed: true,
                order: Some("O1".into()),
                json: true,
            })
        );
        assert_eq!(
            command(&["events", "replay", "--since", "2026-12-04T10:00:00Z", "--order", "O1"]),
            Command::Events(EventsCommand::Replay {
                id: None,
                order: Some("O1".into()),
                since: Some(mongodb::bson::DateTime::from_millis(1_796_378_400_000)),
            })
        );
        let check = |apply| Command::Check {
            merchant_transaction_id: "MT7850590068188104".into(),
            apply,
        };
        assert_eq!(command(&["check", "MT7850590068188104"]), check(false));
        assert_eq!(command(&["check", "MT7850590068188104", "--apply"]), check(true));
        assert_eq!(command(&["check", "--apply", "MT7850590068188104"]), check(true));
    }

    #[test]
    fn config_flag_is_global() {
        for args in [
            &["--config", "x.toml", "once"][..],
            &["once", "--config", "x.toml"],
            &["--config", "x.toml"],
        ] {
            let cli = parse(args).expect("parses");
            assert_eq!(cli.config, Some(PathBuf::from("x.toml")), "{args:?}");
        }
    }

    #[test]
    fn usage_errors_are_rejected() {
        assert_eq!(
            parse(&["reconcile"]).expect_err("unknown").kind(),
            ErrorKind::InvalidSubcommand
        );
        assert_eq!(
            parse(&["check"]).expect_err("no id").kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["once", "--bogus"]).expect_err("flag").kind(),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&["--config"]).expect_err("no value").kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse(&["events", "replay"]).expect_err("nothing to replay").exit_code(),
            2
        );
        assert_eq!(
            parse(&["events", "replay", "evt_1", "--order", "O"])
                .expect_err("an id and a filter")
                .exit_code(),
            2
        );
        assert_eq!(
            parse(&["events", "replay", "--since", "yesterday"])
                .expect_err("not RFC 3339")
                .exit_code(),
            2
        );
        // clap exits 2 on usage errors, matching the documented exit code.
        assert_eq!(parse(&["reconcile"]).expect_err("unknown").exit_code(), 2);
    }
}
