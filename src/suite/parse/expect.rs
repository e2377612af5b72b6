//! A case's `expect`: the outcome, and optionally the requirements, risk
//! score and the ids of signals and rules, each checked against the policy
//! set under test.

use saphyr::{Scalar, YamlData};

use super::Reader;
use crate::duration::parse_duration;
use crate::engine::Outcome;
use crate::policy::diag::{Code, did_you_mean};
use crate::policy::yaml::{Node, quoted_list};
use crate::suite::{Expect, ExpectedRequirement, ScoreRange};

impl Reader<'_> {
    pub(super) fn expect(&mut self, node: &Node<'_>) -> Option<Expect> {
        const KEYS: &[&str] = &[
            "outcome",
            "requirements",
            "risk_score",
            "signals",
            "reasons",
            "errors",
            "shadow",
        ];
        let entries = self.y.mapping(node, "`expect`", KEYS)?;
        let mut ok = true;
        let mut expect = Expect {
            outcome: Outcome::Allow,
            requirements: None,
            risk_score: None,
            signals: None,
            reasons: None,
            errors: None,
            shadow: None,
        };
        let mut outcome = None;
        let has_outcome = entries.iter().any(|(k, _)| *k == "outcome");
        for (key, v) in entries {
            let done = match key {
                "outcome" => {
                    outcome = self.outcome(v);
                    outcome.is_some()
                }
                "requirements" => {
                    expect.requirements = self.requirements(v);
                    expect.requirements.is_some()
                }
                "risk_score" => {
                    expect.risk_score = self.risk_score(v);
                    expect.risk_score.is_some()
                }
                "signals" => {
                    expect.signals = self.ids(v, "`signals`", Kind::Signal);
                    expect.signals.is_some()
                }
                "reasons" => {
                    expect.reasons = self.ids(v, "`reasons`", Kind::Rule);
                    expect.reasons.is_some()
                }
                "errors" => {
                    expect.errors = self.ids(v, "`errors`", Kind::Either);
                    expect.errors.is_some()
                }
                "shadow" => {
                    expect.shadow = self.ids(v, "`shadow`", Kind::Rule);
                    expect.shadow.is_some()
                }
                _ => true,
            };
            ok &= done;
        }
        match outcome {
            Some(o) => expect.outcome = o,
            None => {
                if !has_outcome {
                    let d = self
                        .error(node, Code::MissingKey, "`expect` is missing `outcome`")
                        .help("add `outcome: allow`, `challenge` or `deny`");
                    self.push(d);
                }
                return None;
            }
        }
        ok.then_some(expect)
    }

    fn outcome(&mut self, node: &Node<'_>) -> Option<Outcome> {
        let s = self.y.string(node, "`outcome`")?;
        match s.as_str() {
            "allow" => Some(Outcome::Allow),
            "challenge" => Some(Outcome::Challenge),
            "deny" => Some(Outcome::Deny),
            other => {
                let d = self
                    .error(
                        node,
                        Code::UnknownOutcome,
                        format!("unknown outcome `{other}`"),
                    )
                    .maybe_help(
                        did_you_mean(&other.to_lowercase(), ["allow", "challenge", "deny"])
                            .or_else(|| Some("use `allow`, `challenge` or `deny`".to_owned())),
                    );
                self.push(d);
                None
            }
        }
    }

    fn risk_score(&mut self, node: &Node<'_>) -> Option<ScoreRange> {
        let int = |r: &mut Self, n: &Node<'_>, what: &str| match &n.data {
            YamlData::Value(Scalar::Integer(i)) if (0..=100).contains(i) => u32::try_from(*i).ok(),
            _ => {
                let d = r
                    .error(
                        n,
                        Code::InvalidScore,
                        format!("{what} must be a whole number from 0 to 100"),
                    )
                    .help("risk scores are clamped to 0..100");
                r.push(d);
                None
            }
        };
        match &node.data {
            YamlData::Mapping(_) => {
                let entries = self.y.mapping(node, "`risk_score`", &["min", "max"])?;
                let mut range = ScoreRange { min: 0, max: 100 };
                let mut ok = true;
                for (k, v) in &entries {
                    match (*k, int(self, v, &format!("`risk_score.{k}`"))) {
                        ("min", Some(n)) => range.min = n,
                        ("max", Some(n)) => range.max = n,
                        _ => ok = false,
                    }
                }
                if entries.is_empty() {
                    let d = self
                        .error(node, Code::EmptyRange, "`risk_score` range is empty")
                        .help("write `{ min: 20, max: 60 }`, or an exact score");
                    self.push(d);
                    return None;
                }
                if ok && range.min > range.max {
                    let d = self.error(
                        node,
                        Code::EmptyRange,
                        format!(
                            "`risk_score` range is empty: min {} is above max {}",
                            range.min, range.max
                        ),
                    );
                    self.push(d);
                    return None;
                }
                ok.then_some(range)
            }
            _ => int(self, node, "`risk_score`").map(|n| ScoreRange { min: n, max: n }),
        }
    }

    fn ids(&mut self, node: &Node<'_>, what: &str, kind: Kind) -> Option<Vec<String>> {
        let list = self.string_list(node, what)?;
        let names = self.names;
        let candidates: Vec<&str> = match kind {
            Kind::Rule => names.rules.clone(),
            Kind::Signal => names.signals.clone(),
            Kind::Either => names.signals.iter().chain(&names.rules).copied().collect(),
        };
        let mut ok = true;
        for (id, at) in &list {
            if !candidates.contains(&id.as_str()) {
                let (what, code) = match kind {
                    Kind::Rule => ("rule", Code::UnknownRule),
                    Kind::Signal => ("signal", Code::UnknownSignal),
                    Kind::Either => ("rule or signal", Code::UnknownId),
                };
                let help = did_you_mean(id, candidates.iter().copied()).or_else(|| match kind {
                    Kind::Rule if names.signals.contains(&id.as_str()) => {
                        Some(format!("`{id}` is a signal; list it under `signals`"))
                    }
                    Kind::Signal if names.rules.contains(&id.as_str()) => {
                        Some(format!("`{id}` is a rule; list it under `reasons`"))
                    }
                    Kind::Signal if !candidates.is_empty() => {
                        Some(format!("the signals are {}", quoted_list(&candidates)))
                    }
                    _ => None,
                });
                let d = self
                    .error_at(*at, code, format!("unknown {what} `{id}`"))
                    .maybe_help(help);
                self.push(d);
                ok = false;
            }
        }
        ok.then(|| list.into_iter().map(|(s, _)| s).collect())
    }

    fn requirements(&mut self, node: &Node<'_>) -> Option<Vec<ExpectedRequirement>> {
        let YamlData::Sequence(items) = &node.data else {
            let d = self
                .error(node, Code::WrongType, "`requirements` must be a list")
                .help(
                    "write `requirements: [{ rule: refund-large, level: aal2 }]`, or `[]` for none",
                );
            self.push(d);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.requirement(item) {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn requirement(&mut self, node: &Node<'_>) -> Option<ExpectedRequirement> {
        let entries = self.y.mapping(
            node,
            "a requirement",
            &["rule", "level", "methods", "max_age"],
        )?;
        let mut r = ExpectedRequirement::default();
        let mut ok = true;
        for (key, v) in entries {
            match key {
                "rule" => match self.rule_id(v) {
                    Some(id) => r.rule = Some(id),
                    None => ok = false,
                },
                "level" => match self.y.string(v, "`level`") {
                    Some(level) if self.names.levels.contains(&level.as_str()) => {
                        r.level = Some(level);
                    }
                    Some(level) => {
                        let levels = self.names.levels.clone();
                        let d = self
                            .error(v, Code::UnknownLevel, format!("unknown level `{level}`"))
                            .maybe_help(did_you_mean(&level, levels.iter().copied()).or_else(
                                || {
                                    Some(if levels.is_empty() {
                                        "the policy set defines no levels".to_owned()
                                    } else {
                                        format!("the levels are {}", quoted_list(&levels))
                                    })
                                },
                            ));
                        self.push(d);
                        ok = false;
                    }
                    None => ok = false,
                },
                "methods" => match self.string_list(v, "`methods`") {
                    Some(list) => r.methods = Some(list.into_iter().map(|(s, _)| s).collect()),
                    None => ok = false,
                },
                "max_age" => {
                    let text = match &v.data {
                        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
                        _ => None,
                    };
                    match text.as_deref().map(parse_duration) {
                        Some(Ok(d)) => r.max_age = Some(d),
                        Some(Err(e)) => {
                            let d = self
                                .error(
                                    v,
                                    Code::InvalidDuration,
                                    format!("invalid duration `{}`: {e}", text.unwrap_or_default()),
                                )
                                .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                            self.push(d);
                            ok = false;
                        }
                        None => {
                            let d = self
                                .error(
                                    v,
                                    Code::InvalidDuration,
                                    "`max_age` must be a duration such as `5m`",
                                )
                                .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                            self.push(d);
                            ok = false;
                        }
                    }
                }
                _ => {}
            }
        }
        ok.then_some(r)
    }

    fn rule_id(&mut self, node: &Node<'_>) -> Option<String> {
        let id = self.y.string(node, "`rule`")?;
        if self.names.rules.contains(&id.as_str()) {
            return Some(id);
        }
        let d = self
            .error(node, Code::UnknownRule, format!("unknown rule `{id}`"))
            .maybe_help(did_you_mean(&id, self.names.rules.iter().copied()));
        self.push(d);
        None
    }
}

/// What an id in `expect` names.
#[derive(Clone, Copy)]
enum Kind {
    Rule,
    Signal,
    Either,
}
