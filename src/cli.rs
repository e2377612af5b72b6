//! The `stepup` command line: `serve`, `check`, `eval`, `test`, `replay`,
//! `playground` and `completions`.
//!
//! Every command that reads policies names their directory the same way:
//! `--policies DIR` or `STEPUP_POLICIES` (and, where a config file is read,
//! its `policies` key). Exit codes (`EXIT_*`, listed by `stepup --help`): 0
//! success; 1 a check failed (a failing policy test); 2 usage or invalid
//! input; 3 an invalid policy set; 4 a runtime failure (cannot bind, I/O).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

use crate::cache::CacheConfig;
use crate::config::{LogFormat, Overrides};
pub use crate::expr::limits::STACK_BYTES;
use crate::lists::ListsConfig;
use crate::policy::{CostLimits, PolicySet, Report};
use crate::proto::v1::DecideRequest;
use crate::server::convert;
use crate::service::{Service, StartError};

mod help;
use help::{
    CHECK_HELP, COMPLETIONS_HELP, EVAL_HELP, EXIT_HELP, REPLAY_HELP, REPLAY_LONG_HELP, SERVE_HELP,
    TEST_EXIT_HELP, TEST_HELP,
};

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

/// `stepup completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `stepup serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory of policy files (*.yaml, *.yml, searched recursively)
    /// [default: the config file's `policies`].
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// gRPC listen address: IP:PORT, or unix:PATH for a Unix domain socket
    /// (a stale socket file is replaced at start, the file is removed at
    /// shutdown) [default: 127.0.0.1:7171]. Plaintext TCP on a non-loopback
    /// address starts with a warning: anyone who reaches the port can ask
    /// for decisions; serve TLS (--tls-cert/--tls-key), require client
    /// certificates (--tls-client-ca) or use a Unix socket, unless a mesh
    /// proxy terminates mTLS in front of the port.
    #[arg(long, env = "STEPUP_LISTEN", value_name = "ADDR|unix:PATH")]
    pub listen: Option<String>,
    /// Permissions of the Unix socket file, octal: who may connect
    /// (connecting needs write permission) [default: 0660].
    #[arg(long, env = "STEPUP_LISTEN_MODE", value_name = "MODE")]
    pub listen_mode: Option<String>,
    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first)
    /// and the key of --tls-key (or `[tls] cert` and `key` in the config
    /// file). The files are reloaded when they change (e.g. renewed by
    /// cert-manager), every 10s and on SIGHUP, without dropping
    /// connections; a pair that does not load is logged and the previous
    /// one kept [default: none, plaintext].
    #[arg(long, env = "STEPUP_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "STEPUP_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by a CA in FILE (PEM): mutual
    /// TLS. The caller's identity (URI SAN such as a SPIFFE ID, else DNS
    /// SAN, else subject CN) is logged with each decision as `caller`.
    /// Needs --tls-cert and --tls-key [default: none, no client
    /// certificate asked for].
    #[arg(long, env = "STEPUP_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Do not watch the policy directory (reload on SIGHUP only). By default
    /// changes are picked up within a second; an invalid new set is
    /// rejected and the last good one keeps serving.
    #[arg(long, env = "STEPUP_NO_WATCH", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_watch: bool,
    /// Admin HTTP listener for /metrics, /livez, /readyz and /policy, or
    /// `off` [default: 127.0.0.1:7172].
    #[arg(long, env = "STEPUP_ADMIN", value_name = "ADDR|off")]
    pub admin: Option<String>,
    /// Serve the AuthZEN Authorization API (`/access/v1/*`,
    /// `/.well-known/authzen-configuration`) on a listener of its own too:
    /// IP:PORT or unix:PATH, HTTP/1.1 and HTTP/2, with the gRPC listener's
    /// TLS and client-certificate settings (or `[http] listen` in the
    /// config file). The endpoints are always on the gRPC port.
    #[arg(long, env = "STEPUP_HTTP", value_name = "ADDR|unix:PATH")]
    pub http: Option<String>,
    /// Write every decision as a JSON line to `stdout` or to FILE (rotated
    /// by size), or as OTLP log records (`otlp`, to the collector the
    /// OTEL_EXPORTER_OTLP_* variables name); masking, sampling and rotation
    /// are set in the config file [default: off].
    #[arg(long, env = "STEPUP_DECISION_LOG", value_name = "stdout|otlp|FILE")]
    pub decision_log: Option<String>,
    /// Threads serving gRPC [default: the cores this process may use; with
    /// one, a single-threaded runtime].
    #[arg(long, env = "STEPUP_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// Config file (TOML); flags and STEPUP_* variables override it.
    /// `[history] backend = "redis"` with `redis_url` shares behavioural
    /// history between replicas (see `docs/src/reference/config.md`)
    /// [default: none].
    #[arg(long, env = "STEPUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Decision cache entries; 0 turns the cache off [default: 100000].
    #[arg(long, env = "STEPUP_CACHE_SIZE", value_name = "N")]
    pub cache_size: Option<u64>,
    /// Decision cache entry lifetime, e.g. 30s, 5m [default: 60s].
    #[arg(long, env = "STEPUP_CACHE_TTL", value_name = "DURATION")]
    pub cache_ttl: Option<String>,
    /// Log filter: a level (info, debug) or a RUST_LOG-style directive
    /// [default: info; RUST_LOG is used when neither flag nor file sets it].
    #[arg(long, env = "STEPUP_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "STEPUP_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Decide, RecordStepUp and Check calls in flight at once; past it a
    /// call is answered RESOURCE_EXHAUSTED at once, not queued (health
    /// checks never are) [default: 1024].
    #[arg(long, env = "STEPUP_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// How far a request's `time` may lie from the server clock, past or
    /// future, e.g. 5m; beyond it the call is answered INVALID_ARGUMENT.
    /// `off` accepts any time (for replaying a recorded timeline)
    /// [default: 5m].
    #[arg(long, env = "STEPUP_MAX_TIME_SKEW", value_name = "DURATION|off")]
    pub max_time_skew: Option<String>,
}

