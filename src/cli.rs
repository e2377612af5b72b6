//! The `stepup` command line: `serve`, `check`, `eval`, `test`, `replay`,
//! `playground` and `completions`.
//!
//! Every command that reads policies names their directory the same way:
//! `--policies DIR` or `STEPUP_POLICIES` (and, where a config file is read,
//! its `policies` key). Exit codes (`EXIT_*`, listed by `stepup --help`): 0
//! success; 1 a check failed (a failing policy test); 2 usage or invalid
//! input; 3 an invalid policy set; 4 a runtime failure (cannot bind, I/O).

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;
pub use crate::expr::limits::STACK_BYTES;
use crate::lists::ListsConfig;
use crate::policy::{CostLimits, PolicySet, Report};

mod check;
mod completions;
mod eval;
mod help;
mod playground;
mod replay;
mod serve;
mod test;

pub use check::{CheckArgs, check};
pub use completions::{CompletionsArgs, completions};
pub use eval::{EvalArgs, eval};
use help::{
    CHECK_HELP, COMPLETIONS_HELP, EVAL_HELP, EXIT_HELP, REPLAY_HELP, REPLAY_LONG_HELP, SERVE_HELP,
    TEST_EXIT_HELP, TEST_HELP,
};
pub use playground::playground;
pub use replay::{ReplayArgs, replay};
pub use serve::{ServeArgs, serve, service_for};
pub use test::{TestArgs, test};

/// Success.
pub const EXIT_OK: u8 = 0;
/// A check failed: a policy test case (`stepup test`), or a rule no case
/// matches (`--require-coverage`).
pub const EXIT_FAILED: u8 = 1;
/// Usage error or invalid input: flags, no policy directory, the config
/// file, TLS files, a context or requests file or line, a test suite.
pub const EXIT_USAGE: u8 = 2;
/// The policy set is invalid (or its directory cannot be read).
pub const EXIT_INVALID_POLICY: u8 = 3;
/// A runtime failure: the server cannot bind or start, an I/O error.
/// (A reader closing standard output early is not one: the command keeps
/// its own code.)
pub const EXIT_RUNTIME: u8 = 4;

/// Policy decision sidecar for step-up authentication.
///
/// Answers "may this request go ahead?" over gRPC with ALLOW, CHALLENGE (step
/// up: RFC 9470 acr_values and max_age) or DENY, from risk signals and rules
/// written in CEL.
#[derive(Debug, Parser)]
#[command(name = "stepup", version, propagate_version = true, after_help = EXIT_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments like [`Parser::parse`] (on an error:
    /// the message on standard error and exit code 2), and also refuses a
    /// policy directory named twice on the command line (`--policies A B`).
    pub fn parse_args() -> Self {
        let mut command = Self::command();
        let matches = command.get_matches_mut();
        if let Some((name @ ("check" | "test"), sub)) = matches.subcommand()
            && sub.value_source("dir") == Some(ValueSource::CommandLine)
            && sub.value_source("policies") == Some(ValueSource::CommandLine)
        {
            let mut sub_command = command.find_subcommand_mut(name).cloned();
            let e = sub_command.as_mut().map_or_else(
                || clap::Error::new(clap::error::ErrorKind::ArgumentConflict),
                |c| {
                    c.error(
                        clap::error::ErrorKind::ArgumentConflict,
                        "the policy directory is named twice: give it once, with --policies DIR",
                    )
                },
            );
            e.exit()
        }
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per process: the size of `serve`'s flags costs nothing"
)]
pub enum Command {
    /// Serve decisions over gRPC (DecisionService, health, reflection) and the
    /// AuthZEN HTTP API on the same port.
    ///
    /// HTTP/2 limits: a connection that sends no HTTP/2 preface within 10s
    /// is closed (with TLS on, its TLS handshake counts toward the 10s); idle connections are pinged every 30s and closed when the
    /// answer takes over 20s; at most 256 concurrent calls per connection
    /// and 16 KiB of headers per call; messages up to 1 MiB.
    #[command(after_long_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Validate a policy set and print every diagnostic.
    #[command(after_long_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Decide one request context (the JSON form of DecideRequest) and print
    /// the DecideResponse as JSON (or a short summary with --format text).
    #[command(after_long_help = EVAL_HELP)]
    Eval(EvalArgs),
    /// Run the policy test suites (`*_test.yaml`) of a policy directory.
    #[command(after_help = TEST_EXIT_HELP, after_long_help = TEST_HELP)]
    Test(TestArgs),
    /// Decide recorded requests (JSON lines) under a candidate policy set and
    /// report how the outcomes would change.
    #[command(after_help = REPLAY_HELP, after_long_help = REPLAY_LONG_HELP)]
    Replay(ReplayArgs),
    /// Print a shell completion script for stepup on standard output.
    #[command(after_long_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Edit policies, decide scenarios, walk through step-ups and save test
    /// cases in a local web page (http://127.0.0.1:7180 by default).
    Playground(crate::playground::Args),
}

