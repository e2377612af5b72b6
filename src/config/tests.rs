use super::*;

/// The problems as the user reads them.
fn texts(err: &ConfigError) -> Vec<String> {
    err.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn flags_beat_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stepup.toml");
    std::fs::write(
        &file,
        "policies = \"/from/file\"\nlisten = \"127.0.0.1:9000\"\n[cache]\nsize = 5\nmax_bytes = 1048576\nttl = \"2m\"\n",
    )
    .unwrap();
    let c = Config::resolve(
        Overrides {
            listen: Some("0.0.0.0:7000".into()),
            ..Default::default()
        },
        Some(&file),
    )
    .unwrap();
    assert_eq!(c.policies, PathBuf::from("/from/file"));
    assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(c.cache.capacity, 5);
    assert_eq!(c.cache.max_bytes, 1 << 20);
    assert_eq!(c.cache.ttl, Duration::from_secs(120));
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn reports_every_bad_field() {
    let err = Config::resolve(
        Overrides {
            listen: Some("localhost".into()),
            cache_ttl: Some("5 minutes".into()),
            ..Default::default()
        },
        None,
    )
    .unwrap_err();
    assert_eq!(
        texts(&err),
        [
            "no policy directory: pass --policies DIR, set STEPUP_POLICIES, or set `policies` in the config file",
            "listen address `localhost` is not IP:PORT or unix:PATH (e.g. `127.0.0.1:7171` or `unix:/run/stepup/stepup.sock`)",
            "cache ttl `5 minutes`: unknown unit ` minutes`",
        ]
    );
}

#[test]
fn lists_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stepup.toml");
    std::fs::write(
        &file,
        "policies = \"p\"\n[lists]\ngeoip_city = \"/var/geo/City.mmdb\"\n[lists.ip]\ntor_exits = \"lists/tor.txt\"\noffice = \"/etc/office.txt\"\n",
    )
    .unwrap();
    let c = Config::resolve(Overrides::default(), Some(&file)).unwrap();
    assert_eq!(
        c.lists.ip.get("tor_exits"),
        Some(&dir.path().join("lists/tor.txt"))
    );
    assert_eq!(
        c.lists.ip.get("office"),
        Some(&PathBuf::from("/etc/office.txt"))
    );
    assert_eq!(
        c.lists.geoip_city,
        Some(PathBuf::from("/var/geo/City.mmdb"))
    );
    std::fs::write(&file, "policies = \"p\"\n[lists]\ngeoip = \"x\"\n").unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    assert!(
        err.to_string()
            .contains("stepup.toml:3: unknown field `geoip`"),
        "{err}"
    );
}

#[test]
fn reports_every_bad_key_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "bogus = 1\npolicies = \"p\"\n[cache]\nsize = -1\nttl = 5\n[log]\nformat = \"xml\"\n[[ext_authz.routes]]\npath = 5\n",
    )
    .unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    let at = file.display();
    assert_eq!(
        texts(&err),
        [
            format!(
                "{at}:1: unknown field `bogus`, expected one of `policies`, `listen`, `listen_mode`, `tls`, `watch`, `admin`, `cache`, `ext_authz`, `log`, `decision_log`, `history`, `lists`, `limits`, `trust`, `ssf`, `http`"
            ),
            format!("{at}:4: invalid value: integer `-1`, expected u64"),
            format!("{at}:5: invalid type: integer `5`, expected a string"),
            format!("{at}:7: unknown variant `xml`, expected `text` or `json`"),
            format!("{at}:9: invalid type: integer `5`, expected a string"),
        ]
    );
    // Good keys still count: only the bad ones are dropped.
    std::fs::write(&file, "policies = \"p\"\n[cache]\nsize = 7\nttl = 5\n").unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    assert_eq!(
        texts(&err),
        [format!(
            "{at}:4: invalid type: integer `5`, expected a string"
        )]
    );
    // A syntax error stops the reading there.
    std::fs::write(&file, "bogus = 1\npolicies = \"p\n").unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(texts(&err)[0].starts_with(&format!("{at}:2: ")), "{err}");
}

#[test]
fn unknown_file_keys_are_named_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "policies = \"p\"\n[cache]\nsise = 3\n").unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("c.toml:3: unknown field `sise`"), "{text}");
}

