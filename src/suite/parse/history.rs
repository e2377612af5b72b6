//! A case's `history`: earlier decisions (the case's request with the
//! entry's `request` merged over it), step-up reports and Shared Signals
//! events, each `ago` before the case's clock, in the order written.

use chrono::{DateTime, Utc};
use saphyr::{Scalar, YamlData};

use super::Reader;
use super::tree::{Tree, merge};
use crate::duration::parse_duration;
use crate::policy::diag::Code;
use crate::policy::yaml::{Node, get, location};
use crate::request::validate as convert;
use crate::suite::{Prior, SIGNALS};

impl Reader<'_> {
    /// The events of `history`, `None` when any is invalid (reported).
    pub(super) fn history(
        &mut self,
        node: &Node<'_>,
        case: &Tree,
        now: DateTime<Utc>,
    ) -> Option<Vec<Prior>> {
        let YamlData::Sequence(items) = &node.data else {
            let d = self
                .error(node, Code::WrongType, "`history` must be a list of earlier events")
                .help("write `history: [{ ago: 30m, request: { ... } }, { ago: 5m, stepup: failed }]`");
            self.push(d);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.prior(item, case, now) {
                Some(p) => out.push(p),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One entry of `history`.
    fn prior(&mut self, item: &Node<'_>, case: &Tree, now: DateTime<Utc>) -> Option<Prior> {
        const KEYS: &[&str] = &["ago", "request", "stepup", "signal"];
        let entries = self.y.mapping(item, "a `history` entry", KEYS)?;
        let ago = match get(&entries, "ago") {
            Some(v) => self.ago(v),
            None => {
                let d = self
                    .error(item, Code::MissingKey, "a `history` entry is missing `ago`")
                    .help("add `ago: 30m`: how long before the case's `now` it happened");
                self.push(d);
                None
            }
        };
        let at = ago.and_then(|a| now.checked_sub_signed(a))?;
        if let Some(v) = get(&entries, "signal") {
            return self.signal(v, &entries, case, at);
        }
        match (get(&entries, "stepup"), get(&entries, "request")) {
            (Some(_), Some(r)) => {
                let d = self
                    .error(
                        r,
                        Code::MisplacedKey,
                        "a `history` entry is either a `request` or a `stepup`",
                    )
                    .help("split it into two entries");
                self.push(d);
                None
            }
            (Some(v), None) => match self.y.string(v, "`stepup`").as_deref() {
                Some("failed") => Some(Prior::StepUp { at, success: false }),
                Some("passed") => Some(Prior::StepUp { at, success: true }),
                Some(other) => {
                    let d = self
                        .error(
                            v,
                            Code::UnknownOutcome,
                            format!("unknown step-up outcome `{other}`"),
                        )
                        .help("write `stepup: passed` or `stepup: failed`");
                    self.push(d);
                    None
                }
                None => None,
            },
            (None, r) => {
                let tree = match r {
                    Some(r) => merge(case.clone(), self.tree(r)?, false),
                    None => case.clone(),
                };
                let mut request = self.request(&tree, location(item))?;
                request.time = None;
                if let Err(e) = convert::validate(&request, at) {
                    let d = self.error(
                        item,
                        Code::InvalidRequest,
                        format!("invalid request in `history`: {e}"),
                    );
                    self.push(d);
                    return None;
                }
                Some(Prior::Decide {
                    request: Box::new(request),
                    at,
                })
            }
        }
    }

    /// A `signal:` entry: a Shared Signals event's effect, by name, about
    /// the case's request (or its `request`, merged over the case's, to
    /// name another session or device).
    fn signal(
        &mut self,
        v: &Node<'_>,
        entries: &[(&str, &Node<'_>)],
        case: &Tree,
        at: DateTime<Utc>,
    ) -> Option<Prior> {
        if let Some(other) = get(entries, "stepup") {
            let d = self
                .error(
                    other,
                    Code::MisplacedKey,
                    "a `history` entry is either a `stepup` or a `signal`",
                )
                .help("split it into two entries");
            self.push(d);
            return None;
        }
        let name = self.y.string(v, "`signal`")?;
        if !SIGNALS.contains(&name.as_str()) {
            let names: Vec<String> = SIGNALS.iter().map(|s| format!("`{s}`")).collect();
            let d = self
                .error(v, Code::UnknownOutcome, format!("unknown signal `{name}`"))
                .help(format!("write one of {}", names.join(", ")));
            self.push(d);
            return None;
        }
        let about = match get(entries, "request") {
            Some(r) => {
                let tree = merge(case.clone(), self.tree(r)?, false);
                Some(Box::new(self.request(&tree, location(r))?))
            }
            None => None,
        };
        Some(Prior::Signal { at, name, about })
    }

    fn ago(&mut self, v: &Node<'_>) -> Option<chrono::Duration> {
        let text = match &v.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            _ => None,
        };
        match text.as_deref().map(parse_duration) {
            Some(Ok(d)) => chrono::Duration::from_std(d).ok(),
            _ => {
                let d = self
                    .error(
                        v,
                        Code::InvalidDuration,
                        "`ago` must be a duration such as `30m`",
                    )
                    .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                self.push(d);
                None
            }
        }
    }
}
