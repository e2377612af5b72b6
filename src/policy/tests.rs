//! Load-time validation: every problem is found in one pass and reported
//! with file, line, caret and help. The message text is part of the
//! contract, so it is asserted whole.

use super::*;

const LEVELS: &str = "apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: [\"urn:aal1\"]
  - name: aal2
    acr: [\"urn:aal2\"]
";

/// The rendered diagnostics of a set made of the levels and `policy`.
fn errors(policy: &str) -> Vec<String> {
    let text = format!("{LEVELS}---\n{policy}");
    match PolicySet::from_str("p.yaml", &text) {
        Ok(_) => Vec::new(),
        Err(report) => report.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// The codes of the diagnostics of a set made of the levels and `policy`.
fn codes(policy: &str) -> Vec<Code> {
    let text = format!("{LEVELS}---\n{policy}");
    match PolicySet::from_str("p.yaml", &text) {
        Ok((_, report)) | Err(report) => report.diagnostics.iter().map(|d| d.code).collect(),
    }
}

fn one_error(policy: &str) -> String {
    let errs = errors(policy);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap_or_default()
}

const HEAD: &str = "apiVersion: stepup/v1\nkind: Policy\nname: t\n";

#[test]
fn unknown_variable_with_caret_and_did_you_mean() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: \"!devce.trusted\"\n    effect: deny\n"
    ));
    assert_eq!(
        e,
        "error: unknown variable `devce` (in `r1`) [unknown-variable]\n  --> p.yaml:15:13\n   |\n15 |     when: \"!devce.trusted\"\n   |             ^^^^^\n   = help: did you mean `device`?"
    );
}

#[test]
fn unknown_functions_with_caret_and_did_you_mean() {
    let errs = errors(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: 'now.getHour(\"UTC\") < 6 || sizee(subject.roles) > 2'\n    effect: deny\n"
    ));
    assert_eq!(
        errs,
        [
            "error: unknown function `getHour` (in `r1`) [unknown-function]\n  --> p.yaml:15:16\n   |\n15 |     when: 'now.getHour(\"UTC\") < 6 || sizee(subject.roles) > 2'\n   |                ^^^^^^^\n   = help: did you mean `getHours`?",
            "error: unknown function `sizee` (in `r1`) [unknown-function]\n  --> p.yaml:15:38\n   |\n15 |     when: 'now.getHour(\"UTC\") < 6 || sizee(subject.roles) > 2'\n   |                                      ^^^^^\n   = help: did you mean `size`?",
        ]
    );
}

#[test]
fn standard_functions_macros_and_operators_are_known() {
    let when = "int(resource.attributes.amount) > 5 && 'a' in subject.roles && \
        [1, 2].exists(x, x > 1) && [1].all(x, x > 0) && [1].map(x, x * 2)[0] == 2 && \
        [1].filter(x, x > 0).size() == 1 && !device.trusted && -1 < 0 && \
        timestamp('2020-01-01T00:00:00Z') < now && subject.id.matches('^a') && \
        subject.id.startsWith('a') && subject.id.endsWith('a') && subject.id.contains('a') && \
        has(device.id) && (true ? 1 : 2) == 1 && subject.roles[0] == 'x' && \
        double(1) > 0.0 && string(1) == '1' && uint(1) == 1u && bool('true') && \
        duration('1h') > duration('1m') && type(1) == type(2) && dyn(1) == 1 && \
        size(subject.roles) < 9 && now.getHours() >= 0 && now.getDayOfWeek('UTC') >= 0 && \
        history.count('a.*', duration('1h')) >= 0";
    let errs = errors(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: \"{when}\"\n    effect: deny\n"
    ));
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn unknown_request_field() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: session.amr_list == []\n    effect: deny\n"
    ));
    assert_eq!(
        e,
        "error: `session` has no field `amr_list` (in `r1`) [unknown-field]\n  --> p.yaml:15:19\n   |\n15 |     when: session.amr_list == []\n   |                   ^^^^^^^^\n   = help: did you mean `amr`?"
    );
}

#[test]
fn field_error_in_a_folded_block_scalar_points_at_its_line() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: >-\n      device.trusted &&\n      device.trusetd\n    effect: deny\n"
    ));
    assert!(e.contains("--> p.yaml:17:14"), "{e}");
    assert!(e.contains("did you mean `trusted`?"), "{e}");
}

