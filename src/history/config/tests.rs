use super::*;

#[test]
fn parses_and_reports_every_bad_key() {
    let file: FileHistory = toml::from_str(
        "enabled = \"sometimes\"\nmax_subjects = 0\nevents_for = \"1 hour\"\nelevation = \"5m\"\nhash_key = \"s3cret\"\n",
    )
    .unwrap();
    let mut problems = Vec::new();
    let c = HistoryConfig::resolve(file, &mut problems);
    assert_eq!(
        problems,
        [
            "history.enabled `sometimes` must be true, false or \"auto\"",
            "history.events_for `1 hour`: unknown unit ` hour`",
            "history.max_subjects must be at least 1",
        ]
    );
    assert_eq!(c.limits.elevation, 300_000);
    assert!(!format!("{c:?}").contains("s3cret"));
    let file: FileHistory = toml::from_str("enabled = false").unwrap();
    assert_eq!(
        HistoryConfig::resolve(file, &mut problems).enabled,
        Enabled::Off
    );
    assert!(toml::from_str::<FileHistory>("size = 3").is_err());
}

#[test]
fn resolves_the_backend() {
    let resolve = |text: &str| {
        let mut problems = Vec::new();
        let file: FileHistory = toml::from_str(text).unwrap();
        (HistoryConfig::resolve(file, &mut problems).redis, problems)
    };
    assert_eq!(resolve(""), (None, vec![]));
    assert_eq!(resolve("backend = \"memory\""), (None, vec![]));
    let (redis, problems) = resolve(
        "backend = \"redis\"\nredis_url = \"redis://:pw@10.0.0.1:6380/2\"\nredis_timeout = \"250ms\"\nhash_key = \"k\"",
    );
    assert!(problems.is_empty(), "{problems:?}");
    let redis = redis.unwrap();
    assert_eq!(redis.timeout, Duration::from_millis(250));
    assert_eq!(redis.record_key, Secret("k".to_owned()));
    assert_eq!(
        redis.inline_secrets,
        ["history.hash_key", "the password in history.redis_url"]
    );
    assert!(!format!("{redis:?}").contains("pw"));
    for (text, problem) in [
        (
            "backend = \"redis\"\nhash_key = \"k\"",
            "history.backend \"redis\" needs history.redis_url (or `STEPUP_REDIS_URL`)",
        ),
        (
            "backend = \"redis\"\nredis_url = \"http://:pw@x\"\nhash_key = \"k\"",
            "history.redis_url is not a Redis URL: expected `redis://[:password@]host[:port][/db]`, or `rediss://...` for TLS",
        ),
        (
            "backend = \"redis\"\nredis_url = \"rediss://x/#insecure\"\nhash_key = \"k\"",
            "history.redis_url: `#insecure` (TLS without checking the server's certificate) is not supported; name the CA that signs it in history.redis_ca_file",
        ),
        (
            "backend = \"redis\"\nredis_url = \"redis://x\"\nredis_ca_file = \"ca.pem\"\nhash_key = \"k\"",
            "history.redis_ca_file, redis_cert_file and redis_key_file need a `rediss://` URL (TLS)",
        ),
        (
            "redis_url = \"redis://x\"",
            "history.redis_url (or `STEPUP_REDIS_URL`) is set but history.backend is not \"redis\"",
        ),
        (
            "backend = \"redis\"\nredis_url = \"redis://x\"",
            "history.backend \"redis\" needs history.hash_key, the same on every replica: set `STEPUP_HISTORY_HASH_KEY` or history.hash_key_file (e.g. a mounted Secret)",
        ),
        (
            "backend = \"etcd\"",
            "history.backend `etcd` must be \"memory\" or \"redis\"",
        ),
    ] {
        assert_eq!(resolve(text).1, [problem], "{text}");
    }
}

