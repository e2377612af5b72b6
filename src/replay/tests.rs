//! Unit tests of line parsing and of the replay report.

use std::io::Cursor;

use std::time::Duration;

use serde_json::json;

use super::report::outcome_name;
use super::*;
use crate::engine::Outcome;
use crate::proto::v1::DecideRequest;
use crate::server::convert;
use input::excerpt;

const LEVELS: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["urn:aal1"]
  - name: aal2
    acr: ["urn:aal2"]
"#;

fn set(limit: &str) -> Arc<PolicySet> {
    let text = format!(
        r#"{LEVELS}
---
apiVersion: stepup/v1
kind: Policy
name: p
rules:
  - id: refund-large
    actions: ["payments.refund"]
    when: "resource.attributes.amount > {limit}"
    effect: challenge
    require: {{ level: aal2, max_age: 5m }}
  - id: blocked
    actions: ["*"]
    when: 'network.country == "KP"'
    effect: deny
"#
    );
    let (set, _) = PolicySet::from_str("p.yaml", &text).unwrap_or_else(|r| panic!("{r}"));
    Arc::new(set)
}

fn request(amount: u32, country: &str) -> DecideRequest {
    serde_json::from_value(json!({
        "action": "payments.refund",
        "subject": { "id": format!("u{amount}") },
        "session": { "acr": "urn:aal1", "authTime": "2026-11-27T09:00:00Z" },
        "network": { "country": country },
        "resource": { "attributes": { "amount": amount } }
    }))
    .unwrap()
}