#[test]
fn cel_syntax_error() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: \"1 > && true\"\n    effect: deny\n"
    ));
    assert!(
        e.starts_with("error: invalid CEL: Syntax error: extraneous input '&&'"),
        "{e}"
    );
    assert!(
        e.contains("(in `r1`) [cel-syntax]\n  --> p.yaml:15:16\n"),
        "{e}"
    );
}

#[test]
fn cel_syntax_error_at_the_end_points_past_the_expression() {
    // Quoted: just past the last character, i.e. at the closing quote.
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: \"device.trusted && foo(1\"\n    effect: deny\n"
    ));
    assert!(e.starts_with("error: invalid CEL: Syntax error: "), "{e}");
    assert!(
        e.ends_with("(in `r1`) [cel-syntax]\n  --> p.yaml:15:35\n   |\n15 |     when: \"device.trusted && foo(1\"\n   |                                   ^"),
        "{e}"
    );
    // Folded over two lines: at the end of the last line, not the first.
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: >-\n      device.trusted &&\n      foo(1\n    effect: deny\n"
    ));
    assert!(
        e.ends_with(
            "(in `r1`) [cel-syntax]\n  --> p.yaml:17:12\n   |\n17 |       foo(1\n   |            ^"
        ),
        "{e}"
    );
    // A literal block keeps its final newline: still after the `1`.
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: |\n      device.trusted &&\n      foo(1\n    effect: deny\n"
    ));
    assert!(
        e.contains("(in `r1`) [cel-syntax]\n  --> p.yaml:17:12\n"),
        "{e}"
    );
}

#[test]
fn unknown_key_has_did_you_mean() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    effect: deny\n    mesage: hi\n"
    ));
    assert_eq!(
        e,
        "error: unknown key `mesage` in a rule (in `r1`) [unknown-key]\n  --> p.yaml:16:5\n   |\n16 |     mesage: hi\n   |     ^^^^^^\n   = help: did you mean `message`?"
    );
}

#[test]
fn unknown_key_names_the_id_written_after_it() {
    assert_eq!(
        errors(&format!(
            "{HEAD}signals:\n  - when: \"true\"\n    scor: 5\n    id: s1\n    score: 5\nrules:\n  - acions: [a]\n    id: r5\n    actions: [a]\n    effect: deny\n"
        )),
        [
            "error: unknown key `scor` in a signal (in `s1`) [unknown-key]\n  --> p.yaml:14:5\n   |\n14 |     scor: 5\n   |     ^^^^\n   = help: did you mean `score`?",
            "error: unknown key `acions` in a rule (in `r5`) [unknown-key]\n  --> p.yaml:18:5\n   |\n18 |   - acions: [a]\n   |     ^^^^^^\n   = help: did you mean `actions`?",
        ]
    );
    // Without a valid id there is nothing to name.
    let errs = errors(&format!(
        "{HEAD}rules:\n  - acions: [a]\n    id: \"bad id\"\n    actions: [a]\n    effect: deny\n"
    ));
    assert!(
        errs[0].starts_with("error: unknown key `acions` in a rule [unknown-key]\n"),
        "{errs:#?}"
    );
}

#[test]
fn unknown_level_lists_close_names() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    effect: challenge\n    require: {{ level: aal3 }}\n"
    ));
    assert_eq!(
        e,
        "error: unknown level `aal3` (in `r1`) [unknown-level]\n  --> p.yaml:16:23\n   |\n16 |     require: { level: aal3 }\n   |                       ^^^^\n   = help: did you mean `aal1` or `aal2`?"
    );
}

#[test]
fn unknown_level_without_a_ladder_says_there_are_none() {
    let rule = "rules:\n  - id: r1\n    actions: [a]\n    effect: challenge\n    require: { level: aal2 }\n";
    let report = PolicySet::from_str("p.yaml", &format!("{HEAD}{rule}")).unwrap_err();
    let errs: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        errs[1],
        "error: unknown level `aal2` (in `r1`) [unknown-level]\n --> p.yaml:8:23\n  |\n8 |     require: { level: aal2 }\n  |                       ^^^^\n  = help: the set defines no levels: add a `kind: Levels` document listing them, weakest first",
        "{errs:#?}"
    );
    let report = PolicySet::from_str(
        "p.yaml",
        &format!("apiVersion: stepup/v1\nkind: Levels\nlevels: []\n---\n{HEAD}{rule}"),
    )
    .unwrap_err();
    let errs: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].ends_with("= help: the set defines no levels: list them under `levels:` in its `kind: Levels` document"),
        "{errs:#?}"
    );
}

#[test]
fn unknown_level_lists_the_levels() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    effect: challenge\n    require: {{ level: superstrong }}\n"
    ));
    assert!(e.ends_with("= help: the levels are `aal1`, `aal2`"), "{e}");
}