/// Resolves `text` with `env` as the environment, relative files from
/// `dir`.
fn with_env(text: &str, env: &[(&str, &str)], dir: &Path) -> (HistoryConfig, Vec<String>) {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let sources = SecretSources {
        env: &lookup,
        base: Some(dir),
    };
    let mut problems = Vec::new();
    let file: FileHistory = toml::from_str(text).unwrap();
    (
        HistoryConfig::resolve_with(file, &sources, &mut problems),
        problems,
    )
}

#[test]
fn secrets_come_from_the_environment_then_files_then_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "from-file\n").unwrap();
    std::fs::write(dir.path().join("password"), "pw-from-file\n").unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let redis = "backend = \"redis\"\nredis_url = \"redis://:inline-pw@x/\"\n";
    // A file (relative to the config's directory), trailing newline
    // trimmed; the URL's inline password is warned about.
    let (c, problems) = with_env(&format!("{redis}hash_key_file = \"key\""), &[], dir.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(c.hash_key, Some(Secret("from-file".to_owned())));
    let r = c.redis.unwrap();
    assert_eq!(r.record_key, Secret("from-file".to_owned()));
    assert_eq!(r.inline_secrets, ["the password in history.redis_url"]);
    // The environment wins; a password file replaces the URL's.
    let (c, problems) = with_env(
        &format!("{redis}hash_key_file = \"key\"\nredis_password_file = \"password\""),
        &[
            (HASH_KEY_ENV, "from-env"),
            (REDIS_URL_ENV, "redis://10.0.0.9:6379/1"),
        ],
        dir.path(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(c.hash_key, Some(Secret("from-env".to_owned())));
    let r = c.redis.unwrap();
    assert_eq!(r.url, Secret("redis://10.0.0.9:6379/1".to_owned()));
    assert_eq!(r.password, Some(Secret("pw-from-file".to_owned())));
    assert!(r.inline_secrets.is_empty());
    // Problems name the file or variable, never the value.
    let (_, problems) = with_env(
        &format!("{redis}hash_key = \"inline\"\nhash_key_file = \"missing\""),
        &[(REDIS_PASSWORD_ENV, " ")],
        dir.path(),
    );
    let missing = dir.path().join("missing");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(
        problems[0],
        "history.hash_key and history.hash_key_file are both set: keep one (the file)"
    );
    assert!(
        problems[1].starts_with(&format!(
            "history.hash_key_file `{}` cannot be read: ",
            missing.display()
        )),
        "{problems:?}"
    );
    assert_eq!(
        problems[2],
        "history.redis_password: environment variable `STEPUP_REDIS_PASSWORD` is empty"
    );
    let (_, problems) = with_env("hash_key_file = \"empty\"", &[], dir.path());
    assert_eq!(
        problems,
        [format!(
            "history.hash_key_file `{}` is empty",
            dir.path().join("empty").display()
        )]
    );
    assert!(!problems.concat().contains("inline"));
}

#[test]
fn tls_files_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("client.key"),
        ca.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not pem").unwrap();
    let base = "backend = \"redis\"\nredis_url = \"rediss://localhost:6380/\"\nhash_key = \"k\"\n";
    let (c, problems) = with_env(
        &format!(
            "{base}redis_ca_file = \"ca.pem\"\nredis_cert_file = \"ca.pem\"\nredis_key_file = \"client.key\""
        ),
        &[],
        dir.path(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let r = c.redis.unwrap();
    assert_eq!(r.ca.as_deref(), Some(ca.cert.pem().as_bytes()));
    assert!(r.client_cert.is_some());
    assert!(!format!("{r:?}").contains("PRIVATE KEY"));
    let (_, problems) = with_env(
        &format!("{base}redis_ca_file = \"junk.pem\"\nredis_cert_file = \"ca.pem\""),
        &[],
        dir.path(),
    );
    assert_eq!(
        problems,
        [
            format!(
                "history.redis_ca_file `{}` holds no PEM certificate",
                dir.path().join("junk.pem").display()
            ),
            "history.redis_cert_file and history.redis_key_file go together (mutual TLS)"
                .to_owned(),
        ]
    );
}