/// Decision-log lines: each request decided under `recorded_under`.
fn log(recorded_under: &Arc<PolicySet>, requests: &[DecideRequest]) -> String {
    let now: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
    let mut out = String::new();
    for r in requests {
        let d = crate::cache::decide_with(Arc::clone(recorded_under), None, r, now, false);
        let line = json!({
            "time": "2026-11-27T10:00:00.000000Z",
            "source": "decide",
            "latency_us": 7.5,
            "cache_hit": false,
            "request": r,
            "decision": convert::response(&d),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

fn options() -> ReplayOptions {
    ReplayOptions {
        examples: 2,
        now: "2026-11-27T10:00:00Z".parse().unwrap(),
        cache: 0,
    }
}

#[test]
fn counts_changes_rules_and_examples_against_recorded_decisions() {
    let old = set("1000.0");
    let new = set("100.0");
    let requests = [
        request(50, "DE"),   // allow -> allow
        request(500, "DE"),  // allow -> challenge
        request(700, "DE"),  // allow -> challenge
        request(900, "DE"),  // allow -> challenge (beyond the examples kept)
        request(5000, "DE"), // challenge -> challenge
        request(500, "KP"),  // deny -> deny, refund-large added
    ];
    let mut input = log(&old, &requests);
    input.push('\n'); // blank lines are skipped but counted
    let report = replay(
        Cursor::new(input),
        "log.jsonl",
        &new,
        &Baseline::Recorded,
        &options(),
    )
    .unwrap();
    assert_eq!(report.requests, 6);
    assert_eq!(report.changed(), 3);
    assert_eq!(
        report.rules_changed_only, 1,
        "the KP request now also matches refund-large"
    );
    let t = &report.transitions[0];
    assert_eq!(
        (t.before, t.after, t.count),
        (Some(Outcome::Allow), Outcome::Challenge, 3)
    );
    assert_eq!(t.rules_added, [("refund-large".to_owned(), 3)]);
    assert!(t.rules_removed.is_empty());
    assert_eq!(t.examples.len(), 2);
    assert_eq!(t.examples[0].line, 2);
    assert_eq!(t.examples[0].subject, "u500");
    assert_eq!(t.examples[0].before.reasons, Vec::<String>::new());
    assert_eq!(t.examples[0].after.reasons, ["refund-large"]);
    assert_eq!(
        t.examples[0].after.challenge.as_deref(),
        Some("level aal2, max_age 5m")
    );
    let counts: Vec<(&str, &str, u64)> = report
        .transitions
        .iter()
        .map(|t| (outcome_name(t.before), outcome_name(Some(t.after)), t.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("allow", "challenge", 3),
            ("allow", "allow", 1),
            ("challenge", "challenge", 1),
            ("deny", "deny", 1)
        ]
    );
    let text = report.text();
    assert!(
        text.contains(
            "3 changed outcome (50.00%); 1 kept their outcome with different matched rules\n"
        ),
        "{text}"
    );
    assert!(text.contains("\nallow -> challenge: 3 requests\n  now matching: +refund-large (3)\n  line 2: `payments.refund` by `u500`: allow [] -> challenge (level aal2, max_age 5m) [refund-large]\n  line 3: "), "{text}");
}

#[test]
fn a_baseline_set_decides_the_before_side() {
    let old = set("1000.0");
    let new = set("100.0");
    // Bare requests: nothing recorded.
    let input: String = [request(500, "DE"), request(5000, "DE")]
        .iter()
        .map(|r| format!("{}\n", serde_json::to_string(r).unwrap()))
        .collect();
    let report = replay(
        Cursor::new(input.clone()),
        "r.jsonl",
        &new,
        &Baseline::Recorded,
        &options(),
    )
    .unwrap();
    assert_eq!(report.changed(), 0);
    assert_eq!(report.transitions[0].before, None);
    assert!(
        report.text().contains("  unrecorded -> challenge  2"),
        "{}",
        report.text()
    );

    let report = replay(
        Cursor::new(input),
        "r.jsonl",
        &old,
        &Baseline::Set(Arc::clone(&new)),
        &options(),
    )
    .unwrap();
    let t = &report.transitions[0];
    assert_eq!(
        (t.before, t.after, t.count),
        (Some(Outcome::Challenge), Outcome::Allow, 1)
    );
    assert_eq!(t.rules_removed, [("refund-large".to_owned(), 1)]);
    assert_eq!(
        t.examples[0].before.challenge.as_deref(),
        Some("level aal2, max_age 5m")
    );
    assert_eq!(
        report.json()["transitions"][0]["rules_removed"][0]["rule"],
        "refund-large"
    );
}

#[test]
fn parses_every_line_shape() {
    let l = parse_line(r#"{"action":"a","subject":{"id":"u"}}"#).unwrap();
    assert_eq!(l.request.action, "a");
    assert_eq!(l.outcome, None);

    let l = parse_line(
        r#"{"extra":1,"request":{"action":"a"},"decision":{"outcome":"OUTCOME_DENY","reasons":[{"ruleId":"r1","effect":"EFFECT_DENY"}],"decisionId":"x"},"time":"2026-11-27T10:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(l.outcome, Some(Outcome::Deny));
    assert_eq!(l.reasons, ["r1"]);
    assert_eq!(l.time.as_deref(), Some("2026-11-27T10:00:00Z"));

    let l = parse_line(r#"{"request":{"action":"a"},"decision":{"outcome":"challenge","reasons":["r2", {"rule_id":"r3"}]}}"#).unwrap();
    assert_eq!(l.outcome, Some(Outcome::Challenge));
    assert_eq!(l.reasons, ["r2", "r3"]);

    let l = parse_line(r#"{"request":{"action":"a"},"decision":{"outcome":1}}"#).unwrap();
    assert_eq!(l.outcome, Some(Outcome::Allow));

    // A bare request whose attributes mention "request".
    let l = parse_line(r#"{"action":"a","attributes":{"k":"\"request\""}}"#).unwrap();
    assert_eq!(l.request.action, "a");

    let e = parse_line(r#"{"request":{"action":"a"},"decision":{"outcome":"maybe"}}"#)
        .err()
        .unwrap();
    assert_eq!(
        e.message,
        "unknown outcome `maybe` in the recorded decision"
    );
    assert_eq!(e.column, Some(50));
    let e = parse_line(r#"{"action":"a","devce":{}}"#).err().unwrap();
    assert!(
        e.message.starts_with(
            "not a DecideRequest in JSON form, nor an object with one in `request`: unknown field `devce`, expected one of `action`"
        ),
        "{e:?}"
    );
    assert_eq!(e.column, Some(15), "at the key");
    assert_eq!(e.help.as_deref(), Some("did you mean `device`?"));
}

#[test]
fn a_bad_line_is_named() {
    let input = format!(
        "{}\nnot json\n",
        serde_json::to_string(&request(1, "DE")).unwrap()
    );
    let e = replay(
        Cursor::new(input),
        "r.jsonl",
        &set("1.0"),
        &Baseline::Recorded,
        &options(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a DecideRequest in JSON form, nor an object with one in `request`: expected ident\n --> r.jsonl:2:2\n  |\n2 | not json\n  |  ^"
    );
    let e = replay(
        Cursor::new("{\"request\":{\"action\":\"a\"},\"time\":\"yesterday\"}\n"),
        "r.jsonl",
        &set("1.0"),
        &Baseline::Recorded,
        &options(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("`time` `yesterday` is not an RFC 3339 time: "),
        "{e}"
    );
    assert!(e.to_string().ends_with("\n --> r.jsonl:1"), "{e}");
}

#[test]
fn excerpts_cut_long_lines() {
    let line = format!("{}X{}", "a".repeat(100), "b".repeat(100));
    let (text, caret) = excerpt(&line, 100);
    assert_eq!(text, format!("…{}X{}…", "a".repeat(50), "b".repeat(29)));
    assert_eq!(text.chars().nth(caret), Some('X'));
    assert_eq!(excerpt("ab", 1), ("ab".to_owned(), 1));
}

#[test]
fn the_cache_does_not_change_answers() {
    let old = set("1000.0");
    let new = set("100.0");
    let requests: Vec<DecideRequest> = (0..50).map(|i| request(i * 37 % 2000, "DE")).collect();
    let input = log(&old, &requests);
    let run = |cache| {
        replay(
            Cursor::new(input.clone()),
            "log",
            &new,
            &Baseline::Recorded,
            &ReplayOptions { cache, ..options() },
        )
        .unwrap()
        .json()
    };
    let (mut a, mut b) = (run(0), run(1000));
    for v in [&mut a, &mut b] {
        v["elapsed_seconds"] = json!(0);
        v["requests_per_second"] = json!(0);
    }
    assert_eq!(a, b);
}

#[test]
fn lines_the_decision_log_writes_replay_like_the_full_response() {
    use crate::telemetry::decision_log::{DecisionLog, DecisionLogConfig, Entry, Sink};
    use crate::telemetry::metrics::Metrics;

    let old = set("1000.0");
    let new = set("100.0");
    let requests = [
        request(50, "DE"),
        request(500, "DE"),
        request(5000, "DE"),
        request(500, "KP"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let writer = DecisionLog::start(
        DecisionLogConfig::new(Sink::File {
            path: path.clone(),
            max_bytes: u64::MAX,
            keep: 1,
        }),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let now: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
    for r in &requests {
        let decision = crate::cache::decide_with(Arc::clone(&old), None, r, now, false);
        assert!(writer.submit(Entry {
            time: now,
            source: "decide",
            request: r.clone(),
            decision,
            elapsed: Duration::from_micros(7),
            caller: None,
        }));
    }
    writer.close();
    let written = std::fs::read_to_string(&path).unwrap();
    let summary = |input: String| {
        let report = replay(
            Cursor::new(input),
            "log.jsonl",
            &new,
            &Baseline::Recorded,
            &options(),
        )
        .unwrap();
        let counts: Vec<_> = report
            .transitions
            .iter()
            .map(|t| (t.before, t.after, t.count, t.rules_added.clone()))
            .collect();
        (counts, report.rules_changed_only)
    };
    let (counts, rules_changed_only) = summary(written);
    assert_eq!(
        (counts.clone(), rules_changed_only),
        summary(log(&old, &requests))
    );
    assert!(
        counts.iter().all(|c| c.0.is_some()),
        "every line's outcome is read: {counts:?}"
    );
    assert_eq!(
        rules_changed_only, 1,
        "the KP line's recorded reasons are read"
    );
}
