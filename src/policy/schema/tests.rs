//! The schema check's unit tests.

use super::*;

fn reads(src: &str, scope: Scope) -> Result<Reads, Vec<SchemaError>> {
    let program = cel::Program::compile(src).map_err(|_| Vec::new())?;
    check(program.expression(), scope)
}

#[test]
fn collects_read_paths() {
    let r = reads(
        r#"!device.trusted && resource.attributes["amount"] > 10.0 && has(network.attributes.tor) && now > session.auth_time"#,
        Scope::Rule,
    )
    .unwrap();
    let paths: Vec<String> = r.paths.iter().map(|p| p.join(".")).collect();
    assert_eq!(
        paths,
        [
            "device.trusted",
            "network.attributes.tor",
            "resource.attributes.amount",
            "session.auth_time"
        ]
    );
    assert!(r.now);
    assert!(!r.risk);
}

#[test]
fn calendar_reads_of_now_are_stepwise() {
    let r = reads(
        r#"now.getHours("Europe/Berlin") < 6 || now.getMinutes() == 3"#,
        Scope::Signal,
    )
    .unwrap();
    assert!(!r.now);
    assert_eq!(r.now_step, Some(std::time::Duration::from_secs(60)));
    let r = reads(
        r#"now.getHours() < 6 && now > timestamp("2026-01-01T00:00:00Z")"#,
        Scope::Signal,
    )
    .unwrap();
    assert!(r.now, "a plain read of `now` makes it exact");
}

#[test]
fn comprehension_variables_are_not_context() {
    let r = reads(r#"subject.roles.exists(r, r == "admin")"#, Scope::Rule).unwrap();
    assert_eq!(
        r.paths,
        vec![vec!["subject".to_owned(), "roles".to_owned()]]
    );
}

#[test]
fn unknown_variable_and_field_have_did_you_mean() {
    let errs = reads("devce.trusted || session.amr_list == []", Scope::Rule).unwrap_err();
    let msgs: Vec<(String, Option<String>)> =
        errs.into_iter().map(|e| (e.message, e.help)).collect();
    assert_eq!(msgs[0].0, "unknown variable `devce`");
    assert_eq!(msgs[0].1.as_deref(), Some("did you mean `device`?"));
    assert_eq!(msgs[1].0, "`session` has no field `amr_list`");
    assert_eq!(msgs[1].1.as_deref(), Some("did you mean `amr`?"));
}

#[test]
fn history_is_checked_and_marks_the_read() {
    let r = reads(
        r#"history.travel_kmh > 900.0 && history.count("payments.*", duration("1h")) > 2"#,
        Scope::Signal,
    )
    .unwrap();
    assert!(r.history);
    assert!(r.paths.is_empty(), "history is not part of the cache key");
    let errs = reads(
        r#"history.travel_kms > 1.0 || history.cont("a", duration("1h")) > 1 || history.count("a") > 1"#,
        Scope::Rule,
    )
    .unwrap_err();
    let msgs: Vec<(String, Option<String>)> =
        errs.into_iter().map(|e| (e.message, e.help)).collect();
    assert_eq!(msgs[0].0, "`history` has no field `travel_kms`");
    assert_eq!(msgs[0].1.as_deref(), Some("did you mean `travel_kmh`?"));
    assert_eq!(msgs[1].0, "`history` has no function `cont`");
    assert_eq!(msgs[1].1.as_deref(), Some("did you mean `count`?"));
    assert_eq!(msgs[2].0, "`history.count` takes 2 arguments, got 1");
}

#[test]
fn selecting_from_a_scalar_names_its_type_with_the_right_article() {
    let errs = reads(
        "network.asn.x || subject.id.x || device.trusted.x || subject.roles.x",
        Scope::Rule,
    )
    .unwrap_err();
    let msgs: Vec<String> = errs.into_iter().map(|e| e.message).collect();
    assert_eq!(
        msgs,
        [
            "cannot select `x`: the value is an int",
            "cannot select `x`: the value is a string",
            "cannot select `x`: the value is a bool",
            "cannot select `x`: the value is a list of strings",
        ]
    );
    assert_eq!(with_article("int"), "an int");
    assert_eq!(with_article("double"), "a double");
    assert_eq!(with_article("timestamp"), "a timestamp");
}

#[test]
fn signals_cannot_read_risk() {
    let errs = reads("risk.score > 10", Scope::Signal).unwrap_err();
    assert_eq!(errs[0].message, "unknown variable `risk`");
    assert!(reads("risk.score > 10", Scope::Rule).unwrap().risk);
}
