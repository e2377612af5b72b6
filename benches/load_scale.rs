#![allow(missing_docs)] // criterion's items are undocumented
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "a bench with bad fixtures should stop at once"
)]
//! Scale: loading and checking generated policy sets of 1k, 4k and 16k
//! rules (`PolicySet::load`), and the decision over the example set
//! (`policies/`) alone and with 10k generated rules on unrelated actions
//! (which must cost the same: a decision looks only at its action's rules).
//!
//! A generated set is what a large deployment writes: 250 rules per file,
//! one file per service (`svc12.yaml`), two rules per action
//! (`svc12.res45.update`), a glob per service and per resource
//! (`svc12.*`, `svc12.res45.*`), conditions on amounts, roles, ownership,
//! tenants, countries, environments and the risk (`risk.score`,
//! `risk.signals`), a signal per 500 rules and a test suite with a case per
//! file. It passes `stepup check` without a warning.
//!
//! Run:
//! - `cargo bench --bench load_scale`: the criterion benches (`load/*`,
//!   `decide_scale/*`).
//! - `cargo bench --bench load_scale -- generate N DIR`: writes a set of N
//!   rules into DIR (for `/usr/bin/time -v target/release/stepup check --policies DIR`);
//!   `generate-unrelated N DIR`: the example set plus N rules on unrelated
//!   actions.
//! - `cargo bench --bench load_scale -- time-load N`: one timed
//!   `PolicySet::load` of N rules (100k is too slow for criterion's
//!   samples).
//! - `cargo bench --bench load_scale -- decide SET REQUEST ITERATIONS
//!   [CACHE]`: that many decisions in `measured_decisions`, for callgrind
//!   (SET: `example` or `unrelated`, the example set plus 10k rules;
//!   REQUEST: `refund` or `read`; CACHE: `cache_off`, the default, or
//!   `cache_hit`), e.g. `valgrind --tool=callgrind --collect-atstart=no
//!   --toggle-collect='*measured_decisions*'
//!   target/release/deps/load_scale-HASH decide unrelated refund 1000`
//!   (the executable is the one `cargo bench --no-run --bench load_scale`
//!   names).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion};
use stepup::proto::v1::DecideRequest;
use stepup::{CacheConfig, PolicySet, Service};

/// Rules per generated policy file.
const RULES_PER_FILE: usize = 250;

/// The verbs of a generated resource: each a distinct action.
const VERBS: [&str; 6] = ["read", "list", "create", "update", "delete", "export"];