#[test]
fn signals_need_their_issuers_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
    let file = dir.path().join("stepup.toml");
    let ssf = "[ssf]\nenabled = true\naudience = \"https://stepup.example\"\n";
    std::fs::write(&file, format!("policies = \"p\"\n{ssf}")).unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    assert!(
        texts(&err).contains(
            &"ssf.enabled needs `[[trust.issuers]]`: the keys that verify events".to_owned()
        ),
        "{err}"
    );
    let trust = "[[trust.issuers]]\nissuer = \"https://idp.example\"\naudiences = [\"stepup\"]\njwks_file = \"jwks.json\"\n";
    std::fs::write(&file, format!("policies = \"p\"\n{ssf}{trust}")).unwrap();
    assert!(Config::resolve(Overrides::default(), Some(&file)).is_ok());
    let off = "[history]\nenabled = false\n";
    std::fs::write(&file, format!("policies = \"p\"\n{off}{ssf}{trust}")).unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    assert_eq!(
        texts(&err),
        ["ssf.enabled needs history: events take effect through it (`[history] enabled = false`)"],
    );
}

#[test]
fn envoy_and_the_trusted_issuers_name_subjects_alike() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), r#"{"keys": []}"#).unwrap();
    let file = dir.path().join("stepup.toml");
    let issuer = |iss: &str| {
        format!(
            "[[trust.issuers]]\nissuer = \"{iss}\"\naudiences = [\"stepup\"]\njwks_file = \"jwks.json\"\n"
        )
    };
    let two_trusted = format!(
        "{}{}",
        issuer("https://a.example"),
        issuer("https://b.example")
    );
    let envoy = |list: &str| format!("[ext_authz.subject]\nissuers = [{list}]\n");
    let one = envoy("\"https://a.example\"");
    std::fs::write(&file, format!("policies = \"p\"\n{one}{two_trusted}")).unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    assert_eq!(texts(&err).len(), 1, "{err}");
    assert!(
        texts(&err)[0].starts_with(
            "`ext_authz.subject.issuers` lists 1 issuer(s) and `[[trust.issuers]]` 2: with two or more, subject ids are `<iss>#<sub>`"
        ),
        "{err}"
    );
    let two = envoy("\"https://a.example\", \"https://b.example\"");
    std::fs::write(&file, format!("policies = \"p\"\n{two}{two_trusted}")).unwrap();
    assert!(Config::resolve(Overrides::default(), Some(&file)).is_ok());
    let only_trusted = issuer("https://a.example");
    std::fs::write(&file, format!("policies = \"p\"\n{one}{only_trusted}")).unwrap();
    assert!(Config::resolve(Overrides::default(), Some(&file)).is_ok());
}

/// `[http] listen` and `--http`: the AuthZEN listener, the flag first; off
/// without either; a bad address named.
#[test]
fn the_authzen_http_listener() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stepup.toml");
    std::fs::write(
        &file,
        "policies = \"p\"\n[http]\nlisten = \"127.0.0.1:7173\"\n",
    )
    .unwrap();
    let c = Config::resolve(Overrides::default(), Some(&file)).unwrap();
    assert_eq!(
        c.http.map(|l| l.to_string()).as_deref(),
        Some("127.0.0.1:7173")
    );
    let flag = Overrides {
        http: Some("unix:/run/stepup/authzen.sock".into()),
        ..Default::default()
    };
    let c = Config::resolve(flag, Some(&file)).unwrap();
    assert_eq!(
        c.http.map(|l| l.to_string()).as_deref(),
        Some("unix:/run/stepup/authzen.sock")
    );
    let none = Overrides {
        policies: Some("p".into()),
        ..Default::default()
    };
    assert_eq!(Config::resolve(none, None).unwrap().http, None);
    let bad = Overrides {
        http: Some("localhost:7173".into()),
        ..Default::default()
    };
    let err = Config::resolve(bad, Some(&file)).unwrap_err();
    assert_eq!(
        texts(&err),
        [
            "AuthZEN HTTP listen address (`--http`, `[http] listen`) `localhost:7173` is not IP:PORT or unix:PATH (e.g. `127.0.0.1:7173`)"
        ]
    );
}
