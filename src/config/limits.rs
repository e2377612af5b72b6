//! `[limits]`: how much the server takes on at once, and how far a
//! request's `time` may lie from its clock.

use std::time::Duration;

use super::SettingError;
use crate::duration::parse_duration;

/// Default [`Limits::max_in_flight`]: decisions in flight at once. A
/// decision takes tens of microseconds of CPU, so 1,024 waiting calls are
/// a few tens of milliseconds of work on two cores; past that, answering at
/// once lets the client retry elsewhere instead of queueing without bound.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Default [`Limits::max_time_skew`]: 5 minutes, the clock skew allowed
/// for `auth_time` too.
pub const DEFAULT_MAX_TIME_SKEW: Duration = Duration::from_secs(300);

/// `[limits]` in the config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// `Decide`, `RecordStepUp` and `Check` calls in flight at once; more
    /// are answered `RESOURCE_EXHAUSTED` at once (default 1024).
    pub max_in_flight: Option<usize>,
    /// How far a request's `time` may lie from the server clock, e.g. `5m`,
    /// or `off` (default 5m).
    pub max_time_skew: Option<String>,
    /// The highest worst-case cost a condition may have (units of the cost
    /// model: see `docs/src/policy/cost.md`).
    pub max_condition_cost: Option<u64>,
}

/// The resolved limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls in flight at once (at least 1).
    pub max_in_flight: usize,
    /// How far a request's `time` may lie from the server clock; `None` when
    /// off (any time accepted, for simulations that replay a timeline).
    pub max_time_skew: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_time_skew: Some(DEFAULT_MAX_TIME_SKEW),
        }
    }
}

/// The limits from the flags or environment (`max_in_flight`,
/// `max_time_skew`), else `file`, else the defaults; a bad value is
/// reported in `problems` and its default used.
pub(super) fn resolve(
    max_in_flight: Option<usize>,
    max_time_skew: Option<String>,
    file: FileLimits,
    problems: &mut Vec<SettingError>,
) -> Limits {
    let defaults = Limits::default();
    let max_in_flight = match max_in_flight.or(file.max_in_flight) {
        Some(0) => {
            problems.push(SettingError::MaxInFlightZero);
            defaults.max_in_flight
        }
        Some(n) => n,
        None => defaults.max_in_flight,
    };
    let max_time_skew = match max_time_skew.or(file.max_time_skew) {
        None => defaults.max_time_skew,
        Some(text) if text.trim() == "off" => None,
        Some(text) => match parse_duration(&text) {
            Ok(d) if d > Duration::ZERO => Some(d),
            Ok(_) => {
                problems.push(SettingError::MaxTimeSkew {
                    text,
                    error: "must be positive".to_owned(),
                });
                defaults.max_time_skew
            }
            Err(error) => {
                problems.push(SettingError::MaxTimeSkew {
                    text,
                    error: error.to_string(),
                });
                defaults.max_time_skew
            }
        },
    };
    Limits {
        max_in_flight,
        max_time_skew,
    }
}

/// What a policy condition may cost: `[limits] max_condition_cost` (0 is a
/// problem), with the history sizes the estimate of `history.count`
/// depends on.
pub(super) fn cost(
    file: &FileLimits,
    history: &crate::history::HistoryConfig,
    problems: &mut Vec<SettingError>,
) -> crate::policy::CostLimits {
    crate::policy::CostLimits {
        max_condition_cost: match file.max_condition_cost {
            Some(0) => {
                problems.push(SettingError::MaxConditionCost);
                0
            }
            Some(n) => n,
            None => crate::policy::cost::DEFAULT_MAX_CONDITION_COST,
        },
        history_events: history.limits.max_events as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::{Config, Overrides};
    use super::*;

    fn resolve_with(overrides: Overrides, file_text: Option<&str>) -> Result<Limits, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stepup.toml");
        std::fs::write(
            &file,
            format!("policies = \"p\"\n{}", file_text.unwrap_or("")),
        )
        .unwrap();
        Config::resolve(overrides, Some(&file))
            .map(|c| c.limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        assert_eq!(
            resolve_with(Overrides::default(), None),
            Ok(Limits {
                max_in_flight: 1024,
                max_time_skew: Some(Duration::from_secs(300)),
            })
        );
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file = "[limits]\nmax_in_flight = 10\nmax_time_skew = \"1m\"\n";
        assert_eq!(
            resolve_with(Overrides::default(), Some(file)),
            Ok(Limits {
                max_in_flight: 10,
                max_time_skew: Some(Duration::from_secs(60)),
            })
        );
        let flags = Overrides {
            max_in_flight: Some(20),
            max_time_skew: Some("off".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_with(flags, Some(file)),
            Ok(Limits {
                max_in_flight: 20,
                max_time_skew: None,
            })
        );
        // One set in the file, the other by flag: each from its own source.
        let flags = Overrides {
            max_time_skew: Some("30s".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_with(flags, Some("[limits]\nmax_in_flight = 3\n")),
            Ok(Limits {
                max_in_flight: 3,
                max_time_skew: Some(Duration::from_secs(30)),
            })
        );
        assert_eq!(
            resolve_with(
                Overrides::default(),
                Some("[limits]\nmax_time_skew = \"off\"\n")
            )
            .map(|l| l.max_time_skew),
            Ok(None)
        );
    }

    #[test]
    fn bad_values_are_reported() {
        let err = Config::resolve(
            Overrides {
                policies: Some(PathBuf::from("p")),
                max_in_flight: Some(0),
                max_time_skew: Some("soon".into()),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_in_flight must be at least 1\nmax_time_skew `soon`: expected a number at `soon`; expected a duration such as `5m`, or `off`"
        );
        let err = resolve_with(
            Overrides::default(),
            Some("[limits]\nmax_time_skew = \"0s\"\n"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "max_time_skew `0s`: must be positive; expected a duration such as `5m`, or `off`"
        );
        let err =
            resolve_with(Overrides::default(), Some("[limits]\nmax_queue = 1\n")).unwrap_err();
        assert!(err.contains(":3: unknown field `max_queue`"), "{err}");
    }
}
