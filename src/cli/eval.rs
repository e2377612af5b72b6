//! `stepup eval`: decides one request context and prints the response.

use std::io::Read as _;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::{Failure, Format, load_policies, policy_options};
use crate::cache::CacheConfig;
use crate::proto::v1::DecideRequest;
use crate::server::convert;
use crate::service::Service;

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
