//! `stepup check`: validates a policy set and prints every diagnostic.

use std::path::{Path, PathBuf};

use super::{EXIT_INVALID_POLICY, Failure, Format, policy_options};
use crate::policy::PolicySet;

/// `stepup check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Directory of policy files (*.yaml, *.yml, searched recursively); with
    /// --config, the file's `policies` when neither flag nor variable is
    /// set.
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// The same directory as a positional argument (`stepup check DIR`),
    /// deprecated: it works, with a warning naming --policies.
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
    /// The policy directory the command line names, if any; the positional
    /// form works but says on standard error that `--policies` replaces it.
    fn named_policies(&self) -> Option<&Path> {
        if let Some(dir) = &self.dir {
            super::warn_positional("check", dir);
        }
        self.dir.as_deref().or(self.policies.as_deref())
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
