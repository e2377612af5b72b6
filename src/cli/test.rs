//! `stepup test`: runs the policy test suites of a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{EXIT_FAILED, EXIT_INVALID_POLICY, EXIT_USAGE, Failure, Format, policy_options};
use crate::policy::{PolicySet, Report};

/// `stepup test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Directory of policy files and their test suites (`*_test.yaml`,
    /// searched recursively); with --config, the file's `policies` when
    /// neither flag nor variable is set.
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The same directory as a positional argument (`stepup test DIR`),
    /// deprecated: it works, with a warning naming --policies.
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
    /// The policy directory the command line names, if any; the positional
    /// form works but says on standard error that `--policies` replaces it.
    fn named_policies(&self) -> Option<&Path> {
        if let Some(dir) = &self.dir {
            super::warn_positional("test", dir);
        }
        self.dir.as_deref().or(self.policies.as_deref())
    }
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
