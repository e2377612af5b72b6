#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Envoy ext_authz end to end over a real socket: the server on
//! `127.0.0.1:0`, a real tonic `Authorization` client built from the Envoy
//! protos (`envoy-types`), the example policies and the example mapping of
//! `examples/envoy/stepup.toml`.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::examples;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderValueOption, Metadata, SocketAddress, address::Address as A,
    header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf as epb;
use stepup::CacheConfig;
use stepup::PolicySet;
use stepup::Service;
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::proto::v1::{self as pb, DecideRequest};
use stepup::{Config, Overrides, SettingError};
use stepup::{FileExtAuthz, KeyError, KeyErrorKind, Mapping};
use stepup::{ServeOptions, serve_with};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

const NOW: i64 = 1_795_780_800; // 2026-11-27T12:00:00Z: daytime, so `odd-hours` stays quiet

const CHALLENGE: &str = "Bearer error=\"insufficient_user_authentication\", error_description=\"Refunds above 1,000 need re-verification\", acr_values=\"urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor\", max_age=\"300\"";

struct Sidecar {
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), stepup::ServeError>>,
}

impl Sidecar {
    async fn start(policies: &Path, mapping: Mapping) -> Self {
        // History off: these tests compare Check and Decide on the same
        // request, and with history on the second call would see the first
        // (tests/history.rs covers history).
        let history = stepup::history::HistoryConfig {
            enabled: stepup::history::Enabled::Off,
            ..Default::default()
        };
        Self::start_with_history(policies, mapping, history).await
    }