/// The example set's levels, the generated sets' ladder.
const LEVELS: &str = "apiVersion: stepup/v1
kind: Levels
levels:
  - { name: aal1, acr: [\"urn:stepup:aal1\"] }
  - { name: aal2, acr: [\"urn:stepup:aal2\"] }
  - { name: aal3, acr: [\"urn:stepup:aal3\"] }
";

/// The example set's signals, which generated rules beside it read.
const EXAMPLE_SIGNALS: [&str; 5] = [
    "untrusted-device",
    "unusual-country",
    "odd-hours",
    "fraud-score-high",
    "anonymizing-network",
];

/// One generated policy file: its service's rules, `quota` of them, reading
/// the signals `signals`.
fn policy_file(service: usize, quota: usize, signals: &[String]) -> String {
    let mut out = format!(
        "apiVersion: stepup/v1\nkind: Policy\nname: svc{service}\ndescription: generated service {service}\nrules:\n"
    );
    let mut left = quota;
    let rule = |out: &mut String, id: &str, actions: &str, when: Option<&str>, then: &str| {
        let when = when
            .map(|w| format!("    when: '{w}'\n"))
            .unwrap_or_default();
        let _ = write!(
            out,
            "  - id: {id}\n    actions: [\"{actions}\"]\n{when}{then}\n"
        );
    };
    if left > 0 {
        rule(
            &mut out,
            &format!("svc{service}-all"),
            &format!("svc{service}.*"),
            Some("risk.score >= 90 && !device.trusted"),
            "    effect: deny",
        );
        left -= 1;
    }
    let mut resource = 0;
    while left > 0 {
        let signal = signals
            .get(resource % signals.len().max(1))
            .map_or("untrusted-device", String::as_str);
        rule(
            &mut out,
            &format!("svc{service}-res{resource}-any"),
            &format!("svc{service}.res{resource}.*"),
            Some(&format!("\"{signal}\" in risk.signals")),
            "    effect: challenge\n    require: { level: aal2, max_age: 10m }",
        );
        left -= 1;
        for (v, verb) in VERBS.iter().enumerate() {
            if left < 2 {
                break;
            }
            let k = resource * VERBS.len() + v;
            let action = format!("svc{service}.res{resource}.{verb}");
            let id = format!("svc{service}-res{resource}-{verb}");
            let (when, then) = first_rule(service, k, verb);
            rule(&mut out, &format!("{id}-a"), &action, when.as_deref(), then);
            rule(
                &mut out,
                &format!("{id}-b"),
                &action,
                Some(&format!("risk.score >= {}", 30 + k % 60)),
                "    effect: challenge\n    require: { level: aal3, methods: [hwk], max_age: 5m }",
            );
            left -= 2;
        }
        resource += 1;
    }
    out
}

/// The first of an action's two rules (the `k`th action of `service`): its
/// condition and its effect.
fn first_rule(service: usize, k: usize, verb: &str) -> (Option<String>, &'static str) {
    const AAL2_FRESH: &str =
        "    effect: challenge\n    require: { level: aal2, methods: [hwk, otp], max_age: 5m }";
    match k % 6 {
        0 => (
            None,
            "    effect: challenge\n    require: { level: aal2, max_age: 30m }",
        ),
        1 => (
            Some(format!(
                "resource.attributes.amount > {}.0",
                100 * (k % 97 + 1)
            )),
            AAL2_FRESH,
        ),
        2 => (
            Some(format!("!(\"svc{service}-{verb}\" in subject.roles)")),
            "    effect: deny",
        ),
        3 => (
            Some(
                "has(resource.attributes.owner) && resource.attributes.owner != subject.id"
                    .to_owned(),
            ),
            "    effect: challenge\n    require: { level: aal2, max_age: 15m }",
        ),
        4 => (
            Some(format!(
                "network.country in [\"KP\", \"IR\", \"SY\"] && subject.tenant == \"t{service}\""
            )),
            "    effect: deny",
        ),
        _ => (
            Some(
                "resource.attributes.environment == \"production\" || \"admin\" in subject.roles"
                    .to_owned(),
            ),
            "    effect: challenge\n    require: { level: aal3, methods: [hwk], max_age: 10m }",
        ),
    }
}

/// The generated signals' file: `count` signals with distinct conditions.
fn signals_file(count: usize) -> String {
    let mut out = String::from(
        "apiVersion: stepup/v1\nkind: Policy\nname: generated-risk\ndescription: generated signals\nsignals:\n",
    );
    for i in 0..count {
        let when = match i % 4 {
            0 => format!("!device.trusted && device.platform == \"p{i}\""),
            1 => format!("network.asn == {}", 64_512 + i),
            2 => format!(
                "has(attributes.fraud_score) && attributes.fraud_score >= 0.{}",
                50 + i
            ),
            _ => format!("subject.tenant == \"t{i}\" && !device.trusted"),
        };
        let _ = write!(
            out,
            "  - id: sig-{i}\n    when: '{when}'\n    score: {}\n",
            5 + i % 40
        );
    }
    out
}

/// A test suite with one case per file: its first action, from a trusted
/// device with a password-only session, is challenged.
fn suite_file(services: usize) -> String {
    let mut out = String::from(
        "name: generated
now: 2026-11-27T10:00:00Z
fixtures:
  base:
    subject: { id: alice, tenant: acme, roles: [support] }
    device: { id: d-1, trusted: true, platform: web }
    network: { ip: 203.0.113.7, country: DE, asn: 3320 }
    session: { acr: \"urn:stepup:aal1\", amr: [pwd], authTime: \"2026-11-27T09:00:00Z\" }
cases:
",
    );
    for s in 0..services {
        let _ = write!(
            out,
            "  - name: svc{s} first action\n    fixture: [base]\n    request: {{ action: svc{s}.res0.read }}\n    expect: {{ outcome: challenge }}\n"
        );
    }
    out
}

/// Writes the files of `rules` generated rules into `dir`, reading
/// `signals`; returns how many files.
fn write_rules(dir: &Path, rules: usize, signals: &[String]) -> usize {
    let files = rules.div_ceil(RULES_PER_FILE);
    for s in 0..files {
        let quota = RULES_PER_FILE.min(rules - s * RULES_PER_FILE);
        std::fs::write(
            dir.join(format!("svc{s}.yaml")),
            policy_file(s, quota, signals),
        )
        .expect("write a policy file");
    }
    files
}

/// A set of `rules` rules in `dir`: levels, signals, rules and a suite.
fn generate(dir: &Path, rules: usize) {
    std::fs::create_dir_all(dir).expect("create the set's directory");
    std::fs::write(dir.join("levels.yaml"), LEVELS).expect("write levels");
    let signals = (rules / 500).max(8);
    std::fs::write(dir.join("generated_risk.yaml"), signals_file(signals)).expect("write signals");
    let ids: Vec<String> = (0..signals).map(|i| format!("sig-{i}")).collect();
    let files = write_rules(dir, rules, &ids);
    std::fs::write(dir.join("generated_test.yaml"), suite_file(files)).expect("write suite");
}

/// The example set (`policies/`, its lists and suites) in `dir`, plus
/// `rules` generated rules on unrelated actions reading its signals.
fn generate_unrelated(dir: &Path, rules: usize) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    copy_dir(&example, dir);
    let ids: Vec<String> = EXAMPLE_SIGNALS.iter().map(|s| (*s).to_owned()).collect();
    write_rules(dir, rules, &ids);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read the example set") {
        let entry = entry.expect("read a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

fn load(dir: &Path) -> PolicySet {
    let (set, report) = PolicySet::load(dir).expect("the generated set is valid");
    assert!(
        report.diagnostics.is_empty(),
        "the generated set has warnings:\n{report}"
    );
    set
}

/// A temporary directory holding a generated set, with its path.
fn temp_set(fill: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("policies");
    fill(&dir);
    (tmp, dir)
}

fn bench_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    for (name, rules) in [("1k", 1_000), ("4k", 4_000), ("16k", 16_000)] {
        let (_tmp, dir) = temp_set(|d| generate(d, rules));
        g.measurement_time(Duration::from_secs(if rules > 4_000 { 30 } else { 10 }));
        g.bench_with_input(BenchmarkId::from_parameter(name), &dir, |b, dir| {
            b.iter(|| black_box(load(dir)))
        });
    }
    g.finish();
}

/// A refund above the limit from an aal1 session on an untrusted device: a
/// CHALLENGE (the request of `benches/decide.rs`).
const REFUND: &str = include_str!("../examples/refund.json");

/// A plain read from a trusted device: ALLOW.
const READ: &str = include_str!("read.json");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .expect("valid time")
}

fn request(json: &str) -> DecideRequest {
    serde_json::from_str(json).expect("bench request is valid JSON")
}

fn service(dir: &Path, cache: u64) -> Service {
    let (policy, _) = PolicySet::load(dir).expect("the set is valid");
    Service::new(
        policy,
        CacheConfig {
            capacity: cache,
            ..CacheConfig::default()
        },
    )
}

/// The example set alone and with 10k rules on unrelated actions.
fn decision_sets() -> (tempfile::TempDir, [(&'static str, PathBuf); 2]) {
    let (tmp, dir) = temp_set(|d| generate_unrelated(d, 10_000));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    (tmp, [("example", example), ("example+10k", dir)])
}

fn bench_decide(c: &mut Criterion) {
    let (_tmp, sets) = decision_sets();
    for (name, json) in [("refund_challenge", REFUND), ("read_allow", READ)] {
        let req = request(json);
        let mut g = c.benchmark_group(format!("decide_scale/{name}"));
        for (set, dir) in &sets {
            let off = service(dir, 0);
            let on = service(dir, 100_000);
            let first = off.decide(&req, now(), false);
            assert_eq!(first.outcome, on.decide(&req, now(), false).outcome);
            g.bench_function(format!("{set}/cache_off"), |b| {
                b.iter(|| black_box(off.decide(black_box(&req), now(), false)))
            });
            g.bench_function(format!("{set}/cache_hit"), |b| {
                b.iter(|| black_box(on.decide(black_box(&req), now(), false)))
            });
        }
        g.finish();
    }
}

/// `iterations` decisions of `req`: what callgrind counts
/// (`--toggle-collect='*measured_decisions*'`).
#[inline(never)]
fn measured_decisions(engine: &Service, req: &DecideRequest, iterations: u64) {
    let now = now();
    for _ in 0..iterations {
        black_box(engine.decide(black_box(req), now, false));
    }
}

fn decide_mode(set: &str, req: &str, iterations: &str, cache: &str) {
    let iterations: u64 = iterations.parse().expect("ITERATIONS is a number");
    let capacity = match cache {
        "" | "cache_off" => 0,
        "cache_hit" => 100_000,
        other => panic!("unknown cache mode `{other}`: cache_off or cache_hit"),
    };
    let req = request(match req {
        "refund" => REFUND,
        "read" => READ,
        other => panic!("unknown request `{other}`: refund or read"),
    });
    let (_tmp, sets) = decision_sets();
    let dir = match set {
        "example" => sets.first(),
        "unrelated" => sets.get(1),
        other => panic!("unknown set `{other}`: example or unrelated"),
    };
    let engine = service(&dir.expect("two sets").1, capacity);
    // Also fills the cache, for hits.
    let outcome = engine.decide(&req, now(), false).outcome;
    measured_decisions(&engine, &req, iterations);
    println!("{set} {iterations} decisions ({cache}): {outcome:?}");
}

fn main() {
    // `cargo bench` passes `--bench` after the arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let rules = |i: usize| -> usize { arg(i).parse().expect("N is a number of rules") };
    match arg(0) {
        "generate" => generate(Path::new(arg(2)), rules(1)),
        "generate-unrelated" => generate_unrelated(Path::new(arg(2)), rules(1)),
        "time-load" => {
            let (_tmp, dir) = temp_set(|d| generate(d, rules(1)));
            let start = Instant::now();
            let set = load(&dir);
            println!("load of {} rules: {:.3?}", rules(1), start.elapsed());
            drop(set);
        }
        "decide" => decide_mode(arg(1), arg(2), arg(3), arg(4)),
        _ => {
            let mut c = Criterion::default().configure_from_args();
            bench_load(&mut c);
            bench_decide(&mut c);
            c.final_summary();
        }
    }
}
