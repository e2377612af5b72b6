#!/usr/bin/env python3
"""Checks of the Envoy and Istio examples, run by examples/envoy/check.sh.

1. `envoy --mode validate` on examples/envoy/envoy.yaml, plus the settings
   the README promises (jwt_authn before ext_authz, gRPC v3, fail closed,
   503 on error, the jwt_authn metadata namespace, no request body, a
   `stepup_action` per-route extension).
2. The Istio manifests: kinds and the fields that must agree with each other
   and with examples/istio/stepup.toml.
3. The README walkthrough end to end: a real Envoy built from envoy.yaml
   (the JWKS inlined, ports moved to free ones) in front of a stub upstream,
   asking a real `stepup serve --config examples/envoy/stepup.toml`; tokens
   are RS256, signed with a key made for the run.

Prints one line per check and `N passed, N failed` at the end.
"""

import argparse
import base64
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

    def __init__(self, tmp):
        self.key = tmp / "idp-key.pem"
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
            "iss": "https://idp.example.com/",
            "aud": "payments-api",
            "iat": now,
            "exp": now + 600,
            "sub": "user-1",
            "sid": "s-1",
        }
        body.update(claims)
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


def test_config(config, idp, ports):
    """envoy.yaml with the JWKS inline, no IdP cluster, and free ports."""
    for provider in typed(config, "jwt_authn.v3.JwtAuthentication")[0]["providers"].values():
        provider.pop("remote_jwks")
        provider["local_jwks"] = {"inline_string": idp.jwks}
    resources = config["static_resources"]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "idp"]
    resources["listeners"][0]["address"]["socket_address"] = {
        "address": "127.0.0.1",
        "port_value": ports["envoy"],
    }
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


def end_to_end(envoy, config):
    stepup_bin = os.environ.get("STEPUP_BIN", str(ROOT / "target/debug/stepup"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        idp = Idp(tmp)
        ports = {n: free_port() for n in ("envoy", "admin", "stepup", "app", "stepup_admin")}
        config = test_config(config, idp, ports)
        (tmp / "envoy.yaml").write_text(yaml.safe_dump(config))

        app = http.server.ThreadingHTTPServer(("127.0.0.1", ports["app"]), Upstream)
        threading.Thread(target=app.serve_forever, daemon=True).start()

        procs = []
        stepup_log = open(tmp / "stepup.log", "w")
        envoy_log = open(tmp / "envoy.log", "w")
        try:
            stepup = subprocess.Popen(
                [
                    stepup_bin,
                    "serve",
                    "--config",
                    str(STEPUP_TOML),
                    "--listen",
                    f"127.0.0.1:{ports['stepup']}",
                    "--admin",
                    f"127.0.0.1:{ports['stepup_admin']}",
                    "--decision-log",
                    str(tmp / "decisions.jsonl"),
                ],
                cwd=ROOT,
                stdout=stepup_log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "STEPUP_LOG_LEVEL": "info"},
            )
            procs.append(stepup)
            wait_until(
                "stepup",
                lambda: socket.create_connection(("127.0.0.1", ports["stepup"]), 1).close() or True,
            )
            proxy = subprocess.Popen(
                [
                    envoy,
                    "-c",
                    str(tmp / "envoy.yaml"),
                    "--concurrency",
                    "1",
                    "--disable-hot-restart",
                    "-l",
                    "warning",
                ],
                stdout=envoy_log,
                stderr=subprocess.STDOUT,
            )
            procs.append(proxy)
            wait_until(
                "envoy",
                lambda: request(ports["admin"], "GET", "/ready")[0] == 200,
            )
            walkthrough(ports["envoy"], idp, stepup)
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
                for line in (tmp / "decisions.jsonl").read_text().splitlines()
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
            log = (tmp / "envoy.log").read_text()
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
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
            app.shutdown()
            stepup_log.close()
            envoy_log.close()
            if results["failed"]:
                print("--- stepup log ---\n" + (tmp / "stepup.log").read_text()[-3000:])
                print("--- envoy log ---\n" + (tmp / "envoy.log").read_text()[-3000:])


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
        {"x-stepup-decision-id": "forged", "x-stepup-user": "admin"},
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
        "x-stepup-user" not in seen and seen.get("x-stepup-decision-id") != "forged",
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoy", default="envoy")
    args = parser.parse_args()
    config = check_envoy_yaml(args.envoy)
    check_istio()
    try:
        end_to_end(args.envoy, config)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        check("e2e: setup", False, str(e))
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
