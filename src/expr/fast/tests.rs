//! The fast path against the interpreter: wherever `Fast::eval` answers, the
//! `cel` program must give the same bool, over random requests (values of
//! every JSON kind where policies expect one), histories and risk.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use super::Fast;
use crate::PolicySet;
use crate::expr::history::View;
use crate::expr::vals::Variables;
use crate::history::model::Event;
use crate::history::store::Entry;
use crate::lists::{IpList, Lists};
use crate::proto::v1 as pb;

/// Every condition of the example policies, and shapes around them: mixed
/// types, missing keys, containers, literals of each kind.
const EXPRESSIONS: &[&str] = &[
    "!device.trusted",
    "device.trusted == true",
    "device.trusted || network.country == \"KP\"",
    "network.country != \"\" && has(subject.attributes.usual_countries) && \
     !(network.country in subject.attributes.usual_countries)",
    "network.country in subject.attributes.x",
    "network.country in [\"KP\", \"IR\", \"SY\", \"CU\"]",
    "\"admin\" in subject.roles",
    "\"role\" in resource.attributes",
    "\"role\" in resource.attributes.x",
    "has(attributes.fraud_score) && attributes.fraud_score >= 0.8",
    "attributes.fraud_score >= 0.8",
    "attributes.fraud_score >= 1",
    "attributes.x",
    "!attributes.x",
    "attributes.x == true",
    "attributes.x == \"a\"",
    "attributes.x != 2.0",
    "attributes.x < \"b\"",
    "resource.attributes.amount > 1000.0",
    "resource.attributes.amount > 10000.0",
    "resource.attributes.amount > 1000",
    "resource.attributes.environment == \"production\"",
    "has(resource.attributes.role) && resource.attributes.role == \"admin\"",
    "has(resource.attributes.x)",
    "has(resource.attributes.x.role)",
    "has(device.id)",
    "resource.attributes.x.role == \"admin\"",
    "(has(network.attributes.anonymizer) && network.attributes.anonymizer == true) || \
     (network.ip != \"\" && ip_in(network.ip, \"tor_exits\"))",
    "ip_in(network.ip, \"tor_exits\")",
    "network.asn == 3320",
    "network.asn >= 3320u",
    "session.auth_time < now",
    "session.auth_time >= now",
    "action == \"payments.refund\" && subject.tenant != \"\"",
    "\"anonymizing-network\" in risk.signals",
    "risk.score >= 50",
    "risk.score >= 50.0",
    "history.travel_kmh > 900.0",
    "history.stepups_failed >= 2",
    "history.count(\"payments.refund\", duration(\"1h\")) >= 10",
    "history.count(\"payments.*\", duration(\"90s\")) > 2",
    "history.count(\"payments.*\", duration(\"2h\")) == 3",
    "5 < history.count(\"payments.*\", duration(\"2h\"))",
    "history.count(\"payments.*\", duration(\"2h\")) > -1",
    "history.devices_seen > 0 && history.device_first_seen == now",
    "history.devices_seen > 0 && !history.device_known",
    "history.last_country == network.country",
    "history.last_seen < now",
    "history.session_revoked",
    "!history.session_revoked && history.risk_level == \"high\"",
    "history.credential_changed < now",
];

/// Expressions the fast path leaves to the interpreter entirely.
const INTERPRETED: &[&str] = &[
    "now.getHours(has(subject.attributes.timezone) ? subject.attributes.timezone : \"UTC\") < 6",
    "session.amr.exists(m, m == \"hwk\")",
    "attributes.x == null",
    "resource.attributes[\"amount\"] > 1.0",
    "size(subject.roles) > 1",
];

fn policy(expressions: &[&str]) -> PolicySet {
    let mut text = String::from(
        "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [\"urn:aal1\"]\n\
         ---\napiVersion: stepup/v1\nkind: Policy\nname: t\nrules:\n",
    );
    for (i, e) in expressions.iter().enumerate() {
        text.push_str(&format!(
            "  - id: r{i}\n    actions: [\"*\"]\n    when: '{}'\n    effect: deny\n",
            e.replace('\'', "''")
        ));
    }
    let tor: IpList = IpList::from_prefixes([("203.0.113.0".parse().unwrap(), 24)]);
    let lists = Lists::from_ip_lists([("tor_exits".to_owned(), tor)]);
    PolicySet::from_str_with("t.yaml", &text, Arc::new(lists))
        .unwrap_or_else(|r| panic!("{r}"))
        .0
}

fn fast_of(policy: &PolicySet, i: usize) -> Option<&Fast> {
    policy.rules[i].when.as_ref().and_then(|c| c.fast.as_ref())
}

use crate::request::testing::{NOW_SECS, request};

