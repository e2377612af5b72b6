//! The reference of the config file: every table and key, with its type,
//! default and meaning, in one place. Its tests hold it to the parser
//! ([`FileConfig`](super::FileConfig)): every key documented here is
//! accepted with a value of its documented type, and every key the parser
//! accepts is documented here. The book's configuration page is rendered
//! from it (`tests/docs_reference.rs`).

/// What a documented key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A value, of the TOML type described (`string`, `integer`,
    /// `duration`, ...).
    Value(&'static str),
    /// A table (`[tls]`).
    Table,
    /// An array of tables (`[[trust.issuers]]`).
    Tables,
    /// A table with the keys of the table at this path (documented once).
    Like(&'static str),
}

/// One table or key of the config file.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The dotted path, e.g. `history.redis_url`: `[]` after a segment
    /// marks an array of tables (`trust.issuers[].issuer`), `<name>` a key
    /// the user names (`lists.ip.<name>`).
    pub key: &'static str,
    /// What it holds.
    pub kind: KeyKind,
    /// The default, in TOML or in words; empty when there is none.
    pub default: &'static str,
    /// The `stepup serve` flag that overrides it, if any.
    pub flag: &'static str,
    /// The environment variable that overrides it, if any.
    pub env: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// A value of its type, in TOML, which the tests give the parser
    /// (empty for tables).
    pub example: &'static str,
}

const fn table(key: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        kind: KeyKind::Table,
        default: "",
        flag: "",
        env: "",
        doc,
        example: "",
    }
}

const fn tables(key: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        kind: KeyKind::Tables,
        ..table(key, doc)
    }
}

const fn value(
    key: &'static str,
    ty: &'static str,
    default: &'static str,
    doc: &'static str,
    example: &'static str,
) -> KeyDoc {
    KeyDoc {
        key,
        kind: KeyKind::Value(ty),
        default,
        flag: "",
        env: "",
        doc,
        example,
    }
}

impl KeyDoc {
    /// This key, also set by `flag` (or `""`) and `env` (or `""`).
    const fn set_by(self, flag: &'static str, env: &'static str) -> Self {
        Self { flag, env, ..self }
    }
}

const DURATION: &str = "duration";
const PATH: &str = "path";
const STRING: &str = "string";
const INTEGER: &str = "integer";
const BOOLEAN: &str = "boolean";
const STRINGS: &str = "array of strings";
const STRING_OR_STRINGS: &str = "string or array of strings";

