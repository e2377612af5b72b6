//! Loading lists from the config and the policy directory; `ip_in`.

use std::path::Path;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn loads_config_and_policy_dir_lists() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policies/lists/tor_exits.txt", "192.0.2.0/24\n");
    write(dir.path(), "policies/lists/.hidden.txt", "not parsed\n");
    write(dir.path(), "policies/lists/README.md", "not a list\n");
    let office = write(dir.path(), "office.txt", "2001:db8::/32\n");
    let config = ListsConfig {
        ip: [("office".to_owned(), office)].into(),
        geoip_city: None,
    };
    let lists = Lists::load(&config, Some(&dir.path().join("policies")), None).unwrap();
    assert_eq!(lists.names().collect::<Vec<_>>(), ["office", "tor_exits"]);
    assert_eq!(
        lists.contains("tor_exits", "192.0.2.1".parse().unwrap()),
        Some(true)
    );
    assert_eq!(
        lists.contains("office", "2001:db8::9".parse().unwrap()),
        Some(true)
    );
    assert_eq!(lists.contains("nope", "2001:db8::9".parse().unwrap()), None);
    assert_eq!(lists.files().count(), 2);
}

#[test]
fn no_policy_lists_dir_is_no_lists() {
    let dir = tempfile::tempdir().unwrap();
    let lists = Lists::load(&ListsConfig::default(), Some(dir.path()), None).unwrap();
    assert!(lists.is_empty());
}

#[test]
fn every_problem_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p/lists/tor_exits.txt", "192.0.2.0/24\nbad\n");
    let dup = write(dir.path(), "dup.txt", "10.0.0.0/8\n");
    let config = ListsConfig {
        ip: [
            ("tor_exits".to_owned(), dup),
            ("bad name".to_owned(), dir.path().join("x.txt")),
            ("missing".to_owned(), dir.path().join("missing.txt")),
        ]
        .into(),
        geoip_city: Some(dir.path().join("city.mmdb")),
    };
    let errors: Vec<String> = Lists::load(&config, Some(&dir.path().join("p")), None)
        .unwrap_err()
        .iter()
        .map(|e| {
            e.to_string()
                .replace(&dir.path().display().to_string(), "D")
        })
        .collect();
    assert_eq!(
        errors,
        [
            "D/p/lists/tor_exits.txt:2:1: `bad` is not an IP address or CIDR prefix",
            "invalid IP list name `bad name` (for `D/x.txt`)",
            "cannot read IP list `D/missing.txt`: No such file or directory (os error 2)",
            "IP list `tor_exits` is defined twice: by `D/p/lists/tor_exits.txt` and by `D/dup.txt`",
            "cannot read GeoIP database `D/city.mmdb`: No such file or directory (os error 2)",
        ]
    );
}

#[test]
fn digest_follows_contents_not_formatting() {
    let a = Lists::from_ip_lists([(
        "l".to_owned(),
        IpList::parse(Path::new("a"), "10.0.0.0/8\n10.1.0.0/16\n").unwrap(),
    )]);
    let b = Lists::from_ip_lists([(
        "l".to_owned(),
        IpList::parse(Path::new("b"), "# same\n10.0.0.0/8\n").unwrap(),
    )]);
    let c = Lists::from_ip_lists([(
        "l".to_owned(),
        IpList::parse(Path::new("c"), "10.0.0.0/8\n11.0.0.0/8\n").unwrap(),
    )]);
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn unchanged_geoip_database_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = mmdb_writer::MmdbWriter::new("GeoLite2-City");
    w.insert(
        "192.0.2.0/24",
        mmdb_writer::Value::city("DE", 52.52, 13.405),
    );
    let path = write(dir.path(), "city.mmdb", "");
    std::fs::write(&path, w.finish()).unwrap();
    let config = ListsConfig {
        ip: BTreeMap::new(),
        geoip_city: Some(path),
    };
    let first = Lists::load(&config, None, None).unwrap();
    let second = Lists::load(&config, None, Some(&first)).unwrap();
    assert!(std::ptr::eq(
        first.geoip().unwrap(),
        second.geoip().unwrap()
    ));
    assert_eq!(
        second
            .locate("192.0.2.1".parse().unwrap())
            .and_then(|p| p.country)
            .map(|c| c.to_string()),
        Some("DE".to_owned())
    );
}