/// The decision's clock (sometimes between two milliseconds) and a history.
fn moment() -> impl Strategy<Value = (DateTime<Utc>, View)> {
    (
        prop::sample::select(vec![0u32, 500_000]),
        any::<bool>(),
        prop::sample::select(vec![0i64, -1_000, -1]),
        0i64..3,
        prop::option::of(prop::sample::select(vec![*b"DE", *b"BR"])),
        prop::sample::select(vec![0.0, 899.9, 900.0, 1200.0, f64::NAN]),
        0i64..4,
        prop::collection::vec(
            (
                prop::sample::select(vec!["payments.refund", "payments.transfer"]),
                0i64..7_200_000,
            ),
            0..14,
        ),
        (
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["low", "high"])),
            prop::sample::select(vec![0i64, 3_600_000, 90_000_000]),
        ),
    )
        .prop_map(
            |(nanos, known, first, devices, country, kmh, failed, events, signals)| {
                let (revoked, risk, changed_ago) = signals;
                let now = Utc.timestamp_opt(NOW_SECS, nanos).unwrap();
                let ms = now.timestamp_millis();
                let entry = Entry::default();
                let mut events: Vec<Event> = events
                    .into_iter()
                    .map(|(a, ago)| Event {
                        at: ms - ago,
                        action: Arc::from(a),
                    })
                    .collect();
                events.sort_by_key(|e| e.at);
                entry.lock().events.extend(events);
                let view = View {
                    device_known: known,
                    device_first_seen: ms + first,
                    devices_seen: devices,
                    last_country: country,
                    last_seen: ms - 60_000,
                    travel_kmh: kmh,
                    stepups_failed: failed,
                    now: ms,
                    actions: Some(Arc::new(entry)),
                    session_revoked: revoked,
                    risk_level: risk,
                    credential_changed: if changed_ago == 0 {
                        0
                    } else {
                        ms - changed_ago
                    },
                    ..View::default()
                };
                (now, view)
            },
        )
}

fn risk() -> impl Strategy<Value = Option<(i64, Vec<Arc<str>>)>> {
    prop::option::of((
        0i64..=100,
        prop::sample::subsequence(vec!["anonymizing-network", "untrusted-device"], 0..=2)
            .prop_map(|s| s.into_iter().map(Arc::from).collect()),
    ))
}

/// Evaluates every rule both ways; returns which ones the fast path
/// answered. Panics (fails the property) on a disagreement.
fn agree(
    policy: &PolicySet,
    req: &pb::DecideRequest,
    now: DateTime<Utc>,
    view: View,
    risk: &Option<(i64, Vec<Arc<str>>)>,
) -> Vec<bool> {
    let vars = Variables {
        request: req,
        now: now.fixed_offset(),
        risk: risk.as_ref().map(|(s, f)| (*s, f.as_slice())),
        history: Some(&view),
    };
    let mut ctx = policy.cel_context();
    ctx.set_variable_resolver(&vars);
    policy
        .rules
        .iter()
        .map(|rule| {
            let cond = rule.when.as_ref().unwrap();
            let Some(answer) = cond.fast.as_ref().and_then(|f| f.eval(&vars)) else {
                return false;
            };
            let interpreted = cond.program.execute(&ctx);
            assert!(
                matches!(interpreted, Ok(cel::Value::Bool(b)) if b == answer),
                "`{}`: fast path says {answer}, cel says {interpreted:?}\nrequest: {req:?}\nrisk: {risk:?}",
                cond.source
            );
            true
        })
        .collect()
}

#[test]
fn every_shape_compiles_or_is_left_to_cel() {
    let fast = policy(EXPRESSIONS);
    for (i, e) in EXPRESSIONS.iter().enumerate() {
        assert!(fast_of(&fast, i).is_some(), "`{e}` should compile natively");
    }
    let slow = policy(INTERPRETED);
    for (i, e) in INTERPRETED.iter().enumerate() {
        assert!(fast_of(&slow, i).is_none(), "`{e}` is the interpreter's");
    }
}

/// Calendar reads, time arithmetic and a field that may be absent are the
/// interpreter's; the rule on every action (`session-revoked`) and every
/// signal but `odd-hours` run natively.
#[test]
fn the_example_policies_run_natively_but_for_a_few_rules() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (set, _) = PolicySet::load(&dir).unwrap_or_else(|r| panic!("{r}"));
    let conds = set.signals.iter().map(|s| (&s.id, &s.when)).chain(
        set.rules
            .iter()
            .filter_map(|r| r.when.as_ref().map(|w| (&r.id, w))),
    );
    let interpreted: Vec<&str> = conds
        .filter(|(_, c)| c.fast.is_none())
        .map(|(id, _)| &**id)
        .collect();
    assert_eq!(
        interpreted,
        [
            "odd-hours",
            "recent-credential-change",
            "non-compliant-device"
        ]
    );
}

proptest! {
    #![proptest_config(Config::with_cases(2000))]
    #[test]
    fn fast_agrees_with_cel(
        req in request(),
        (now, view) in moment(),
        risk in risk(),
    ) {
        agree(&POLICY, &req, now, view, &risk);
    }
}

static POLICY: std::sync::LazyLock<PolicySet> = std::sync::LazyLock::new(|| policy(EXPRESSIONS));

/// The property is not vacuous: each expression is answered natively in
/// some cases (and by the interpreter in others where it can fail).
#[test]
fn the_fast_path_answers_every_expression_sometimes() {
    let mut runner = TestRunner::deterministic();
    let strategy = (request(), moment(), risk());
    let mut answered = vec![0usize; EXPRESSIONS.len()];
    for _ in 0..2000 {
        let (req, (now, view), risk) = strategy.new_tree(&mut runner).unwrap().current();
        for (n, hit) in answered
            .iter_mut()
            .zip(agree(&POLICY, &req, now, view, &risk))
        {
            *n += usize::from(hit);
        }
    }
    for (e, n) in EXPRESSIONS.iter().zip(&answered) {
        assert!(*n > 0, "`{e}` was never answered natively");
    }
}
