#!/usr/bin/env python3
"""Checks of the Envoy and Istio examples, run by examples/envoy/check.sh.

1. `envoy --mode validate` on examples/envoy/envoy.yaml, plus the settings
   the docs promise (docs/src/api/ext-authz.md) (jwt_authn before ext_authz, gRPC v3, fail closed,
   503 on error, the jwt_authn metadata namespace, no request body, a
   `stepup_action` per-route extension).
2. The Istio manifests: kinds and the fields that must agree with each other
   and with examples/istio/stepup.toml.
3. The walkthrough in docs/src/api/ext-authz.md end to end: a real Envoy built from envoy.yaml
   (the JWKS inlined, ports moved to free ones) in front of a stub upstream,
   asking a real `stepup serve --config examples/envoy/stepup.toml`; tokens
   are RS256, signed with a key made for the run. Then other spellings of
   protected paths (`//v1/...`, `/v1/./...`, `%2F`): none skips stepup.
4. The identity stepup believes, with Envoy configured as Istio configures
   it (the payload in `x-jwt-payload`, missing tokens let through, two
   identity providers): forged payload headers with no token or another
   subject's token are refused and leave no history; users of two issuers
   with the same `sub` have separate histories; with `unmapped = "allow"`
   a client's own `x-stepup-*` headers still never reach the upstream.

Prints one line per check and `N passed, N failed` at the end.
"""

import argparse
import base64
import copy
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVOY_YAML = ROOT / "examples/envoy/envoy.yaml"
STEPUP_TOML = ROOT / "examples/envoy/stepup.toml"
ISTIO = ROOT / "examples/istio"
CHALLENGE = (
    'Bearer error="insufficient_user_authentication", '
    'error_description="Refunds above 1,000 need re-verification", '
    'acr_values="urn:stepup:aal2 urn:okta:loa:2fa:any '
    'http://schemas.openid.net/pape/policies/2007/06/multi-factor", max_age="300"'
)

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}")
    return ok


def walk(node, pred, found=None):
    """Every dict in `node` (recursively) for which pred(dict) holds."""
    found = [] if found is None else found
    if isinstance(node, dict):
        if pred(node):
            found.append(node)
        for v in node.values():
            walk(v, pred, found)
    elif isinstance(node, list):
        for v in node:
            walk(v, pred, found)
    return found


def typed(node, suffix):
    return walk(node, lambda d: str(d.get("@type", "")).endswith(suffix))


# ---------------------------------------------------------------------------
# 1. envoy.yaml


def check_envoy_yaml(envoy):
    out = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(ENVOY_YAML), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check(
        "envoy --mode validate examples/envoy/envoy.yaml",
        out.returncode == 0,
        (out.stdout + out.stderr).strip()[-2000:],
    )
    config = yaml.safe_load(ENVOY_YAML.read_text())
    hcm = typed(config, "HttpConnectionManager.v3.HttpConnectionManager") or typed(
        config, "http_connection_manager.v3.HttpConnectionManager"
    )
    filters = [f["name"] for f in hcm[0]["http_filters"]] if hcm else []
    check(
        "jwt_authn, then ext_authz, then the router",
        filters
        == [
            "envoy.filters.http.jwt_authn",
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.router",
        ],
        str(filters),
    )
    authz = typed(config, "ext_authz.v3.ExtAuthz")
    a = authz[0] if authz else {}
    check("ext_authz speaks gRPC v3", a.get("transport_api_version") == "V3")
    check("ext_authz fails closed", a.get("failure_mode_allow") is False)
    check(
        "ext_authz answers 503 on errors",
        a.get("status_on_error", {}).get("code") == "ServiceUnavailable",
    )
    check(
        "ext_authz sends the jwt_authn metadata",
        "envoy.filters.http.jwt_authn" in a.get("metadata_context_namespaces", []),
    )
    check("ext_authz sends no request body", "with_request_body" not in a)
    cluster = a.get("grpc_service", {}).get("envoy_grpc", {}).get("cluster_name")
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    check(
        "the ext_authz cluster exists and speaks HTTP/2",
        cluster in clusters
        and bool(walk(clusters[cluster], lambda d: "http2_protocol_options" in d)),
    )
    jwt = typed(config, "jwt_authn.v3.JwtAuthentication")
    payload_keys = [p.get("payload_in_metadata") for p in jwt[0]["providers"].values()] if jwt else []
    stepup = tomllib.loads(STEPUP_TOML.read_text())
    check(
        "stepup.toml reads the payload jwt_authn writes",
        stepup["ext_authz"]["subject"]["payload"] in payload_keys,
        str(payload_keys),
    )
    h = hcm[0] if hcm else {}
    check(
        "one spelling per path: normalize_path, merge_slashes, escaped slashes refused",
        h.get("normalize_path") is True
        and h.get("merge_slashes") is True
        and h.get("path_with_escaped_slashes_action") == "REJECT_REQUEST",
    )
    requirements = walk(jwt, lambda d: "allow_missing_or_failed" in d)
    check("jwt_authn never lets a failed token through (no allow_missing_or_failed)", not requirements)
    issuers = [p.get("issuer") for p in jwt[0]["providers"].values()] if jwt else []
    check(
        "stepup.toml accepts exactly jwt_authn's issuers",
        sorted(stepup["ext_authz"]["subject"].get("issuers", [])) == sorted(issuers),
        str(issuers),
    )
    extensions = walk(config, lambda d: "stepup_action" in d.get("context_extensions", {}))
    check("a route names its action with `stepup_action`", len(extensions) >= 1)
    return config