fn eval(lists: Lists, expr: &str) -> Result<cel::Value, cel::ExecutionError> {
    let env = Arc::new(cel::Env::stdlib());
    let program = env.compile(expr).unwrap();
    let mut ctx = cel::Context::with_env(env);
    add_ip_in(&mut ctx, &Arc::new(lists));
    program.execute(&ctx)
}

fn tor() -> Lists {
    Lists::from_ip_lists([(
        "tor_exits".to_owned(),
        IpList::parse(Path::new("t"), "192.0.2.0/24\n2001:db8::/32\n").unwrap(),
    )])
}

#[test]
fn ip_in_answers_membership() {
    assert_eq!(
        eval(tor(), r#"ip_in("192.0.2.9", "tor_exits")"#),
        Ok(cel::Value::Bool(true))
    );
    assert_eq!(
        eval(tor(), r#"ip_in("::ffff:192.0.2.9", "tor_exits")"#),
        Ok(cel::Value::Bool(true))
    );
    assert_eq!(
        eval(tor(), r#"ip_in("198.51.100.1", "tor_exits")"#),
        Ok(cel::Value::Bool(false))
    );
}

#[test]
fn ip_in_errors_on_bad_input() {
    let err = |expr: &str| eval(tor(), expr).unwrap_err().to_string();
    assert_eq!(
        err(r#"ip_in("not-an-ip", "tor_exits")"#),
        "Error executing function 'ip_in': `not-an-ip` is not an IP address"
    );
    assert_eq!(
        err(r#"ip_in("", "tor_exits")"#),
        "Error executing function 'ip_in': `` is not an IP address"
    );
    assert_eq!(
        err(r#"ip_in("192.0.2.1", "tor")"#),
        "Error executing function 'ip_in': no IP list `tor`"
    );
    assert_eq!(
        err(r#"ip_in(1, "tor_exits")"#),
        "Error executing function 'ip_in': both arguments must be strings"
    );
    assert_eq!(
        err(r#"ip_in("192.0.2.1")"#),
        "Error executing function 'ip_in': takes two arguments: an IP address and a list name"
    );
}

// --- through the policy set and the engine -----------------------------------

use crate::cache::decide_with;
use crate::engine::Outcome;
use crate::policy::PolicySet;
use crate::proto::v1 as pb;
use crate::service::Service;

const LEVELS: &str = "apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: [\"urn:aal1\"]
---
apiVersion: stepup/v1
kind: Policy
name: t
";

fn set_with(lists: Lists, body: &str) -> Result<PolicySet, Vec<String>> {
    PolicySet::from_str_with("p.yaml", &format!("{LEVELS}{body}"), Arc::new(lists))
        .map(|(set, _)| set)
        .map_err(|r| r.diagnostics.iter().map(ToString::to_string).collect())
}

fn deny_when(when: &str) -> String {
    format!("rules:\n  - id: r1\n    actions: [a]\n    when: '{when}'\n    effect: deny\n")
}

fn one_error(lists: Lists, when: &str) -> String {
    let errs = set_with(lists, &deny_when(when)).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn unknown_list_is_a_load_error_with_did_you_mean() {
    assert_eq!(
        one_error(tor(), r#"ip_in(network.ip, "tor_exit")"#),
        "error: unknown IP list `tor_exit` (in `r1`) [unknown-list]\n  --> p.yaml:13:30\n   |\n13 |     when: 'ip_in(network.ip, \"tor_exit\")'\n   |                              ^^^^^^^^^^\n   = help: did you mean `tor_exits`?"
    );
    assert_eq!(
        one_error(tor(), r#"ip_in(network.ip, "office")"#),
        "error: unknown IP list `office` (in `r1`) [unknown-list]\n  --> p.yaml:13:30\n   |\n13 |     when: 'ip_in(network.ip, \"office\")'\n   |                              ^^^^^^^^\n   = help: the IP lists are `tor_exits`"
    );
    assert!(
        one_error(Lists::default(), r#"ip_in(network.ip, "tor_exits")"#).ends_with(
            "= help: no IP lists are configured: name the file under `[lists.ip]` in the config file, or add `lists/NAME.txt` to the policy directory"
        )
    );
}

#[test]
fn ip_in_arity_and_literal_name_are_checked() {
    let e = one_error(tor(), r#"ip_in(network.ip)"#);
    assert!(
        e.starts_with("error: `ip_in` takes 2 arguments, got 1 (in `r1`)"),
        "{e}"
    );
    assert!(
        e.ends_with(
            "= help: `ip_in(network.ip, \"tor_exits\")`: an IP address and the name of a list"
        ),
        "{e}"
    );
    let e = one_error(tor(), r#"ip_in(network.ip, "tor_exits", 1)"#);
    assert!(
        e.starts_with("error: `ip_in` takes 2 arguments, got 3"),
        "{e}"
    );
    let e = one_error(tor(), r#"ip_in(network.ip, device.platform)"#);
    assert!(
        e.starts_with("error: the list name must be a string literal (in `r1`)"),
        "{e}"
    );
    assert!(
        e.contains("--> p.yaml:13:37\n"),
        "points at the argument's field: {e}"
    );
    assert!(e.contains("^^^^^^^^\n"), "{e}");
    let e = one_error(tor(), r#"network.ip.ip_in("tor_exits")"#);
    assert!(
        e.starts_with("error: `ip_in` is a function, not a method"),
        "{e}"
    );
    // The address argument is checked like any expression.
    let e = one_error(tor(), r#"ip_in(network.addr, "tor_exits")"#);
    assert!(e.starts_with("error: `network` has no field `addr`"), "{e}");
}

#[test]
fn ip_in_reads_are_in_the_cache_key() {
    let set = set_with(tor(), &deny_when(r#"ip_in(network.ip, "tor_exits")"#)).unwrap();
    let paths: Vec<String> = set.read_paths.iter().map(|p| p.join(".")).collect();
    assert_eq!(paths, ["network.ip"]);
}

fn request(ip: &str) -> pb::DecideRequest {
    pb::DecideRequest {
        action: "a".into(),
        subject: Some(pb::Subject {
            id: "u1".into(),
            ..Default::default()
        }),
        network: Some(pb::Network {
            ip: ip.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap()
}

#[test]
fn ip_in_decides_through_the_engine() {
    let set = Arc::new(
        set_with(
            tor(),
            "signals:\n  - id: tor\n    when: 'network.ip != \"\" && ip_in(network.ip, \"tor_exits\")'\n    score: 40\nrules:\n  - id: r1\n    actions: [a]\n    when: 'risk.score >= 40'\n    effect: deny\n",
        )
        .unwrap(),
    );
    let d = decide_with(Arc::clone(&set), None, &request("192.0.2.7"), now(), false);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.assessment.signals.len(), 1);
    let d = decide_with(
        Arc::clone(&set),
        None,
        &request("2001:db8::1"),
        now(),
        false,
    );
    assert_eq!(d.outcome, Outcome::Deny);
    let d = decide_with(
        Arc::clone(&set),
        None,
        &request("198.51.100.1"),
        now(),
        false,
    );
    assert_eq!(d.outcome, Outcome::Allow);
    // No address: the guard keeps the signal quiet (no error).
    let d = decide_with(Arc::clone(&set), None, &request(""), now(), false);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(d.assessment.errors.is_empty());
}

#[test]
fn unparsable_address_fails_the_rule_closed() {
    let set = Arc::new(
        set_with(
            tor(),
            &deny_when(r#"ip_in(attributes.forwarded_for, "tor_exits")"#),
        )
        .unwrap(),
    );
    let mut req = request("198.51.100.1");
    req.attributes = [(
        "forwarded_for".to_owned(),
        pbjson_types::Value::from("999.1.1.1".to_owned()),
    )]
    .into();
    let d = decide_with(set, None, &req, now(), false);
    assert_eq!(
        d.outcome,
        Outcome::Deny,
        "a rule that cannot be evaluated matches"
    );
    let errors: Vec<String> = d
        .assessment
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.id, e.message))
        .collect();
    assert_eq!(
        errors,
        ["r1: error executing function 'ip_in': `999.1.1.1` is not an IP address"]
    );
}

#[test]
fn sets_without_ip_in_do_not_register_it() {
    // Cheap evaluation contexts for sets that do not use lists: `ip_in` is
    // only added where a condition calls it.
    let set = set_with(tor(), &deny_when("true")).unwrap();
    let program = set
        .env()
        .compile(r#"ip_in("192.0.2.1", "tor_exits")"#)
        .unwrap();
    assert!(program.execute(&set.cel_context()).is_err());
    let set = set_with(tor(), &deny_when(r#"ip_in("192.0.2.1", "tor_exits")"#)).unwrap();
    assert_eq!(
        program.execute(&set.cel_context()),
        Ok(cel::Value::Bool(true))
    );
}

#[test]
fn a_reload_with_a_changed_list_changes_the_cached_answer() {
    use crate::cache::CacheConfig;
    use crate::service::watch::{Reload, Reloader};

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        &format!("{LEVELS}{}", deny_when(r#"ip_in(network.ip, "blocked")"#)),
    );
    let list = write(dir.path(), "outside/blocked.txt", "192.0.2.0/24\n");
    let config = ListsConfig {
        ip: [("blocked".to_owned(), list.clone())].into(),
        geoip_city: None,
    };
    let (set, _) = PolicySet::load_with(dir.path(), &config, None).unwrap();
    let engine = Arc::new(Service::new(
        set,
        CacheConfig {
            capacity: 1000,
            ttl: std::time::Duration::from_secs(3600),
            ..CacheConfig::default()
        },
    ));
    let reloader = Reloader::new(Arc::clone(&engine), dir.path().to_path_buf()).with_lists(config);
    let req = request("192.0.2.7");
    assert_eq!(engine.decide(&req, now(), false).outcome, Outcome::Deny);
    let d = engine.decide(&req, now(), false);
    assert!(d.cache_hit, "the second decision comes from the cache");
    assert_eq!(d.outcome, Outcome::Deny);

    // Only a comment changes: same contents, same revision, nothing to do.
    std::fs::write(&list, "# reviewed\n192.0.2.0/24\n").unwrap();
    assert!(matches!(reloader.reload(), Reload::Unchanged));

    // The address leaves the list: a new revision, and a new answer.
    let before = engine.policy().revision.clone();
    std::fs::write(&list, "198.51.100.0/24\n").unwrap();
    assert!(matches!(reloader.reload(), Reload::Swapped { .. }));
    assert_ne!(engine.policy().revision, before);
    let d = engine.decide(&req, now(), false);
    assert_eq!(d.outcome, Outcome::Allow);
    assert!(!d.cache_hit);

    // A bad list rejects the reload; the last good set keeps serving.
    std::fs::write(&list, "198.51.100.0/24\n192.0.2.0/33\n").unwrap();
    match reloader.reload() {
        Reload::Rejected(report) => {
            let text = report.to_string();
            assert!(
                text.contains(
                    "error: prefix length `/33` in `192.0.2.0/33` is longer than 32 bits"
                ),
                "{text}"
            );
            assert!(text.contains("blocked.txt:2:1"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(engine.reload_status().last_error().is_some());
    assert_eq!(engine.decide(&req, now(), false).outcome, Outcome::Allow);
}

#[test]
fn list_problems_are_policy_diagnostics_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yaml",
        &format!("{LEVELS}{}", deny_when(r#"ip_in(network.ip, "tor_exits")"#)),
    );
    write(
        dir.path(),
        "lists/tor_exits.txt",
        "192.0.2.0/24\n10.0.0.1/8 # typo\n",
    );
    let missing = dir.path().join("feeds/missing.txt");
    let config = ListsConfig {
        ip: [("missing".to_owned(), missing.clone())].into(),
        geoip_city: None,
    };
    let report = PolicySet::load_with(dir.path(), &config, None).unwrap_err();
    let rendered: Vec<String> = report
        .diagnostics
        .iter()
        .map(|d| {
            d.to_string()
                .replace(&dir.path().display().to_string(), "D")
        })
        .collect();
    assert_eq!(
        rendered,
        [
            "error: `10.0.0.1/8` has host bits set [invalid-list]\n --> D/lists/tor_exits.txt:2:1\n  |\n2 | 10.0.0.1/8 # typo\n  | ^^^^^^^^^^\n  = help: the network is `10.0.0.0/8`",
            "error: cannot read IP list: No such file or directory (os error 2) [unreadable-file]\n --> D/feeds/missing.txt",
        ]
    );
    assert_eq!(
        report.diagnostics[1].file.as_deref(),
        Some(missing.as_path())
    );
}
