//! Replaying recorded traffic under a candidate policy set (`stepup
//! replay`): "what would this policy change do to last week's requests?"
//!
//! The input is JSON lines, each a bare `DecideRequest` or an object with
//! the `request`, the `decision` that was made and its `time` (the decision
//! log's line format; other fields are ignored). Every request is decided
//! under the candidate set at its recorded clock and compared with the
//! recorded decision, or with a decision under a baseline set. Lines are
//! parsed one at a time into a reused buffer, so a log of any size streams.

mod compare;
mod input;
mod report;

use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::cache::{CacheConfig, DecisionCache, decide_with};
use crate::policy::PolicySet;
use compare::Comparison;
pub use input::LineProblem;
use input::{clock, parse_line, render_line_error};
pub use report::ReplayReport;

/// What the candidate's decisions are compared with.
#[derive(Debug)]
pub enum Baseline {
    /// The decisions recorded in the input lines.
    Recorded,
    /// Decisions under another policy set (e.g. the one in production).
    Set(Arc<PolicySet>),
}

/// Settings of a replay.
#[derive(Clone, Copy, Debug)]
pub struct ReplayOptions {
    /// Examples kept per outcome change.
    pub examples: usize,
    /// The clock of lines that record no time.
    pub now: DateTime<Utc>,
    /// Decision cache entries per policy set (0: no cache, the default).
    /// Answers do not depend on it. On varied traffic a miss costs more
    /// than deciding without the cache; it pays off only for logs of many
    /// identical requests.
    pub cache: u64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            examples: 3,
            now: Utc::now(),
            cache: 0,
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The input's name.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a request or a recorded decision.
    #[error("{}", render_line_error(path, *line, problem))]
    Line {
        /// The input's name.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong, and where in the line.
        problem: Box<LineProblem>,
    },
}

/// Replays every line of `input` (named `name` in errors) under
/// `candidate`.
pub fn replay(
    mut input: impl BufRead,
    name: &str,
    candidate: &Arc<PolicySet>,
    baseline: &Baseline,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let start = Instant::now();
    let cache_config = CacheConfig {
        capacity: options.cache,
        ..CacheConfig::default()
    };
    let candidate_cache = DecisionCache::new(cache_config);
    let baseline_cache = DecisionCache::new(cache_config);
    let mut comparison = Comparison::new(options.examples);
    let mut buf = String::with_capacity(4096);
    let mut line_no: u64 = 0;
    let mut requests: u64 = 0;
    loop {
        buf.clear();
        let n = input
            .read_line(&mut buf)
            .map_err(|source| ReplayError::Read {
                path: name.to_owned(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let bad = |problem: LineProblem| ReplayError::Line {
            path: name.to_owned(),
            line: line_no,
            problem: Box::new(problem),
        };
        let line = parse_line(text).map_err(bad)?;
        let now = clock(&line, options.now).map_err(|m| bad(LineProblem::new(m)))?;
        let after = decide_with(
            Arc::clone(candidate),
            candidate_cache.as_ref(),
            &line.request,
            now,
            false,
        );
        requests += 1;
        let before = match baseline {
            Baseline::Set(set) => Some(decide_with(
                Arc::clone(set),
                baseline_cache.as_ref(),
                &line.request,
                now,
                false,
            )),
            Baseline::Recorded => None,
        };
        comparison.add(line_no, &line, before.as_ref(), &after);
    }
    let rules_changed_only = comparison.rules_changed_only();
    Ok(ReplayReport {
        input: name.to_owned(),
        requests,
        transitions: comparison.transitions(),
        rules_changed_only,
        candidate: candidate.revision.to_string(),
        baseline: match baseline {
            Baseline::Set(set) => Some(set.revision.to_string()),
            Baseline::Recorded => None,
        },
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests;