#[test]
fn bad_durations() {
    let errs = errors(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    effect: challenge\n    require: {{ max_age: 5 }}\n  - id: r2\n    actions: [a]\n    effect: challenge\n    require: {{ max_age: 5 minutes }}\n"
    ));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("error: `max_age` needs a unit: `5` (in `r1`)"),
        "{}",
        errs[0]
    );
    assert!(errs[0].ends_with("= help: write `5s` for seconds, or use m, h, d"));
    assert!(
        errs[1]
            .starts_with("error: invalid duration `5 minutes`: unknown unit ` minutes` (in `r2`)"),
        "{}",
        errs[1]
    );
}

#[test]
fn duplicate_ids_across_signals_and_rules() {
    let e = one_error(&format!(
        "{HEAD}signals:\n  - {{ id: x, when: \"true\", score: 1 }}\nrules:\n  - {{ id: x, actions: [a], effect: deny }}\n"
    ));
    assert!(
        e.starts_with("error: duplicate id `x` [duplicate-id]\n  --> p.yaml:15:11"),
        "{e}"
    );
    assert!(
        e.ends_with(
            "= help: ids are unique across signals and rules; `x` is first used at p.yaml:13"
        ),
        "{e}"
    );
}

#[test]
fn every_error_is_reported_in_one_pass() {
    let policy = format!(
        "{HEAD}signals:\n  - {{ id: s, when: \"risk.score > 1\", score: 500 }}\nrules:\n  - id: r\n    actions: []\n    when: \"devce\"\n    effect: challenge\n    require: {{ level: nope, max_age: 1y }}\n"
    );
    assert_eq!(
        codes(&policy),
        [
            Code::InvalidScore,
            Code::EmptyActions,
            Code::InvalidDuration,
            Code::UnknownVariable,
            Code::UnknownVariable,
            Code::UnknownLevel,
        ]
    );
    let firsts: Vec<String> = errors(&policy)
        .iter()
        .map(|e| e.lines().next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        firsts,
        [
            "error: `score` must be a whole number from -100 to 100 (in `s`) [invalid-score]",
            "error: `actions` is empty: the rule would never match (in `r`) [empty-actions]",
            "error: invalid duration `1y`: unknown unit `y` (in `r`) [invalid-duration]",
            "error: unknown variable `risk` (in `s`) [unknown-variable]",
            "error: unknown variable `devce` (in `r`) [unknown-variable]",
            "error: unknown level `nope` (in `r`) [unknown-level]",
        ]
    );
}

#[test]
fn structure_errors() {
    let kind = |policy: &str| codes(policy);
    assert_eq!(
        kind("apiVersion: stepup/v2\nkind: Policy\nname: t\n"),
        [Code::UnsupportedApiVersion]
    );
    assert_eq!(
        kind("apiVersion: stepup/v1\nkind: Polcy\n"),
        [Code::UnknownKind]
    );
    assert_eq!(
        kind(&format!(
            "{HEAD}rules:\n  - id: r\n    actions: [a]\n    effect: challenge\n"
        )),
        [Code::MissingKey]
    );
    assert_eq!(
        kind(&format!(
            "{HEAD}rules:\n  - id: r\n    actions: [a]\n    effect: deny\n    require: {{ level: aal1 }}\n"
        )),
        [Code::MisplacedKey]
    );
    assert_eq!(kind("name: [\n")[0], Code::InvalidYaml);
    assert_eq!(kind("apiVersion: stepup/v1\n"), [Code::MissingKey]);

    let e = one_error("apiVersion: stepup/v2\nkind: Policy\nname: t\n");
    assert!(
        e.starts_with("error: unsupported apiVersion `stepup/v2`"),
        "{e}"
    );
    assert!(e.ends_with("= help: use `apiVersion: stepup/v1`"), "{e}");

    let e = one_error("apiVersion: stepup/v1\nkind: Polcy\n");
    assert!(e.starts_with("error: unknown kind `Polcy`"), "{e}");

    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r\n    actions: [a]\n    effect: challenge\n"
    ));
    assert!(
        e.starts_with("error: challenge rule is missing `require` (in `r`)"),
        "{e}"
    );

    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r\n    actions: [a]\n    effect: deny\n    require: {{ level: aal1 }}\n"
    ));
    assert!(
        e.starts_with("error: a deny rule takes no `require` (in `r`)"),
        "{e}"
    );

    // The broken file also holds the levels, hence a second error.
    let e = errors("kind: Policy\napiVersion: stepup/v1\nname: t\nrules: [ {id: r, actions: [a], effect: deny\n").remove(0);
    assert!(e.starts_with("error: invalid YAML:"), "{e}");
    assert!(e.contains("--> p.yaml:"), "{e}");
}

