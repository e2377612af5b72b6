//! `stepup replay`: decides recorded requests under a candidate policy set
//! and reports how the outcomes would change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{EXIT_RUNTIME, EXIT_USAGE, Failure, Format, load_policies, policy_options};

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