impl ServeArgs {
    /// The flag and environment values, for [`crate::config::Config::resolve`].
    pub fn overrides(&self) -> Overrides {
        Overrides {
            policies: self.policies.clone(),
            listen: self.listen.clone(),
            listen_mode: self.listen_mode.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            watch: self.no_watch.then_some(false),
            admin: self.admin.clone(),
            decision_log: self.decision_log.clone(),
            cache_size: self.cache_size,
            cache_ttl: self.cache_ttl.clone(),
            log_level: self
                .log_level
                .clone()
                .or_else(|| std::env::var("RUST_LOG").ok()),
            log_format: self.log_format,
            max_in_flight: self.max_in_flight,
            max_time_skew: self.max_time_skew.clone(),
            http: self.http.clone(),
        }
    }
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

/// `stepup check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Directory of policy files (*.yaml, *.yml, searched recursively); with
    /// --config, the file's `policies` when neither flag nor variable is
    /// set.
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The same directory as a positional argument (`stepup check DIR`),
    /// kept for existing scripts; --policies is the documented form.
    #[arg(value_name = "DIR", hide = true)]
    pub dir: Option<PathBuf>,
    /// Config file (TOML) whose `[lists]` names the IP lists and GeoIP
    /// database the policies use (besides the policy directory's `lists/`)
    /// and whose `[limits]` bounds condition costs; the whole file is
    /// checked as `serve` would [default: none].
    #[arg(long, env = "STEPUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also print every condition's worst-case cost estimate (in cost
    /// units) and the limit (`[limits] max_condition_cost`) [default: off].
    #[arg(long)]
    pub costs: bool,
}