/// Output format of `check`, `eval`, `test` and `replay`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: diagnostics with source lines and carets, reports and
    /// summaries as text.
    #[default]
    Text,
    /// For scripts and editors: one JSON document, whose shape `--help`
    /// documents below.
    Json,
}

/// An error ending a command, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// What to print on standard output first (the report of a failing
    /// test run), if anything.
    pub output: String,
    /// What to print on standard error.
    pub message: String,
    /// The exit code, one of the `EXIT_*` constants.
    pub code: u8,
}

impl Failure {
    /// A failure with `message` and exit code `code`.
    pub fn new(message: impl Into<String>, code: u8) -> Self {
        Self {
            output: String::new(),
            message: message.into(),
            code,
        }
    }

    /// Usage error or invalid input ([`EXIT_USAGE`]).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(message, EXIT_USAGE)
    }

    /// A runtime failure ([`EXIT_RUNTIME`]).
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(message, EXIT_RUNTIME)
    }

    fn policy(report: &Report) -> Self {
        Self::new(
            format!(
                "{report}\n\nerror: the policy set is invalid ({} error{})",
                report.error_count(),
                if report.error_count() == 1 { "" } else { "s" }
            ),
            EXIT_INVALID_POLICY,
        )
    }
}

/// What a command that reads policies needs: their directory and what the
/// config file says about loading them.
#[derive(Debug)]
pub struct PolicyOptions {
    /// The policy directory: `--policies` or `STEPUP_POLICIES`, else the
    /// config file's `policies`.
    pub dir: PathBuf,
    /// The config file's `[lists]`.
    pub lists: ListsConfig,
    /// The cost limits (`[limits]`, `[history] max_events`).
    pub limits: CostLimits,
}

/// The policy directory `policies` (from `--policies` or `STEPUP_POLICIES`)
/// or the config file names, and what the config file `config` says about
/// loading policies. The whole file is checked, as `serve` would. No
/// directory anywhere is a usage error ([`EXIT_USAGE`]).
pub fn policy_options(
    policies: Option<&Path>,
    config: Option<&Path>,
) -> Result<PolicyOptions, Failure> {
    let problems = |problems: &[crate::config::SettingError]| {
        Failure::usage(
            problems
                .iter()
                .map(|p| format!("error: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    let Some(path) = config else {
        return match policies {
            Some(dir) => Ok(PolicyOptions {
                dir: dir.to_owned(),
                lists: ListsConfig::default(),
                limits: CostLimits::default(),
            }),
            None => Err(problems(&[crate::config::SettingError::NoPolicies])),
        };
    };
    let overrides = Overrides {
        policies: policies.map(Path::to_owned),
        ..Overrides::default()
    };
    crate::config::Config::resolve(overrides, Some(path))
        .map(|c| PolicyOptions {
            dir: c.policies,
            lists: c.lists,
            limits: c.cost_limits,
        })
        .map_err(|e| problems(&e.problems))
}

/// Warns that `stepup COMMAND DIR` is deprecated in favour of `--policies`.
fn warn_positional(command: &str, dir: &Path) {
    eprintln!(
        "warning: `stepup {command} DIR` is deprecated: use `stepup {command} --policies {}` (or STEPUP_POLICIES)",
        dir.display()
    );
}

/// Loads the policy set in `dir` for a command, printing warnings to
/// standard error.
pub fn load_policies(dir: &Path, options: &PolicyOptions) -> Result<PolicySet, Failure> {
    match PolicySet::load_limited(dir, &options.lists, options.limits, None) {
        Ok((set, warnings)) => {
            if !warnings.diagnostics.is_empty() {
                eprintln!("{warnings}\n");
            }
            Ok(set)
        }
        Err(report) => Err(Failure::policy(&report)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks: no two flags with one name, defaults that
        // parse, value names and help present.
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_that_reads_policies_takes_policies_and_its_variable() {
        let cli = Cli::command();
        for name in ["serve", "check", "eval", "test", "replay", "playground"] {
            let command = cli.find_subcommand(name).unwrap();
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == "policies")
                .unwrap();
            assert_eq!(arg.get_long(), Some("policies"), "{name}");
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some("STEPUP_POLICIES"),
                "{name}"
            );
            assert!(
                !arg.is_required_set(),
                "{name}: the config file may name it"
            );
        }
    }
}
