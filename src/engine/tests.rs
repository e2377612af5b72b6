//! The decision semantics, one test per rule of the language.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use pbjson_types::{Timestamp, Value};

use std::time::Duration;

use super::*;
use crate::cache::{CacheConfig, DecisionCache, decide_with};
use crate::policy::{Effect, Mode};
use crate::proto::v1 as pb;

const LEVELS: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["urn:aal1"]
  - name: aal2
    acr: ["urn:aal2", "urn:okta:2fa"]
  - name: aal3
    acr: ["urn:aal3"]
"#;

fn policy(body: &str) -> Arc<PolicySet> {
    let text = format!("{LEVELS}\n---\napiVersion: stepup/v1\nkind: Policy\nname: t\n{body}");
    match PolicySet::from_str("t.yaml", &text) {
        Ok((set, _)) => Arc::new(set),
        Err(report) => panic!("{report}"),
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn request(action: &str) -> pb::DecideRequest {
    pb::DecideRequest {
        action: action.into(),
        subject: Some(pb::Subject {
            id: "u1".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_session(
    mut r: pb::DecideRequest,
    acr: &str,
    amr: &[&str],
    age_secs: i64,
) -> pb::DecideRequest {
    r.session = Some(pb::Session {
        id: "s".into(),
        acr: acr.into(),
        amr: amr.iter().map(|s| s.to_string()).collect(),
        auth_time: Some(ts(now() - chrono::Duration::seconds(age_secs))),
    });
    r
}

fn with_amount(mut r: pb::DecideRequest, amount: f64) -> pb::DecideRequest {
    r.resource = Some(pb::Resource {
        attributes: [("amount".to_owned(), Value::from(amount))].into(),
        ..Default::default()
    });
    r
}

fn decide(p: &Arc<PolicySet>, r: &pb::DecideRequest) -> Decision {
    decide_with(Arc::clone(p), None, r, now(), false)
}

fn ids(v: &[Arc<str>]) -> Vec<&str> {
    v.iter().map(|s| &**s).collect()
}

fn matched(d: &Decision) -> Vec<&str> {
    d.reasons().map(|(id, _, _)| &**id).collect()
}

const REFUND: &str = r#"
rules:
  - id: refund-large
    actions: ["payments.refund"]
    when: "resource.attributes.amount > 1000.0"
    effect: challenge
    require: { level: aal2, methods: [hwk, otp], max_age: 5m }
    message: Refunds above 1,000 need re-verification
"#;

#[test]
fn signals_sum_and_clamp() {
    let p = policy(
        r#"
signals:
  - { id: a, when: "true", score: 60 }
  - { id: b, when: "true", score: 70 }
  - { id: c, when: "false", score: 10 }
  - { id: d, when: "true", score: -5 }
"#,
    );
    let d = decide(&p, &request("x"));
    assert_eq!(d.assessment.risk_score, 100);
    assert_eq!(ids(&d.assessment.signals), ["a", "b", "d"]);

    let p = policy("signals:\n  - { id: calm, when: \"true\", score: -20 }\n");
    assert_eq!(decide(&p, &request("x")).assessment.risk_score, 0);
}

#[test]
fn rules_match_on_action_and_condition() {
    let p = policy(REFUND);
    let small = decide(&p, &with_amount(request("payments.refund"), 10.0));
    assert_eq!(small.outcome, Outcome::Allow);
    assert!(matched(&small).is_empty());

    let large = decide(&p, &with_amount(request("payments.refund"), 5000.0));
    assert_eq!(large.outcome, Outcome::Challenge);
    assert_eq!(matched(&large), ["refund-large"]);

    let other = decide(&p, &with_amount(request("payments.transfer"), 5000.0));
    assert_eq!(
        other.outcome,
        Outcome::Allow,
        "another action is not considered"
    );
}

#[test]
fn globs_select_actions() {
    let p = policy(
        r#"
rules:
  - { id: all-payments, actions: ["payments.*"], effect: deny }
"#,
    );
    assert_eq!(
        decide(&p, &request("payments.refund")).outcome,
        Outcome::Deny
    );
    assert_eq!(decide(&p, &request("payments")).outcome, Outcome::Allow);
}

#[test]
fn deny_beats_challenge() {
    let p = policy(
        r#"
rules:
  - id: step
    actions: ["*"]
    effect: challenge
    require: { level: aal2 }
  - id: blocked
    actions: ["*"]
    when: 'network.country == "KP"'
    effect: deny
"#,
    );
    let mut r = request("anything");
    r.network = Some(pb::Network {
        country: "KP".into(),
        ..Default::default()
    });
    let d = decide(&p, &r);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(
        matched(&d),
        ["step", "blocked"],
        "reasons list every matched rule"
    );
    assert!(d.www_authenticate().is_none());
    assert!(d.unmet.is_empty());
}

#[test]
fn satisfied_session_is_not_asked_again() {
    let p = policy(REFUND);
    let base = with_amount(request("payments.refund"), 5000.0);

    let fresh_strong = with_session(base.clone(), "urn:okta:2fa", &["pwd", "otp"], 60);
    let d = decide(&p, &fresh_strong);
    assert_eq!(d.outcome, Outcome::Allow);
    assert_eq!(
        matched(&d),
        ["refund-large"],
        "the reason still lists the rule"
    );

    let stronger_level = with_session(base.clone(), "urn:aal3", &["hwk"], 60);
    assert_eq!(decide(&p, &stronger_level).outcome, Outcome::Allow);

    let weak = with_session(base.clone(), "urn:aal1", &["otp"], 60);
    assert_eq!(decide(&p, &weak).outcome, Outcome::Challenge);

    let wrong_method = with_session(base.clone(), "urn:aal2", &["pwd", "sms"], 60);
    assert_eq!(decide(&p, &wrong_method).outcome, Outcome::Challenge);

    let stale = with_session(base.clone(), "urn:aal2", &["otp"], 301);
    assert_eq!(decide(&p, &stale).outcome, Outcome::Challenge);
    let just_in_time = with_session(base.clone(), "urn:aal2", &["otp"], 300);
    assert_eq!(decide(&p, &just_in_time).outcome, Outcome::Allow);

    let unknown_acr = with_session(base.clone(), "urn:something-else", &["otp"], 60);
    assert_eq!(decide(&p, &unknown_acr).outcome, Outcome::Challenge);

    let mut no_auth_time = with_session(base, "urn:aal2", &["otp"], 60);
    if let Some(s) = no_auth_time.session.as_mut() {
        s.auth_time = None;
    }
    assert_eq!(decide(&p, &no_auth_time).outcome, Outcome::Challenge);
}

#[test]
fn auth_time_from_the_future_beyond_skew_does_not_count() {
    let p = policy(REFUND);
    let base = with_amount(request("payments.refund"), 5000.0);
    let slightly_ahead = with_session(base.clone(), "urn:aal2", &["otp"], -60);
    assert_eq!(decide(&p, &slightly_ahead).outcome, Outcome::Allow);
    let far_ahead = with_session(base, "urn:aal2", &["otp"], -3600);
    assert_eq!(decide(&p, &far_ahead).outcome, Outcome::Challenge);
}

#[test]
fn challenge_lists_unmet_requirements_and_merges_them() {
    let p = policy(
        r#"
rules:
  - id: met
    actions: ["a"]
    effect: challenge
    require: { level: aal1 }
  - id: needs-aal2
    actions: ["a"]
    effect: challenge
    require: { level: aal2, max_age: 10m }
    message: Second factor please
  - id: needs-aal3
    actions: ["a"]
    effect: challenge
    require: { level: aal3, methods: [hwk], max_age: 15m }
  - id: fresh-only
    actions: ["a"]
    effect: challenge
    require: { max_age: 2m }
"#,
    );
    let d = decide(&p, &with_session(request("a"), "urn:aal1", &["pwd"], 600));
    assert_eq!(d.outcome, Outcome::Challenge);
    let unmet: Vec<&str> = d.unmet.iter().map(|i| &*p.rules[*i].id).collect();
    assert_eq!(unmet, ["needs-aal2", "needs-aal3", "fresh-only"]);
    assert_eq!(
        ids(d.acr_values()),
        ["urn:aal3"],
        "strongest level's acr values"
    );
    assert_eq!(
        d.max_age,
        Some(Duration::from_secs(120)),
        "smallest max_age"
    );
    assert_eq!(
        d.www_authenticate().unwrap(),
        r#"Bearer error="insufficient_user_authentication", error_description="Second factor please", acr_values="urn:aal3", max_age="120""#
    );
}

#[test]
fn www_authenticate_cannot_be_broken_by_a_message() {
    let p = policy(
        r#"
rules:
  - id: r
    actions: ["a"]
    effect: challenge
    require: { level: aal2 }
    message: 'say "hi" \ bye — ok'
"#,
    );
    let d = decide(&p, &request("a"));
    assert_eq!(
        d.www_authenticate().unwrap(),
        r#"Bearer error="insufficient_user_authentication", error_description="say ?hi? ? bye ? ok", acr_values="urn:aal2 urn:okta:2fa""#
    );
}

#[test]
fn failing_rule_fails_closed_and_is_reported() {
    let p = policy(REFUND);
    // No amount: `resource.attributes.amount` cannot be read.
    let d = decide(&p, &request("payments.refund"));
    assert_eq!(d.outcome, Outcome::Challenge);
    assert_eq!(matched(&d), ["refund-large"]);
    assert_eq!(d.assessment.errors.len(), 1);
    assert_eq!(&*d.assessment.errors[0].id, "refund-large");
    assert_eq!(&*d.assessment.errors[0].message, "no such key: `amount`");

    // Wrong type: a string amount.
    let mut r = request("payments.refund");
    r.resource = Some(pb::Resource {
        attributes: [("amount".to_owned(), Value::from("lots".to_owned()))].into(),
        ..Default::default()
    });
    let d = decide(&p, &r);
    assert_eq!(d.outcome, Outcome::Challenge);
    assert_eq!(d.assessment.errors.len(), 1);
}

#[test]
fn failing_deny_rule_denies() {
    let p = policy(
        r#"
rules:
  - { id: d, actions: ["*"], when: "attributes.flag == true", effect: deny }
"#,
    );
    assert_eq!(decide(&p, &request("x")).outcome, Outcome::Deny);
}

#[test]
fn failing_signal_adds_no_score_and_is_reported() {
    let p = policy(
        r#"
signals:
  - { id: broken, when: "attributes.score > 0.5", score: 50 }
  - { id: guarded, when: "has(attributes.score) && attributes.score > 0.5", score: 20 }
  - { id: non-bool, when: "attributes.size()", score: 20 }
"#,
    );
    let d = decide(&p, &request("x"));
    assert_eq!(d.assessment.risk_score, 0);
    let errs: Vec<(&str, &str)> = d
        .assessment
        .errors
        .iter()
        .map(|e| (&*e.id, &*e.message))
        .collect();
    assert_eq!(
        errs,
        [
            ("broken", "no such key: `score`"),
            ("non-bool", "condition must be a bool, got Int")
        ]
    );
    assert_eq!(d.outcome, Outcome::Allow);
}

#[test]
fn rules_read_risk() {
    let p = policy(
        r#"
signals:
  - { id: untrusted, when: "!device.trusted", score: 30 }
  - { id: vpn, when: "has(network.attributes.vpn) && network.attributes.vpn == true", score: 30 }
rules:
  - id: risky
    actions: ["*"]
    when: 'risk.score >= 50 || "vpn" in risk.signals && action == "admin"'
    effect: challenge
    require: { level: aal2 }
"#,
    );
    let mut r = request("x");
    assert_eq!(decide(&p, &r).outcome, Outcome::Allow);
    r.network = Some(pb::Network {
        attributes: [("vpn".to_owned(), Value::from(true))].into(),
        ..Default::default()
    });
    let d = decide(&p, &r);
    assert_eq!(d.assessment.risk_score, 60);
    assert_eq!(d.outcome, Outcome::Challenge);
    r.device = Some(pb::Device {
        trusted: true,
        ..Default::default()
    });
    assert_eq!(decide(&p, &r).outcome, Outcome::Allow);
    r.action = "admin".into();
    assert_eq!(decide(&p, &r).outcome, Outcome::Challenge);
}

#[test]
fn context_fields_are_visible_to_cel() {
    let p = policy(
        r#"
rules:
  - id: everything
    actions: ["a"]
    when: >-
      action == "a" && subject.id == "u1" && subject.tenant == "t" &&
      "admin" in subject.roles && subject.attributes.level == 3.0 &&
      session.acr == "urn:aal1" && "pwd" in session.amr &&
      now - session.auth_time == duration("60s") &&
      device.id == "d" && device.platform == "ios" && device.attributes.jailbroken == false &&
      network.ip == "10.0.0.1" && network.country == "DE" && network.asn == 3320 &&
      resource.type == "refund" && resource.id == "r1" &&
      resource.attributes.meta.tags[1] == "b" && size(resource.attributes) == 2 &&
      attributes.fraud == 0.25 && !has(attributes.missing) && has(subject.attributes.level)
    effect: deny
"#,
    );
    let mut r = with_session(request("a"), "urn:aal1", &["pwd"], 60);
    let sub = r.subject.as_mut().unwrap();
    sub.tenant = "t".into();
    sub.roles = vec!["admin".into()];
    sub.attributes = [("level".to_owned(), Value::from(3.0))].into();
    r.device = Some(pb::Device {
        id: "d".into(),
        trusted: false,
        platform: "ios".into(),
        attributes: [("jailbroken".to_owned(), Value::from(false))].into(),
    });
    r.network = Some(pb::Network {
        ip: "10.0.0.1".into(),
        country: "DE".into(),
        asn: 3320,
        ..Default::default()
    });
    let meta: Value = serde_json::from_str(r#"{"tags": ["a", "b"]}"#).unwrap();
    r.resource = Some(pb::Resource {
        r#type: "refund".into(),
        id: "r1".into(),
        attributes: [
            ("meta".to_owned(), meta),
            ("amount".to_owned(), Value::from(1.0)),
        ]
        .into(),
    });
    r.attributes = [("fraud".to_owned(), Value::from(0.25))].into();
    let d = decide(&p, &r);
    assert!(d.assessment.errors.is_empty(), "{:?}", d.assessment.errors);
    assert_eq!(d.outcome, Outcome::Deny);
}

#[test]
fn absent_messages_read_as_defaults() {
    let p = policy(
        r#"
rules:
  - id: defaults
    actions: ["a"]
    when: 'device.trusted == false && network.country == "" && session.amr.size() == 0 && session.auth_time == timestamp("1970-01-01T00:00:00Z")'
    effect: deny
"#,
    );
    let d = decide(&p, &request("a"));
    assert!(d.assessment.errors.is_empty(), "{:?}", d.assessment.errors);
    assert_eq!(d.outcome, Outcome::Deny);
}

#[test]
fn now_comes_from_the_decision_clock() {
    let p = policy(
        r#"
signals:
  - { id: night, when: 'now.getHours("UTC") < 6', score: 10 }
"#,
    );
    let r = request("a");
    let at = |h: u32| Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap();
    assert_eq!(
        decide_with(Arc::clone(&p), None, &r, at(3), false)
            .assessment
            .risk_score,
        10
    );
    assert_eq!(
        decide_with(Arc::clone(&p), None, &r, at(13), false)
            .assessment
            .risk_score,
        0
    );
}

#[test]
fn cache_keys_calendar_reads_by_quarter_hour() {
    let p = policy(
        r#"
signals:
  - { id: night, when: 'now.getHours("Asia/Kolkata") < 6', score: 60 }
"#,
    );
    let cache = DecisionCache::new(CacheConfig::default()).unwrap();
    let r = request("a");
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap();
    // Kolkata is UTC+5:30: 00:29 UTC is 05:59 there (night), 00:30 is 06:00.
    let night = decide_with(Arc::clone(&p), Some(&cache), &r, at(0, 29), false);
    assert_eq!(night.assessment.risk_score, 60);
    let same_quarter = decide_with(Arc::clone(&p), Some(&cache), &r, at(0, 16), false);
    assert!(same_quarter.cache_hit);
    assert_eq!(same_quarter.assessment.risk_score, 60);
    let morning = decide_with(Arc::clone(&p), Some(&cache), &r, at(0, 30), false);
    assert!(!morning.cache_hit, "a new quarter hour is a new key");
    assert_eq!(morning.assessment.risk_score, 0);
}

#[test]
fn cache_keeps_time_dependent_parts_fresh() {
    let p = policy(
        r#"
signals:
  - { id: night, when: 'now < timestamp("2026-03-01T06:00:00Z")', score: 60 }
rules:
  - id: risky
    actions: ["*"]
    when: "risk.score >= 50"
    effect: challenge
    require: { level: aal2, max_age: 5m }
"#,
    );
    let cache = DecisionCache::new(CacheConfig::default()).unwrap();
    let r = with_session(request("a"), "urn:aal2", &["otp"], 0);
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap();
    let day = decide_with(Arc::clone(&p), Some(&cache), &r, at(12, 0), false);
    assert_eq!(day.outcome, Outcome::Allow);
    assert!(!day.cache_hit);
    let night = decide_with(Arc::clone(&p), Some(&cache), &r, at(3, 0), false);
    assert!(night.cache_hit, "same key: only volatile parts differ");
    assert_eq!(night.assessment.risk_score, 60);
    // auth_time is 12:00 today, i.e. "in the future" at 03:00: beyond the skew.
    assert_eq!(night.outcome, Outcome::Challenge);
}

#[test]
fn cache_key_ignores_unread_fields_only() {
    let p = policy(REFUND);
    let cache = DecisionCache::new(CacheConfig::default()).unwrap();
    let mut a = with_amount(request("payments.refund"), 5000.0);
    let first = decide_with(Arc::clone(&p), Some(&cache), &a, now(), false);
    assert!(!first.cache_hit);
    // device is not read by any condition: same entry.
    a.device = Some(pb::Device {
        id: "other".into(),
        ..Default::default()
    });
    assert!(decide_with(Arc::clone(&p), Some(&cache), &a, now(), false).cache_hit);
    // the amount is read: a new entry, and a different answer.
    let small = with_amount(request("payments.refund"), 5.0);
    let d = decide_with(Arc::clone(&p), Some(&cache), &small, now(), false);
    assert!(!d.cache_hit);
    assert_eq!(d.outcome, Outcome::Allow);
}

#[test]
fn explain_traces_every_signal_and_rule() {
    let p = policy(&format!(
        "signals:\n  - {{ id: s, when: \"!device.trusted\", score: 5 }}\n{REFUND}\n  - {{ id: other, actions: [\"x\"], effect: deny }}\n"
    ));
    let d = decide_with(
        Arc::clone(&p),
        None,
        &with_amount(request("payments.refund"), 5000.0),
        now(),
        true,
    );
    let lines: Vec<(&str, &str, bool, &str)> = d
        .trace
        .iter()
        .map(|t| (t.kind.as_str(), &*t.id, t.fired, t.detail.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("signal", "s", true, "`!device.trusted` is true; adds 5"),
            (
                "rule",
                "refund-large",
                true,
                "`resource.attributes.amount > 1000.0` is true"
            ),
            (
                "rule",
                "other",
                false,
                "not considered: action `payments.refund` matches none of [\"x\"]"
            ),
        ]
    );
}

#[test]
fn shadow_rules_are_reported_but_do_not_decide() {
    let p = policy(
        r#"
rules:
  - id: new-deny
    mode: shadow
    actions: ["a"]
    effect: deny
    message: Would block
  - id: new-challenge
    mode: shadow
    actions: ["a"]
    effect: challenge
    require: { level: aal2 }
  - id: live
    actions: ["a"]
    effect: challenge
    require: { level: aal1 }
"#,
    );
    let d = decide(&p, &with_session(request("a"), "urn:aal2", &["otp"], 0));
    assert_eq!(
        d.outcome,
        Outcome::Allow,
        "shadow rules never change the outcome"
    );
    assert_eq!(matched(&d), ["live"]);
    let shadow: Vec<(&str, Effect, bool)> = d
        .shadow
        .iter()
        .map(|s| (&*p.rules[s.rule].id, s.effect, s.satisfied))
        .collect();
    assert_eq!(
        shadow,
        [
            ("new-deny", Effect::Deny, false),
            ("new-challenge", Effect::Challenge, true)
        ]
    );
    let weak = decide(&p, &with_session(request("a"), "urn:aal1", &["pwd"], 0));
    assert_eq!(weak.outcome, Outcome::Allow);
    assert!(
        !weak.shadow[1].satisfied,
        "enforcing it would have challenged"
    );
}

#[test]
fn policy_mode_applies_to_its_rules_and_rule_mode_wins() {
    let text = format!(
        "{LEVELS}\n---\napiVersion: stepup/v1\nkind: Policy\nname: t\nmode: shadow\nrules:\n  - {{ id: s, actions: [a], effect: deny }}\n  - {{ id: e, mode: enforce, actions: [b], effect: deny }}\n"
    );
    let (p, _) = PolicySet::from_str("t.yaml", &text).unwrap();
    assert_eq!(p.rules[0].mode, Mode::Shadow);
    assert_eq!(p.rules[1].mode, Mode::Enforce);
}

#[test]
fn a_request_pattern_too_big_to_compile_fails_closed() {
    let p = policy(
        r#"
rules:
  - id: pattern
    actions: ["*"]
    when: "subject.id.matches(resource.attributes.pattern)"
    dynamic_regex: true
    effect: deny
"#,
    );
    let with_pattern = |pattern: &str| {
        let mut r = request("x");
        r.resource = Some(pb::Resource {
            attributes: [("pattern".to_owned(), Value::from(pattern.to_owned()))].into(),
            ..Default::default()
        });
        r
    };
    let d = decide(&p, &with_pattern("^v"));
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.assessment.errors.is_empty());
    assert_eq!(decide(&p, &with_pattern("^u")).outcome, Outcome::Deny);
    // A pattern that took ~116 ms to compile per call is refused at once.
    let started = std::time::Instant::now();
    let d = decide(&p, &with_pattern(r"(?:\w{30}){30}"));
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
    assert_eq!(d.outcome, Outcome::Deny, "fails closed");
    assert_eq!(d.assessment.errors.len(), 1);
    assert_eq!(
        &*d.assessment.errors[0].message,
        "error executing function 'matches': invalid pattern from the request: the compiled pattern would exceed 65536 bytes"
    );
}