/// Every table and key of the config file, each table before its keys.
pub const KEYS: &[KeyDoc] = &[
    // The top level.
    value("policies", PATH, "", "The policy directory (`*.yaml`, `*.yml`, searched recursively). Required: here, with `--policies` or with `STEPUP_POLICIES`.", "\"policies\"")
        .set_by("--policies", "STEPUP_POLICIES"),
    value("listen", STRING, "\"127.0.0.1:7171\"", "The gRPC listen address: `IP:PORT`, or `unix:PATH` for a Unix domain socket. Loopback by default: a sidecar shares its pod's network.", "\"127.0.0.1:7171\"")
        .set_by("--listen", "STEPUP_LISTEN"),
    value("listen_mode", STRING, "\"0660\"", "Permissions of the Unix socket file, octal (connecting needs write permission). Only with a `unix:` listen address.", "\"0660\"")
        .set_by("--listen-mode", "STEPUP_LISTEN_MODE"),
    value("watch", BOOLEAN, "true", "Watch the policy directory and reload on change (SIGHUP always reloads).", "false")
        .set_by("--no-watch", "STEPUP_NO_WATCH"),
    value("admin", STRING, "\"127.0.0.1:7172\"", "The admin HTTP listener (`/metrics`, `/livez`, `/readyz`, `/policy`): `IP:PORT`, or `\"off\"`.", "\"off\"")
        .set_by("--admin", "STEPUP_ADMIN"),

    table("tls", "TLS on the gRPC listener. Relative paths are relative to the config file's directory. The files are reloaded when they change."),
    value("tls.cert", PATH, "none (plaintext)", "The server's certificate chain (PEM), leaf first. Goes with `key`.", "\"server.pem\"")
        .set_by("--tls-cert", "STEPUP_TLS_CERT"),
    value("tls.key", PATH, "", "The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).", "\"server.key\"")
        .set_by("--tls-key", "STEPUP_TLS_KEY"),
    value("tls.client_ca", PATH, "none (no client certificate asked for)", "CA certificates (PEM) that client certificates must chain to: with it, every client must present one (mutual TLS). Needs `cert` and `key`.", "\"clients-ca.pem\"")
        .set_by("--tls-client-ca", "STEPUP_TLS_CLIENT_CA"),

    table("cache", "The decision cache."),
    value("cache.size", INTEGER, "100000", "Maximum entries; `0` turns the cache off.", "1000")
        .set_by("--cache-size", "STEPUP_CACHE_SIZE"),
    value("cache.max_bytes", INTEGER, "67108864 (64 MiB)", "Maximum bytes the entries hold, however many; `0` turns the cache off.", "1048576"),
    value("cache.ttl", DURATION, "\"60s\"", "Entry lifetime, e.g. `\"30s\"`, `\"5m\"`; must be positive.", "\"30s\"")
        .set_by("--cache-ttl", "STEPUP_CACHE_TTL"),

    table("log", "Logging."),
    value("log.level", STRING, "\"info\" (`RUST_LOG` when neither flag nor file sets it)", "A log filter: a level (`info`, `debug`) or a `RUST_LOG`-style directive (`stepup=debug`).", "\"debug\"")
        .set_by("--log-level", "STEPUP_LOG_LEVEL"),
    value("log.format", "`\"text\"` or `\"json\"`", "\"text\"", "The log format.", "\"json\"")
        .set_by("--log-format", "STEPUP_LOG_FORMAT"),

    table("decision_log", "The decision log: one JSON line per decision. Off unless `output` (or `--decision-log`) names where to."),
    value("decision_log.output", STRING, "\"off\"", "`\"stdout\"`, `\"otlp\"` (OTLP log records, to the collector the `OTEL_EXPORTER_OTLP_*` variables name), a file path, or `\"off\"`.", "\"stdout\"")
        .set_by("--decision-log", "STEPUP_DECISION_LOG"),
    value("decision_log.max_bytes", INTEGER, "104857600 (100 MiB)", "Rotate the file past this many bytes.", "1048576"),
    value("decision_log.keep", INTEGER, "5", "Rotated files to keep.", "3"),
    value("decision_log.hash", STRINGS, "[]", "Request fields replaced by a keyed hash, e.g. `\"network.ip\"`.", "[\"network.ip\"]"),
    value("decision_log.drop", STRINGS, "[]", "Request fields removed, e.g. `\"subject.attributes.email\"`.", "[\"subject.attributes.email\"]"),
    value("decision_log.hash_key", STRING, "a random key per process", "The key of the `hash` masks. Written here it is warned about (a ConfigMap is readable by many): prefer `hash_key_file` or the environment variable.", "\"k\"")
        .set_by("", "STEPUP_DECISION_LOG_HASH_KEY"),
    value("decision_log.hash_key_file", PATH, "", "A file holding the hash key (e.g. a mounted Secret); trailing whitespace is trimmed.", "\"hash.key\""),
    value("decision_log.queue", INTEGER, "10000", "Entries queued for writing before new ones are dropped (counted by `stepup_decision_log_dropped_total`); at least 1.", "100"),
    value("decision_log.queue_bytes", INTEGER, "67108864 (64 MiB)", "Bytes queued for writing before new entries are dropped.", "1048576"),
    table("decision_log.sample", "The fraction of decisions logged, by outcome, from `0.0` to `1.0`."),
    value("decision_log.sample.allow", "float", "1.0", "ALLOW decisions.", "0.1"),
    value("decision_log.sample.challenge", "float", "1.0", "CHALLENGE decisions.", "1.0"),
    value("decision_log.sample.deny", "float", "1.0", "DENY decisions.", "1.0"),

    table("history", "What is remembered per subject (behavioural history): devices, locations, recent actions, step-ups."),
    value("history.enabled", "`true`, `false` or `\"auto\"`", "\"auto\"", "`\"auto\"` records decisions while the policy set reads `history` (or a shared backend is set); `true` always, `false` never.", "\"auto\""),
    value("history.hash_key", STRING, "a random key per process", "The key of the identifier hashes; required, the same on every replica, with `backend = \"redis\"`. Written here it is warned about: prefer `hash_key_file` or the environment variable.", "\"k\"")
        .set_by("", "STEPUP_HISTORY_HASH_KEY"),
    value("history.hash_key_file", PATH, "", "A file holding the hash key (e.g. a mounted Secret); trailing whitespace is trimmed.", "\"history.key\""),
    value("history.max_subjects", INTEGER, "100000", "Subjects kept in memory.", "1000"),
    value("history.max_devices", INTEGER, "16", "Devices kept per subject.", "8"),
    value("history.max_events", INTEGER, "128", "Action events kept per subject.", "64"),
    value("history.events_for", DURATION, "\"24h\"", "How long action events are kept (the longest useful `count` window).", "\"12h\""),
    value("history.retention", DURATION, "\"90d\"", "How long a subject, device or location is remembered.", "\"30d\""),
    value("history.elevation", DURATION, "\"15m\"", "The elevation window after a passed step-up.", "\"10m\""),
    value("history.known_level", STRING, "the second level of the ladder", "The level, by name, at or above which an allowed decision makes the device known.", "\"aal2\""),
    value("history.fetch_timeout", DURATION, "\"20ms\"", "How long a decision waits for a shared backend's record before deciding on local history.", "\"50ms\""),
    value("history.backend", "`\"memory\"` or `\"redis\"`", "\"memory\"", "Where history lives: this process's memory, or Redis shared between replicas.", "\"memory\""),
    value("history.redis_url", STRING, "", "With `backend = \"redis\"` (required then): `redis://[:password@]host[:port][/db]`, or `rediss://` for TLS.", "\"redis://127.0.0.1:6379/\"")
        .set_by("", "STEPUP_REDIS_URL"),
    value("history.redis_password_file", PATH, "the URL's password, if any", "A file holding the Redis password.", "\"redis.password\"")
        .set_by("", "STEPUP_REDIS_PASSWORD"),
    value("history.redis_ca_file", PATH, "the Mozilla roots", "PEM CA certificates for a `rediss://` URL.", "\"redis-ca.pem\""),
    value("history.redis_cert_file", PATH, "", "PEM client certificate chain, for mutual TLS with Redis (with `redis_key_file`).", "\"redis-client.pem\""),
    value("history.redis_key_file", PATH, "", "PEM private key of `redis_cert_file`.", "\"redis-client.key\""),
    value("history.redis_timeout", DURATION, "\"1s\"", "Connect and command timeout of the background writes to Redis.", "\"2s\""),

    table("lists", "Data files policies look things up in, loaded with the policies (besides the policy directory's `lists/`). Relative paths are relative to the config file's directory; `check`, `eval`, `test` and `replay` read them with `--config`."),
    value("lists.geoip_city", PATH, "", "A MaxMind-format city database (e.g. GeoLite2-City.mmdb), for location.", "\"GeoLite2-City.mmdb\""),
    table("lists.ip", "IP lists by name, for `ip_in(ip, \"name\")`."),
    value("lists.ip.<name>", PATH, "", "A file of CIDR prefixes, one per line.", "\"lists/office.txt\""),

    table("limits", "How much the server takes on at once, and what a request or condition may cost."),
    value("limits.max_in_flight", INTEGER, "1024", "Calls in flight at once, shared by gRPC (`Decide`, `DecideBatch`, `RecordStepUp`, `Check`), the AuthZEN API and Shared Signals events; past it a call is refused at once, not queued: `RESOURCE_EXHAUSTED` over gRPC, HTTP 503 with `Retry-After` over HTTP. Health checks never count. At least 1.", "512")
        .set_by("--max-in-flight", "STEPUP_MAX_IN_FLIGHT"),
    value("limits.max_time_skew", "duration or `\"off\"`", "\"5m\"", "How far a request's `time` may lie from the server clock, past or future; beyond it the call is answered `INVALID_ARGUMENT`. `\"off\"` accepts any time.", "\"off\"")
        .set_by("--max-time-skew", "STEPUP_MAX_TIME_SKEW"),
    value("limits.max_condition_cost", INTEGER, "16000", "The highest worst-case cost a condition may have (units of the cost model); a costlier condition is a load error. At least 1.", "20000"),

    table("trust", "Who is believed: trusted token issuers (for signed step-up evidence and Shared Signals events) and step-up reporters. Without it, step-up reports are refused."),
    value("trust.reporters", STRINGS, "[]", "mTLS client identities (URI SAN such as a SPIFFE ID, else DNS SAN, else subject CN) allowed to report step-ups without evidence.", "[\"spiffe://example.org/ns/shop/sa/app\"]"),
    value("trust.clock_skew", DURATION, "\"60s\"", "Slack on a token's `exp`, `nbf` and `iat`; at most `\"5m\"`.", "\"30s\""),
    tables("trust.issuers", "A token issuer whose signatures are believed."),
    value("trust.issuers[].issuer", STRING, "", "Required. The `iss` value, exactly as the issuer writes it (no `#`).", "\"https://idp.example.com/\""),
    value("trust.issuers[].audiences", STRINGS, "", "Accepted `aud` values; a token must name at least one. Required.", "[\"stepup\"]"),
    value("trust.issuers[].jwks_file", PATH, "", "A JWKS file, re-read when it changes (relative to the config file's directory). This or `jwks_url`.", "\"jwks.json\""),
    value("trust.issuers[].jwks_url", STRING, "", "A JWKS URL (`https://`; `http://` only for a loopback host), fetched and cached.", "\"https://idp.example.com/jwks\""),
    value("trust.issuers[].jwks_ca_file", PATH, "the system's roots", "PEM CA certificates that `jwks_url`'s server certificate must chain to (an identity provider behind a private CA).", "\"idp-ca.pem\""),
    value("trust.issuers[].subject_claim", STRING, "\"sub\"", "The claim that holds the subject id.", "\"oid\""),
    value("trust.issuers[].tenant", STRING, "", "The tenant of this issuer's subjects: a step-up report with its evidence is for this tenant.", "\"shop\""),
    value("trust.issuers[].algorithms", STRINGS, "all four", "Accepted signature algorithms: a subset of `RS256`, `PS256`, `ES256`, `EdDSA`.", "[\"ES256\"]"),
    value("trust.issuers[].jwks_refresh", DURATION, "\"1h\"", "How long a fetched key set is used; at least `\"1m\"`.", "\"10m\""),
    value("trust.issuers[].jwks_min_refresh", DURATION, "\"30s\"", "The least time between two fetches (a token with an unknown `kid` fetches again, at most this often); at least `\"1s\"`.", "\"10s\""),

    table("ssf", "The Shared Signals receiver (push delivery, RFC 8935) at `POST /ssf/events` on the gRPC port (`listen`): Security Event Tokens (CAEP) from the issuers of `[[trust.issuers]]`. Needs history."),
    value("ssf.enabled", BOOLEAN, "false", "Accept events.", "true"),
    value("ssf.audience", STRING_OR_STRINGS, "the issuer's `audiences`", "The `aud` values a SET must name (one of).", "\"https://stepup.example\""),
    value("ssf.jti_window", DURATION, "\"24h\"", "How long an event id (`jti`) is remembered against replays, and the oldest `iat` accepted.", "\"12h\""),
    value("ssf.max_jtis", INTEGER, "100000", "Event ids remembered at most; past it, events are refused with 503 until older ids leave the window.", "1000"),
    value("ssf.subject", STRING_OR_STRINGS, "\"iss_sub.sub\"", "Where the subject id is in the event's subject: `format.field` selectors, tried in order.", "[\"iss_sub.sub\", \"email.email\"]"),
    value("ssf.tenant", STRING_OR_STRINGS, "none (the empty tenant)", "Where the tenant is.", "\"complex.tenant.id\""),
    value("ssf.session", STRING_OR_STRINGS, "\"opaque.id\"", "Where the session id is.", "\"opaque.id\""),
    value("ssf.device", STRING_OR_STRINGS, "\"opaque.id\"", "Where the device id is.", "\"opaque.id\""),
    table("ssf.levels", "Assurance levels of `assurance-level-change` events (`current_level`, or `namespace:current_level`) and `acr` values of `session-established` events, mapped to the policy set's level names; without an entry, a level of that name or of that acr value."),
    value("ssf.levels.<name>", STRING, "", "The policy set's level name for the event's level or acr `<name>`.", "\"aal2\""),
    tables("ssf.streams", "A transmitter's stream: an issuer that may push events, and its bearer token. Without any, every issuer of `[[trust.issuers]]` may push, without a token."),
    value("ssf.streams[].issuer", STRING, "", "Required. The transmitter's issuer (`iss` of its SETs), one of `[[trust.issuers]]`.", "\"https://idp.example.com/\""),
    value("ssf.streams[].bearer_token_file", PATH, "", "A file holding the bearer token the transmitter sends (`Authorization: Bearer ...`), relative to the config file.", "\"ssf.token\""),
    value("ssf.streams[].bearer_token_env", STRING, "", "An environment variable holding it (tokens are never written in the config file).", "\"SSF_TOKEN\""),

    table("http", "The AuthZEN Authorization API (`/access/v1/*`, `/.well-known/authzen-configuration`) on a listener of its own, HTTP/1.1 and HTTP/2, with the gRPC listener's TLS and client-certificate settings. The endpoints are on the gRPC port (`listen`) in any case."),
    value("http.listen", STRING, "none (the gRPC port only)", "`IP:PORT`, or `unix:PATH` for a Unix domain socket (with `listen_mode`'s permissions).", "\"127.0.0.1:7173\"")
        .set_by("--http", "STEPUP_HTTP"),

    table("ext_authz", "How Envoy ext_authz `Check` requests map to decisions."),
    value("ext_authz.unmapped", "`\"deny\"` or `\"allow\"`", "\"deny\"", "The answer to a request that cannot be mapped (no route and no `stepup_action`, a missing claim or parameter, a bad type): `\"deny\"` is a 403; `\"allow\"` lets it through.", "\"allow\""),
    table("ext_authz.subject", "Where the subject and session come from: claim names (source `jwt`) or header names (source `headers`) per field; dotted claim names reach into nested claims."),
    value("ext_authz.subject.source", "`\"jwt\"` or `\"headers\"`", "\"jwt\"", "`\"jwt\"`: the verified JWT payload `jwt_authn` put in the metadata context; `\"headers\"`: headers set by a trusted proxy (which must strip client copies).", "\"headers\""),
    value("ext_authz.subject.namespace", STRING, "\"envoy.filters.http.jwt_authn\"", "The filter-metadata namespace of the payload.", "\"envoy.filters.http.jwt_authn\""),
    value("ext_authz.subject.payload", STRING, "the first, in key order, with the subject claim", "The key of the payload in that namespace (jwt_authn's `payload_in_metadata`).", "\"jwt_payload\""),
    value("ext_authz.subject.payload_header", STRING, "", "Read the verified payload from this header (base64url JSON, as jwt_authn's `forward_payload_header` or Istio's `outputPayloadToHeader` write it) instead of the metadata context.", "\"x-jwt-payload\""),
    value("ext_authz.subject.payload_header_stripped_by_proxy", BOOLEAN, "false", "Believe `payload_header` without a bearer token to bind it to: only when the proxy in front removes every client-sent copy of the header. With `false`, the header must equal the payload segment of the request's `Authorization: Bearer` token.", "true"),
    value("ext_authz.subject.issuers", STRINGS, "[] (any)", "The accepted issuers (`iss`): a payload from any other is unmapped. With two or more, `subject.id` is `<iss>#<sub>`.", "[\"https://idp.example.com/\"]"),
    value("ext_authz.subject.id", STRING, "\"sub\"", "`subject.id` (required in the payload).", "\"sub\""),
    value("ext_authz.subject.session_id", STRING, "\"sid\"", "`session.id`.", "\"sid\""),
    value("ext_authz.subject.tenant", STRING, "\"tenant\"", "`subject.tenant`.", "\"tid\""),
    value("ext_authz.subject.roles", STRING, "\"roles\"", "`subject.roles`.", "\"realm_access.roles\""),
    value("ext_authz.subject.acr", STRING, "\"acr\"", "`session.acr`.", "\"acr\""),
    value("ext_authz.subject.amr", STRING, "\"amr\"", "`session.amr`.", "\"amr\""),
    value("ext_authz.subject.auth_time", STRING, "\"auth_time\"", "`session.auth_time`.", "\"auth_time\""),
    value("ext_authz.subject.required", STRINGS, "[]", "Fields that must be present, else the request is unmapped: `session_id`, `tenant`, `roles`, `acr`, `amr`, `auth_time`.", "[\"tenant\"]"),
    table("ext_authz.subject.attributes", "`subject.attributes`, by attribute name."),
    value("ext_authz.subject.attributes.<name>", STRING, "", "The claim (or header) the attribute `<name>` is read from.", "\"usual_countries\""),
    table("ext_authz.device", "Device headers."),
    value("ext_authz.device.id", STRING, "", "The header of `device.id`.", "\"x-device-id\""),
    value("ext_authz.device.trusted", STRING, "", "The header of `device.trusted`: `true`, `1` or `yes` mean trusted.", "\"x-device-attested\""),
    value("ext_authz.device.platform", STRING, "", "The header of `device.platform`.", "\"x-device-platform\""),
    table("ext_authz.network", "The client address and network headers."),
    value("ext_authz.network.trusted_hops", INTEGER, "0", "How many proxies in front append to `x-forwarded-for` (count Envoy itself when it appends): `network.ip` is then that entry from the right. `0` takes the connection's source address and ignores the header.", "1"),
    value("ext_authz.network.country", STRING, "", "The header with the ISO 3166-1 alpha-2 country (e.g. `cf-ipcountry`).", "\"cf-ipcountry\""),
    value("ext_authz.network.asn", STRING, "", "The header with the autonomous system number.", "\"x-asn\""),
    table("ext_authz.attributes", "The request's custom `attributes`, by name."),
    table("ext_authz.attributes.<name>", "A value source: where the attribute `<name>` comes from (exactly one of `path`, `query`, `header`) and its type."),
    value("ext_authz.attributes.<name>.path", STRING, "", "A `{name}` path parameter of the route.", "\"payment\""),
    value("ext_authz.attributes.<name>.query", STRING, "", "A query parameter.", "\"amount\""),
    value("ext_authz.attributes.<name>.header", STRING, "", "A request header.", "\"x-fraud-score\""),
    value("ext_authz.attributes.<name>.type", "`\"string\"`, `\"number\"` or `\"bool\"`", "\"string\"", "The type the value is parsed as.", "\"number\""),
    value("ext_authz.attributes.<name>.required", BOOLEAN, "false", "When true, a request without the value is unmapped.", "true"),
    tables("ext_authz.routes", "A route rule: a method and path pattern naming an action and resource. Tried in order; the first that matches wins. A request no rule matches falls back to the `stepup_action` context extension."),
    value("ext_authz.routes[].method", STRING, "any", "The HTTP method (`POST`); `\"*\"`: any.", "\"POST\""),
    value("ext_authz.routes[].path", STRING, "", "Required. The path pattern: literal segments, `{name}` captures one segment, `*` matches one segment, a final `**` matches the rest.", "\"/v1/payments/{payment}/refunds\""),
    value("ext_authz.routes[].action", STRING, "the `stepup_action` context extension", "The action.", "\"payments.refund\""),
    table("ext_authz.routes[].resource", "The route's resource."),
    value("ext_authz.routes[].resource.type", STRING, "", "`resource.type`, a literal.", "\"refund\""),
    KeyDoc {
        kind: KeyKind::Like("ext_authz.attributes.<name>"),
        ..table("ext_authz.routes[].resource.id", "`resource.id`: a value source, as in `[ext_authz.attributes]`.")
    },
    table("ext_authz.routes[].resource.attributes", "`resource.attributes`, by name."),
    KeyDoc {
        kind: KeyKind::Like("ext_authz.attributes.<name>"),
        ..table("ext_authz.routes[].resource.attributes.<name>", "A value source, as in `[ext_authz.attributes]`.")
    },
];

#[cfg(test)]
mod tests;