impl CheckArgs {
    /// The policy directory the command line names, if any.
    fn named_policies(&self) -> Option<&Path> {
        self.dir.as_deref().or(self.policies.as_deref())
    }
}

/// `stepup eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Directory of policy files (*.yaml, *.yml, searched recursively); with
    /// --config, the file's `policies` when neither flag nor variable is
    /// set.
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The request context: a file holding the JSON form of DecideRequest,
    /// or `-` for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub context: PathBuf,
    /// The decision's clock (RFC 3339, e.g. 2026-01-31T12:00:00Z); the
    /// context's `time` wins when set [default: the current time].
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<DateTime<Utc>>,
    /// Add, per signal and rule, whether it fired and why (`trace`)
    /// [default: off].
    #[arg(long)]
    pub explain: bool,
    /// Config file (TOML) whose `[lists]` names the IP lists and GeoIP
    /// database the policies use (besides the policy directory's `lists/`)
    /// [default: none].
    #[arg(long, env = "STEPUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format: json prints the DecideResponse in its proto3 JSON
    /// form, text a summary (outcome, requirements, risk, reasons).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// `stepup test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Directory of policy files and their test suites (`*_test.yaml`,
    /// searched recursively); with --config, the file's `policies` when
    /// neither flag nor variable is set.
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The same directory as a positional argument (`stepup test DIR`),
    /// kept for existing scripts; --policies is the documented form.
    #[arg(value_name = "DIR", hide = true)]
    pub dir: Option<PathBuf>,
    /// Run only the cases whose `suite › case` name contains PATTERN, or
    /// matches it whole as a glob when it holds `*` [default: every case].
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also write the results as JUnit XML to FILE [default: none].
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// List the rules no case matched and the signals no case fired
    /// [default: off].
    #[arg(long)]
    pub coverage: bool,
    /// Fail (exit 1) when a rule is matched by no case; implies --coverage
    /// [default: off].
    #[arg(long)]
    pub require_coverage: bool,
    /// Config file (TOML) whose `[lists]` names the IP lists and GeoIP
    /// database the policies use (besides the policy directory's `lists/`)
    /// [default: none].
    #[arg(long, env = "STEPUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl TestArgs {
    /// The policy directory the command line names, if any.
    fn named_policies(&self) -> Option<&Path> {
        self.dir.as_deref().or(self.policies.as_deref())
    }
}

/// `stepup replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The candidate policy set: the directory to evaluate (*.yaml, *.yml,
    /// searched recursively); with --config, the file's `policies` when
    /// neither flag nor variable is set.
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// JSON lines, each a DecideRequest or a decision-log line
    /// (`{"request": ..., "decision": ..., "time": ...}`); `-` for standard
    /// input.
    #[arg(long, value_name = "FILE|-")]
    pub requests: PathBuf,
    /// Compare with decisions under this policy set instead of the recorded
    /// decisions [default: the decisions recorded in the lines].
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Examples to show per outcome change.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub examples: usize,
    /// The clock of lines that record no time (RFC 3339) [default: the
    /// current time].
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<DateTime<Utc>>,
    /// Decision cache entries per policy set; 0 turns it off. Answers do
    /// not depend on it; it only pays off for logs of many identical
    /// requests.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub cache_size: u64,
    /// Config file (TOML) whose `[lists]` names the IP lists and GeoIP
    /// database the policies use (besides the policy directory's `lists/`)
    /// [default: none].
    #[arg(long, env = "STEPUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
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