#[test]
fn exactly_one_levels_document() {
    let report = PolicySet::from_str("p.yaml", "apiVersion: stepup/v1\nkind: Policy\nname: t\n")
        .unwrap_err();
    assert_eq!(
        report.diagnostics[0].to_string(),
        "error: the policy set has no `kind: Levels` document [no-levels]\n  = help: add one listing the assurance levels, weakest first, with their acr values"
    );
    let e = one_error(LEVELS);
    assert!(
        e.starts_with("error: a second `kind: Levels` document"),
        "{e}"
    );
}

#[test]
fn acr_maps_to_one_level() {
    let report = PolicySet::from_str(
        "p.yaml",
        "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - { name: a, acr: [x] }\n  - { name: b, acr: [x] }\n",
    )
    .unwrap_err();
    assert!(
        report.diagnostics[0]
            .to_string()
            .starts_with("error: acr value `x` is already level `a`"),
        "{report}"
    );
}

#[test]
fn read_paths_and_volatility() {
    let text = format!(
        "{LEVELS}---\n{HEAD}signals:\n  - {{ id: stale, when: 'now - session.auth_time > duration(\"1h\")', score: 10 }}\n  - {{ id: d, when: '!device.trusted', score: 10 }}\nrules:\n  - {{ id: r, actions: [a], when: 'risk.score > 5', effect: deny }}\n  - {{ id: q, actions: [a], when: 'resource.attributes.amount > 1.0 && device.trusted', effect: deny }}\n"
    );
    let (set, warnings) = PolicySet::from_str("p.yaml", &text).unwrap();
    assert!(warnings.diagnostics.is_empty());
    let paths: Vec<String> = set.read_paths.iter().map(|p| p.join(".")).collect();
    assert_eq!(
        paths,
        [
            "device.trusted",
            "resource.attributes.amount",
            "session.auth_time"
        ]
    );
    assert_eq!(set.time_step, None);
    assert!(set.signals[0].when.volatile);
    assert!(!set.signals[1].when.volatile);
    assert!(
        set.rules[0].when.as_ref().unwrap().volatile,
        "reads risk while a signal reads now"
    );
    assert!(!set.rules[1].when.as_ref().unwrap().volatile);

    let text = format!(
        "{LEVELS}---\n{HEAD}signals:\n  - {{ id: night, when: 'now.getHours(\"Asia/Kolkata\") < 6', score: 10 }}\n"
    );
    let (set, _) = PolicySet::from_str("p.yaml", &text).unwrap();
    assert!(
        !set.signals[0].when.volatile,
        "calendar reads are keyed, not volatile"
    );
    assert_eq!(set.time_step, Some(std::time::Duration::from_secs(900)));
}

#[test]
fn example_policies_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    match PolicySet::load(&dir) {
        Ok((set, warnings)) => {
            assert!(warnings.diagnostics.is_empty(), "{warnings}");
            assert!(set.rules.len() >= 10);
        }
        Err(report) => panic!("{report}"),
    }
}

#[test]
fn revision_is_a_content_hash() {
    let a = PolicySet::from_str("p.yaml", LEVELS).unwrap().0;
    let b = PolicySet::from_str("p.yaml", LEVELS).unwrap().0;
    let c = PolicySet::from_str("p.yaml", &format!("{LEVELS}# changed\n"))
        .unwrap()
        .0;
    assert_eq!(a.revision, b.revision);
    assert_ne!(a.revision, c.revision);
    assert_ne!(
        a.generation, b.generation,
        "every compiled set has its own cache generation"
    );
    assert!(a.revision.starts_with("sha256:") && a.revision.len() == 7 + 64);
}

#[test]
fn an_invalid_literal_regex_is_a_load_error_at_the_pattern() {
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: 'device.platform.matches(\"(ios\")'\n    effect: deny\n"
    ));
    assert_eq!(
        e,
        "error: invalid regex: unclosed group (in `r1`) [invalid-regex]\n  --> p.yaml:15:36\n   |\n15 |     when: 'device.platform.matches(\"(ios\")'\n   |                                    ^^^^^^\n   = help: patterns are RE2 syntax, as in CEL: escape a backslash twice in a quoted YAML string (`\"\\\\d+\"`), or use single quotes"
    );
    let e = one_error(&format!(
        "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: 'matches(device.platform)'\n    effect: deny\n"
    ));
    assert!(
        e.starts_with("error: `matches` takes a string and a pattern (in `r1`) [invalid-call]"),
        "{e}"
    );
}