# ---------------------------------------------------------------------------
# 2. Istio


def check_istio():
    mesh = yaml.safe_load((ISTIO / "mesh-config.yaml").read_text())
    providers = {
        p["name"]: p for p in mesh["spec"]["meshConfig"]["extensionProviders"]
    }
    p = providers.get("stepup", {}).get("envoyExtAuthzGrpc", {})
    check("istio: the `stepup` provider is ext_authz gRPC", bool(p))
    check("istio: the provider fails closed", p.get("failOpen") is False)
    check("istio: the provider answers 503 on errors", p.get("statusOnError") == "503")
    docs = {d["kind"]: d for d in yaml.safe_load_all((ISTIO / "policies.yaml").read_text()) if d}
    policies = [
        d
        for d in yaml.safe_load_all((ISTIO / "policies.yaml").read_text())
        if d and d["kind"] == "AuthorizationPolicy"
    ]
    custom = [d for d in policies if d["spec"].get("action") == "CUSTOM"]
    check(
        "istio: a CUSTOM AuthorizationPolicy names the provider",
        len(custom) == 1 and custom[0]["spec"]["provider"]["name"] in providers,
    )
    check(
        "istio: a DENY policy refuses requests without a verified token",
        any(
            d["spec"].get("action") == "DENY"
            and walk(d, lambda x: x.get("notRequestPrincipals") == ["*"])
            for d in policies
        ),
    )
    entry = docs.get("ServiceEntry", {}).get("spec", {})
    check(
        "istio: the ServiceEntry gives the provider's host and port",
        p.get("service") in entry.get("hosts", [])
        and any(port["number"] == p.get("port") for port in entry.get("ports", [])),
    )
    stepup = tomllib.loads((ISTIO / "stepup.toml").read_text())
    rules = docs.get("RequestAuthentication", {}).get("spec", {}).get("jwtRules", [])
    check(
        "istio: stepup.toml reads the payload header RequestAuthentication writes",
        any(
            r.get("outputPayloadToHeader") == stepup["ext_authz"]["subject"]["payload_header"]
            for r in rules
        ),
    )
    authn = docs.get("RequestAuthentication", {}).get("spec", {})
    check(
        "istio: the token is verified wherever stepup is asked (same selector)",
        len(custom) == 1 and custom[0]["spec"].get("selector") == authn.get("selector"),
    )
    check(
        "istio: the mesh normalises paths (merges slashes)",
        mesh["spec"]["meshConfig"].get("pathNormalization", {}).get("normalization")
        in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"),
    )
    operations = walk(custom, lambda d: "paths" in d or "notPaths" in d)
    check(
        "istio: the CUSTOM policy covers every path but exact probe paths",
        len(custom) == 1
        and all("paths" not in o for o in operations)
        and all("*" not in p for o in operations for p in o.get("notPaths", [])),
        str(operations),
    )
    subject = stepup["ext_authz"]["subject"]
    check(
        "istio: the payload header is bound to the token Istio keeps (forwardOriginalToken)",
        not subject.get("payload_header_stripped_by_proxy", False)
        and all(r.get("forwardOriginalToken") is True for r in rules),
    )
    check(
        "istio: stepup.toml accepts the RequestAuthentication's issuers",
        sorted(subject.get("issuers", [])) == sorted(r["issuer"] for r in rules),
        str(subject.get("issuers")),
    )
    check(
        "istio: stepup listens on the provider's port",
        stepup["listen"].endswith(f":{p.get('port')}"),
    )