/// `stepup check`: prints the report; the exit code says whether the set is
/// valid.
pub fn check(args: &CheckArgs) -> Result<String, Failure> {
    let options = policy_options(args.named_policies(), args.config.as_deref())?;
    let dir = &options.dir;
    let mut result = PolicySet::load_limited(dir, &options.lists, options.limits, None);
    // With test suites present, rules on actions no test and no other rule
    // uses are likely typos.
    if let Ok((set, report)) = &mut result
        && let Ok((suites, _)) = crate::suite::load(dir, set)
    {
        let mut actions: Vec<String> = suites
            .iter()
            .flat_map(|s| s.cases.iter().map(|c| c.request.action.clone()))
            .collect();
        actions.sort();
        actions.dedup();
        for d in set.unused_action_warnings(&actions) {
            report.push(d);
        }
    }
    let costs = match &result {
        Ok((set, _)) if args.costs => Some(set.cost_report()),
        _ => None,
    };
    let (report, summary) = match &result {
        Ok((set, report)) => (
            report,
            format!(
                "{}ok: `{}` is valid: {} levels, {} signals, {} rules, revision {}",
                costs
                    .as_ref()
                    .map(|c| format!("{}\n\n", c.text()))
                    .unwrap_or_default(),
                dir.display(),
                set.levels.len(),
                set.signals.len(),
                set.rules.len(),
                set.revision
            ),
        ),
        Err(report) => (report, String::new()),
    };
    match args.format {
        Format::Json => {
            let mut out = serde_json::json!({
                "valid": result.is_ok(),
                "revision": result.as_ref().ok().map(|(s, _)| s.revision.to_string()),
                "errors": report.error_count(),
                "warnings": report.warning_count(),
                "diagnostics": report.diagnostics,
            });
            if let (Some(costs), Some(map)) = (&costs, out.as_object_mut()) {
                map.insert("costs".to_owned(), costs.json());
            }
            let text = serde_json::to_string_pretty(&out).unwrap_or_default();
            if result.is_ok() {
                Ok(text)
            } else {
                // Scripts read the document from standard output either way.
                Err(Failure {
                    output: text,
                    message: String::new(),
                    code: EXIT_INVALID_POLICY,
                })
            }
        }
        Format::Text => match &result {
            Ok(_) if report.diagnostics.is_empty() => Ok(summary),
            Ok(_) => Ok(format!("{report}\n\n{summary}")),
            Err(report) => Err(Failure::policy(report)),
        },
    }
}

/// `stepup eval`: the DecideResponse as pretty JSON.
pub fn eval(args: &EvalArgs) -> Result<String, Failure> {
    let text = if args.context.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            Failure::runtime(format!(
                "error: cannot read the context from standard input: {e}"
            ))
        })?;
        s
    } else {
        std::fs::read_to_string(&args.context).map_err(|e| {
            Failure::usage(format!(
                "error: cannot read context file `{}`: {e}",
                args.context.display()
            ))
        })?
    };
    let name = if args.context.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        args.context.display().to_string()
    };
    let req: DecideRequest = crate::request::read::from_json(&text).map_err(|e| {
        Failure::usage(format!(
            "error: {name}:{}:{}: not a DecideRequest in JSON form: {e}",
            e.error.line(),
            e.error.column()
        ))
    })?;
    let now = crate::request::validate(&req, args.now.unwrap_or_else(Utc::now))
        .map_err(|e| Failure::usage(format!("error: {name}: invalid request: {e}")))?;
    let options = policy_options(args.policies.as_deref(), args.config.as_deref())?;
    let policy = load_policies(&options.dir, &options)?;
    let engine = Service::new(
        policy,
        CacheConfig {
            capacity: 0,
            ..CacheConfig::default()
        },
    );
    let decision = engine.decide(&req, now, args.explain);
    let response = convert::response(&decision);
    match args.format {
        Format::Json => serde_json::to_string_pretty(&response)
            .map_err(|e| Failure::runtime(format!("error: cannot print the response: {e}"))),
        Format::Text => Ok(summary(&response, &decision.trace)),
    }
}

