use std::borrow::Cow;

use chrono::{DateTime, Utc};
use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf as epb;
use pbjson_types::value::Kind;

use super::decode::{base64url, percent_decode};
use super::*;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderValue, Metadata, SocketAddress, address::Address as A,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};

fn file(toml_text: &str) -> FileExtAuthz {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        ext_authz: FileExtAuthz,
    }
    toml::from_str::<Wrapper>(toml_text).unwrap().ext_authz
}

fn mapping(toml_text: &str) -> Mapping {
    Mapping::compile(&file(toml_text)).unwrap_or_else(|e| panic!("{e:?}"))
}

fn json(v: serde_json::Value) -> epb::Value {
    use epb::value::Kind as K;
    let kind = match v {
        serde_json::Value::Null => K::NullValue(0),
        serde_json::Value::Bool(b) => K::BoolValue(b),
        serde_json::Value::Number(n) => K::NumberValue(n.as_f64().unwrap()),
        serde_json::Value::String(s) => K::StringValue(s),
        serde_json::Value::Array(a) => K::ListValue(epb::ListValue {
            values: a.into_iter().map(json).collect(),
        }),
        serde_json::Value::Object(o) => K::StructValue(epb::Struct {
            fields: o.into_iter().map(|(k, v)| (k, json(v))).collect(),
        }),
    };
    epb::Value { kind: Some(kind) }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(A::SocketAddress(SocketAddress {
                        address: "192.0.2.1".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
            }),
            metadata_context: Some(Metadata {
                filter_metadata: [(
                    JWT_AUTHN_NAMESPACE.to_owned(),
                    epb::Struct {
                        fields: [(
                            "jwt_payload".to_owned(),
                            json(serde_json::json!({ "sub": "user-1" })),
                        )]
                        .into(),
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn with_payloads(mut r: CheckRequest, payloads: serde_json::Value) -> CheckRequest {
    let md = r
        .attributes
        .as_mut()
        .unwrap()
        .metadata_context
        .as_mut()
        .unwrap();
    let Some(epb::value::Kind::StructValue(s)) = json(payloads).kind else {
        panic!("payloads must be an object")
    };
    md.filter_metadata.insert(JWT_AUTHN_NAMESPACE.to_owned(), s);
    r
}

fn with_action(mut r: CheckRequest, action: &str) -> CheckRequest {
    r.attributes
        .as_mut()
        .unwrap()
        .context_extensions
        .insert(ACTION_EXTENSION.into(), action.into());
    r
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_780_800, 0).unwrap()
}

fn unmapped_reason(m: &Mapping, r: &CheckRequest) -> String {
    match m.map(r, now()) {
        Err(MapError::Unmapped(reason)) => reason.to_string(),
        other => panic!("expected unmapped, got {other:?}"),
    }
}

const ROUTES: &str = r#"
[ext_authz]
[[ext_authz.routes]]
method = "post"
path = "/v1/payments/{payment}/refunds"
action = "payments.refund"
resource.type = "refund"
resource.id = { path = "payment" }
resource.attributes.amount = { query = "amount", type = "number", required = true }
resource.attributes.express = { query = "express", type = "bool" }
resource.attributes.currency = { header = "x-currency" }

[[ext_authz.routes]]
path = "/v1/envs/{env}/*/**"
action = "environments.delete"
resource.attributes.environment = { path = "env" }
"#;

#[test]
fn the_default_mapping_reads_the_action_extension_and_the_first_payload() {
    let m = Mapping::default();
    let r = with_action(request("GET", "/anything?x=1", &[]), "orders.list");
    let mapped = m.map(&r, now()).unwrap();
    assert_eq!(mapped.request.action, "orders.list");
    assert_eq!(mapped.request.subject.unwrap().id, "user-1");
    assert_eq!(mapped.request.network.unwrap().ip, "192.0.2.1");
    assert_eq!(mapped.route, None);
    assert_eq!(mapped.now, now());

    // Without the extension and with no routes: unmapped, and why.
    let r = request("GET", "/anything?x=1", &[]);
    assert_eq!(
        unmapped_reason(&m, &r),
        "no route matches `GET /anything` and no `stepup_action` context extension is set"
    );
}

#[test]
fn routes_capture_typed_parameters() {
    let m = mapping(ROUTES);
    let r = request(
        "POST",
        "/v1/payments/p%2042/refunds?amount=2500.5&express=TRUE#frag",
        &[("x-currency", "EUR")],
    );
    let mapped = m.map(&r, now()).unwrap();
    assert_eq!(
        mapped.route.as_deref(),
        Some("routes[0] `POST /v1/payments/{payment}/refunds`")
    );
    let req = mapped.request;
    assert_eq!(req.action, "payments.refund");
    let res = req.resource.unwrap();
    assert_eq!(res.r#type, "refund");
    assert_eq!(res.id, "p 42");
    assert_eq!(
        res.attributes["amount"].kind,
        Some(Kind::NumberValue(2500.5))
    );
    assert_eq!(res.attributes["express"].kind, Some(Kind::BoolValue(true)));
    assert_eq!(
        res.attributes["currency"].kind,
        Some(Kind::StringValue("EUR".into()))
    );

    // `*` and `**`.
    let r = request("DELETE", "/v1/envs/prod/x/a/b/c", &[]);
    let req = m.map(&r, now()).unwrap().request;
    assert_eq!(req.action, "environments.delete");
    assert_eq!(
        req.resource.unwrap().attributes["environment"].kind,
        Some(Kind::StringValue("prod".into()))
    );
    let r = request("DELETE", "/v1/envs/prod/x", &[]);
    assert!(m.map(&r, now()).is_ok(), "`**` matches nothing too");
    let r = request("DELETE", "/v1/envs/prod", &[]);
    assert!(m.map(&r, now()).is_err(), "`*` needs a segment");

    // Method mismatch, missing required parameter, bad types, pollution.
    let r = request("GET", "/v1/payments/p1/refunds?amount=1", &[]);
    assert!(unmapped_reason(&m, &r).starts_with("no route matches `GET /v1/payments/p1/refunds`"));
    let r = request("POST", "/v1/payments/p1/refunds", &[]);
    assert_eq!(
        unmapped_reason(&m, &r),
        "required query parameter `amount` is missing"
    );
    let r = request("POST", "/v1/payments/p1/refunds?amount=lots", &[]);
    assert_eq!(
        unmapped_reason(&m, &r),
        "query parameter `amount`: `lots` is not a number"
    );
    let r = request(
        "POST",
        "/v1/payments/p1/refunds?amount=1&express=maybe",
        &[],
    );
    assert_eq!(
        unmapped_reason(&m, &r),
        "query parameter `express`: `maybe` is not `true` or `false`"
    );
    let r = request("POST", "/v1/payments/p1/refunds?amount=1&amount=5000", &[]);
    assert_eq!(
        unmapped_reason(&m, &r),
        "query parameter `amount` is given more than once with different values"
    );
    let r = request("POST", "/v1/payments/p1/refunds?amount=1&amount=1", &[]);
    assert!(m.map(&r, now()).is_ok(), "the same value twice is fine");
    let r = request("POST", "/v1/payments/p%ZZ/refunds?amount=1", &[]);
    assert_eq!(
        unmapped_reason(&m, &r),
        "path parameter `{payment}` is not valid percent-encoded UTF-8"
    );
    // A trailing slash is another path: fail closed.
    let r = request("POST", "/v1/payments/p1/refunds/?amount=1", &[]);
    assert!(m.map(&r, now()).is_err());
}

#[test]
fn route_action_falls_back_to_the_extension() {
    let m = mapping(
        r#"
[ext_authz]
[[ext_authz.routes]]
path = "/v1/users/{user}"
resource.id = { path = "user" }
"#,
    );
    let r = with_action(request("GET", "/v1/users/u9", &[]), "users.read");
    let req = m.map(&r, now()).unwrap().request;
    assert_eq!(req.action, "users.read");
    assert_eq!(req.resource.unwrap().id, "u9");
    let r = request("GET", "/v1/users/u9", &[]);
    assert_eq!(
        unmapped_reason(&m, &r),
        "routes[0] `* /v1/users/{user}` sets no action and no `stepup_action` context extension is set"
    );
}

#[test]
fn jwt_claims_by_configurable_names() {
    let m = mapping(
        r#"
[ext_authz.subject]
payload = "corp"
tenant = "tid"
roles = "realm_access.roles"
attributes = { usual_countries = "countries" }
required = ["tenant", "auth_time"]
"#,
    );
    let payloads = serde_json::json!({
        "aaa_header": { "alg": "RS256" },
        "corp": {
            "sub": "u-7", "tid": "acme", "sid": "s-1",
            "realm_access": { "roles": ["admin", "support"] },
            "acr": "urn:stepup:aal2", "amr": "pwd otp", "auth_time": 1795780700,
            "countries": ["DE", "FR"]
        }
    });
    let r = with_payloads(with_action(request("GET", "/", &[]), "a"), payloads.clone());
    let req = m.map(&r, now()).unwrap().request;
    let subject = req.subject.unwrap();
    assert_eq!(subject.id, "u-7");
    assert_eq!(subject.tenant, "acme");
    assert_eq!(subject.roles, ["admin", "support"]);
    assert!(subject.attributes.contains_key("usual_countries"));
    let session = req.session.unwrap();
    assert_eq!(session.id, "s-1");
    assert_eq!(session.acr, "urn:stepup:aal2");
    assert_eq!(session.amr, ["pwd", "otp"]);
    assert_eq!(session.auth_time.unwrap().seconds, 1_795_780_700);

    // A required claim missing.
    let mut p = payloads.clone();
    p["corp"].as_object_mut().unwrap().remove("tid");
    let r = with_payloads(with_action(request("GET", "/", &[]), "a"), p);
    assert_eq!(unmapped_reason(&m, &r), "required claim `tid` is missing");
    // A claim of the wrong type.
    let mut p = payloads.clone();
    p["corp"]["auth_time"] = serde_json::json!(true);
    let r = with_payloads(with_action(request("GET", "/", &[]), "a"), p);
    assert_eq!(
        unmapped_reason(&m, &r),
        "claim `auth_time` is not a Unix time in seconds"
    );
    // No payload under the configured key.
    let r = with_payloads(
        with_action(request("GET", "/", &[]), "a"),
        serde_json::json!({ "other": { "sub": "x" } }),
    );
    assert!(
        unmapped_reason(&m, &r)
            .starts_with("no JWT payload `corp` under `envoy.filters.http.jwt_authn`"),
    );
}

#[test]
fn the_first_payload_is_the_first_with_the_subject_claim() {
    let m = Mapping::default();
    let r = with_payloads(
        with_action(request("GET", "/", &[]), "a"),
        serde_json::json!({
            "a_header": { "alg": "ES256" },
            "z_payload": { "sub": 42, "amr": ["hwk"] },
        }),
    );
    let req = m.map(&r, now()).unwrap().request;
    assert_eq!(req.subject.unwrap().id, "42");
    assert_eq!(req.session.unwrap().amr, ["hwk"]);

    let r = with_payloads(
        with_action(request("GET", "/", &[]), "a"),
        serde_json::json!({}),
    );
    assert!(
        unmapped_reason(&m, &r)
            .starts_with("no JWT payload with claim `sub` under `envoy.filters.http.jwt_authn`")
    );
}

#[test]
fn trusted_headers_device_and_network() {
    let m = mapping(
        r#"
[ext_authz.subject]
source = "headers"
id = "X-User"
acr = "x-acr"
amr = "x-amr"
auth_time = "x-auth-time"
roles = "x-roles"
[ext_authz.device]
id = "x-device-id"
trusted = "x-device-trusted"
[ext_authz.network]
trusted_hops = 2
country = "cf-ipcountry"
asn = "x-asn"
"#,
    );
    let r = with_action(
        request(
            "GET",
            "/",
            &[
                ("x-user", "u-1"),
                ("x-acr", "urn:stepup:aal1"),
                ("x-amr", "pwd, otp"),
                ("x-auth-time", "2026-11-27T11:58:00Z"),
                ("x-roles", "a,b"),
                ("x-device-id", "d-1"),
                ("x-device-trusted", "Yes"),
                ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2"),
                ("cf-ipcountry", "de"),
                ("x-asn", "AS3320"),
            ],
        ),
        "a",
    );
    let req = m.map(&r, now()).unwrap().request;
    assert_eq!(req.subject.as_ref().unwrap().id, "u-1");
    assert_eq!(req.subject.as_ref().unwrap().roles, ["a", "b"]);
    let session = req.session.unwrap();
    assert_eq!(session.amr, ["pwd", "otp"]);
    assert_eq!(session.auth_time.unwrap().seconds, 1_795_780_680);
    let device = req.device.unwrap();
    assert_eq!((device.id.as_str(), device.trusted), ("d-1", true));
    let network = req.network.unwrap();
    // Two trusted hops: the second entry from the right; the spoofed
    // leftmost entry is ignored.
    assert_eq!(network.ip, "203.0.113.9");
    assert_eq!(network.country, "DE");
    assert_eq!(network.asn, 3320);

    // A chain shorter than the trusted hops: the source address.
    let r = with_action(
        request(
            "GET",
            "/",
            &[("x-user", "u"), ("x-forwarded-for", "203.0.113.9")],
        ),
        "a",
    );
    assert_eq!(
        m.map(&r, now()).unwrap().request.network.unwrap().ip,
        "192.0.2.1"
    );
    // Garbage where the trusted entry should be.
    let r = with_action(
        request(
            "GET",
            "/",
            &[("x-user", "u"), ("x-forwarded-for", "junk, 10.0.0.2")],
        ),
        "a",
    );
    assert_eq!(
        unmapped_reason(&m, &r),
        "`x-forwarded-for` entry `junk` is not an IP address"
    );
    // No subject header.
    let r = with_action(request("GET", "/", &[]), "a");
    assert_eq!(
        unmapped_reason(&m, &r),
        "header `x-user` (the subject) is missing from the request"
    );
}

#[test]
fn raw_header_maps_are_read_too() {
    let m = mapping("[ext_authz.device]\nid = \"x-device-id\"\n");
    let mut r = with_action(request("GET", "/", &[]), "a");
    let http = r
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.header_map = Some(HeaderMap {
        headers: vec![HeaderValue {
            key: "x-device-id".into(),
            value: String::new(),
            raw_value: b"d-raw".to_vec(),
        }],
    });
    assert_eq!(
        m.map(&r, now()).unwrap().request.device.unwrap().id,
        "d-raw"
    );
}

#[test]
fn malformed_requests_name_the_field() {
    let m = Mapping::default();
    let e = m.map(&CheckRequest::default(), now()).unwrap_err();
    assert_eq!(e.to_string(), "`attributes`: required");
    let mut r = request("GET", "/", &[]);
    r.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http = None;
    assert_eq!(
        m.map(&r, now()).unwrap_err().to_string(),
        "`attributes.request.http`: required (stepup answers HTTP checks only)"
    );
    let mut r = request("GET", "/", &[]);
    r.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .time = Some(envoy_types::pb::google::protobuf::Timestamp {
        seconds: 0,
        nanos: -5,
    });
    assert_eq!(
        m.map(&r, now()).unwrap_err().to_string(),
        "`attributes.request.time`: nanos must be in 0..=999999999"
    );
}

#[test]
fn every_bad_key_is_named() {
    let errors = Mapping::compile(&file(
        r#"
[ext_authz.subject]
source = "headers"
payload = "x"
required = ["tennant", "tenant"]
attributes = { a = "bad header" }
[ext_authz.network]
trusted_hops = 100
[ext_authz.attributes]
score = { path = "p" }
both = { query = "a", header = "b" }
[[ext_authz.routes]]
method = "PO ST"
path = "v1/x"
[[ext_authz.routes]]
path = "/v1/{id}/{id}/x{y}/**/more"
action = ""
resource.id = { path = "nope", type = "number" }
"#,
    ))
    .unwrap_err();
    let errors: Vec<String> = errors.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "`ext_authz.subject.payload`: only used with `source = \"jwt\"`",
            "`ext_authz.subject.id`: required with `source = \"headers\"` (the header naming the subject)",
            "`ext_authz.subject.attributes.a`: `bad header` is not a valid header name",
            "`ext_authz.subject.required[0]`: unknown field `tennant`; expected one of `session_id`, `tenant`, `roles`, `acr`, `amr`, `auth_time`",
            "`ext_authz.subject.required[1]`: `tenant` is required but `ext_authz.subject.tenant` is not set",
            "`ext_authz.network.trusted_hops`: `100` is more than 64",
            "`ext_authz.attributes.both`: set exactly one of `path`, `query`, `header`",
            "`ext_authz.attributes.score.path`: path parameters exist only in a route (use `query` or `header`)",
            "`ext_authz.routes[0].method`: `PO ST` is not an HTTP method (e.g. `POST`, or `*` for any)",
            "`ext_authz.routes[0].path`: `v1/x` must start with `/`",
            "`ext_authz.routes[1].path`: parameter `{id}` appears twice in `/v1/{id}/{id}/x{y}/**/more`",
            "`ext_authz.routes[1].path`: segment `x{y}` of `/v1/{id}/{id}/x{y}/**/more`: a parameter must be a whole segment (`{name}`), and `?`, `#` are not part of a path",
            "`ext_authz.routes[1].path`: `**` must be the last segment of `/v1/{id}/{id}/x{y}/**/more`",
            "`ext_authz.routes[1].action`: must not be empty",
            "`ext_authz.routes[1].resource.id.path`: `/v1/{id}/{id}/x{y}/**/more` has no parameter `{nope}`",
        ]
    );
}

#[test]
fn unknown_keys_are_rejected() {
    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "only deserialized")]
    struct Wrapper {
        ext_authz: FileExtAuthz,
    }
    let e = toml::from_str::<Wrapper>("[[ext_authz.routes]]\npath = \"/\"\nactoin = \"x\"\n")
        .unwrap_err();
    assert!(e.message().contains("unknown field `actoin`"), "{e}");
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%20b+c", true).unwrap(), "a b c");
    assert_eq!(percent_decode("a%20b+c", false).unwrap(), "a b+c");
    assert_eq!(percent_decode("%C3%A9", false).unwrap(), "é");
    assert!(percent_decode("%+1", false).is_none());
    assert!(percent_decode("%4", false).is_none());
    assert!(percent_decode("%FF", false).is_none(), "not UTF-8");
    assert_eq!(percent_decode("a%2Bb+c", true).unwrap(), "a+b c");
    assert_eq!(percent_decode("%41%", false), None);
    assert!(matches!(
        percent_decode("plain", true),
        Some(Cow::Borrowed("plain"))
    ));
}

#[test]
fn base64_is_lenient_as_a_forwarding_proxy_needs() {
    assert_eq!(base64url("aGk=").unwrap(), b"hi");
    assert_eq!(base64url("aGk").unwrap(), b"hi");
    assert_eq!(base64url("aGk===").unwrap(), b"hi", "any padding");
    assert_eq!(base64url("-_8").unwrap(), [0xfb, 0xff]);
    assert_eq!(base64url("+/8").unwrap(), [0xfb, 0xff], "standard alphabet");
    assert_eq!(base64url("aGl").unwrap(), b"hi", "trailing bits");
    assert_eq!(
        base64url("aGlzA").unwrap(),
        b"his",
        "a lone final character"
    );
    assert!(base64url("aGlz!").is_none());
    assert!(base64url("a b").is_none());
    assert!(base64url("aG=k").is_none());
    assert_eq!(base64url("").unwrap(), b"");
}

#[test]
fn unmapped_reasons_are_values() {
    let m = mapping(ROUTES);
    let r = request("POST", "/v1/payments/p1/refunds?amount=lots", &[]);
    let Err(MapError::Unmapped(e)) = m.map(&r, now()) else {
        panic!("expected unmapped");
    };
    assert_eq!(
        e.kind(),
        &UnmappedErrorKind::Number {
            origin: Origin::Query("amount".into()),
            value: "lots".into(),
        }
    );
    assert_eq!(
        e.as_str(),
        "query parameter `amount`: `lots` is not a number"
    );
    let e = Mapping::compile(&file("[ext_authz.network]\ntrusted_hops = 65\n")).unwrap_err();
    assert_eq!(
        e.problems,
        [KeyError {
            key: "ext_authz.network.trusted_hops".into(),
            kind: KeyErrorKind::TooManyHops { hops: 65, max: 64 },
        }]
    );
    assert_eq!(
        e.to_string(),
        "`ext_authz.network.trusted_hops`: `65` is more than 64"
    );
}

/// `h.<payload>.s` as a bearer token: the binding compares the payload
/// segment only (the proxy checked the signature).
fn bearer(payload: &str) -> String {
    format!("Bearer eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl")
}

fn unmapped_kind(m: &Mapping, r: &CheckRequest) -> UnmappedErrorKind {
    match m.map(r, now()) {
        Err(MapError::Unmapped(reason)) => reason.kind().clone(),
        other => panic!("expected unmapped, got {other:?}"),
    }
}

#[test]
fn the_payload_header_is_believed_only_as_the_bearer_tokens_payload() {
    let m = mapping("[ext_authz.subject]\npayload_header = \"X-Jwt-Payload\"\n");
    assert!(m.warnings().is_empty());
    // {"sub":"u-5","amr":["pwd","otp"]} as base64url without padding.
    let encoded = "eyJzdWIiOiJ1LTUiLCJhbXIiOlsicHdkIiwib3RwIl19";
    let token = bearer(encoded);
    let r = with_action(
        request(
            "GET",
            "/",
            &[("x-jwt-payload", encoded), ("authorization", &token)],
        ),
        "a",
    );
    let req = m.map(&r, now()).unwrap().request;
    assert_eq!(req.subject.unwrap().id, "u-5");
    assert_eq!(req.session.unwrap().amr, ["pwd", "otp"]);
    // Padding differences (jwt_authn's `pad_forward_payload_header`), the
    // scheme's case: the same token.
    let padded = format!("{encoded}==");
    let lower = token.replacen("Bearer", "bearer", 1);
    let r = with_action(
        request(
            "GET",
            "/",
            &[("x-jwt-payload", &padded), ("authorization", &lower)],
        ),
        "a",
    );
    assert_eq!(m.map(&r, now()).unwrap().request.subject.unwrap().id, "u-5");

    // No token: a client-made header, refused whatever the fallback.
    let r = with_action(request("GET", "/", &[("x-jwt-payload", encoded)]), "a");
    assert_eq!(
        unmapped_reason(&m, &r),
        "header `x-jwt-payload` is not believed: the request has no `Authorization: Bearer` JWT to bind it to (a client-made payload header, or a proxy that removes the token: keep it with jwt_authn's `forward: true` or Istio's `forwardOriginalToken: true`)"
    );
    assert!(unmapped_kind(&m, &r).is_forged_identity());
    // Not a bearer JWT: basic credentials, an opaque token, two tokens.
    for auth in [
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer opaque-token".to_owned(),
        format!("Bearer a.{encoded}.c.d"),
        format!("{token},{token}"),
    ] {
        let r = with_action(
            request(
                "GET",
                "/",
                &[("x-jwt-payload", encoded), ("authorization", &auth)],
            ),
            "a",
        );
        assert_eq!(
            unmapped_kind(&m, &r),
            UnmappedErrorKind::NoBearerToken {
                header: "x-jwt-payload".into()
            },
            "{auth}"
        );
    }
    // The attacker's own token next to a payload naming the victim.
    // {"sub":"victim","acr":"aal3"}:
    let forged = "eyJzdWIiOiJ2aWN0aW0iLCJhY3IiOiJhYWwzIn0";
    let r = with_action(
        request(
            "GET",
            "/",
            &[("x-jwt-payload", forged), ("authorization", &token)],
        ),
        "a",
    );
    assert_eq!(
        unmapped_reason(&m, &r),
        "header `x-jwt-payload` is not believed: it is not the payload of the request's bearer token (a client-made payload header)"
    );
    assert!(unmapped_kind(&m, &r).is_forged_identity());
    // A client copy next to the verified one: Envoy joins them, and the
    // result is not the token's payload.
    let joined = format!("{forged},{encoded}");
    let r = with_action(
        request(
            "GET",
            "/",
            &[("x-jwt-payload", &joined), ("authorization", &token)],
        ),
        "a",
    );
    assert!(unmapped_kind(&m, &r).is_forged_identity());
    // No header at all: no identity claimed, the usual fallback.
    let r = with_action(request("GET", "/", &[("authorization", &token)]), "a");
    assert_eq!(
        unmapped_reason(&m, &r),
        "no JWT payload: header `x-jwt-payload` is missing (is the request authenticated?)"
    );
    assert!(!unmapped_kind(&m, &r).is_forged_identity());
}

#[test]
fn a_forged_payload_header_is_denied_even_when_unmapped_requests_pass() {
    let m = mapping(
        "[ext_authz]\nunmapped = \"allow\"\n[ext_authz.subject]\npayload_header = \"x-jwt-payload\"\n",
    );
    let forged = "eyJzdWIiOiJ2aWN0aW0iLCJhY3IiOiJhYWwzIn0";
    let r = with_action(request("GET", "/", &[("x-jwt-payload", forged)]), "a");
    let Err(MapError::Unmapped(reason)) = m.map(&r, now()) else {
        panic!("expected unmapped");
    };
    assert_eq!(m.fallback(), Fallback::Allow);
    assert_eq!(m.fallback_for(&reason), Fallback::Deny);
    let r = with_action(request("GET", "/", &[]), "a");
    let Err(MapError::Unmapped(reason)) = m.map(&r, now()) else {
        panic!("expected unmapped");
    };
    assert_eq!(m.fallback_for(&reason), Fallback::Allow);
}

#[test]
fn a_payload_header_the_proxy_strips_is_believed_with_a_warning() {
    let m = mapping(
        "[ext_authz.subject]\npayload_header = \"x-jwt-payload\"\npayload_header_stripped_by_proxy = true\n",
    );
    let encoded = "eyJzdWIiOiJ1LTUiLCJhbXIiOlsicHdkIiwib3RwIl19";
    let r = with_action(request("GET", "/", &[("x-jwt-payload", encoded)]), "a");
    assert_eq!(m.map(&r, now()).unwrap().request.subject.unwrap().id, "u-5");
    assert_eq!(
        m.warnings(),
        [
            "`ext_authz.subject.payload_header_stripped_by_proxy = true`: header `x-jwt-payload` is believed without a bearer token; a client that reaches stepup through a proxy that does not remove client copies of `x-jwt-payload` can claim any identity"
        ]
    );
    // `false` is the default, said out loud.
    let m = mapping(
        "[ext_authz.subject]\npayload_header = \"x-jwt-payload\"\npayload_header_stripped_by_proxy = false\n",
    );
    assert!(unmapped_kind(&m, &r).is_forged_identity());
    assert!(m.warnings().is_empty());
}

#[test]
fn several_issuers_qualify_the_subject_id() {
    let payload = |iss: Option<&str>| {
        let mut p = serde_json::json!({ "sub": "alice" });
        if let Some(iss) = iss {
            p["iss"] = iss.into();
        }
        with_action(
            with_payloads(
                request("GET", "/", &[]),
                serde_json::json!({ "jwt_payload": p }),
            ),
            "a",
        )
    };
    let id = |m: &Mapping, r: &CheckRequest| m.map(r, now()).unwrap().request.subject.unwrap().id;

    // None listed: the claim as is, whoever issued it.
    let m = Mapping::default();
    assert_eq!(id(&m, &payload(Some("https://a.example/"))), "alice");
    assert_eq!(id(&m, &payload(None)), "alice");

    // One: as is, and only from that issuer.
    let m = mapping("[ext_authz.subject]\nissuers = [\"https://a.example/\"]\n");
    assert_eq!(id(&m, &payload(Some("https://a.example/"))), "alice");
    assert_eq!(
        unmapped_reason(&m, &payload(Some("https://b.example/"))),
        "issuer `https://b.example/` (claim `iss`) is not one of `ext_authz.subject.issuers`"
    );
    assert_eq!(
        unmapped_reason(&m, &payload(None)),
        "claim `iss` is missing or not a string, and `ext_authz.subject.issuers` is set"
    );

    // Several: `<iss>#<sub>`, so the same `sub` of two issuers is two
    // subjects.
    let m = mapping(
        "[ext_authz.subject]\nissuers = [\"https://a.example/\", \"https://b.example/\"]\n",
    );
    assert_eq!(
        id(&m, &payload(Some("https://a.example/"))),
        "https://a.example/#alice"
    );
    assert_eq!(
        id(&m, &payload(Some("https://b.example/"))),
        "https://b.example/#alice"
    );
    assert!(matches!(
        unmapped_kind(&m, &payload(Some("https://c.example/"))),
        UnmappedErrorKind::UnknownIssuer { .. }
    ));
}

#[test]
fn bad_trust_settings_are_named() {
    let e = Mapping::compile(&file(
        "[ext_authz.subject]\npayload_header_stripped_by_proxy = true\nissuers = [\"https://a/#x\", \"\", \"https://b/\", \"https://b/\"]\n",
    ))
    .unwrap_err();
    let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "`ext_authz.subject.payload_header_stripped_by_proxy`: only used with `payload_header`",
            "`ext_authz.subject.issuers[0]`: `https://a/#x` contains `#` (an issuer URL has no fragment)",
            "`ext_authz.subject.issuers[1]`: must not be empty",
            "`ext_authz.subject.issuers[3]`: `https://b/` is listed twice",
        ]
    );
    let e = Mapping::compile(&file(
        "[ext_authz.subject]\nsource = \"headers\"\nid = \"x-user\"\nissuers = [\"https://a/\"]\npayload_header_stripped_by_proxy = true\n",
    ))
    .unwrap_err();
    let lines: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "`ext_authz.subject.payload_header_stripped_by_proxy`: only used with `source = \"jwt\"`",
            "`ext_authz.subject.issuers`: only used with `source = \"jwt\"`",
        ]
    );
}
