//! The CLI's commands, each to the module that carries it out: `run` and `once` (`app.rs`),
//! `check` and `selftest` (`check.rs`), `review` (`review.rs`), `events` (`events/cli.rs`),
//! `settlement` (`settlement/`), `console` (`console/`), `config`; and the exit code of a command
//! that failed (README.md, "Commands").

use anyhow::Context as _;

use crate::cli::{Command, ConsoleCommand, SettlementCommand};
use crate::config::Settings;
use crate::settlement::report_cmd::Format;
use crate::{app, check, console, events, review, settlement, telemetry};

/// Run a command that needs no configuration (`console hash-password`); `None` for the others.
pub fn without_settings(command: &Command) -> Option<u8> {
    match command {
        Command::Console(ConsoleCommand::HashPassword) => Some(console::hash_password_cli()),
        _ => None,
    }
}

/// Run one CLI command with validated settings; returns the process exit code.
pub fn execute(command: Command, settings: Settings) -> anyhow::Result<u8> {
    match command {
        Command::Config => {
            print!("{}", settings.redacted_toml());
            Ok(0)
        }
        Command::Run => {
            telemetry::init_tracing(&settings.log);
            let prometheus = telemetry::install_prometheus().context("installing the metrics recorder")?;
            telemetry::record_settings(&settings.job);
            let code = app::run(settings, Some(prometheus))?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Once => {
            telemetry::init_tracing(&settings.log);
            let summary = app::once(settings)?;
            println!("{summary}");
            Ok(0)
        }
        Command::Check {
            merchant_transaction_id,
            apply,
        } => {
            telemetry::init_tracing(&settings.log);
            check::check(settings, &merchant_transaction_id, apply)
        }
        Command::Review(cmd) => {
            telemetry::init_tracing_stderr(&settings.log);
            review::execute(cmd, settings)
        }
        Command::Events(cmd) => {
            telemetry::init_tracing_stderr(&settings.log);
            events::cli::execute(cmd, settings)
        }
        Command::Settlement(cmd) => {
            telemetry::init_tracing_stderr(&settings.log);
            match cmd {
                SettlementCommand::Import { files, json } => settlement::import::execute(files, json, settings),
                SettlementCommand::Report { from, to, json, csv } => {
                    let format = match (json, csv) {
                        (true, _) => Format::Json,
                        (_, true) => Format::Csv,
                        _ => Format::Table,
                    };
                    settlement::report_cmd::report(from, to, format, settings)
                }
            }
        }
        Command::Selftest => {
            telemetry::init_tracing(&settings.log);
            check::selftest(settings)
        }
        Command::Console(ConsoleCommand::Serve) => {
            telemetry::init_tracing(&settings.log);
            if settings.console.listen.is_none() {
                eprintln!(
                    "draft-reconciler: console.listen is not set (e.g. RECONCILER_CONSOLE__LISTEN=127.0.0.1:9466)"
                );
                return Ok(2);
            }
            console::serve_alone(settings)
        }
        Command::Console(ConsoleCommand::HashPassword) => Ok(console::hash_password_cli()),
    }
}

/// The exit code of a command that failed with `e`: 2 for a conflict only a person can resolve
/// (an index the reconciler needs against one the shop has), 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain()
        .any(|c| c.downcast_ref::<crate::store::indexes::IndexConflict>().is_some())
    {
        2
    } else {
        1
    }
}