# ---------------------------------------------------------------------------
# 3. End to end


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Idp:
    """An RSA key made for the run, its JWKS, and RS256 tokens (openssl)."""

    def __init__(self, tmp, issuer="https://idp.example.com/", name="idp"):
        self.issuer = issuer
        self.key = tmp / f"{name}-key.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(self.key), "2048"],
            check=True,
            capture_output=True,
        )
        modulus = subprocess.run(
            ["openssl", "rsa", "-in", str(self.key), "-noout", "-modulus"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip().split("=", 1)[1]
        self.jwks = json.dumps(
            {
                "keys": [
                    {
                        "kty": "RSA",
                        "alg": "RS256",
                        "use": "sig",
                        "kid": "run",
                        "n": b64url(bytes.fromhex(modulus)),
                        "e": "AQAB",
                    }
                ]
            }
        )

    def token(self, **claims):
        now = int(time.time())
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "run"}).encode())
        body = {
            "iss": self.issuer,
            "aud": "payments-api",
            "iat": now,
            "exp": now + 600,
            "sub": "user-1",
            "sid": "s-1",
        }
        body.update(claims)
        if "pad" in body:
            # A payload whose base64url form needs padding (its length is
            # not a multiple of 3 bytes).
            while len(json.dumps(body)) % 3 == 0:
                body["pad"] += "x"
        signing_input = f"{header}.{b64url(json.dumps(body).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{b64url(signature)}"


class Upstream(http.server.BaseHTTPRequestHandler):
    """The protected application: echoes the request headers as JSON."""

    def _echo(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _echo

    def log_message(self, *args):
        pass


def test_config(config, idps, ports):
    """envoy.yaml with the JWKS inline (`idps`: provider name -> Idp), no
    IdP cluster, and free ports."""
    config = copy.deepcopy(config)
    for name, provider in typed(config, "jwt_authn.v3.JwtAuthentication")[0]["providers"].items():
        provider.pop("remote_jwks", None)
        provider["local_jwks"] = {"inline_string": idps[name].jwks}
    resources = config["static_resources"]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "idp"]
    for listener in resources["listeners"]:
        port = ports["envoy"] if listener["name"] == "public" else ports[f"envoy_{listener['name']}"]
        listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": port}
    config["admin"]["address"]["socket_address"]["port_value"] = ports["admin"]
    for c in resources["clusters"]:
        addr = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        addr["socket_address"]["port_value"] = ports[c["name"]]
    return config