#[test]
fn literal_regexes_are_compiled_once_at_load() {
    let (set, _) = PolicySet::from_str(
        "p.yaml",
        &format!(
            "{LEVELS}---\n{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: 'device.platform.matches(\"^(ios|android)$\") || matches(subject.id, \"^bot-\")'\n    effect: deny\n"
        ),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let run = |platform: &str, id: &str| {
        let req = crate::proto::v1::DecideRequest {
            action: "a".into(),
            subject: Some(crate::proto::v1::Subject {
                id: id.into(),
                ..Default::default()
            }),
            device: Some(crate::proto::v1::Device {
                platform: platform.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let vars = crate::expr::vals::Variables {
            request: &req,
            now: chrono::Utc::now().fixed_offset(),
            risk: None,
            history: None,
        };
        let mut ctx = set.cel_context();
        ctx.set_variable_resolver(&vars);
        set.rules[0].when.as_ref().unwrap().program.execute(&ctx)
    };
    assert_eq!(run("ios", "u"), Ok(cel::Value::Bool(true)));
    assert_eq!(run("windows", "bot-7"), Ok(cel::Value::Bool(true)));
    assert_eq!(run("windows", "u"), Ok(cel::Value::Bool(false)));
}

#[test]
fn a_pattern_from_the_request_needs_the_opt_in() {
    let rule = |flag: &str| {
        format!(
            "{HEAD}rules:\n  - id: r1\n    actions: [a]\n    when: 'subject.id.matches(resource.attributes.pattern)'\n{flag}    effect: deny\n"
        )
    };
    let e = one_error(&rule(""));
    assert_eq!(
        e,
        "error: the pattern of `matches` is not written in the policy: it would be compiled from the request on every call (in `r1`) [dynamic-regex]\n  --> p.yaml:15:51\n   |\n15 |     when: 'subject.id.matches(resource.attributes.pattern)'\n   |                                                   ^^^^^^^\n   = help: write the pattern as a string literal, or set `dynamic_regex: true` on this signal or rule to accept patterns from the request (costed, and compiled under a size limit)"
    );
    let (set, _) = PolicySet::from_str(
        "p.yaml",
        &format!("{LEVELS}---\n{}", rule("    dynamic_regex: true\n")),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let cost = set.cost_report().conditions[0].cost;
    assert!(
        cost > 2_000 && cost <= cost::DEFAULT_MAX_CONDITION_COST,
        "{cost}"
    );
    assert_eq!(
        codes(&rule("    dynamic_regex: yes please\n")),
        [Code::WrongType, Code::DynamicRegex]
    );
}

/// The example policies as in-memory sources, as an editor holds them.
fn example_sources(dir: &Path) -> Vec<diag::SourceFile> {
    load::policy_files(dir)
        .unwrap()
        .into_iter()
        .map(|path| diag::SourceFile {
            text: std::fs::read_to_string(&path).unwrap(),
            path,
        })
        .collect()
}

#[test]
fn files_held_in_memory_load_as_the_directory_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (from_disk, _) = PolicySet::load(&dir).unwrap();
    let limits = CostLimits::default();
    let lists = ListsConfig::default();
    let (in_memory, _) =
        PolicySet::load_sources(&dir, example_sources(&dir), &lists, limits).unwrap();
    // The same set: same files, same revision (lists/ read from `dir`).
    assert_eq!(in_memory.revision, from_disk.revision);
    assert_eq!(in_memory.rules.len(), from_disk.rules.len());
    // An edit is reported in its file, at its line, as `check` reports it.
    let mut edited = example_sources(&dir);
    let payments = edited
        .iter_mut()
        .find(|f| f.path.ends_with("payments.yaml"))
        .unwrap();
    payments.text = payments
        .text
        .replace("effect: challenge", "effect: challenj");
    let report = PolicySet::load_sources(&dir, edited, &lists, limits).unwrap_err();
    let d = &report.diagnostics[0];
    assert_eq!(d.file.as_deref(), Some(dir.join("payments.yaml").as_path()));
    assert_eq!(d.location.unwrap().line, 13);
    // No files at all: the directory's own error.
    let report = PolicySet::load_sources(&dir, Vec::new(), &lists, limits).unwrap_err();
    assert_eq!(report.diagnostics[0].code, Code::NoPolicyFiles);
}