/// `stepup eval --format text`: the response for people, one fact a line,
/// then the trace of `--explain` (empty without it).
fn summary(r: &crate::proto::v1::DecideResponse, trace: &[crate::engine::TraceEntry]) -> String {
    use crate::proto::v1::{Effect, Outcome};
    use std::fmt::Write as _;
    let seconds =
        |d: &Option<pbjson_types::Duration>| d.as_ref().map(|d| format!("{}s", d.seconds));
    let outcome = match r.outcome() {
        Outcome::Allow => "allow",
        Outcome::Challenge => "challenge",
        Outcome::Deny => "deny",
        Outcome::Unspecified => "unspecified",
    };
    let mut out = format!("outcome: {outcome}");
    for q in &r.requirements {
        let _ = write!(
            out,
            "\nrequirement: `{}` asks for level `{}`",
            q.rule_id, q.level
        );
        if !q.acr_values.is_empty() {
            let _ = write!(out, " (acr_values {})", q.acr_values.join(" "));
        }
        if !q.methods.is_empty() {
            let _ = write!(out, ", methods {}", q.methods.join(" "));
        }
        if let Some(max_age) = seconds(&q.max_age) {
            let _ = write!(out, ", max_age {max_age}");
        }
    }
    if !r.www_authenticate.is_empty() {
        let _ = write!(out, "\nwww-authenticate: {}", r.www_authenticate);
    }
    if let Some(risk) = &r.risk {
        let _ = write!(out, "\nrisk: {}", risk.score);
        if !risk.signals.is_empty() {
            let _ = write!(out, " (signals: {})", risk.signals.join(", "));
        }
    }
    for reason in &r.reasons {
        let effect = match reason.effect() {
            Effect::Challenge => "challenge",
            Effect::Deny => "deny",
            Effect::Unspecified => "match",
        };
        let _ = write!(
            out,
            "\nreason: {effect} `{}`: {}",
            reason.rule_id, reason.message
        );
    }
    for e in &r.errors {
        let _ = write!(out, "\nerror: `{}`: {}", e.rule_id, e.message);
    }
    let _ = write!(
        out,
        "\ndecision: {} (policy revision {})",
        r.decision_id, r.policy_revision
    );
    for t in trace {
        let verdict = match (t.kind, t.fired) {
            (crate::engine::TraceKind::Signal, true) => "fired",
            (crate::engine::TraceKind::Signal, false) => "did not fire",
            (_, true) => "matched",
            (_, false) => "did not match",
        };
        let _ = write!(
            out,
            "\ntrace: {} `{}` {verdict}: {}",
            t.kind.as_str(),
            t.id,
            t.detail
        );
    }
    out
}

/// `stepup completions`: the completion script for `shell`.
pub fn completions(args: &CompletionsArgs) -> Result<String, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "stepup", &mut script);
    let script = String::from_utf8(script)
        .map_err(|e| Failure::runtime(format!("error: the completion script is not UTF-8: {e}")))?;
    // The binary's printer ends the output with a newline of its own.
    Ok(script.trim_end().to_owned())
}

