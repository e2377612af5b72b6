//! Whether calendar reads of `now` may be cached for a whole time step.
//!
//! Conditions that read the clock only through calendar accessors
//! (`now.getHours(tz)`) are cached with `floor(now / step)` in the key (see
//! [`crate::policy::PolicySet::time_step`]). That is exact only where the
//! time zone's UTC offset is a whole number of steps and does not change
//! within the step: true of every zone today (offsets and DST changes fall
//! on quarter hours), false of fixed offsets like `+05:17` and of local mean
//! times before 1900 (Asia/Kolkata was +05:53:28). So before an evaluation is
//! cached, each time zone its calendar reads use is resolved and its offset
//! checked over the step; one that fails keeps the evaluation out of the
//! cache, and every request with that key is evaluated anew.
//!
//! The zones are resolved as the `cel` crate resolves them (an IANA name, or
//! `[+-]HH:MM` when there is a colon). A zone that does not resolve, or a
//! zone argument that does not evaluate to a string, also keeps the entry
//! out: the answer is then an error, which holds at any time, but the check
//! does not have to know that the interpreter agrees.

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};

use crate::engine::{CondResult, Evaluated, interpreter};
use crate::expr::history::Recall;
use crate::expr::vals::Variables;
use crate::policy::{Condition, PolicySet};
use crate::proto::v1::DecideRequest;

/// A time zone as CEL names it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl Zone {
    /// The zone called `name`, as `cel` reads it, or `None` where `cel`
    /// would fail.
    fn parse(name: &str) -> Option<Self> {
        let Some((hours, minutes)) = name.split_once(':') else {
            if name.is_empty() {
                return Some(Self::Named(chrono_tz::UTC));
            }
            return name.parse().ok().map(Self::Named);
        };
        let hr: i32 = hours.parse().ok()?;
        let min: i32 = minutes.parse().ok()?;
        if !(-23..=23).contains(&hr) || !(0..=59).contains(&min) {
            return None;
        }
        let offset = if hours.starts_with('-') {
            hr * 60 - min
        } else {
            hr * 60 + min
        };
        FixedOffset::east_opt(offset * 60).map(Self::Fixed)
    }

    /// Its offset from UTC at `t` (Unix seconds), in seconds.
    fn offset_at(self, t: i64) -> Option<i32> {
        let at = Utc.timestamp_opt(t, 0).single()?;
        Some(match self {
            Self::Named(tz) => at.with_timezone(&tz).offset().fix().local_minus_utc(),
            Self::Fixed(offset) => offset.local_minus_utc(),
        })
    }

    /// Whether its offset is the same whole number of `step`s (seconds)
    /// from the first to the last second of the step starting at `start`.
    fn steady(self, start: i64, step: i64) -> bool {
        match (
            self.offset_at(start),
            self.offset_at(start.saturating_add(step - 1)),
        ) {
            (Some(a), Some(b)) => a == b && i64::from(a) % step == 0,
            _ => false,
        }
    }
}

/// Whether `evaluated` (of `req` at `now`) holds for the whole time step of
/// its cache key: every time zone a settled calendar read of it uses is
/// [steady](Zone::steady) over the step. Always true for a set without
/// calendar reads.
pub(super) fn steady(
    policy: &PolicySet,
    req: &DecideRequest,
    now: DateTime<Utc>,
    history: &dyn Recall,
    evaluated: &Evaluated,
) -> bool {
    let Some(step) = policy.time_step else {
        return true;
    };
    let step = i64::try_from(step.as_secs()).unwrap_or(i64::MAX).max(1);
    let start = now.timestamp().div_euclid(step).saturating_mul(step);
    // Settled conditions only: pending ones are evaluated per decision.
    let settled =
        |c: &Condition, r: &CondResult| !c.time_zones.is_empty() && *r != CondResult::Pending;
    let signals = policy
        .signals
        .iter()
        .zip(evaluated.signals.iter())
        .filter(|(s, r)| settled(&s.when, r))
        .map(|(s, _)| &s.when);
    let rules = evaluated.rules.iter().filter_map(|(i, r)| {
        let c = policy.rules.get(*i)?.when.as_ref()?;
        settled(c, r).then_some(c)
    });
    let mut conditions = signals.chain(rules).peekable();
    if conditions.peek().is_none() {
        return true;
    }
    // Rules may choose a zone by `risk` (signals cannot read it).
    let vars = Variables {
        request: req,
        now: now.fixed_offset(),
        risk: None,
        history: Some(history),
    };
    let vars = vars.with_risk(evaluated.risk.as_ref());
    let ctx = std::cell::OnceCell::new();
    let ctx = || interpreter(&ctx, policy, &vars);
    conditions.all(|c| {
        c.time_zones.iter().all(|zone| match ctx().resolve(zone) {
            Ok(cel::Value::String(name)) => {
                Zone::parse(&name).is_some_and(|z| z.steady(start, step))
            }
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The zone's local hour, as the interpreter computes `getHours(name)`.
    fn cel_hours(name: &str, t: i64) -> Option<i64> {
        let program = cel::Program::compile(&format!("now.getHours({name:?})")).ok()?;
        let mut ctx = cel::Context::default();
        let now = Utc.timestamp_opt(t, 0).single()?.fixed_offset();
        ctx.add_variable_from_value("now", now);
        match program.execute(&ctx) {
            Ok(cel::Value::Int(h)) => Some(h),
            _ => None,
        }
    }

    #[test]
    fn zones_resolve_as_the_interpreter_resolves_them() {
        let names = [
            "",
            "UTC",
            "Europe/Berlin",
            "Asia/Kolkata",
            "Asia/Kathmandu",
            "Australia/Eucla",
            "America/St_Johns",
            "+05:17",
            "-03:07",
            "05:30",
            "-00:30",
            "+23:59",
            "24:00",
            "+01:60",
            "ab:00",
            "Mars/Base",
            "europe/berlin",
        ];
        let times = [
            1_795_000_000,
            1_774_746_000,  // 2026-03-29 01:00 UTC: Berlin's summer time
            -2_519_424_000, // 1890-03-01: local mean times
        ];
        for name in names {
            for t in times {
                for dt in [0, 1_799, 1_800, 3_599] {
                    let t = t + dt;
                    let ours = Zone::parse(name)
                        .and_then(|z| z.offset_at(t))
                        .map(|off| (t + i64::from(off)).div_euclid(3600).rem_euclid(24));
                    assert_eq!(ours, cel_hours(name, t), "{name:?} at {t}");
                }
            }
        }
    }

    #[test]
    fn offsets_off_the_step_or_changing_within_it_are_not_steady() {
        let zone = |name| Zone::parse(name).unwrap();
        let quarter = 900;
        let t = 1_795_000_500 / quarter * quarter;
        assert!(zone("UTC").steady(t, quarter));
        assert!(zone("Asia/Kathmandu").steady(t, quarter)); // +05:45
        assert!(zone("-03:30").steady(t, quarter));
        assert!(!zone("+05:17").steady(t, quarter));
        assert!(zone("+05:17").steady(t, 60));
        // Local mean time: +05:53:28.
        assert!(!zone("Asia/Kolkata").steady(-2_519_424_000, 60));
        assert!(zone("Asia/Kolkata").steady(-2_519_424_000, 1));
        // The quarter hour in which Berlin changes to summer time: the
        // offset is whole quarter hours on both sides and changes on the
        // step's edge, not within it.
        assert!(zone("Europe/Berlin").steady(1_774_746_000, quarter));
        assert!(!zone("Europe/Berlin").steady(1_774_746_000 - 60, quarter));
    }
}