def request(port, method, path, token=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = dict(headers or {})
    if token:
        h["authorization"] = f"Bearer {token}"
    conn.request(method, path, headers=h)
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def wait_until(what, probe, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if probe():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Stack:
    """A real `stepup serve --config STEPUP_TOML` and a real Envoy from
    `config` (made runnable by test_config) in front of the echoing
    upstream, on free ports; stopped on exit, their logs printed when a
    check failed."""

    def __init__(self, envoy, config, stepup_toml, idps, tmp, name):
        self.envoy, self.config, self.stepup_toml = envoy, config, stepup_toml
        self.idps, self.tmp, self.name = idps, tmp, name
        names = ("envoy", "envoy_internal", "admin", "stepup", "app", "stepup_admin")
        self.ports = {n: free_port() for n in names}
        self.procs, self.logs = [], []

    def path(self, suffix):
        return self.tmp / f"{self.name}-{suffix}"

    def __enter__(self):
        ports = self.ports
        config = test_config(self.config, self.idps, ports)
        self.path("envoy.yaml").write_text(yaml.safe_dump(config))
        self.app = http.server.ThreadingHTTPServer(("127.0.0.1", ports["app"]), Upstream)
        threading.Thread(target=self.app.serve_forever, daemon=True).start()
        stepup_log = open(self.path("stepup.log"), "w")
        envoy_log = open(self.path("envoy.log"), "w")
        self.logs = [stepup_log, envoy_log]
        self.stepup = subprocess.Popen(
            [
                os.environ["STEPUP_BIN"],
                "serve",
                "--config",
                str(self.stepup_toml),
                "--listen",
                f"127.0.0.1:{ports['stepup']}",
                "--admin",
                f"127.0.0.1:{ports['stepup_admin']}",
                "--decision-log",
                str(self.path("decisions.jsonl")),
            ],
            cwd=ROOT,
            stdout=stepup_log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "STEPUP_LOG_LEVEL": "info"},
        )
        self.procs.append(self.stepup)
        wait_until(
            "stepup",
            lambda: socket.create_connection(("127.0.0.1", ports["stepup"]), 1).close() or True,
        )
        self.proxy = subprocess.Popen(
            [
                self.envoy,
                "-c",
                str(self.path("envoy.yaml")),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ],
            stdout=envoy_log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(self.proxy)
        wait_until("envoy", lambda: request(ports["admin"], "GET", "/ready")[0] == 200)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.app.shutdown()
        for log in self.logs:
            log.close()
        if results["failed"] or exc[0] is not None:
            print(f"--- {self.name}: stepup log ---\n" + self.path("stepup.log").read_text()[-3000:])
            print(f"--- {self.name}: envoy log ---\n" + self.path("envoy.log").read_text()[-3000:])
        return False


def end_to_end(envoy, config):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        idp = Idp(tmp)
        with Stack(envoy, config, STEPUP_TOML, {"idp": idp}, tmp, "front") as stack:
            ports, stepup, proxy = stack.ports, stack.stepup, stack.proxy
            walkthrough(ports["envoy"], idp, stepup)
            path_tricks(ports["envoy"], idp)
            _, _, metrics = request(ports["stepup_admin"], "GET", "/metrics")
            checks = re.search(
                r'^stepup_grpc_requests_total\{method="Check",code="OK"\} (\d+)', metrics, re.M
            )
            check(
                "e2e: stepup counts the Check calls",
                checks is not None and int(checks.group(1)) >= 6,
                checks.group(0) if checks else "no Check series",
            )
            # The sidecar is gone: fail closed, with a 503.
            stepup.terminate()
            stepup.wait(timeout=30)
            lines = [
                json.loads(line)
                for line in stack.path("decisions.jsonl").read_text().splitlines()
                if line.strip()
            ]
            check(
                "e2e: Check decisions are in the decision log",
                any(
                    l.get("source") == "check" and l.get("request", {}).get("action") == "payments.refund"
                    for l in lines
                ),
                json.dumps(lines[:2])[:800],
            )
            status, _, _ = request(
                ports["envoy"], "GET", "/v1/orders", idp.token(acr="urn:stepup:aal1", amr=["pwd"])
            )
            check("e2e: stepup down: 503, nothing gets through", status == 503, str(status))
            # Envoy flushes its access log on exit.
            proxy.terminate()
            proxy.wait(timeout=30)
            log = stack.path("envoy.log").read_text()
            check(
                "e2e: envoy's access log carries stepup's outcome, decision id and rules",
                re.search(
                    r'"POST /v1/payments/pay-7/refunds\?amount=2500&currency=EUR" 401 '
                    r'stepup=challenge decision=[0-9a-f-]{36} rules=\["refund-large"\]',
                    log,
                )
                is not None,
                log[-1500:],
            )


def walkthrough(port, idp, stepup):
    now = int(time.time())
    aal1 = idp.token(acr="urn:stepup:aal1", amr=["pwd"], auth_time=now - 3600)
    refund = "/v1/payments/pay-7/refunds?amount=2500&currency=EUR"

    status, _, _ = request(port, "GET", "/healthz")
    check("e2e: /healthz needs no token", status == 200, str(status))
    status, _, _ = request(port, "POST", refund)
    check("e2e: no token: jwt_authn's 401", status == 401, str(status))

    status, headers, body = request(port, "POST", refund, aal1)
    check("e2e: refund of 2,500 from an aal1 session: 401", status == 401, str(status))
    check(
        "e2e: the RFC 9470 challenge, exactly",
        headers.get("www-authenticate") == CHALLENGE,
        headers.get("www-authenticate", "<none>"),
    )
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    check(
        "e2e: the JSON body for clients that read bodies",
        parsed.get("error") == "insufficient_user_authentication"
        and parsed.get("acr_values", "").startswith("urn:stepup:aal2 ")
        and parsed.get("max_age") == 300
        and re.fullmatch(r"[0-9a-f-]{36}", parsed.get("decision_id", "")) is not None,
        body,
    )

    # The client steps up at the IdP (acr_values, max_age) and retries.
    stepped = idp.token(acr="urn:stepup:aal2", amr=["pwd", "otp"], auth_time=now - 30)
    status, _, body = request(
        port,
        "POST",
        refund,
        stepped,
        {"x-stepup-decision-id": "forged", "x-stepup-risk-score": "999", "x-stepup-user": "admin"},
    )
    check("e2e: after step-up the refund goes through", status == 200, f"{status} {body}")
    seen = json.loads(body) if status == 200 else {}
    check(
        "e2e: the upstream gets stepup's decision id and risk score",
        re.fullmatch(r"[0-9a-f-]{36}", seen.get("x-stepup-decision-id", "")) is not None
        and seen.get("x-stepup-risk-score", "").isdigit(),
        json.dumps(seen),
    )
    check(
        "e2e: client-supplied x-stepup-* headers never reach the upstream",
        "x-stepup-user" not in seen
        and seen.get("x-stepup-decision-id") != "forged"
        and seen.get("x-stepup-risk-score") != "999",
        json.dumps(seen),
    )

    status, _, _ = request(port, "GET", "/v1/orders", aal1)
    check("e2e: `stepup_action` from the Envoy route: orders.list allowed", status == 200, str(status))
    status, headers, _ = request(port, "PUT", "/v1/account/email", aal1)
    check(
        "e2e: `stepup_action` account.email.change: 401 challenge",
        status == 401
        and headers.get("www-authenticate", "").startswith(
            'Bearer error="insufficient_user_authentication"'
        ),
        str(status),
    )
    status, _, body = request(port, "GET", "/v1/unknown", aal1)
    check(
        "e2e: an unmapped request: 403 with a decision id only",
        status == 403 and list(json.loads(body or "{}")) == ["decision_id"],
        f"{status} {body}",
    )
    status, _, _ = request(port, "POST", "/v1/payments/pay-7/refunds", aal1)
    check("e2e: a required parameter missing: 403", status == 403, str(status))
    if stepup.poll() is not None:
        check("e2e: stepup still running", False, f"exited with {stepup.returncode}")


def path_tricks(port, idp):
    """Other spellings of protected paths: Envoy normalises them before
    routing and ext_authz see them (`normalize_path`, `merge_slashes`) or
    refuses them (`path_with_escaped_slashes_action`), so none skips stepup."""
    aal1 = idp.token(acr="urn:stepup:aal1", amr=["pwd"], auth_time=int(time.time()) - 3600)
    for path in [
        "//v1/account/email",
        "/v1//account/email",
        "/v1/./account/email",
        "/v1/x/../account/email",
        "/healthz/../v1/account/email",
        "/v1/account/%65mail",
        "/%761/account/email",
        "/v1/account%2Femail",
        "/v1/account%2femail",
        "/v1/account%5Cemail",
        "/v1\\account\\email",
        "/v1/account/email/",
        "/V1/account/email",
        "/v1/account/email;x",
    ]:
        status, _, body = request(port, "PUT", path, aal1)
        check(
            f"e2e: PUT {path} (aal1) is not let through without stepup",
            status in (400, 401, 403),
            f"{status} {body[:200]}",
        )
    for path in ["//v1/orders", "/v1/./orders", "/x/../v1/orders"]:
        status, _, body = request(port, "GET", path, aal1)
        seen = json.loads(body) if status == 200 else {}
        check(
            f"e2e: GET {path} reaches the upstream only with stepup's decision",
            status != 200 or re.fullmatch(r"[0-9a-f-]{36}", seen.get("x-stepup-decision-id", "")),
            f"{status} {body[:200]}",
        )


PARTNER = "https://partner.example.org/"


def mesh_config(config):
    """envoy.yaml as Istio configures Envoy: no payload in the metadata, the
    verified payload forwarded in `x-jwt-payload` (RequestAuthentication's
    `outputPayloadToHeader`), the token kept (`forwardOriginalToken`), a
    missing token let through (`allow_missing`, as RequestAuthentication
    does), and a second identity provider.

    jwt_authn (Envoy 1.40) removes client copies of `x-jwt-payload` where
    it runs, so a second listener, `internal`, is the same without
    jwt_authn: it stands for a proxy that leaves them (older releases, a
    header name jwt_authn does not write). There the client's header
    reaches stepup, which believes it only as the payload of the request's
    bearer token. (Such a token is unverified too: the binding needs
    jwt_authn to check tokens wherever stepup reads the header.)"""
    config = copy.deepcopy(config)
    jwt = typed(config, "jwt_authn.v3.JwtAuthentication")[0]
    idp = jwt["providers"]["idp"]
    idp.pop("payload_in_metadata")
    idp["forward"] = True
    idp["forward_payload_header"] = "x-jwt-payload"
    partner = copy.deepcopy(idp)
    partner["issuer"] = PARTNER
    # The partner's payload header is padded: stepup compares it with the
    # token's unpadded segment all the same.
    partner["pad_forward_payload_header"] = True
    jwt["providers"]["partner"] = partner
    jwt["rules"] = [
        {"match": {"path": "/healthz"}},
        {
            "match": {"prefix": "/"},
            "requires": {
                "requires_any": {
                    "requirements": [
                        {"provider_name": "idp"},
                        {"provider_name": "partner"},
                        {"allow_missing": {}},
                    ]
                }
            },
        },
    ]
    listeners = config["static_resources"]["listeners"]
    internal = copy.deepcopy(listeners[0])
    internal["name"] = "internal"
    hcm = internal["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["stat_prefix"] = "internal"
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.jwt_authn"]
    listeners.append(internal)
    return config


def mesh_stepup_toml(tmp, unmapped):
    """examples/envoy/stepup.toml reading the payload header, with both
    issuers and the given `unmapped`."""
    text = STEPUP_TOML.read_text()
    for old, new in [
        ('unmapped = "deny"', f'unmapped = "{unmapped}"'),
        ('payload = "jwt_payload"', 'payload_header = "x-jwt-payload"'),
        (
            'issuers = ["https://idp.example.com/"]',
            f'issuers = ["https://idp.example.com/", "{PARTNER}"]',
        ),
    ]:
        if old not in text:
            raise RuntimeError(f"examples/envoy/stepup.toml no longer has `{old}`")
        text = text.replace(old, new)
    path = tmp / f"mesh-{unmapped}-stepup.toml"
    path.write_text(text)
    return path


def mesh_end_to_end(envoy, config):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        idp, partner = Idp(tmp), Idp(tmp, PARTNER, "partner")
        idps = {"idp": idp, "partner": partner}
        mesh = mesh_config(config)
        with Stack(envoy, mesh, mesh_stepup_toml(tmp, "deny"), idps, tmp, "mesh") as stack:
            forged_identities(stack.ports["envoy"], stack.ports["envoy_internal"], idp)
            several_issuers(stack.ports["envoy"], idp, partner)
        # `unmapped = "allow"`: what cannot be mapped passes, but a forged
        # identity does not, and neither do the client's x-stepup-* headers.
        with Stack(envoy, mesh, mesh_stepup_toml(tmp, "allow"), idps, tmp, "open") as stack:
            open_fallback(stack.ports["envoy"], stack.ports["envoy_internal"], idp)


def forged(now, **claims):
    """A payload an attacker writes: the victim, at aal3, just now."""
    body = {
        "iss": "https://idp.example.com/",
        "sub": "victim",
        "sid": "s-v",
        "acr": "urn:stepup:aal3",
        "amr": ["hwk"],
        "auth_time": now,
    }
    body.update(claims)
    return b64url(json.dumps(body).encode())


def forged_identities(port, internal, idp):
    now = int(time.time())
    victim = idp.token(sub="victim", sid="s-v", acr="urn:stepup:aal1", amr=["pwd"], auth_time=now - 3600)
    attacker = idp.token(sub="attacker", sid="s-a", acr="urn:stepup:aal1", amr=["pwd"], auth_time=now - 3600)
    fake = forged(now)

    # The victim from their own device: the subject has a history.
    status, _, body = request(port, "GET", "/v1/orders", victim, {"x-device-id": "d-victim"})
    check("mesh: the victim's own request, payload header bound to the token: 200", status == 200, f"{status} {body[:300]}")

    # No token and a payload naming the victim at aal3, or the attacker's
    # own token next to it. Where jwt_authn runs it removes the client's
    # header first; on the listener without it the header reaches stepup,
    # which refuses it (not the payload of the request's token). Never
    # allowed either way.
    forgeries = [
        (where, p, method, path, token, what)
        for where, p in [("front", port), ("internal", internal)]
        for method, path in [("GET", "/v1/orders"), ("PUT", "/v1/account/email")]
        for token, what in [(None, "no token"), (attacker, "the attacker's token")]
        if not (where == "front" and token)
    ]
    for where, p, method, path, token, what in forgeries:
        status, _, body = request(p, method, path, token, {"x-jwt-payload": fake, "x-device-id": "d-attacker"})
        check(
            f"mesh ({where}): {what} + a forged x-jwt-payload naming the victim: {method} {path} refused (403)",
            status == 403,
            f"{status} {body[:300]}",
        )
    # Where jwt_authn runs, the attacker's own token replaces the forged
    # payload with its own: the attacker is themselves, and an aal1
    # session is challenged.
    status, _, body = request(port, "PUT", "/v1/account/email", attacker, {"x-jwt-payload": fake, "x-device-id": "d-attacker"})
    check(
        "mesh: the attacker's token + a forged x-jwt-payload: PUT /v1/account/email is the attacker's, challenged (401)",
        status == 401,
        f"{status} {body[:300]}",
    )
    status, _, body = request(port, "GET", "/v1/orders", attacker, {"x-jwt-payload": fake, "x-device-id": "d-attacker"})
    seen = json.loads(body) if status == 200 else {}
    # jwt_authn forwards the token's payload segment exactly (unpadded, as
    # in the token, unless `pad_forward_payload_header`).
    check(
        "mesh: ...and the upstream sees the attacker's verified payload, not the forged one",
        status == 200 and seen.get("x-jwt-payload") == attacker.split(".")[1],
        f"{status} {body[:300]}",
    )
    # A token the attacker made (not signed by the IdP): jwt_authn refuses it.
    parts = victim.split(".")
    status, _, _ = request(port, "PUT", "/v1/account/email", f"{parts[0]}.{fake}.{parts[2]}", {"x-jwt-payload": fake})
    check("mesh: a forged token with the forged payload: refused by jwt_authn", status in (401, 403), str(status))

    # The attacker's device did not become known for the victim: a transfer
    # from it still asks to confirm the device.
    status, headers, body = request(port, "POST", "/v1/transfers?amount=10", victim, {"x-device-id": "d-attacker"})
    check(
        "mesh: the attacker's device is not known for the victim (transfer: confirm this device)",
        status == 401 and "Confirm this device" in headers.get("www-authenticate", ""),
        f"{status} {headers.get('www-authenticate', '')} {body[:200]}",
    )


def several_issuers(port, idp, partner):
    now = int(time.time())

    def alice(provider, acr):
        # `pad`: a payload whose padded header differs from the token's
        # segment.
        return provider.token(
            sub="alice", sid=f"s-{provider.issuer}", acr=acr, amr=["pwd", "otp"], auth_time=now - 60, pad="x"
        )

    def send(token, method, path, device):
        return request(port, method, path, token, {"x-device-id": device})

    # The IdP's alice confirms d-1 (an allowed aal2 decision); the
    # partner's alice (the same `sub`) uses d-2.
    status, _, _ = send(alice(idp, "urn:stepup:aal2"), "GET", "/v1/orders", "d-1")
    check("mesh: the IdP's alice, aal2, on d-1: 200", status == 200, str(status))
    token = alice(partner, "urn:stepup:aal1")
    status, _, body = send(token, "GET", "/v1/orders", "d-2")
    header = json.loads(body).get("x-jwt-payload", "") if status == 200 else ""
    check(
        "mesh: the partner's alice, aal1, on d-2: 200 (the padded payload header believed)",
        status == 200 and header.endswith("=") and header.rstrip("=") == token.split(".")[1],
        f"{status} {header}",
    )
    transfer = "/v1/transfers?amount=10"
    status, headers, _ = send(alice(partner, "urn:stepup:aal1"), "POST", transfer, "d-1")
    check(
        "mesh: two issuers, one `sub`: two histories (d-1 is not known to the partner's alice)",
        status == 401 and "Confirm this device" in headers.get("www-authenticate", ""),
        f"{status} {headers.get('www-authenticate', '')}",
    )
    status, _, body = send(alice(idp, "urn:stepup:aal1"), "POST", transfer, "d-1")
    check("mesh: ...and is known to the IdP's alice: 200", status == 200, f"{status} {body[:300]}")


def open_fallback(port, internal, idp):
    now = int(time.time())
    aal1 = idp.token(acr="urn:stepup:aal1", amr=["pwd"], auth_time=now - 3600)
    spoofed = {"x-stepup-risk-score": "0", "x-stepup-decision-id": "forged", "x-stepup-user": "admin"}
    for token, what in [(None, "no token"), (aal1, "a token")]:
        status, _, body = request(port, "GET", "/v1/unknown", token, spoofed)
        seen = json.loads(body) if status == 200 else {}
        check(
            f"open: unmapped ({what}) and let through: no client-sent x-stepup-* header reaches the upstream",
            status == 200
            and "x-stepup-risk-score" not in seen
            and "x-stepup-user" not in seen
            and re.fullmatch(r"[0-9a-f-]{36}", seen.get("x-stepup-decision-id", "")) is not None,
            f"{status} {body[:400]}",
        )
    # On the listener without jwt_authn, a forged identity reaches stepup
    # and is refused although unmappable requests pass.
    for token, what in [(None, "no token"), (aal1, "another subject's token")]:
        status, _, body = request(internal, "PUT", "/v1/account/email", token, {"x-jwt-payload": forged(now)})
        check(
            f"open (internal): {what} + a forged x-jwt-payload: refused all the same (403)",
            status == 403,
            f"{status} {body[:300]}",
        )
    # The same request without the header: no identity, the fallback.
    status, _, _ = request(internal, "PUT", "/v1/account/email")
    check("open (internal): no token, no payload: the fallback (200)", status == 200, str(status))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoy", default="envoy")
    args = parser.parse_args()
    # check.sh builds the binary and names it (wherever CARGO_TARGET_DIR
    # put it): never guess a path under target/, which may hold a stale one.
    binary = os.environ.get("STEPUP_BIN", "")
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print(f"FAIL setup: STEPUP_BIN={binary!r} is not an executable stepup; run examples/envoy/check.sh", file=sys.stderr)
        return 2
    config = check_envoy_yaml(args.envoy)
    check_istio()
    for run in (end_to_end, mesh_end_to_end):
        try:
            run(args.envoy, config)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            check(f"{run.__name__}: setup", False, str(e))
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