/// `stepup test`: runs the suites and prints the report on standard output;
/// a failing case ends with [`EXIT_FAILED`], invalid suites with
/// [`EXIT_USAGE`], invalid policies with [`EXIT_INVALID_POLICY`].
pub fn test(args: &TestArgs) -> Result<String, Failure> {
    let json = args.format == Format::Json;
    let invalid = |report: &Report, what: &str, code: u8| {
        let n = report.error_count();
        if json {
            return Failure {
                output: serde_json::to_string_pretty(&serde_json::json!({
                    "valid": false,
                    "errors": n,
                    "diagnostics": report.diagnostics,
                }))
                .unwrap_or_default(),
                message: String::new(),
                code,
            };
        }
        Failure {
            output: String::new(),
            message: format!(
                "{report}\n\nerror: the {what} invalid ({n} error{})",
                if n == 1 { "" } else { "s" }
            ),
            code,
        }
    };
    let warn = |report: &Report| {
        if !report.diagnostics.is_empty() && !json {
            eprintln!("{report}\n");
        }
    };
    let options = policy_options(args.named_policies(), args.config.as_deref())?;
    let set = match PolicySet::load_limited(&options.dir, &options.lists, options.limits, None) {
        Ok((set, warnings)) => {
            warn(&warnings);
            Arc::new(set)
        }
        Err(report) => return Err(invalid(&report, "policy set is", EXIT_INVALID_POLICY)),
    };
    let suites = match crate::suite::load(&options.dir, &set) {
        Ok((suites, warnings)) => {
            warn(&warnings);
            suites
        }
        Err(report) => return Err(invalid(&report, "test suites are", EXIT_USAGE)),
    };
    let filter = args.filter.as_deref().map(crate::suite::Filter::new);
    let report = crate::suite::run(&set, &suites, filter.as_ref());
    if let Some(path) = &args.junit {
        std::fs::write(path, crate::suite::junit(&report)).map_err(|e| {
            Failure::runtime(format!(
                "error: cannot write the JUnit report `{}`: {e}",
                path.display()
            ))
        })?;
    }
    if report.results.is_empty()
        && let Some(pattern) = &args.filter
    {
        eprintln!("warning: no test case matches `--filter {pattern}`");
    }
    let out = match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&crate::suite::json_report(&report)).unwrap_or_default()
        }
        Format::Text => crate::suite::text(&report, args.coverage || args.require_coverage),
    };
    let unmatched = report.coverage.unmatched_rules();
    let uncovered = args.require_coverage && !unmatched.is_empty();
    if report.failed() == 0 && !uncovered {
        return Ok(out);
    }
    let message = if uncovered {
        format!(
            "error: {} rule{} no test case matches: {}\n  = help: add a case that matches each (run with --coverage to see what the cases exercise)",
            unmatched.len(),
            if unmatched.len() == 1 { "" } else { "s" },
            unmatched
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        String::new()
    };
    Err(Failure {
        output: out,
        message,
        code: EXIT_FAILED,
    })
}

/// `stepup replay`: the report of how the candidate set would change the
/// recorded outcomes.
pub fn replay(args: &ReplayArgs) -> Result<String, Failure> {
    use crate::replay::{Baseline, ReplayOptions};
    let options = policy_options(args.policies.as_deref(), args.config.as_deref())?;
    let load = |dir: &Path| load_policies(dir, &options).map(Arc::new);
    let candidate = load(&options.dir)?;
    let baseline = match &args.baseline {
        Some(dir) => Baseline::Set(load(dir)?),
        None => Baseline::Recorded,
    };
    let options = ReplayOptions {
        examples: args.examples,
        now: args.now.unwrap_or_else(Utc::now),
        cache: args.cache_size,
    };
    let stdin = args.requests.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_owned()
    } else {
        args.requests.display().to_string()
    };
    let result = if stdin {
        crate::replay::replay(
            std::io::stdin().lock(),
            &name,
            &candidate,
            &baseline,
            &options,
        )
    } else {
        let file = std::fs::File::open(&args.requests).map_err(|e| {
            Failure::usage(format!("error: cannot read requests file `{name}`: {e}"))
        })?;
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        crate::replay::replay(reader, &name, &candidate, &baseline, &options)
    };
    let report = result.map_err(|e| {
        let code = match e {
            crate::replay::ReplayError::Read { .. } => EXIT_RUNTIME,
            crate::replay::ReplayError::Line { .. } => EXIT_USAGE,
        };
        Failure::new(format!("error: {e}"), code)
    })?;
    Ok(match args.format {
        Format::Text => report.text(),
        Format::Json => serde_json::to_string_pretty(&report.json()).unwrap_or_default(),
    })
}