    async fn start_with_history(
        policies: &Path,
        mapping: Mapping,
        history: stepup::history::HistoryConfig,
    ) -> Self {
        let (policy, _) = PolicySet::load(policies).unwrap_or_else(|r| panic!("{r}"));
        let history = stepup::history::History::new(history);
        let engine = Arc::new(Service::new(policy, CacheConfig::default()).with_history(history));
        let listener = stepup::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        // The requests are at a fixed time: no bound on its skew.
        let options = ServeOptions {
            ext_authz: Arc::new(mapping),
            max_time_skew: None,
            ..ServeOptions::default()
        };
        let task = tokio::spawn(serve_with(engine, listener, options, async {
            let _ = rx.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            channel,
            stop: Some(tx),
            task,
        }
    }

    /// With the example mapping of `examples/envoy/stepup.toml`, loaded the
    /// way `stepup serve --config` loads it.
    async fn example() -> Self {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envoy/stepup.toml");
        let config = Config::resolve(Overrides::default(), Some(&file)).unwrap();
        Self::start(&examples(), config.ext_authz).await
    }

    fn authz(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::new(self.channel.clone())
    }

    fn decisions(&self) -> DecisionServiceClient<Channel> {
        DecisionServiceClient::new(self.channel.clone())
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

fn mapping(toml_text: &str) -> Mapping {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        ext_authz: FileExtAuthz,
    }
    let file = toml::from_str::<Wrapper>(toml_text).unwrap().ext_authz;
    Mapping::compile(&file).unwrap_or_else(|e| panic!("{e:?}"))
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

/// What Envoy sends for `method path` from 198.51.100.4, with a verified JWT
/// whose payload is `claims` (under jwt_authn's `jwt_payload`).
fn check(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    claims: Option<serde_json::Value>,
) -> CheckRequest {
    let metadata = claims.map(|c| Metadata {
        filter_metadata: [(
            "envoy.filters.http.jwt_authn".to_owned(),
            epb::Struct {
                fields: [("jwt_payload".to_owned(), json(c))].into(),
            },
        )]
        .into(),
        ..Default::default()
    });
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(A::SocketAddress(SocketAddress {
                        address: "198.51.100.4".into(),
                        port_specifier: None,
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                time: Some(epb::Timestamp {
                    seconds: NOW,
                    nanos: 0,
                }),
                http: Some(HttpRequest {
                    id: "req-1".into(),
                    method: method.into(),
                    path: path.into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
            }),
            metadata_context: metadata,
            ..Default::default()
        }),
    }
}

fn aal1() -> serde_json::Value {
    serde_json::json!({
        "iss": "https://idp.example.com/", "sub": "user-1", "sid": "s-1",
        "acr": "urn:stepup:aal1", "amr": ["pwd"], "auth_time": NOW - 3600,
        "usual_countries": ["DE"],
    })
}

fn stepped_up(seconds_ago: i64) -> serde_json::Value {
    let mut c = aal1();
    c["acr"] = "urn:stepup:aal2".into();
    c["amr"] = serde_json::json!(["pwd", "otp"]);
    c["auth_time"] = (NOW - seconds_ago).into();
    c
}

fn with_action(mut r: CheckRequest, action: &str) -> CheckRequest {
    r.attributes
        .as_mut()
        .unwrap()
        .context_extensions
        .insert("stepup_action".into(), action.into());
    r
}

fn ok(r: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(r.status.as_ref().unwrap().code, 0, "{r:?}");
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("expected an OkHttpResponse, got {other:?}"),
    }
}

fn denied(r: &CheckResponse) -> &DeniedHttpResponse {
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d,
        other => panic!("expected a DeniedHttpResponse, got {other:?}"),
    }
}

fn headers(list: &[HeaderValueOption]) -> Vec<(String, String)> {
    list.iter()
        .map(|h| {
            assert_eq!(
                h.append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            );
            let h = h.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        })
        .collect()
}

fn meta(r: &CheckResponse, key: &str) -> serde_json::Value {
    fn back(v: &epb::Value) -> serde_json::Value {
        use epb::value::Kind as K;
        match v.kind.as_ref().unwrap() {
            K::NullValue(_) => serde_json::Value::Null,
            K::BoolValue(b) => (*b).into(),
            K::NumberValue(n) => (*n).into(),
            K::StringValue(s) => s.clone().into(),
            K::ListValue(l) => l.values.iter().map(back).collect(),
            K::StructValue(s) => s
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), back(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
    back(&r.dynamic_metadata.as_ref().unwrap().fields[key])
}

#[tokio::test]
async fn allow_passes_the_decision_upstream_with_exact_headers() {
    let sidecar = Sidecar::example().await;
    let mut authz = sidecar.authz();

    // ALLOW: a small refund. The decision id and risk score go upstream; the
    // client's own `x-stepup-*` headers are removed or overwritten.
    let r = check(
        "POST",
        "/v1/payments/pay-7/refunds?amount=50&currency=EUR",
        &[
            ("x-stepup-decision-id", "forged"),
            ("x-stepup-risk-score", "0"),
            ("x-stepup-user", "admin"),
            ("x-stepup-admin", "true"),
            ("x-device-id", "d-1"),
        ],
        Some(aal1()),
    );
    let resp = authz.check(r).await.unwrap().into_inner();
    let allowed = ok(&resp);
    let set = headers(&allowed.headers);
    assert_eq!(set.len(), 2);
    assert_eq!(set[0].0, "x-stepup-decision-id");
    let id = uuid::Uuid::parse_str(&set[0].1).unwrap();
    assert_eq!(id.get_version_num(), 7);
    // The device is untrusted (no attestation header is mapped): 30.
    assert_eq!(set[1], ("x-stepup-risk-score".into(), "30".into()));
    assert_eq!(
        allowed.headers_to_remove,
        ["x-stepup-admin", "x-stepup-user"]
    );
    assert_eq!(meta(&resp, "outcome"), "allow");
    assert_eq!(meta(&resp, "decision_id"), set[0].1.as_str());
    assert_eq!(meta(&resp, "rule_ids"), serde_json::json!([]));
    assert_eq!(meta(&resp, "action"), "payments.refund");
    sidecar.stop().await;
}

#[tokio::test]
async fn challenge_is_a_401_with_the_rfc_9470_challenge_until_stepped_up() {
    let sidecar = Sidecar::example().await;
    let mut authz = sidecar.authz();

    // CHALLENGE: a large refund from an aal1 session: 401, the RFC 9470
    // challenge, a JSON body for clients that read bodies.
    let r = check(
        "POST",
        "/v1/payments/pay-7/refunds?amount=2500&currency=EUR",
        &[("x-stepup-user", "admin")],
        Some(aal1()),
    );
    let resp = authz.check(r).await.unwrap().into_inner();
    assert_eq!(
        resp.status.as_ref().unwrap().code,
        Code::Unauthenticated as i32
    );
    let d = denied(&resp);
    assert_eq!(d.status.as_ref().unwrap().code, 401);
    assert_eq!(
        headers(&d.headers),
        [
            ("www-authenticate".to_owned(), CHALLENGE.to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ]
    );
    let id = meta(&resp, "decision_id");
    let id = id.as_str().unwrap();
    assert_eq!(
        d.body,
        format!(
            r#"{{"error":"insufficient_user_authentication","acr_values":"urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor","max_age":300,"decision_id":"{id}"}}"#
        )
    );
    assert_eq!(meta(&resp, "outcome"), "challenge");
    assert_eq!(meta(&resp, "rule_ids"), serde_json::json!(["refund-large"]));

    // The client steps up (aal2 with an OTP a minute ago) and retries: ALLOW,
    // and the satisfied rule is still named for the access log.
    let r = check(
        "POST",
        "/v1/payments/pay-7/refunds?amount=2500&currency=EUR",
        &[],
        Some(stepped_up(60)),
    );
    let resp = authz.check(r).await.unwrap().into_inner();
    ok(&resp);
    assert_eq!(meta(&resp, "rule_ids"), serde_json::json!(["refund-large"]));
    // ...but a step-up ten minutes old is too old for max_age 5m.
    let r = check(
        "POST",
        "/v1/payments/pay-7/refunds?amount=2500",
        &[],
        Some(stepped_up(600)),
    );
    let resp = authz.check(r).await.unwrap().into_inner();
    assert_eq!(denied(&resp).status.as_ref().unwrap().code, 401);
    sidecar.stop().await;
}

#[tokio::test]
async fn deny_is_a_403_with_the_decision_id_only() {
    // DENY: the blocked-country rule, with the subject and country from
    // trusted headers: 403 with the decision id only.
    let deny = mapping(
        r#"
[ext_authz.subject]
source = "headers"
id = "x-user"
[ext_authz.network]
country = "x-country"
"#,
    );
    let sidecar = Sidecar::start(&examples(), deny).await;
    let r = with_action(
        check(
            "GET",
            "/v1/orders",
            &[("x-user", "u-1"), ("x-country", "KP")],
            None,
        ),
        "orders.list",
    );
    let resp = sidecar.authz().check(r).await.unwrap().into_inner();
    assert_eq!(
        resp.status.as_ref().unwrap().code,
        Code::PermissionDenied as i32
    );
    let d = denied(&resp);
    assert_eq!(d.status.as_ref().unwrap().code, 403);
    let id = meta(&resp, "decision_id");
    assert_eq!(
        d.body,
        format!(r#"{{"decision_id":"{}"}}"#, id.as_str().unwrap())
    );
    assert_eq!(
        headers(&d.headers),
        [
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ]
    );
    assert_eq!(meta(&resp, "outcome"), "deny");
    assert_eq!(
        meta(&resp, "rule_ids"),
        serde_json::json!(["blocked-country"])
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn path_parameters_and_jwt_metadata_reach_the_policies() {
    let sidecar = Sidecar::example().await;
    let mut authz = sidecar.authz();
    // `environments.delete` challenges only when the `{env}` path parameter
    // says production.
    for (env, status) in [("production", Some(401)), ("staging", None)] {
        let r = check(
            "DELETE",
            &format!("/v1/environments/{env}"),
            &[],
            Some(stepped_up(60)),
        );
        let resp = authz.check(r).await.unwrap().into_inner();
        match status {
            Some(code) => assert_eq!(denied(&resp).status.as_ref().unwrap().code, code),
            None => {
                ok(&resp);
            }
        }
    }
    // The JWT's `usual_countries` claim becomes a subject attribute, read by
    // the `unusual-country` signal: a transfer from elsewhere adds 25.
    let with_country = mapping(
        r#"
[ext_authz.subject]
attributes = { usual_countries = "usual_countries" }
[ext_authz.network]
country = "cf-ipcountry"
"#,
    );
    let sidecar2 = Sidecar::start(&examples(), with_country).await;
    for (country, score) in [("DE", "30"), ("BR", "55")] {
        let r = with_action(
            check(
                "GET",
                "/x",
                &[("cf-ipcountry", country)],
                Some(stepped_up(60)),
            ),
            "orders.list",
        );
        let resp = sidecar2.authz().check(r).await.unwrap().into_inner();
        let set = headers(&ok(&resp).headers);
        assert_eq!(set[1].1, score, "country {country}");
    }
    sidecar2.stop().await;
    sidecar.stop().await;
}

#[tokio::test]
async fn trusted_hops_pick_the_client_address() {
    // A policy that denies one address, to see which address was used.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("levels.yaml"),
        dir.path().join("levels.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ip.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: ip\nrules:\n  - id: bad-ip\n    actions: [\"*\"]\n    when: 'network.ip == \"203.0.113.66\"'\n    effect: deny\n",
    )
    .unwrap();
    let m = mapping("[ext_authz.network]\ntrusted_hops = 2\n");
    let sidecar = Sidecar::start(dir.path(), m).await;
    let authz = sidecar.authz();
    let outcome = |xff: &'static str| {
        let mut authz = authz.clone();
        async move {
            let r = with_action(
                check("GET", "/", &[("x-forwarded-for", xff)], Some(aal1())),
                "orders.list",
            );
            let resp = authz.check(r).await.unwrap().into_inner();
            meta(&resp, "outcome")
        }
    };
    // client, load balancer, Envoy: two trusted hops from the right.
    assert_eq!(outcome("203.0.113.66, 10.0.0.7").await, "deny");
    // The client forged an entry on the left: ignored.
    assert_eq!(outcome("203.0.113.66, 192.0.2.10, 10.0.0.7").await, "allow");
    // A chain shorter than the hops: the source address (198.51.100.4).
    assert_eq!(outcome("203.0.113.66").await, "allow");
    sidecar.stop().await;
}

#[tokio::test]
async fn unmapped_requests_get_the_fallback() {
    let sidecar = Sidecar::example().await;
    let mut authz = sidecar.authz();
    // No route matches and Envoy set no action: 403 with a decision id.
    let resp = authz
        .check(check("GET", "/v1/unknown", &[], Some(aal1())))
        .await
        .unwrap()
        .into_inner();
    let d = denied(&resp);
    assert_eq!(d.status.as_ref().unwrap().code, 403);
    assert_eq!(meta(&resp, "outcome"), "deny");
    assert_eq!(
        meta(&resp, "unmapped"),
        "no route matches `GET /v1/unknown` and no `stepup_action` context extension is set"
    );
    // A required parameter missing, a wrong type, no JWT at all.
    for (r, reason) in [
        (
            check("POST", "/v1/payments/p/refunds", &[], Some(aal1())),
            "required query parameter `amount` is missing",
        ),
        (
            check(
                "POST",
                "/v1/payments/p/refunds?amount=1e3x",
                &[],
                Some(aal1()),
            ),
            "query parameter `amount`: `1e3x` is not a number",
        ),
        (
            check("POST", "/v1/payments/p/refunds?amount=1", &[], None),
            "no JWT payload `jwt_payload` under `envoy.filters.http.jwt_authn` in the metadata context (is jwt_authn's `payload_in_metadata` `jwt_payload`, and `envoy.filters.http.jwt_authn` in ext_authz's `metadata_context_namespaces`?)",
        ),
    ] {
        let resp = authz.check(r).await.unwrap().into_inner();
        assert_eq!(denied(&resp).status.as_ref().unwrap().code, 403);
        assert_eq!(meta(&resp, "unmapped"), reason);
    }
    sidecar.stop().await;

    // `unmapped = "allow"`: through, with a decision id and spoofed headers
    // still removed.
    let m = mapping("[ext_authz]\nunmapped = \"allow\"\n");
    let sidecar = Sidecar::start(&examples(), m).await;
    let resp = sidecar
        .authz()
        .check(check(
            "GET",
            "/v1/unknown",
            &[
                ("x-stepup-user", "x"),
                ("x-stepup-risk-score", "0"),
                ("x-stepup-decision-id", "forged"),
            ],
            Some(aal1()),
        ))
        .await
        .unwrap()
        .into_inner();
    let allowed = ok(&resp);
    let set = headers(&allowed.headers);
    assert_eq!(set[0].0, "x-stepup-decision-id");
    assert_ne!(set[0].1, "forged");
    assert_eq!(allowed.headers.len(), 1, "no risk score without a decision");
    // The client's risk score is not overwritten (there is none to set):
    // it is removed.
    assert_eq!(
        allowed.headers_to_remove,
        ["x-stepup-risk-score", "x-stepup-user"]
    );
    sidecar.stop().await;
}

/// The base64url payload of `claims`, as jwt_authn's
/// `forward_payload_header` writes it.
fn encoded(claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
}

/// A bearer JWT carrying `claims` (the signature is Envoy's business: it
/// verified the token, or refused the request, before asking stepup).
fn bearer(claims: &serde_json::Value) -> String {
    format!(
        "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJ1biJ9.{}.c2lnbmF0dXJl",
        encoded(claims)
    )
}

/// What Envoy sends with the payload in `x-jwt-payload` (Istio's
/// `outputPayloadToHeader`): `payload` as the header, `token` as the bearer
/// token, either absent.
fn check_with_header(
    method: &str,
    path: &str,
    device: &str,
    payload: Option<&serde_json::Value>,
    token: Option<&serde_json::Value>,
) -> CheckRequest {
    let payload = payload.map(encoded);
    let token = token.map(bearer);
    let mut headers = vec![("x-device-id", device)];
    if let Some(p) = &payload {
        headers.push(("x-jwt-payload", p));
    }
    if let Some(t) = &token {
        headers.push(("authorization", t));
    }
    check(method, path, &headers, None)
}

fn rule_ids(r: &CheckResponse) -> serde_json::Value {
    meta(r, "rule_ids")
}

const PAYLOAD_HEADER: &str = r#"
[ext_authz]
unmapped = "allow"
[ext_authz.subject]
payload_header = "x-jwt-payload"
[ext_authz.device]
id = "x-device-id"
[[ext_authz.routes]]
method = "GET"
path = "/v1/orders"
action = "orders.list"
[[ext_authz.routes]]
method = "PUT"
path = "/v1/account/email"
action = "account.email.change"
[[ext_authz.routes]]
method = "POST"
path = "/v1/transfers"
action = "payments.transfer"
resource.attributes.amount = { query = "amount", type = "number", required = true }
"#;

#[tokio::test]
async fn forged_payload_headers_are_denied_and_leave_no_history() {
    // `unmapped = "allow"`: a forged identity is refused all the same.
    let sidecar = Sidecar::start_with_history(
        &examples(),
        mapping(PAYLOAD_HEADER),
        stepup::history::HistoryConfig::default(),
    )
    .await;
    let mut authz = sidecar.authz();
    let mut victim = aal1();
    victim["sub"] = "victim".into();
    let mut strong = victim.clone();
    strong["acr"] = "urn:stepup:aal3".into();
    strong["amr"] = serde_json::json!(["hwk"]);
    strong["auth_time"] = NOW.into();
    let mut attacker = aal1();
    attacker["sub"] = "attacker".into();

    // The victim, from their own device: the subject has a history.
    let r = check_with_header(
        "GET",
        "/v1/orders",
        "d-victim",
        Some(&victim),
        Some(&victim),
    );
    ok(&authz.check(r).await.unwrap().into_inner());

    // No token and a payload naming the victim at aal3; the attacker's own
    // (verified) token next to it: 403, whatever the action.
    for (path, method, token) in [
        ("/v1/orders", "GET", None),
        ("/v1/account/email", "PUT", None),
        ("/v1/orders", "GET", Some(&attacker)),
        ("/v1/account/email", "PUT", Some(&attacker)),
    ] {
        let r = check_with_header(method, path, "d-attacker", Some(&strong), token);
        let resp = authz.check(r).await.unwrap().into_inner();
        assert_eq!(denied(&resp).status.as_ref().unwrap().code, 403, "{path}");
        assert_eq!(meta(&resp, "outcome"), "deny");
        let reason = meta(&resp, "unmapped");
        assert!(
            reason
                .as_str()
                .unwrap()
                .starts_with("header `x-jwt-payload` is not believed"),
            "{reason}"
        );
    }

    // The attacker's device did not become known for the victim: a
    // transfer from it still needs the device confirmed...
    let r = check_with_header(
        "POST",
        "/v1/transfers?amount=10",
        "d-attacker",
        Some(&victim),
        Some(&victim),
    );
    let resp = authz.check(r).await.unwrap().into_inner();
    assert_eq!(denied(&resp).status.as_ref().unwrap().code, 401);
    assert_eq!(
        rule_ids(&resp),
        serde_json::json!(["transfer-unconfirmed-device"])
    );
    // ...as a device the victim did confirm (an aal2 decision) does not.
    let r = check_with_header("GET", "/v1/orders", "d-phone", Some(&strong), Some(&strong));
    ok(&authz.check(r).await.unwrap().into_inner());
    let r = check_with_header(
        "POST",
        "/v1/transfers?amount=10",
        "d-phone",
        Some(&victim),
        Some(&victim),
    );
    ok(&authz.check(r).await.unwrap().into_inner());

    // A request with neither header nor token claims no identity: the
    // configured fallback, without the client's stepup headers.
    let r = check("GET", "/v1/orders", &[("x-stepup-risk-score", "0")], None);
    let resp = authz.check(r).await.unwrap().into_inner();
    assert_eq!(ok(&resp).headers_to_remove, ["x-stepup-risk-score"]);
    sidecar.stop().await;
}

#[tokio::test]
async fn several_issuers_keep_separate_histories() {
    let toml = PAYLOAD_HEADER.replace(
        "[ext_authz.subject]\npayload_header = \"x-jwt-payload\"\n",
        "[ext_authz.subject]\npayload_header = \"x-jwt-payload\"\nissuers = [\"https://idp.example.com/\", \"https://partner.example.org/\"]\n",
    );
    let sidecar = Sidecar::start_with_history(
        &examples(),
        mapping(&toml),
        stepup::history::HistoryConfig::default(),
    )
    .await;
    let mut authz = sidecar.authz();
    let alice = |iss: &str, acr: &str| {
        let mut c = aal1();
        c["iss"] = iss.into();
        c["sub"] = "alice".into();
        c["acr"] = acr.into();
        c
    };
    let idp = "https://idp.example.com/";
    let partner = "https://partner.example.org/";
    let mut send = async |claims: serde_json::Value, method, path, device| {
        let r = check_with_header(method, path, device, Some(&claims), Some(&claims));
        authz.check(r).await.unwrap().into_inner()
    };

    // The IdP's alice confirms d-1 (an aal2 decision); the partner's alice
    // uses d-2.
    ok(&send(alice(idp, "urn:stepup:aal2"), "GET", "/v1/orders", "d-1").await);
    ok(&send(
        alice(partner, "urn:stepup:aal1"),
        "GET",
        "/v1/orders",
        "d-2",
    )
    .await);
    // d-1 is known to the IdP's alice only.
    let transfer = "/v1/transfers?amount=10";
    let resp = send(alice(partner, "urn:stepup:aal1"), "POST", transfer, "d-1").await;
    assert_eq!(denied(&resp).status.as_ref().unwrap().code, 401);
    assert_eq!(
        rule_ids(&resp),
        serde_json::json!(["transfer-unconfirmed-device"])
    );
    ok(&send(alice(idp, "urn:stepup:aal1"), "POST", transfer, "d-1").await);
    // An issuer not listed: refused (the fallback here is `allow`, so the
    // answer passes with no decision made: nothing recorded either).
    let resp = send(
        alice("https://other.example/", "urn:stepup:aal3"),
        "GET",
        "/v1/orders",
        "d-3",
    )
    .await;
    assert_eq!(
        meta(&resp, "unmapped"),
        "issuer `https://other.example/` (claim `iss`) is not one of `ext_authz.subject.issuers`"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn the_action_extension_works_without_a_mapping() {
    let sidecar = Sidecar::start(&examples(), Mapping::default()).await;
    let mut authz = sidecar.authz();
    let mut claims = aal1();
    // The default reads the standard claim names from the first payload.
    claims.as_object_mut().unwrap().remove("usual_countries");
    let r = with_action(
        check("POST", "/anything", &[], Some(claims)),
        "account.password.change",
    );
    let resp = authz.check(r).await.unwrap().into_inner();
    assert_eq!(denied(&resp).status.as_ref().unwrap().code, 401);
    assert_eq!(
        meta(&resp, "rule_ids"),
        serde_json::json!(["password-change"])
    );
    assert_eq!(meta(&resp, "action"), "account.password.change");
    let r = with_action(
        check("POST", "/anything", &[], Some(stepped_up(60))),
        "account.password.change",
    );
    ok(&authz.check(r).await.unwrap().into_inner());
    sidecar.stop().await;
}

#[tokio::test]
async fn malformed_check_requests_are_grpc_errors() {
    let sidecar = Sidecar::example().await;
    let mut authz = sidecar.authz();
    let status = authz.check(CheckRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "`attributes`: required");

    let mut r = check("GET", "/", &[], Some(aal1()));
    r.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http = None;
    let status = authz.check(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "`attributes.request.http`: required (stepup answers HTTP checks only)"
    );

    let mut r = check("GET", "/", &[], Some(aal1()));
    r.attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .path
        .clear();
    let status = authz.check(r).await.unwrap_err();
    assert_eq!(status.message(), "`attributes.request.http.path`: required");
    sidecar.stop().await;
}

#[tokio::test]
async fn check_and_decide_agree() {
    let sidecar = Sidecar::example().await;
    let mut authz = sidecar.authz();
    let mut decisions = sidecar.decisions();
    let cases = [
        ("payments.refund", 50.0, aal1()),
        ("payments.refund", 2500.0, aal1()),
        ("payments.refund", 2500.0, stepped_up(60)),
        ("payments.transfer", 20000.0, stepped_up(60)),
        ("payments.transfer", 20000.0, aal1()),
    ];
    for (action, amount, claims) in cases {
        let path = match action {
            "payments.refund" => format!("/v1/payments/p-1/refunds?amount={amount}"),
            _ => format!("/v1/transfers?amount={amount}"),
        };
        let r = check(
            "POST",
            &path,
            &[("x-device-id", "d-1")],
            Some(claims.clone()),
        );
        let checked = authz.check(r).await.unwrap().into_inner();

        // The same request, as a service would send it to Decide.
        let decide: DecideRequest = serde_json::from_value(serde_json::json!({
            "action": action,
            "subject": { "id": claims["sub"], "attributes": {
                "usual_countries": claims["usual_countries"] } },
            "session": { "id": claims["sid"], "acr": claims["acr"], "amr": claims["amr"],
                         "authTime": chrono::DateTime::from_timestamp(
                             claims["auth_time"].as_i64().unwrap(), 0).unwrap().to_rfc3339() },
            "device": { "id": "d-1" },
            "network": { "ip": "198.51.100.4" },
            "resource": {
                "type": if action == "payments.refund" { "refund" } else { "transfer" },
                "id": if action == "payments.refund" { "p-1" } else { "" },
                "attributes": { "amount": amount } },
            "time": "2026-11-27T12:00:00Z",
        }))
        .unwrap();
        let decided = decisions.decide(decide).await.unwrap().into_inner();

        let expected = match decided.outcome() {
            pb::Outcome::Allow => "allow",
            pb::Outcome::Challenge => "challenge",
            pb::Outcome::Deny => "deny",
            pb::Outcome::Unspecified => unreachable!(),
        };
        assert_eq!(meta(&checked, "outcome"), expected, "{action} {amount}");
        let rules: Vec<String> = decided.reasons.iter().map(|r| r.rule_id.clone()).collect();
        assert_eq!(meta(&checked, "rule_ids"), serde_json::json!(rules));
        assert_eq!(
            meta(&checked, "risk_score"),
            serde_json::json!(f64::from(decided.risk.unwrap().score))
        );
        if let Some(HttpResponse::DeniedResponse(d)) = &checked.http_response
            && !decided.www_authenticate.is_empty()
        {
            assert_eq!(
                headers(&d.headers)[0],
                (
                    "www-authenticate".to_owned(),
                    decided.www_authenticate.clone()
                )
            );
        }
    }
    sidecar.stop().await;
}

#[tokio::test]
async fn health_and_reflection_list_the_authorization_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let sidecar = Sidecar::example().await;
    let r = HealthClient::new(sidecar.channel.clone())
        .check(HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(sidecar.channel.clone());
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("envoy.service.auth.v3.Authorization".into()),
        MessageRequest::FileByFilename("envoy/service/auth/v3/attribute_context.proto".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "envoy.service.auth.v3.Authorization",
        "stepup.v1.DecisionService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    for _ in 0..2 {
        let msg = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = msg.message_response else {
            panic!("expected a descriptor, got {:?}", msg.message_response);
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    sidecar.stop().await;
}

#[test]
fn bad_mappings_fail_at_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stepup.toml");
    std::fs::write(
        &file,
        "policies = \"p\"\n[[ext_authz.routes]]\npath = \"/v1/{id}/x\"\naction = \"a\"\nresource.id = { path = \"payment\" }\n",
    )
    .unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    let problems: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        ["`ext_authz.routes[0].resource.id.path`: `/v1/{id}/x` has no parameter `{payment}`"]
    );
    assert!(matches!(
        &err.problems[..],
        [SettingError::ExtAuthz(KeyError {
            kind: KeyErrorKind::UnknownParameter { .. },
            ..
        })]
    ));

    std::fs::write(
        &file,
        "policies = \"p\"\n[ext_authz.subject]\nclaim = \"sub\"\n",
    )
    .unwrap();
    let err = Config::resolve(Overrides::default(), Some(&file)).unwrap_err();
    assert!(
        err.to_string()
            .contains("stepup.toml:3: unknown field `claim`"),
        "{err}"
    );
}

#[test]
fn the_example_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["examples/envoy/stepup.toml", "examples/istio/stepup.toml"] {
        let config = Config::resolve(Overrides::default(), Some(&root.join(file)))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_ne!(config.ext_authz, Mapping::default(), "{file}");
    }
}

#[test]
fn believing_a_payload_header_without_a_token_is_warned_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stepup.toml");
    std::fs::write(
        &file,
        "[ext_authz.subject]\npayload_header = \"x-jwt-payload\"\npayload_header_stripped_by_proxy = true\n",
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["serve", "--config"])
        .arg(&file)
        .args(["--policies"])
        .arg(examples())
        .args(["--listen", &addr, "--admin", "off", "--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Up and serving: the warning came before. SIGTERM flushes the logs.
    let rt = common::runtime();
    rt.block_on(async {
        drop(common::connect_when_up(&mut child, &addr).await);
    });
    drop(rt); // closes the client's connection
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let warning = logs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| {
            l["level"] == "WARN"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("payload_header_stripped_by_proxy"))
        })
        .unwrap_or_else(|| panic!("no warning in {logs}"));
    assert_eq!(
        warning["fields"]["message"],
        "`ext_authz.subject.payload_header_stripped_by_proxy = true`: header `x-jwt-payload` is believed without a bearer token; a client that reaches stepup through a proxy that does not remove client copies of `x-jwt-payload` can claim any identity"
    );
}
