//! draft-reconciler: parse the CLI, load the config, run the chosen command. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use draft_reconciler::cli::Cli;
use draft_reconciler::config::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = draft_reconciler::without_settings(&cli.subcommand()) {
        return ExitCode::from(code);
    }
    let settings = match Settings::from_env(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("draft-reconciler: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match draft_reconciler::execute(cli.subcommand(), settings) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("draft-reconciler: {e:#}");
            ExitCode::from(draft_reconciler::exit_code(&e))
        }
    }
}