/// The service `config` describes, with start-up failures mapped to exit
/// codes: an invalid policy set [`EXIT_INVALID_POLICY`], a history backend
/// or decision log that cannot be set up [`EXIT_RUNTIME`].
pub fn service_for(config: &crate::config::Config) -> Result<Arc<Service>, Failure> {
    match Service::start(config) {
        Ok(service) => Ok(Arc::new(service)),
        Err(StartError::Policy(report)) => Err(Failure::policy(&report)),
        Err(e @ (StartError::HistoryBackend(_) | StartError::DecisionLog(_))) => {
            Err(Failure::runtime(format!("error: {e}")))
        }
    }
}

/// `stepup serve`: resolves the settings, starts the runtime, logging and
/// telemetry, and serves until SIGTERM or SIGINT.
pub fn serve(args: &ServeArgs) -> Result<String, Failure> {
    let config =
        crate::config::Config::resolve(args.overrides(), args.config.as_deref()).map_err(|e| {
            Failure::usage(
                e.problems
                    .iter()
                    .map(|p| format!("error: {p}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    // One worker per core the process may use (cgroup quotas and CPU
    // affinity included); with a single core, a work-stealing scheduler
    // only adds overhead, so run everything on one thread.
    let workers = args
        .worker_threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    // Workers and the blocking pool (policy reloads) evaluate and compile
    // conditions: they get the stack the condition bounds are tested on.
    let runtime = builder
        .thread_stack_size(STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("error: cannot start the runtime: {e}")))?;
    // The OTLP exporters need the runtime to exist when they are built.
    let (telemetry, engine, metrics) = {
        let _rt = runtime.enter();
        let telemetry = crate::telemetry::logging::init(&config.log_level, config.log_format);
        let engine = match service_for(&config) {
            Ok(e) => e,
            Err(e) => {
                telemetry.shutdown();
                return Err(e);
            }
        };
        let metrics = if crate::telemetry::otlp::metrics_requested() {
            match crate::telemetry::otlp::start_metrics(
                engine.metrics(),
                std::sync::Arc::clone(&engine) as _,
            ) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!("OTLP metrics are configured but cannot start: {e}");
                    None
                }
            }
        } else {
            None
        };
        (telemetry, engine, metrics)
    };
    let served = runtime.block_on(crate::server::run(engine, &config, shutdown_signal()));
    if let Some(m) = metrics
        && let Err(e) = m.shutdown()
    {
        tracing::warn!("OTLP metrics shutdown: {e}");
    }
    telemetry.shutdown();
    served.map_err(|e| {
        // TLS files that do not load are input named by flags or the config
        // file, like the file itself; everything else is the environment.
        let code = match e {
            crate::server::ServeError::Tls(_) => EXIT_USAGE,
            _ => EXIT_RUNTIME,
        };
        Failure::new(format!("error: {e}"), code)
    })?;
    Ok(String::new())
}

/// `stepup playground`: serves the policy playground until SIGTERM or
/// SIGINT.
pub fn playground(args: &crate::playground::Args) -> Result<String, Failure> {
    let PolicyOptions { dir, lists, limits } =
        policy_options(args.policies.as_deref(), args.config.as_deref())?;
    let addr = crate::playground::listen_address(&args.listen)
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the playground listens on `{addr}`, not loopback: anyone who reaches it can run policies on this machine{}",
            if args.write {
                " and write test files"
            } else {
                ""
            }
        );
    }
    let options = crate::playground::Options {
        dir,
        write: args.write,
        requests: args.requests.clone(),
        lists,
        limits,
    };
    crate::playground::run(
        options,
        addr,
        |bound| eprintln!("stepup playground: http://{bound}/"),
        shutdown_signal(),
    )
    .map_err(|e| match e {
        crate::playground::StartError::Address(_)
        | crate::playground::StartError::Requests { .. } => Failure::usage(format!("error: {e}")),
        crate::playground::StartError::Dir { .. } => {
            Failure::new(format!("error: {e}"), EXIT_INVALID_POLICY)
        }
        _ => Failure::runtime(format!("error: {e}")),
    })?;
    Ok(String::new())
}

/// Completes on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
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
