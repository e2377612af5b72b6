#!/usr/bin/env python3
"""Validate the stepup Helm chart, its example application chart and the Dockerfile.

Run through helm/check.sh, which provides the pinned tools. For every values file
in helm/stepup/ci/ it lints the chart strictly with Helm v4's own SDK, validates
the values against values.schema.json, renders the chart, validates every
manifest with `kubernetes-validate --strict` (the ServiceMonitor, a CRD, against
helm/schemas/servicemonitor-v1.schema.json), and asserts what matters in the
output. The sidecar values are also rendered through helm/examples/payments-app.
Chart.yaml's metadata is checked against Helm's and Artifact Hub's rules. Each
rendered policy set is checked with `stepup check` and served by `stepup serve`
with the rendered args (the binary helm/check.sh built, STEPUP_BIN), which must
answer exactly what the rendered probes ask and reload a kubelet-style
ConfigMap update live (and reject a broken one without failing the probes); a
sidecar whose policies do not load must never pass its startup probe. Then
come negative tests (values the schema or the templates must reject), a
mutation self-test (a deliberately broken copy of the chart must fail these
checks), and the Dockerfile (hadolint, BuildKit's parser, and the contract).

Output: one PASS/FAIL line per check, then a summary line; exit 1 on any
failure. Nothing is skipped unless asked (--no-self-test): a missing binary or
tool is a failure.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerfile
import grpc
import helm_python as helm
import jsonschema
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

HELM_DIR = Path(__file__).resolve().parent
ROOT = HELM_DIR.parent
CHART = HELM_DIR / "stepup"
EXAMPLE = HELM_DIR / "examples" / "payments-app"
SERVICEMONITOR_SCHEMA = HELM_DIR / "schemas" / "servicemonitor-v1.schema.json"
CERTIFICATE_SCHEMA = HELM_DIR / "schemas" / "certificate-v1-subset.schema.json"

RELEASE = "ci"
NAMESPACE = "stepup-ci"
# The chart's floor (Chart.yaml kubeVersion) and the newest schemas
# kubernetes-validate ships. A values file can narrow this with a first-line
# comment `# check: kube-versions=1.31.0,1.37.0`.
KUBE_VERSIONS = ["1.29.0", "1.37.0"]

GRPC_PORT = 7171
UID = 65532
READY_SERVICE = "stepup.v1.DecisionService"
# Wording for features stepup did not have yet (written split, so that a grep
# of the repository for it finds only real leftovers).
STALE_WORDING = re.compile(r"\bplan" r"ned\b|\bnot " r"yet\b|not in every " r"release|once " r"stepup|until " r"then", re.I)


# --------------------------------------------------------------------------- report


@dataclass
class Report:
    """Collects results; prints them unless quiet (the mutation self-test)."""

    quiet: bool = False
    # Run the stepup binary (`check`, `serve`) when one is built; the
    # mutation self-test turns this off: its mutants break the chart, not the
    # binary's view of it.
    use_binary: bool = True
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    def ok(self, name: str) -> None:
        self.passed += 1
        if not self.quiet:
            print(f"PASS {name}", flush=True)

    def fail(self, name: str, detail: str) -> None:
        self.failed += 1
        self.failures.append(f"{name}: {detail}")
        if not self.quiet:
            detail = detail.strip().replace("\n", "\n     ")
            print(f"FAIL {name}: {detail}", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        if not self.quiet:
            print(f"SKIP {name}: {why}", flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def check(self, name: str, cond: bool, detail: str = "") -> bool:
        if cond:
            self.ok(name)
        else:
            self.fail(name, detail or "assertion failed")
        return cond

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run fn; an AssertionError or HelmError is this check's FAIL."""
        try:
            result = fn()
        except (AssertionError, helm.HelmError, ValueError, KeyError, TypeError) as exc:
            self.fail(name, f"{type(exc).__name__}: {exc}")
            return None
        self.ok(name)
        return result


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def dig(obj: Any, *path: str | int, default: Any = None) -> Any:
    for key in path:
        if isinstance(obj, dict) and isinstance(key, str):
            obj = obj.get(key, default)
        elif isinstance(obj, list) and isinstance(key, int) and 0 <= key < len(obj):
            obj = obj[key]
        else:
            return default
    return obj


# --------------------------------------------------------------------------- rendering


@dataclass
class Rendered:
    """One render: manifests by template path, parsed documents, NOTES text."""

    files: dict[str, str]
    docs: list[dict[str, Any]]
    notes: str

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        expect(len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
        return found[0]


def render(chart_dir: Path, values: dict[str, Any]) -> Rendered:
    with helm.Chart.load(chart_dir) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            if path.count("/charts/") == 0:
                notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__source", path)
                docs.append(doc)
    return Rendered(files, docs, notes)


def clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__source"}


def load_values_file(path: Path) -> tuple[dict[str, Any], list[str]]:
    text = path.read_text()
    values = helm.values_from_yaml(text) or {}
    versions = list(KUBE_VERSIONS)
    first = text.splitlines()[0] if text else ""
    match = re.match(r"#\s*check:\s*kube-versions=([0-9.,]+)", first)
    if match:
        versions = match.group(1).split(",")
    return values, versions


# --------------------------------------------------------------------------- validation


def lint(report: Report, label: str, chart_dir: Path, values: dict[str, Any], versions: list[str]) -> None:
    for version in versions:
        name = f"{label}: helm lint --strict (kube {version})"
        result = helm.lint(
            chart_dir, values, strict=True, with_subcharts=True, kube_version=f"v{version}"
        )
        # Severity: 1 info, 2 warning, 3 error. Strict: warnings fail too.
        bad = [m for m in result["messages"] if m["severity"] >= 2]
        if bad or result["errors"]:
            detail = "\n".join(f"[{m['severity']}] {m['path']}: {m['error'].strip()}" for m in bad)
            report.fail(name, detail or "\n".join(result["errors"]))
        else:
            report.ok(name)


def kube_validate(report: Report, label: str, rendered: Rendered, versions: list[str], tmp: Path) -> None:
    """kubernetes-validate --strict on every built-in kind; CRDs by their own schema."""
    out_dir = Path(tempfile.mkdtemp(prefix="manifests-", dir=tmp))
    builtin: list[Path] = []
    custom: list[dict[str, Any]] = []
    for i, doc in enumerate(rendered.docs):
        if doc["apiVersion"].startswith(("monitoring.coreos.com/", "cert-manager.io/")):
            custom.append(doc)
            continue
        path = out_dir / f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(clean(doc), sort_keys=False))
        builtin.append(path)
    tool = Path(sys.executable).with_name("kubernetes-validate")
    for version in versions:
        name = f"{label}: kubernetes-validate --strict, {len(builtin)} manifests (kube {version})"
        proc = subprocess.run(
            [str(tool), "--strict", "--quiet", "-k", version, *map(str, builtin)],
            capture_output=True,
            text=True,
            check=False,
        )
        output = (proc.stdout + proc.stderr).strip()
        # --quiet prints only problems; a WARN means no schema for a kind we
        # expected to be built in, which is a failure here too.
        if proc.returncode != 0 or output:
            report.fail(name, output or f"exit {proc.returncode}")
        else:
            report.ok(name)
    schemas = {"ServiceMonitor": SERVICEMONITOR_SCHEMA, "Certificate": CERTIFICATE_SCHEMA}
    for doc in custom:
        schema_file = schemas.get(doc["kind"])
        name = f"{label}: {doc['kind']} {doc['metadata']['name']} against {schema_file.name if schema_file else '(none)'}"
        if schema_file is None:
            report.fail(name, f"no schema for custom kind {doc['apiVersion']}/{doc['kind']}")
            continue
        validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text()))
        errors = sorted(validator.iter_errors(clean(doc)), key=lambda e: list(e.path))
        if errors:
            report.fail(name, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors))
        else:
            report.ok(name)


# --------------------------------------------------------------------------- assertions


def pod_specs(rendered: Rendered) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in rendered.of_kind("Deployment"):
        yield doc, doc["spec"]["template"]


def find_stepup(pod_template: dict[str, Any]) -> tuple[dict[str, Any], str]:
    spec = pod_template["spec"]
    for where in ("containers", "initContainers"):
        for container in spec.get(where) or []:
            if container["name"] == "stepup":
                return container, where
    raise AssertionError("no container named stepup in the pod")


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def fullname(values: dict[str, Any]) -> str:
    if values.get("fullnameOverride"):
        return values["fullnameOverride"]
    name = values.get("nameOverride") or "stepup"
    return RELEASE if name in RELEASE else f"{RELEASE}-{name}"


def expected_image(values: dict[str, Any], app_version: str) -> str:
    image = values["image"]
    if image.get("digest"):
        return f"{image['repository']}@{image['digest']}"
    return f"{image['repository']}:{image.get('tag') or app_version}"


def assert_hardened(container: dict[str, Any]) -> None:
    sc = container.get("securityContext") or {}
    expect(sc.get("runAsNonRoot") is True, "securityContext.runAsNonRoot must be true")
    expect(sc.get("runAsUser") == UID, f"securityContext.runAsUser must be {UID}, got {sc.get('runAsUser')}")
    expect(sc.get("allowPrivilegeEscalation") is False, "securityContext.allowPrivilegeEscalation must be false")
    expect(sc.get("privileged") in (None, False), "securityContext.privileged must be false")
    expect(sc.get("readOnlyRootFilesystem") is True, "securityContext.readOnlyRootFilesystem must be true")
    expect(dig(sc, "capabilities", "drop") == ["ALL"], f"capabilities.drop must be [ALL], got {dig(sc, 'capabilities', 'drop')}")
    expect(not dig(sc, "capabilities", "add"), "no capabilities may be added")
    expect(dig(sc, "seccompProfile", "type") == "RuntimeDefault", "seccompProfile.type must be RuntimeDefault")


def assert_resources(container: dict[str, Any]) -> None:
    res = container.get("resources") or {}
    for key in ("cpu", "memory"):
        expect(dig(res, "requests", key) not in (None, ""), f"resources.requests.{key} must be set")
    expect(dig(res, "limits", "memory") not in (None, ""), "resources.limits.memory must be set")


def assert_probes(container: dict[str, Any], kind: str, grpc_port: int) -> None:
    """grpc: native gRPC probes on the gRPC port, liveness asking for the
    server (""), startup and readiness for the decision service. http:
    httpGet /livez (liveness) and /readyz (startup, readiness) on the admin
    port. Neither may look at `stepup.policy` (reload health)."""
    paths = {"startupProbe": "/readyz", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        spec = container.get(probe)
        expect(spec is not None, f"{probe} missing")
        if kind == "grpc":
            expect(set(spec) & {"httpGet", "exec", "tcpSocket"} == set(), f"{probe} must be a grpc probe, got {sorted(spec)}")
            expect(dig(spec, "grpc", "port") == grpc_port, f"{probe}.grpc.port must be {grpc_port}")
        else:
            expect(set(spec) & {"grpc", "exec", "tcpSocket"} == set(), f"{probe} must be an httpGet probe, got {sorted(spec)}")
            expect(dig(spec, "httpGet", "path") == path, f"{probe}.httpGet.path must be {path}, got {dig(spec, 'httpGet', 'path')!r}")
            expect(dig(spec, "httpGet", "port") == "admin", f"{probe}.httpGet.port must be the admin port, got {dig(spec, 'httpGet', 'port')!r}")
    if kind == "grpc":
        expect(dig(container, "livenessProbe", "grpc", "service") in (None, ""), "liveness asks for the server (service \"\")")
        for probe in ("startupProbe", "readinessProbe"):
            got = dig(container, probe, "grpc", "service")
            expect(got == READY_SERVICE, f"{probe}.grpc.service must be {READY_SERVICE}, got {got!r}")


LOOPBACK_PREFIXES = ("unix:", "127.", "localhost:", "[::1]:")


def probe_type(values: dict[str, Any]) -> str:
    """What probes.type means for this release: explicit `grpc` or `http`;
    `auto` is `grpc` where the kubelet, which probes the pod IP in
    plaintext, reaches the gRPC port (standalone, or a sidecar on a
    non-loopback TCP address, without TLS), else `http` (the admin port)."""
    kind = values["probes"]["type"]
    if kind != "auto":
        return kind
    if tls_secret(values):
        return "http"
    if values["mode"] == "sidecar" and sidecar_listen(values).startswith(LOOPBACK_PREFIXES):
        return "http"
    return "grpc"


def admin_address(values: dict[str, Any], probes: bool) -> str:
    """What `--admin` must be: off; 0.0.0.0:<port> when metrics are scraped or
    the kubelet probes it over HTTP; else loopback (never reachable from
    outside the pod)."""
    admin = values["admin"]
    if not admin["enabled"]:
        return "off"
    exposed = values["metrics"]["enabled"] or (probes and probe_type(values) == "http")
    return f"{'0.0.0.0' if exposed else '127.0.0.1'}:{admin['port']}"


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def tls_secret(values: dict[str, Any]) -> str:
    """The Secret the gRPC listener's certificate comes from ("" for
    plaintext): tls.secretName, or `<fullname>-tls` for cert-manager."""
    tls = values["tls"]
    if tls["secretName"]:
        return tls["secretName"]
    if tls["certManager"]["issuerRef"] and values["mode"] == "standalone":
        return f"{fullname(values)}-tls"[:63].rstrip("-")
    return ""


def sidecar_listen(values: dict[str, Any]) -> str:
    socket_ = values["sidecar"]["unixSocket"]
    if socket_["enabled"]:
        return f"unix:{socket_['dir'].rstrip('/')}/{socket_['name']}"
    return values["sidecar"]["listen"]


CLIENT_CA_DIR = "/etc/stepup/client-ca"


def assert_transport(container: dict[str, Any], values: dict[str, Any], listen: str) -> None:
    """TLS flags and mounts iff TLS is on (the client CA iff clientCA), and
    --listen-mode and the socket's emptyDir mount iff a Unix socket."""
    args = container.get("args") or []
    secret = tls_secret(values)
    mount = values["tls"]["mountPath"].rstrip("/")
    for name, file in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key")):
        want = f"{mount}/{file}" if secret else None
        expect(flag(args, name) == want, f"{name} {want} expected (TLS {'on' if secret else 'off'}), got {args}")
    ca = values["tls"]["clientCA"]
    want_ca = None
    if secret and ca["enabled"]:
        own = ca["secretName"] or ca["configMapName"]
        want_ca = f"{CLIENT_CA_DIR}/{ca['key']}" if own else f"{mount}/{ca['key']}"
    expect(flag(args, "--tls-client-ca") == want_ca, f"--tls-client-ca {want_ca} expected, got {args}")
    mounts = {m["name"]: m for m in container.get("volumeMounts") or []}
    if secret:
        got = mounts.get("stepup-tls") or {}
        expect(got.get("mountPath") == values["tls"]["mountPath"] and got.get("readOnly") is True and "subPath" not in got,
               f"the TLS Secret mounted read-only at {values['tls']['mountPath']} without subPath (renewals must reach the pod), got {got}")
    else:
        expect("stepup-tls" not in mounts, "no TLS mount without TLS")
    unix = listen.startswith("unix:")
    want_mode = values["sidecar"]["unixSocket"]["mode"] if unix else None
    expect(flag(args, "--listen-mode") == want_mode, f"--listen-mode {want_mode} expected, got {args}")
    if unix:
        expect(dig(mounts, "stepup-socket", "mountPath") == values["sidecar"]["unixSocket"]["dir"],
               f"the socket's emptyDir mounted at {values['sidecar']['unixSocket']['dir']}, got {mounts}")


def assert_pod_transport(pod: dict[str, Any], values: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    secret = tls_secret(values)
    expect(dig(volumes, "stepup-tls", "secret", "secretName") == (secret or None),
           f"volume stepup-tls from Secret {secret!r} iff TLS, got {volumes.get('stepup-tls')}")
    unix = values["mode"] == "sidecar" and values["sidecar"]["unixSocket"]["enabled"]
    expect(("emptyDir" in (volumes.get("stepup-socket") or {})) == unix, "an emptyDir stepup-socket iff sidecar.unixSocket")


def assert_container(
    container: dict[str, Any], values: dict[str, Any], app_version: str, listen: str, probes: bool
) -> None:
    expect(container["image"] == expected_image(values, app_version),
           f"image {container['image']!r} != {expected_image(values, app_version)!r}")
    args = container.get("args") or []
    mount_path = values["policies"]["mountPath"]
    expect(args[:5] == ["serve", "--policies", mount_path, "--listen", listen],
           f"args must start with serve --policies {mount_path} --listen {listen}, got {args}")
    expect(("--config" in args) == bool(values["config"]), "--config passed iff config is set")
    admin = admin_address(values, probes)
    expect(args.count("--admin") == 1 and flag(args, "--admin") == admin, f"--admin {admin} expected, got {args}")
    expect(flag(args, "--decision-log") == (values["decisionLog"] or None), f"--decision-log {values['decisionLog']!r} iff decisionLog is set, got {args}")
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    expect(env.get("STEPUP_LOG_LEVEL") == values["log"]["level"], "STEPUP_LOG_LEVEL from log.level")
    expect(env.get("STEPUP_LOG_FORMAT") == values["log"]["format"], "STEPUP_LOG_FORMAT from log.format")
    size = values["cache"].get("size")
    expect(env.get("STEPUP_CACHE_SIZE") == (None if size is None else str(size)), "STEPUP_CACHE_SIZE from cache.size")
    expect(env.get("STEPUP_CACHE_TTL") == (values["cache"].get("ttl") or None), "STEPUP_CACHE_TTL from cache.ttl")
    limits = values.get("limits") or {}
    in_flight = limits.get("maxInFlight")
    expect(env.get("STEPUP_MAX_IN_FLIGHT") == (None if in_flight is None else str(in_flight)), "STEPUP_MAX_IN_FLIGHT from limits.maxInFlight")
    expect(env.get("STEPUP_MAX_TIME_SKEW") == (limits.get("maxTimeSkew") or None), "STEPUP_MAX_TIME_SKEW from limits.maxTimeSkew")
    workers = values.get("workerThreads")
    expect(env.get("STEPUP_WORKER_THREADS") == (None if workers is None else str(workers)), "STEPUP_WORKER_THREADS from workerThreads")
    assert_hardened(container)
    assert_resources(container)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
    exposed = admin.startswith("0.0.0.0:")
    expect(("admin" in ports) == exposed, f"container port admin iff the admin listener is on the pod IP ({admin}), got {ports}")
    if exposed:
        expect(ports["admin"] == values["admin"]["port"], f"container port admin must be {values['admin']['port']}")
    assert_transport(container, values, listen)
    listen_port = 0 if listen.startswith("unix:") else int(listen.rsplit(":", 1)[1])
    if probes:
        assert_probes(container, probe_type(values), listen_port)
    else:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            expect(probe not in container, f"{probe} without sidecar.probes")
    if listen.startswith(LOOPBACK_PREFIXES):
        expect("grpc" not in ports, "no grpc port for a loopback or Unix socket listener")
    else:
        expect(ports.get("grpc") == listen_port, f"container port grpc must be {listen_port}")


def assert_policy_mount(rendered: Rendered, pod: dict[str, Any], container: dict[str, Any], values: dict[str, Any]) -> None:
    mount_path = values["policies"]["mountPath"]
    mounts = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == mount_path]
    expect(len(mounts) == 1, f"one volumeMount at {mount_path}, found {len(mounts)}")
    expect(mounts[0].get("readOnly") is True, "the policy mount must be readOnly")
    expect("subPath" not in mounts[0], "no subPath: kubelet does not update subPath mounts")
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    volume = volumes.get(mounts[0]["name"])
    expect(volume is not None, f"pod has no volume {mounts[0]['name']}")
    cm_name = values["policies"]["existingConfigMap"] or f"{fullname(values)}-policies"
    expect(dig(volume, "configMap", "name") == cm_name, f"policy volume must be ConfigMap {cm_name}, got {volume}")
    if values["policies"]["existingConfigMap"]:
        expect(not any(d["metadata"]["name"].endswith("-policies") for d in rendered.of_kind("ConfigMap")),
               "no policy ConfigMap is rendered with existingConfigMap")
    else:
        cm = rendered.one("ConfigMap", cm_name)
        data = cm.get("data") or {}
        expect(data, "the policy ConfigMap has no files")
        if values["policies"]["inline"]:
            expect(set(data) == set(values["policies"]["inline"]), "policy ConfigMap keys == policies.inline keys")
        levels = 0
        for file, text in data.items():
            expect(re.fullmatch(r"[-._a-zA-Z0-9]+\.ya?ml", file) is not None, f"policy file name {file!r}")
            for doc in yaml.safe_load_all(text):
                expect(isinstance(doc, dict) and doc.get("apiVersion") == "stepup/v1", f"{file}: apiVersion stepup/v1")
                levels += doc.get("kind") == "Levels"
        expect(levels == 1, f"exactly one Levels document in the policy set, found {levels}")
    if values["config"]:
        config_mounts = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == "/etc/stepup/config"]
        expect(len(config_mounts) == 1 and config_mounts[0].get("readOnly") is True, "config mounted read-only at /etc/stepup/config")
        config_cm = rendered.one("ConfigMap", f"{fullname(values)}-config")
        expect(dig(config_cm, "data", "config.toml") == values["config"], "config.toml holds the config value")


def assert_checksums(annotations: dict[str, str], values: dict[str, Any]) -> None:
    """The config file is read at startup only: its checksum always rolls the
    pods. Policies reload live: their checksum only with rolloutOnChange."""
    config = values["config"]
    want = hashlib.sha256(config.encode()).hexdigest() if config else None
    expect(annotations.get("checksum/stepup-config") == want,
           f"checksum/stepup-config must be sha256(config) iff config is set, got {annotations.get('checksum/stepup-config')!r}")
    policies = bool(values["policies"]["rolloutOnChange"]) and not values["policies"]["existingConfigMap"]
    expect(("checksum/stepup-policies" in annotations) == policies,
           "checksum/stepup-policies iff policies.rolloutOnChange (and the chart renders the policies); they otherwise reload live")
    scrape = {"prometheus.io/scrape": "true", "prometheus.io/port": str(values["admin"]["port"]), "prometheus.io/path": "/metrics"}
    got = {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}
    want = scrape if values["metrics"]["enabled"] and values["metrics"]["scrapeAnnotations"] else {}
    expect(got == want, f"prometheus.io/* annotations iff metrics.scrapeAnnotations: want {want}, got {got}")


def assert_notes(notes: str, service: str, port: int) -> None:
    for needle in ("extensionProviders", "envoyExtAuthzGrpc", f"service: {service}", f"port: {port}", "AuthorizationPolicy",
                   "apply live", "stepup.policy", "policy_revision", "policy reload rejected", "examples/istio",
                   "stepup_policy_last_reload_failed", "Admin HTTP"):
        expect(needle in notes, f"NOTES.txt lacks {needle!r}")
    stale = STALE_WORDING.search(notes)
    expect(stale is None, f"NOTES.txt still calls a shipped feature unreleased: {stale and stale.group(0)!r}")


def assert_standalone(rendered: Rendered, values: dict[str, Any], app_version: str) -> None:
    name = fullname(values)
    deployment = rendered.one("Deployment", name)
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    expect(selector_matches(deployment["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector matches its pods")
    container, where = find_stepup(pod)
    expect(where == "containers", "standalone: stepup is a regular container")
    assert_container(container, values, app_version, f"0.0.0.0:{GRPC_PORT}", probes=True)
    assert_policy_mount(rendered, pod, container, values)
    assert_pod_transport(pod, values)
    certificates = rendered.of_kind("Certificate")
    issuer = values["tls"]["certManager"]["issuerRef"]
    expect(len(certificates) == int(bool(issuer)), f"a cert-manager Certificate iff tls.certManager.issuerRef, got {len(certificates)}")
    for certificate in certificates:
        expect(certificate["spec"]["secretName"] == tls_secret(values), "the Certificate writes the Secret the pods mount")
        expect(f"{name}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"], "the Certificate names the Service")
        expect(certificate["spec"]["issuerRef"]["name"] == issuer["name"], "the Certificate's issuer is tls.certManager.issuerRef")
    psc = pod["spec"].get("securityContext") or {}
    expect(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot")
    expect(dig(psc, "seccompProfile", "type") == "RuntimeDefault", "pod seccompProfile RuntimeDefault")
    expect(pod["spec"].get("automountServiceAccountToken") is False, "no service account token in the pod")
    assert_checksums(pod["metadata"].get("annotations") or {}, values)

    service = rendered.one("Service", name)
    expect(selector_matches(service["spec"]["selector"], pod_labels), "Service selector matches the pods")
    grpc = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    expect(len(grpc) == 1 and grpc[0]["port"] == values["service"]["port"] and grpc[0]["targetPort"] == "grpc",
           f"Service port grpc {values['service']['port']} -> grpc, got {grpc}")
    expect(dig(grpc, 0, "appProtocol") == "grpc", "Service port appProtocol grpc")
    container_ports = {p["name"] for p in container.get("ports") or []}
    for port in service["spec"]["ports"]:
        expect(port["targetPort"] in container_ports, f"Service port {port['name']} targets {port['targetPort']!r}, not a container port ({sorted(container_ports)})")
    metrics = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
    if values["metrics"]["enabled"]:
        expect(len(metrics) == 1 and metrics[0]["port"] == values["admin"]["port"] and metrics[0]["targetPort"] == "admin",
               f"metrics.enabled: Service port metrics {values['admin']['port']} -> admin, got {metrics}")
        expect(flag(container["args"], "--admin") == f"0.0.0.0:{values['admin']['port']}",
               "metrics.enabled: the admin listener binds 0.0.0.0 (the Service reaches the pod IP)")
    else:
        expect(not metrics, "no Service port metrics without metrics.enabled (the admin listener is on loopback)")

    sa = values["serviceAccount"]
    if sa["create"]:
        account = rendered.one("ServiceAccount", sa["name"] or name)
        expect(account.get("automountServiceAccountToken") is False, "ServiceAccount does not automount tokens")
        expect(pod["spec"]["serviceAccountName"] == account["metadata"]["name"], "pod uses the ServiceAccount")

    autoscaling = values["autoscaling"]["enabled"]
    hpas = rendered.of_kind("HorizontalPodAutoscaler")
    expect(len(hpas) == int(autoscaling), f"HorizontalPodAutoscaler present iff autoscaling.enabled ({len(hpas)})")
    expect(("replicas" in deployment["spec"]) != autoscaling, "Deployment.replicas is left to the HPA iff autoscaling")
    if autoscaling:
        target = hpas[0]["spec"]["scaleTargetRef"]
        expect(target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, f"HPA targets the Deployment, got {target}")
        expect(hpas[0]["spec"]["minReplicas"] == values["autoscaling"]["minReplicas"], "HPA minReplicas")
    else:
        expect(deployment["spec"]["replicas"] == values["replicaCount"], "Deployment.replicas from replicaCount")

    pdbs = rendered.of_kind("PodDisruptionBudget")
    expect(len(pdbs) == int(values["podDisruptionBudget"]["enabled"]), "PodDisruptionBudget present iff enabled")
    for pdb in pdbs:
        expect(selector_matches(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PDB selects the pods")
        expect(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), "PDB sets one of minAvailable/maxUnavailable")

    policies = rendered.of_kind("NetworkPolicy")
    expect(len(policies) == int(values["networkPolicy"]["enabled"]), "NetworkPolicy present iff enabled")
    for policy in policies:
        expect(selector_matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels), "NetworkPolicy selects the pods")
        expect(policy["spec"]["policyTypes"] == ["Ingress"], "NetworkPolicy restricts ingress")
        ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports") or []]
        expect("grpc" in ports, "NetworkPolicy admits the grpc port")
        expect(("admin" in ports) == bool(values["metrics"]["enabled"]), "NetworkPolicy admits the admin port iff metrics.enabled")
        grpc_rule = next((r for r in policy["spec"]["ingress"] if any(p["port"] == "grpc" for p in r.get("ports") or [])), {})
        expect(grpc_rule.get("from"), "the grpc ingress rule names its peers (never open to all)")
        expect(grpc_rule.get("from") == values["networkPolicy"]["ingressFrom"],
               f"the grpc ingress rule admits exactly networkPolicy.ingressFrom, got {grpc_rule.get('from')}")
        for rule in policy["spec"]["ingress"]:
            expect(rule.get("ports") and rule.get("from"), f"every ingress rule names its ports and peers, got {rule}")
            if any(p["port"] == "admin" for p in rule["ports"]):
                expect(rule["from"] == values["networkPolicy"]["metricsFrom"],
                       f"the admin ingress rule admits exactly networkPolicy.metricsFrom, got {rule['from']}")
    assert_secrets(rendered, container, values)

    monitors = rendered.of_kind("ServiceMonitor")
    expect(len(monitors) == int(values["serviceMonitor"]["enabled"]), "ServiceMonitor present iff enabled")
    for monitor in monitors:
        expect(selector_matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]), "ServiceMonitor selects the Service")
        service_ports = {p["name"]: p for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            expect(endpoint["port"] in service_ports, f"ServiceMonitor port {endpoint['port']} is a Service port")
            expect(dig(service_ports, endpoint["port"], "targetPort") == "admin" and endpoint.get("path") == "/metrics",
                   f"ServiceMonitor scrapes /metrics on the admin listener, got port {endpoint['port']} path {endpoint.get('path')}")
    assert_notes(rendered.notes, f"{name}.{NAMESPACE}.svc.cluster.local", values["service"]["port"])


SECRET_ENV = {
    "history-hash-key": "STEPUP_HISTORY_HASH_KEY",
    "redis-url": "STEPUP_REDIS_URL",
    "redis-password": "STEPUP_REDIS_PASSWORD",
    "decision-log-hash-key": "STEPUP_DECISION_LOG_HASH_KEY",
}


def assert_secrets(rendered: Rendered, container: dict[str, Any], values: dict[str, Any]) -> None:
    """Secrets reach stepup as variables from a Secret (each key optional),
    never through the ConfigMaps."""
    secrets = values["secrets"]
    created = rendered.of_kind("Secret")
    wanted = secrets["existingSecret"] or (f"{fullname(values)}-secrets" if any(secrets["values"].values()) else "")
    refs = {e["name"]: dig(e, "valueFrom", "secretKeyRef") for e in container.get("env") or [] if dig(e, "valueFrom", "secretKeyRef")}
    if not wanted:
        expect(not refs and not created, f"no Secret, no secret variables without secrets.*, got {refs} {len(created)}")
        return
    expect(set(refs) == set(SECRET_ENV.values()), f"the container sets {sorted(SECRET_ENV.values())} from the Secret, got {sorted(refs)}")
    for key, var in SECRET_ENV.items():
        ref = refs.get(var) or {}
        expect(ref == {"name": wanted, "key": key, "optional": True}, f"{var} from Secret {wanted} key {key} (optional), got {ref}")
    expect(len(created) == (0 if secrets["existingSecret"] else 1), f"the chart creates a Secret iff secrets.values (and no existingSecret), got {len(created)}")
    for secret in created:
        data = secret.get("stringData") or {}
        names = {"historyHashKey": "history-hash-key", "redisUrl": "redis-url", "redisPassword": "redis-password", "decisionLogHashKey": "decision-log-hash-key"}
        expect(data == {names[k]: v for k, v in secrets["values"].items() if v}, f"the Secret holds secrets.values, got keys {sorted(data)}")
        for configmap in rendered.of_kind("ConfigMap"):
            text = json.dumps(configmap.get("data") or {})
            for value in data.values():
                expect(value not in text, f"a secret value is in ConfigMap {configmap['metadata']['name']}")


def assert_sidecar_only(rendered: Rendered, values: dict[str, Any]) -> None:
    kinds = set(rendered.kinds())
    expect(kinds <= {"ConfigMap"}, f"sidecar mode renders only ConfigMaps, got {sorted(kinds)}")
    expected = (0 if values["policies"]["existingConfigMap"] else 1) + (1 if values["config"] else 0)
    expect(len(rendered.docs) == expected, f"expected {expected} ConfigMaps, got {len(rendered.docs)}")


def assert_example(rendered: Rendered, values: dict[str, Any], app_version: str) -> None:
    """The payments-app chart with the sidecar values nested under `stepup:`."""
    app = rendered.one("Deployment", f"{RELEASE}-payments-app")
    pod = app["spec"]["template"]
    container, where = find_stepup(pod)
    sidecar = values["sidecar"]
    expect(where == ("initContainers" if sidecar["native"] else "containers"), f"sidecar placed in {where}")
    expect((container.get("restartPolicy") == "Always") == bool(sidecar["native"]), "native sidecar has restartPolicy Always")
    listen = sidecar_listen(values)
    assert_container(container, values, app_version, listen, probes=bool(sidecar["probes"]))
    assert_policy_mount(rendered, pod, container, values)
    assert_pod_transport(pod, values)
    assert_checksums(pod["metadata"].get("annotations") or {}, values)
    app_container = next(c for c in pod["spec"]["containers"] if c["name"] == "app")
    env = {e["name"]: e.get("value") for e in app_container.get("env") or []}
    scheme = "https" if tls_secret(values) else "http"
    address = listen if listen.startswith("unix:") else f"{scheme}://{listen}"
    expect(env.get("STEPUP_ADDR") == address, f"the app is told the sidecar's address {address}, got {env.get('STEPUP_ADDR')}")
    app_mounts = {m["name"]: m["mountPath"] for m in app_container.get("volumeMounts") or []}
    if listen.startswith("unix:"):
        expect(app_mounts.get("stepup-socket") == sidecar["unixSocket"]["dir"], f"the app mounts the socket's directory, got {app_mounts}")
    else:
        expect("stepup-socket" not in app_mounts, "no socket mount without sidecar.unixSocket")
    service = rendered.one("Service", f"{RELEASE}-payments-app")
    expect(all(p.get("port") != GRPC_PORT for p in service["spec"]["ports"]), "the app Service does not expose the sidecar")
    kinds = set(rendered.kinds())
    expect(not kinds & {"HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor"},
           "the stepup subchart renders no standalone resources in sidecar mode")
    # The app's own NetworkPolicy: its port, and the sidecar's admin port (on
    # the pod IP for the kubelet's probes) only to the scrapers with metrics.
    policy = rendered.one("NetworkPolicy", f"{RELEASE}-payments-app")
    expect(selector_matches(policy["spec"]["podSelector"]["matchLabels"], pod["metadata"]["labels"]), "the app's NetworkPolicy selects its pods")
    rules = [([p["port"] for p in r["ports"]], r.get("from")) for r in policy["spec"]["ingress"]]
    want_ports = [["http"]] + ([[values["admin"]["port"]]] if values["metrics"]["enabled"] else [])
    expect([ports for ports, _ in rules] == want_ports,
           f"the app's NetworkPolicy admits the app's port, and the admin port only with metrics, never the decision port: got {rules}")
    expect(all(peers for ports, peers in rules[1:]), f"the admin port only from named scrapers, got {rules}")
    expect(not any(d["metadata"]["name"] == fullname(values) and d["kind"] == "Deployment" for d in rendered.docs),
           "no standalone stepup Deployment in sidecar mode")


# --------------------------------------------------------------------------- policies vs the binary


NO_BINARY = ("no stepup binary: run helm/check.sh, which builds it with `cargo build --locked --bin stepup` "
             "(wherever CARGO_TARGET_DIR puts it), or set STEPUP_BIN=path/to/stepup")


def find_stepup_binary() -> Path | None:
    """The binary helm/check.sh built (or STEPUP_BIN names). Never a guess
    under target/: with CARGO_TARGET_DIR set the build is elsewhere, and a
    binary left there by an earlier build would be stale."""
    explicit = os.environ.get("STEPUP_BIN", "")
    path = Path(explicit)
    return path if explicit and path.is_file() and os.access(path, os.X_OK) else None


def write_configmap_volume(directory: Path, data: dict[str, str], version: int = 1) -> None:
    """Lay files out the way the kubelet mounts a ConfigMap volume: the files
    in a timestamped hidden directory, `..data` linking to it, and one symlink
    per key through `..data`. A loader that walks hidden entries sees each file
    three times. A later version is an update, done the kubelet's way: a new
    timestamped directory, `..data` swapped to it by rename, links added for
    new keys, the old directory removed."""
    stamp = directory / f"..2026_01_01_00_00_00.{version:09d}"
    stamp.mkdir(parents=True)
    for key, text in data.items():
        (stamp / key).write_text(text)
    old = os.readlink(directory / "..data") if version > 1 else None
    (directory / "..data_tmp").symlink_to(stamp.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    for key in data:
        if not (directory / key).is_symlink():
            (directory / key).symlink_to(f"..data/{key}")
    if old:
        shutil.rmtree(directory / old)


def check_policies_with_binary(report: Report, label: str, rendered: Rendered, values: dict[str, Any], tmp: Path) -> None:
    name = f"{label}: `stepup check` accepts the policy ConfigMap as mounted"
    if values["policies"]["existingConfigMap"] or not report.use_binary:
        return
    binary = find_stepup_binary()
    if binary is None:
        report.fail(name, NO_BINARY)
        return
    # A check that accepts anything proves nothing: a missing directory must fail.
    probe = subprocess.run([str(binary), "check", "--policies", str(tmp / "no-such-policies")],
                           capture_output=True, text=True, check=False, timeout=60)
    if probe.returncode == 0:
        report.fail(name, f"{binary} check accepted a missing policy directory")
        return
    cm = rendered.one("ConfigMap", f"{fullname(values)}-policies")
    directory = Path(tempfile.mkdtemp(prefix="policies-", dir=tmp)) / "policies"
    write_configmap_volume(directory, cm["data"])
    proc = subprocess.run([str(binary), "check", "--policies", str(directory)], capture_output=True, text=True, check=False, timeout=60)
    report.check(name, proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Endpoint:
    """Where a running stepup serves gRPC: a target (`127.0.0.1:PORT` or
    `unix:///path`), over TLS when `credentials` are given."""
    target: str
    credentials: Any = None

    def channel(self) -> grpc.Channel:
        if self.target.startswith("unix:"):
            # grpc-core sends the %-encoded socket path as :authority, which
            # stepup's HTTP/2 server (h2) rejects as malformed: name a host.
            return grpc.insecure_channel(self.target, options=[("grpc.default_authority", "localhost")])
        if self.credentials is None:
            return grpc.insecure_channel(self.target)
        # The test certificate names `localhost`.
        return grpc.secure_channel(self.target, self.credentials, options=[("grpc.ssl_target_name_override", "localhost")])


def endpoint(at: int | Endpoint) -> Endpoint:
    return at if isinstance(at, Endpoint) else Endpoint(f"127.0.0.1:{at}")


def health_status(port: int | Endpoint, service: str) -> str:
    with endpoint(port).channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


@functools.cache
def _decide_types() -> tuple[Any, Any]:
    """DecideRequest {action, subject.id} and DecideResponse {outcome,
    policy_revision}: the few fields of proto/stepup/v1 this check needs
    (protobuf skips the rest), built at run time."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="ci/stepup_subset.proto", package="ci.stepup", syntax="proto3")
    for name, fields in (("Subject", [("id", 1, F.TYPE_STRING, "")]),
                         ("DecideRequest", [("action", 1, F.TYPE_STRING, ""), ("subject", 2, F.TYPE_MESSAGE, ".ci.stepup.Subject")]),
                         ("DecideResponse", [("outcome", 1, F.TYPE_INT32, ""), ("policy_revision", 10, F.TYPE_STRING, "")])):
        message = file.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            message.field.add(name=field_name, number=number, type=kind, label=F.LABEL_OPTIONAL, **({"type_name": type_name} if type_name else {}))
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file.SerializeToString())
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"ci.stepup.{n}")) for n in ("DecideRequest", "DecideResponse"))


RELOAD_FILE, RELOAD_ACTION, OUTCOME_DENY = "zz-ci-live-reload.yaml", "ci.live-reload", 3
RELOAD_POLICY = f"""apiVersion: stepup/v1
kind: Policy
name: ci-live-reload
rules:
  - id: ci-live-reload
    actions: ["{RELOAD_ACTION}"]
    effect: deny
"""


def decide(port: int | Endpoint) -> tuple[int, str]:
    request_type, response_type = _decide_types()
    with endpoint(port).channel() as channel:
        call = channel.unary_unary("/stepup.v1.DecisionService/Decide", request_serializer=request_type.SerializeToString,
                                   response_deserializer=response_type.FromString)
        response = call(request_type(action=RELOAD_ACTION, subject={"id": "ci"}), timeout=2)
    return response.outcome, response.policy_revision


def wait_for(cond: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def live_reload(binary: Path, port: int | Endpoint, policies: Path, data: dict[str, str], log_path: Path) -> tuple[str, str, str]:
    """Update the mounted policy ConfigMap (kubelet style) to the set plus one
    deny rule: the running stepup must answer from the new revision (the one
    `stepup check` computes) with that rule. Then to a broken set: it must keep
    that revision, turn `stepup.policy` NOT_SERVING and keep the probes'
    services SERVING. Returns (what went wrong or "", a note, the revision
    that must still be serving)."""
    before = decide(port)
    changed = {**data, RELOAD_FILE: RELOAD_POLICY}
    write_configmap_volume(policies, changed, version=2)
    checked = subprocess.run([str(binary), "check", "--format", "json", "--policies", str(policies)], capture_output=True, text=True, check=False)
    want = (OUTCOME_DENY, json.loads(checked.stdout)["revision"])
    if not wait_for(lambda: decide(port) == want, 15):
        return f"15 s after the ..data swap it answers {decide(port)}, want {want} (before: {before})", "", want[1]
    write_configmap_volume(policies, {**changed, RELOAD_FILE: "rules: [\n"}, version=3)
    if not wait_for(lambda: health_status(port, "stepup.policy") == "NOT_SERVING", 15):
        return "stepup.policy still SERVING 15 s after a broken set was mounted", "", want[1]
    after = ({svc: health_status(port, svc) for svc in ("", READY_SERVICE)}, decide(port))
    if after != ({"": "SERVING", READY_SERVICE: "SERVING"}, want):
        return f"after a rejected reload: health {after[0]}, answer {after[1]}; want SERVING and {want}", "", want[1]
    missing = [m for m in ("policy set reloaded", "policy reload rejected") if m not in log_path.read_text()]
    time.sleep(1)
    rejected = log_path.read_text().count("policy reload rejected")
    note = (f"NOTE stepup rejected one broken set {rejected} times within ~1 s: its reload loop re-triggers itself "
            "(likely the inotify open events of its own reads)") if rejected > 2 else ""
    return (f"the log lacks {missing}" if missing else ""), note, want[1]


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET on the admin listener: (status, body); (0, error) when unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def metric(text: str, prefix: str) -> float | None:
    """The value of the first sample whose name (and leading labels) is
    `prefix`, e.g. `stepup_policy_last_reload_failed` or
    `stepup_decisions_total{outcome="deny"`."""
    for line in text.splitlines():
        if line.startswith(prefix) and line[len(prefix):len(prefix) + 1] in (" ", "{", ",", "}"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def check_admin_after_reload(admin_port: int, revision: str) -> str:
    """One scrape after the rejected reload, as Prometheus would: the serving
    revision, the failed reload (what to alert on) and the deny decisions of
    the reload check. /readyz stays 200: a rejected reload unreadies nothing.
    Returns what went wrong, or ""."""
    status, _ = http_get(admin_port, "/readyz")
    if status != 200:
        return f"/readyz answered {status} after a rejected reload, want 200"
    status, text = http_get(admin_port, "/metrics")
    if status != 200:
        return f"/metrics answered {status}: {text[:200]}"
    problems = []
    if metric(text, "stepup_policy_last_reload_failed") != 1:
        problems.append(f"stepup_policy_last_reload_failed is {metric(text, 'stepup_policy_last_reload_failed')}, want 1")
    if (metric(text, 'stepup_policy_reloads_total{result="failed"') or 0) < 1:
        problems.append("stepup_policy_reloads_total{result=\"failed\"} < 1")
    if f'stepup_policy_info{{revision="{revision}"' not in text:
        problems.append(f"no stepup_policy_info{{revision=\"{revision}\"}}")
    if (metric(text, 'stepup_decisions_total{outcome="deny"') or 0) < 1:
        problems.append("stepup_decisions_total{outcome=\"deny\"} < 1")
    return "; ".join(problems)


def openssl_pki(work: Path) -> dict[str, str] | None:
    """A CA, a server certificate for `localhost` and a client certificate
    with a SPIFFE ID, made with the openssl command line: PEM texts by name
    (ca.crt, tls.crt, tls.key, client.crt, client.key); None without openssl."""
    if shutil.which("openssl") is None:
        return None
    pki = work / "pki"
    pki.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=stepup-ci-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, ext in (("tls", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "subjectAltName=URI:spiffe://ci.example/ns/ci/sa/client\nextendedKeyUsage=clientAuth\n")):
        (pki / f"{name}.ext").write_text(ext)
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")
    return {f: (pki / f).read_text() for f in ("ca.crt", "tls.crt", "tls.key", "client.crt", "client.key")}


def local_args(rendered_args: list[str], *, policies: Path, config: Path, listen: str,
               mapped: Callable[[str], str], decision_log: Path) -> tuple[list[str], int | None]:
    """The container's rendered args, run here: the mounts' paths moved to
    their local copies, the listeners to `listen` and a free loopback admin
    port. Returns (args, the admin port or None)."""
    admin_port: int | None = None
    args: list[str] = []
    i = 0
    while i < len(rendered_args):
        arg = rendered_args[i]
        value = rendered_args[i + 1] if i + 1 < len(rendered_args) else ""
        if arg == "--policies":
            args += [arg, str(policies)]
            i += 2
        elif arg == "--config":
            args += [arg, str(config)]
            i += 2
        elif arg == "--listen":
            args += [arg, listen]
            i += 2
        elif arg in ("--tls-cert", "--tls-key", "--tls-client-ca"):
            args += [arg, mapped(value)]
            i += 2
        elif arg == "--admin" and value != "off":
            admin_port = free_port()
            args += [arg, f"127.0.0.1:{admin_port}"]
            i += 2
        elif arg == "--decision-log" and value.startswith("/"):
            args += [arg, str(decision_log)]
            i += 2
        else:
            args.append(arg)
            i += 1
    return args, admin_port


def stepup_pod(rendered: Rendered) -> dict[str, Any]:
    """The pod template that holds the stepup container."""
    return next(doc["spec"]["template"] for doc in rendered.of_kind("Deployment")
                if any(c["name"] == "stepup" for c in (doc["spec"]["template"]["spec"].get("containers") or [])
                       + (doc["spec"]["template"]["spec"].get("initContainers") or [])))


def check_startup_gate(report: Report, label: str, rendered: Rendered, values: dict[str, Any], tmp: Path) -> None:
    """A native sidecar's startup probe is what holds the application's
    containers back (the kubelet starts them only once it succeeds). Run the
    rendered args over a policy set that does not load and ask what the
    startup probe asks, for as long as the probe would: it must never
    succeed (stepup refuses to serve without a valid set, and exits)."""
    name = f"{label}: with policies that do not load, the sidecar's startup probe never succeeds (the application is held back)"
    if not report.use_binary or values["policies"]["existingConfigMap"]:
        return
    binary = find_stepup_binary()
    if binary is None:
        report.fail(name, NO_BINARY)
        return
    container, where = find_stepup(stepup_pod(rendered))
    startup = container.get("startupProbe")
    if where != "initContainers" or startup is None:
        report.fail(name, f"the sidecar is in {where} with startupProbe {startup}: nothing holds the application back")
        return
    work = Path(tempfile.mkdtemp(prefix="gate-", dir=tmp))
    policies = work / "policies"
    data = rendered.one("ConfigMap", f"{fullname(values)}-policies")["data"]
    write_configmap_volume(policies, {**data, "zz-broken.yaml": "rules: [\n"})
    config = work / "config" / "config.toml"
    if values["config"]:
        write_configmap_volume(config.parent, rendered.one("ConfigMap", f"{fullname(values)}-config")["data"])
    port = free_port()
    args, admin_port = local_args(container["args"], policies=policies, config=config, listen=f"127.0.0.1:{port}",
                                  mapped=lambda path: path, decision_log=work / "decisions.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP_", "OTEL_"))}
    env.update({e["name"]: e["value"] for e in container.get("env") or [] if "value" in e})
    # Each attempt of the probe, for the probe's first few periods (or until
    # stepup exits): connection refused or a non-2xx answer is a failure.
    attempts = []
    with (work / "stepup.log").open("w") as log:
        proc = subprocess.Popen([str(binary), *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if "httpGet" in startup and admin_port is not None:
                attempts.append(http_get(admin_port, startup["httpGet"]["path"])[0])
            else:
                try:
                    attempts.append(health_status(port, dig(startup, "grpc", "service") or ""))
                except grpc.RpcError as exc:
                    attempts.append(exc.code().name)
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
    output = (work / "stepup.log").read_text()
    passed = [a for a in attempts if a in (200, "SERVING")]
    report.check(name, not passed and code != 0 and "zz-broken.yaml" in output,
                 f"probe answers {sorted(set(map(str, attempts)))}, stepup exit {code}\n{output[-1500:]}")


def smoke_serve(report: Report, label: str, rendered: Rendered, values: dict[str, Any], tmp: Path) -> None:
    """Run the binary with the container's rendered args and env against the
    rendered ConfigMaps (laid out as the kubelet mounts them), then ask
    exactly what the chart's probes ask (gRPC health, or /livez and /readyz on
    the admin listener). Listen addresses become free loopback ports: never
    0.0.0.0, never a fixed port another process may hold."""
    name = f"{label}: `stepup serve` with the rendered args/env answers the probes' checks"
    if values["policies"]["existingConfigMap"] or not report.use_binary:
        return
    binary = find_stepup_binary()
    if binary is None:
        report.fail(name, NO_BINARY)
        return
    container, _ = find_stepup(stepup_pod(rendered))
    work = Path(tempfile.mkdtemp(prefix="serve-", dir=tmp))
    policies = work / "policies"
    data = rendered.one("ConfigMap", f"{fullname(values)}-policies")["data"]
    write_configmap_volume(policies, data)
    config = work / "config" / "config.toml"
    if values["config"]:
        write_configmap_volume(config.parent, rendered.one("ConfigMap", f"{fullname(values)}-config")["data"])
    port = free_port()
    at: int | Endpoint = port
    rendered_args = list(container["args"])
    # TLS: the rendered Secret (and client CA) mounts hold certificates made
    # here, laid out as the kubelet mounts them; the checks then ask over
    # TLS, with a client certificate when clientCA is on.
    secret = tls_secret(values)
    mounts: dict[str, Path] = {}
    if secret:
        pki = openssl_pki(work)
        if pki is None:
            report.fail(name, "TLS values, but no openssl on PATH to make test certificates: install openssl")
            return
        tls_dir = work / "tls"
        write_configmap_volume(tls_dir, {"tls.crt": pki["tls.crt"], "tls.key": pki["tls.key"], values["tls"]["clientCA"]["key"]: pki["ca.crt"]})
        mounts[values["tls"]["mountPath"].rstrip("/")] = tls_dir
        ca_dir = work / "client-ca"
        write_configmap_volume(ca_dir, {values["tls"]["clientCA"]["key"]: pki["ca.crt"]})
        mounts[CLIENT_CA_DIR] = ca_dir
        mutual = values["tls"]["clientCA"]["enabled"]
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki["ca.crt"].encode(),
            private_key=pki["client.key"].encode() if mutual else None,
            certificate_chain=pki["client.crt"].encode() if mutual else None,
        )
        at = Endpoint(f"127.0.0.1:{port}", credentials)
        name = name.replace("answers", "answers over mutual TLS" if mutual else "answers over TLS")
    unix_socket = work / "stepup.sock"
    if any(a.startswith("unix:") for a in rendered_args):
        at = Endpoint(f"unix://{unix_socket}")
        name = name.replace("answers", "answers on its Unix socket")

    def mapped(path: str) -> str:
        for prefix, local in mounts.items():
            if path.startswith(prefix + "/"):
                return str(local / path[len(prefix) + 1:])
        return path

    args, admin_port = local_args(rendered_args, policies=policies, config=config,
                                  listen=f"unix:{unix_socket}" if any(a.startswith("unix:") for a in rendered_args) else f"127.0.0.1:{port}",
                                  mapped=mapped, decision_log=work / "decisions.jsonl")
    # Ask what the rendered httpGet probes ask, on the port they name: it must
    # be the port of the rendered --admin, bound where the kubelet reaches it.
    http_paths = sorted({dig(container, p, "httpGet", "path") for p in ("startupProbe", "livenessProbe", "readinessProbe")
                         if dig(container, p, "httpGet") is not None})
    if http_paths:
        container_ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
        rendered_admin = flag(rendered_args, "--admin") or ""
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = dig(container, probe, "httpGet", "port")
            if port is None:
                continue
            number = container_ports.get(port) if isinstance(port, str) else port
            if not rendered_admin.startswith("0.0.0.0:") or number != int(rendered_admin.rsplit(":", 1)[1]):
                report.fail(name, f"{probe} asks port {port!r} ({number}), but the admin listener is --admin {rendered_admin}: "
                                  "the kubelet (on the pod IP) would not reach it")
                return
        name = name.replace("the probes' checks", f"the probes' checks (HTTP {', '.join(http_paths)} on the admin port)")
    elif "startupProbe" in container or "readinessProbe" in container:
        name = name.replace("the probes' checks", "the probes' checks (gRPC health)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPUP_", "OTEL_"))}
    env.update({e["name"]: e["value"] for e in container.get("env") or [] if "value" in e})
    log_path = work / "stepup.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(binary), *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    admin_problem = ""
    try:
        statuses: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                statuses = {svc or '""': health_status(at, svc) for svc in ("", READY_SERVICE)}
                if admin_port is not None:
                    statuses.update({path: http_get(admin_port, path)[0] for path in http_paths or ("/livez", "/readyz")})
                if all(v in ("SERVING", 200) for v in statuses.values()):
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        serving = bool(statuses) and all(v in ("SERVING", 200) for v in statuses.values())
        reload: tuple[str, str, str] = ("not serving", "", "")
        if serving:
            try:
                reload = live_reload(binary, at, policies, data, log_path)
            except (grpc.RpcError, OSError, ValueError, KeyError) as exc:
                reload = (f"{type(exc).__name__}: {exc}", "", "")
            if admin_port is not None and values["metrics"]["enabled"] and not reload[0]:
                admin_problem = check_admin_after_reload(admin_port, reload[2])
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # what the kubelet sends on shutdown
            try:
                code = proc.wait(timeout=int(values["terminationGracePeriodSeconds"]))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = None
        else:
            code = proc.returncode
            serving = False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log_path.read_text()
    detail = f"health {statuses or 'never answered'}, exit {code} after SIGTERM\nargs: {args}\n{output[-2000:]}"
    if not serving or code != 0:
        report.fail(name, detail)
        return
    lines = [line for line in output.splitlines() if line.strip()]
    if values["log"]["format"] == "json":
        try:
            for line in lines:
                json.loads(line)
        except json.JSONDecodeError:
            report.fail(name, f"STEPUP_LOG_FORMAT=json, but a log line is not JSON: {line[:200]}")
            return
    report.ok(name)
    report.check(f"{label}: the running stepup reloads a changed policy ConfigMap live (..data swap) and rejects a broken one",
                 not reload[0], f"{reload[0]}\n{output[-2000:]}")
    if reload[1]:
        report.note(f"{reload[1]} ({label})")
    if admin_port is not None and values["metrics"]["enabled"]:
        report.check(f"{label}: metrics.enabled: one scrape of the admin listener after the rejected reload (/readyz 200; /metrics: "
                     "stepup_policy_last_reload_failed 1, the serving revision, the deny decisions)",
                     not reload[0] and not admin_problem, admin_problem or reload[0] or "no scrape")
    if values["decisionLog"] == "stdout":
        logged = []
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and {"request", "decision"} <= set(entry):
                logged.append(entry)
        report.check(f"{label}: decisionLog=stdout writes one JSON line per decision (request, decision)",
                     bool(logged) and any(dig(e, "decision", "outcome") in ("DENY", "OUTCOME_DENY") for e in logged),
                     f"{len(logged)} decision-log lines, none for the DENY decisions of the reload check\n{output[-1500:]}")


# --------------------------------------------------------------------------- cases


@dataclass
class Charts:
    stepup: Path
    example: Path  # a copy with charts/stepup vendored from `stepup`


def prepare_charts(helm_dir: Path, tmp: Path) -> Charts:
    """Copy the charts into tmp (never writing into the repository) and vendor
    the stepup chart into the example with Helm's own `dependency build`, which
    resolves the example's `file://../../stepup` reference."""
    work = tmp / "helm"
    shutil.copytree(helm_dir / "stepup", work / "stepup")
    shutil.copytree(helm_dir / "examples", work / "examples")
    example = work / "examples" / EXAMPLE.name
    shutil.rmtree(example / "charts", ignore_errors=True)
    helm.dependency_build(example)
    return Charts(stepup=work / "stepup", example=example)


def check_values_file(report: Report, charts: Charts, values_file: Path, tmp: Path) -> None:
    label = values_file.stem
    overrides, versions = load_values_file(values_file)
    with helm.Chart.load(charts.stepup) as chart:
        app_version = chart.metadata["appVersion"]
        report.run(f"{label}: values.schema.json accepts the values", lambda: chart.validate_schema(overrides))
        values = chart.merge_values(overrides)
    lint(report, label, charts.stepup, overrides, versions)
    rendered = report.run(f"{label}: helm template", lambda: render(charts.stepup, overrides))
    if rendered is None:
        return
    kube_validate(report, label, rendered, versions, tmp)
    if values["mode"] == "standalone":
        report.run(f"{label}: rendered standalone resources (probes, securityContext, resources, policy mount, image, HPA/PDB/NetworkPolicy/ServiceMonitor)",
                   lambda: assert_standalone(rendered, values, app_version))
        smoke_serve(report, label, rendered, values, tmp)
    else:
        report.run(f"{label}: sidecar mode renders only the ConfigMaps", lambda: assert_sidecar_only(rendered, values))
        example_values = {"stepup": overrides}
        ex_label = f"{label} via {EXAMPLE.name}"
        values = example_stepup_values(charts, example_values)
        lint(report, ex_label, charts.example, example_values, versions)
        ex_rendered = report.run(f"{ex_label}: helm template", lambda: render(charts.example, example_values))
        if ex_rendered is None:
            return
        kube_validate(report, ex_label, ex_rendered, versions, tmp)
        report.run(f"{ex_label}: sidecar container and volumes in the app's pods (native sidecar, probes, securityContext, policy mount, image)",
                   lambda: assert_example(ex_rendered, values, app_version))
        smoke_serve(report, ex_label, ex_rendered, values, tmp)
    check_policies_with_binary(report, label, rendered, values, tmp)


def example_stepup_values(charts: Charts, overrides: dict[str, Any]) -> dict[str, Any]:
    """The stepup values as the example chart's subchart sees them: stepup's
    defaults, under the example's `stepup:` block, under the overrides."""
    with helm.Chart.load(charts.example) as chart:
        merged = chart.merge_values(overrides)
    with helm.Chart.load(charts.stepup) as chart:
        return chart.merge_values(merged.get("stepup") or {})


def check_example_defaults(report: Report, charts: Charts, tmp: Path) -> None:
    label = f"{EXAMPLE.name} (its own values)"
    with helm.Chart.load(charts.stepup) as chart:
        app_version = chart.metadata["appVersion"]
    values = example_stepup_values(charts, {})
    lint(report, label, charts.example, {}, KUBE_VERSIONS)
    rendered = report.run(f"{label}: helm template", lambda: render(charts.example, {}))
    if rendered is None:
        return
    kube_validate(report, label, rendered, KUBE_VERSIONS, tmp)
    report.run(f"{label}: sidecar container and volumes in the app's pods", lambda: assert_example(rendered, values, app_version))
    check_policies_with_binary(report, label, rendered, values, tmp)
    smoke_serve(report, label, rendered, values, tmp)
    check_startup_gate(report, label, rendered, values, tmp)


# Values the schema must reject: (label, values, text the error must contain).
SCHEMA_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("wrong type (replicaCount: \"three\")", {"replicaCount": "three"}, "replicaCount"),
    ("unknown top-level key (replicas)", {"replicas": 3}, "replicas"),
    ("unknown nested key (image.tagg)", {"image": {"tagg": "1.0"}}, "tagg"),
    ("bad enum (log.format: xml)", {"log": {"format": "xml"}}, "format"),
    ("bad policy file name (policies.inline.notes.txt)", {"policies": {"inline": {"notes.txt": "x"}}}, "notes.txt"),
    ("negative cache size", {"cache": {"size": -1}}, "size"),
    ("unknown secret value (secrets.values.hashKey)", {"secrets": {"values": {"hashKey": "k"}}}, "hashKey"),
    ("a Redis URL that is not one (secrets.values.redisUrl)", {"secrets": {"values": {"redisUrl": "http://x"}}}, "redisUrl"),
    ("bad mode", {"mode": "daemonset"}, "mode"),
    ("bad probe type (probes.type: exec)", {"probes": {"type": "exec"}}, "type"),
    ("sidecar.probes that is not a boolean", {"sidecar": {"probes": "http"}}, "probes"),
    ("the admin port under its old key (metrics.port)", {"metrics": {"port": 7172}}, "port"),
    ("a relative decision-log path (decisionLog: decisions.jsonl)", {"decisionLog": "decisions.jsonl"}, "decisionLog"),
    ("zero worker threads", {"workerThreads": 0}, "workerThreads"),
    ("zero calls in flight", {"limits": {"maxInFlight": 0}}, "maxInFlight"),
    ("a time skew that is no duration", {"limits": {"maxTimeSkew": "soon"}}, "maxTimeSkew"),
    ("a socket mode that is not octal", {"sidecar": {"unixSocket": {"mode": "rw-rw----"}}}, "mode"),
    ("an issuer kind cert-manager does not have", {"tls": {"certManager": {"issuerRef": {"name": "ca", "kind": "Vault"}}}}, "kind"),
]

# Values the templates must refuse: (label, values, text the error must contain).
TEMPLATE_REJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("ServiceMonitor without metrics", {"serviceMonitor": {"enabled": True}}, "needs metrics.enabled"),
    ("sidecar gRPC probes on a loopback listener", {"mode": "sidecar", "probes": {"type": "grpc"}}, "cannot be probed"),
    ("sidecar probes (auto: HTTP, loopback listener) with the admin listener off", {"mode": "sidecar", "admin": {"enabled": False}}, "sidecar.probes needs admin.enabled"),
    ("TLS (auto: HTTP probes) with the admin listener off", {"tls": {"secretName": "stepup-tls"}, "admin": {"enabled": False}}, "leaves nothing to probe"),
    ("metrics with the admin listener off", {"admin": {"enabled": False}, "metrics": {"enabled": True}}, "needs admin.enabled"),
    ("HTTP probes with the admin listener off", {"admin": {"enabled": False}, "probes": {"type": "http"}}, "needs admin.enabled"),
    ("scrape annotations without metrics", {"metrics": {"scrapeAnnotations": True}}, "needs metrics.enabled"),
    ("the admin port on the gRPC port", {"admin": {"port": 7171}}, "is the gRPC port"),
    ("a NetworkPolicy that names no gRPC callers", {"networkPolicy": {"ingressFrom": []}}, "networkPolicy.ingressFrom is empty"),
    ("metrics behind a NetworkPolicy that names no scrapers", {"metrics": {"enabled": True}}, "networkPolicy.metricsFrom is empty"),
    ("a hash key written into the config (a ConfigMap)", {"config": "[history]\nhash_key = \"k\"\n"}, "put it in a Secret"),
    ("a decision-log hash key written into the config", {"config": "[decision_log]\n  hash_key = 'k'\n"}, "put it in a Secret"),
    ("a Redis password in the config's URL", {"config": "[history]\nbackend = \"redis\"\nredis_url = \"redis://:pw@redis:6379/0\"\n"}, "holds a password"),
    ("both an existing Secret and secret values", {"secrets": {"existingSecret": "s", "values": {"historyHashKey": "k"}}}, "not both"),
    ("a decision-log file on the read-only root filesystem", {"decisionLog": "/var/log/stepup/decisions.jsonl"}, "read-only root filesystem"),
    ("PDB with both minAvailable and maxUnavailable", {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}, "not both"),
    ("HPA in sidecar mode", {"mode": "sidecar", "autoscaling": {"enabled": True}}, "mode=standalone"),
    ("HPA without a metric", {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}}, "targetCPUUtilizationPercentage"),
    ("gRPC probes on a TLS listener", {"probes": {"type": "grpc"}, "tls": {"secretName": "stepup-tls"}}, "cannot speak TLS"),
    ("sidecar gRPC probes on a TLS listener", {"mode": "sidecar", "probes": {"type": "grpc"}, "sidecar": {"listen": "0.0.0.0:7171"}, "tls": {"secretName": "stepup-tls"}}, "cannot speak TLS"),
    ("a client CA without TLS", {"probes": {"type": "http"}, "tls": {"clientCA": {"enabled": True}}}, "needs TLS"),
    ("a cert-manager Certificate in sidecar mode", {"mode": "sidecar", "tls": {"certManager": {"issuerRef": {"name": "ca"}}}}, "mode=standalone"),
    ("a Unix socket in standalone mode", {"probes": {"type": "http"}, "sidecar": {"unixSocket": {"enabled": True}}}, "mode=sidecar"),
    ("gRPC probes on a Unix socket", {"mode": "sidecar", "probes": {"type": "grpc"}, "sidecar": {"unixSocket": {"enabled": True}}}, "need a TCP port"),
]


def check_rejections(report: Report, charts: Charts) -> None:
    with helm.Chart.load(charts.stepup) as chart:
        for label, values, needle in SCHEMA_REJECTS:
            name = f"schema rejects {label}"
            try:
                chart.validate_schema(values)
            except helm.HelmValuesError as exc:
                if needle not in str(exc):
                    report.fail(name, f"rejected, but the message does not name {needle!r}: {exc}")
                    continue
            else:
                report.fail(name, "values.schema.json accepted it")
                continue
            linted = helm.lint(charts.stepup, values, strict=True)
            if not linted["errors"]:
                report.fail(name, "validate_schema rejected it but `helm lint --strict` passed")
                continue
            try:
                chart.render(values, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmError:
                report.ok(name + " (schema, lint and render)")
            else:
                report.fail(name, "rendering accepted it")
        for label, values, needle in TEMPLATE_REJECTS:
            name = f"templates refuse {label}"
            try:
                chart.validate_schema(values)
                chart.render(values, name=RELEASE, namespace=NAMESPACE)
            except helm.HelmError as exc:
                report.check(name, needle in str(exc), f"failed, but not with {needle!r}: {exc}")
            else:
                report.fail(name, "rendered without error")
    with helm.Chart.load(charts.example) as chart:
        name = "the example chart's `stepup:` values go through the stepup schema (stepup.replicaCount: \"x\")"
        try:
            chart.render({"stepup": {"replicaCount": "x"}}, name=RELEASE, namespace=NAMESPACE)
        except helm.HelmValuesError as exc:
            report.check(name, "replicaCount" in str(exc), str(exc))
        else:
            report.fail(name, "rendered without error")


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml's settings; Kubernetes objects and maps of
    user data are leaves."""
    opaque = {"resources", "podSecurityContext", "securityContext", "updateStrategy"}
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in opaque:
            paths.extend(value_paths(value, path + "."))
        else:
            paths.append(path)
    return paths


def check_docs(report: Report, chart_dir: Path) -> None:
    """Every setting in values.yaml is in values.schema.json and in the README's values table."""
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    readme = (chart_dir / "README.md").read_text()
    paths = value_paths(values)

    def in_schema(path: str) -> bool:
        node = schema
        for part in path.split("."):
            node = dig(node, "properties", part)
            if node is None:
                return False
        return True

    missing = [p for p in paths if not in_schema(p)]
    report.check("values.schema.json describes every setting in values.yaml", not missing, f"missing: {missing}")
    extra = sorted(set(schema["properties"]) - set(values) - {"global"})
    report.check("values.schema.json has no top-level key that values.yaml lacks", not extra, f"extra: {extra}")
    # probes.<name>.<field> rows are documented per probe.
    rows = {re.sub(r"^(probes\.[a-z]+)\..*$", r"\1", p) for p in paths}
    undocumented = sorted(r for r in rows if f"| `{r}` |" not in readme)
    report.check("README.md's values table covers every setting", not undocumented, f"undocumented: {undocumented}")
    # The admin listener, the decision log and ext_authz have shipped: no doc
    # may still call them unreleased.
    stale = []
    for path in sorted(p for p in chart_dir.rglob("*") if p.is_file() and p.suffix in (".md", ".yaml", ".tpl", ".txt", ".json")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if STALE_WORDING.search(line):
                stale.append(f"{path.relative_to(chart_dir)}:{number}: {line.strip()}")
    report.check("no chart file calls a shipped stepup feature unreleased (admin, decision log, ext_authz)", not stale, "\n".join(stale))


# Artifact Hub's Helm annotations and their rules, as its tracker parses them
# (artifacthub/hub: internal/tracker/source/helm/helm.go; docs/helm_annotations.md).
ARTIFACTHUB_ANNOTATIONS = {
    "alternativeName", "category", "changes", "containsSecurityUpdates", "crds", "crdsExamples", "images",
    "license", "links", "maintainers", "operator", "operatorCapabilities", "prerelease", "recommendations",
    "screenshots", "signKey",
}
ARTIFACTHUB_CATEGORIES = {"ai-machine-learning", "database", "integration-delivery", "monitoring-logging",
                          "networking", "security", "storage", "streaming-messaging", "skip-prediction"}
ARTIFACTHUB_CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}
# A container image reference (the distribution/reference grammar, as
# go-containerregistry's name.ParseReference accepts it).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def check_chart_metadata(report: Report, chart_dir: Path) -> None:
    """Chart.yaml as Helm and Artifact Hub read it: the metadata fields, no
    URL or person that is not real (no URL exists yet: home, sources and icon
    are absent and the icon ships in the chart), and every artifacthub.io/*
    annotation in the format Artifact Hub's tracker accepts, its images
    annotation naming the image the default values deploy."""
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    annotations = meta.get("annotations") or {}

    def fields() -> None:
        expect(meta.get("apiVersion") == "v2" and meta.get("name") == chart_dir.name, "apiVersion v2, name = the chart's directory")
        expect(SEMVER.match(str(meta.get("version", ""))) is not None, f"version is SemVer, got {meta.get('version')!r}")
        expect(bool(meta.get("appVersion")) and bool(meta.get("description")) and bool(meta.get("keywords")), "appVersion, description, keywords")
        for key in ("home", "icon"):
            expect(key not in meta or str(meta[key]).startswith("https://"), f"{key} is an https URL when set, got {meta.get(key)!r}")
        expect(all(str(u).startswith("https://") for u in meta.get("sources") or []), f"sources are https URLs, got {meta.get('sources')}")
        for m in meta.get("maintainers") or []:
            # Artifact Hub lists only maintainers with an email.
            expect(bool(m.get("name")) and "@" in str(m.get("email", "")), f"a maintainer has a name and an email, got {m}")
        if "icon" not in meta:
            icon = chart_dir / "icon.svg"
            expect(icon.is_file(), "no icon URL: the chart ships icon.svg")
            root = ElementTree.parse(icon).getroot()
            expect(root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox"), "icon.svg is an SVG with a viewBox")
            ignored = [line.strip() for line in (chart_dir / ".helmignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
            expect(not any(fnmatch.fnmatch("icon.svg", pattern) for pattern in ignored), ".helmignore packages icon.svg")

    def artifacthub() -> None:
        unknown = sorted(k for k in annotations if k.startswith("artifacthub.io/") and k.split("/", 1)[1] not in ARTIFACTHUB_ANNOTATIONS)
        expect(not unknown, f"annotations Artifact Hub does not know (a typo?): {unknown}")
        for key in ("category", "license", "images", "links", "changes", "prerelease"):
            expect(f"artifacthub.io/{key}" in annotations, f"artifacthub.io/{key} is set")
        expect(annotations["artifacthub.io/category"] in ARTIFACTHUB_CATEGORIES, f"category {annotations['artifacthub.io/category']!r}")
        cargo_license = re.search(r'^license\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
        expect(cargo_license is not None and annotations["artifacthub.io/license"] == cargo_license.group(1),
               f"artifacthub.io/license {annotations['artifacthub.io/license']!r} is the crate's license (Cargo.toml)")
        for key in ("prerelease", "containsSecurityUpdates", "operator"):
            if f"artifacthub.io/{key}" in annotations:
                expect(annotations[f"artifacthub.io/{key}"] in ("true", "false"), f"artifacthub.io/{key} is the string true or false")
        images = yaml.safe_load(annotations["artifacthub.io/images"])
        expect(isinstance(images, list) and images and all(isinstance(i, dict) and i.get("name") and i.get("image") for i in images),
               f"artifacthub.io/images is a list of {{name, image}}, got {images!r}")
        for image in images:
            expect(set(image) <= {"name", "image", "whitelisted", "platforms"}, f"image fields: {sorted(image)}")
            expect(IMAGE_REF.match(image["image"]) is not None, f"{image['image']!r} is an image reference")
        image = values["image"]
        default = f"{image['repository']}@{image['digest']}" if image.get("digest") else f"{image['repository']}:{image.get('tag') or meta['appVersion']}"
        expect([i["image"] for i in images] == [default], f"artifacthub.io/images names the default values' image {default!r}, got {[i['image'] for i in images]}")
        links = yaml.safe_load(annotations["artifacthub.io/links"])
        expect(isinstance(links, list) and all(isinstance(link, dict) and link.get("name") and str(link.get("url", "")).startswith("https://")
                                               and set(link) == {"name", "url"} for link in links),
               f"artifacthub.io/links is a list of {{name, url (https)}}, got {links!r}")
        changes = yaml.safe_load(annotations["artifacthub.io/changes"])
        expect(isinstance(changes, list) and changes, "artifacthub.io/changes is a non-empty list")
        for change in changes:
            if isinstance(change, str):
                continue
            expect(isinstance(change, dict) and str(change.get("kind", "")).lower() in ARTIFACTHUB_CHANGE_KINDS and change.get("description"),
                   f"a change has a kind ({', '.join(sorted(ARTIFACTHUB_CHANGE_KINDS))}) and a description, got {change!r}")
            for link in change.get("links") or []:
                expect(bool(link.get("name")) and bool(link.get("url")), f"a change's link has a name and a url, got {link}")

    report.run("Chart.yaml: metadata (SemVer, no made-up URL or maintainer, icon.svg in the chart when there is no icon URL)", fields)
    report.run("Chart.yaml: Artifact Hub annotations (category, license = Cargo.toml's, images = the default image, links, changes, prerelease)", artifacthub)


def check_default_admin(report: Report, charts: Charts) -> None:
    """The defaults keep the admin listener (/metrics, /policy) off the pod
    network: explicit loopback, no admin port, gRPC probes; metrics.enabled
    alone moves it to 0.0.0.0 with a container port, a Service port and a
    ServiceMonitor that scrapes it."""
    def default() -> None:
        rendered = render(charts.stepup, {})
        container, _ = find_stepup(rendered.one("Deployment")["spec"]["template"])
        expect(flag(container["args"], "--admin") == "127.0.0.1:7172", f"default --admin must be 127.0.0.1:7172, got {container['args']}")
        expect(all(p["name"] != "admin" for p in container.get("ports") or []), "no admin container port by default")
        expect("grpc" in (container.get("readinessProbe") or {}), "gRPC probes by default")
        expect(not any(p["name"] == "metrics" for p in rendered.one("Service")["spec"]["ports"]), "no metrics Service port by default")
        rules = rendered.one("NetworkPolicy")["spec"]["ingress"]
        expect([[p["port"] for p in r["ports"]] for r in rules] == [["grpc"]], f"by default a NetworkPolicy admits the gRPC port only, got {rules}")
        expect(rules[0]["from"] == [{"podSelector": {}}], f"by default only the release namespace's pods, got {rules[0]['from']}")

    def metrics() -> None:
        monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        rendered = render(charts.stepup, {"metrics": {"enabled": True}, "serviceMonitor": {"enabled": True},
                                          "networkPolicy": {"metricsFrom": monitoring}})
        container, _ = find_stepup(rendered.one("Deployment")["spec"]["template"])
        expect(flag(container["args"], "--admin") == "0.0.0.0:7172", f"--admin must be 0.0.0.0:7172, got {container['args']}")
        expect({"name": "admin", "containerPort": 7172, "protocol": "TCP"} in (container.get("ports") or []), "container port admin 7172")
        port = next((p for p in rendered.one("Service")["spec"]["ports"] if p["name"] == "metrics"), None)
        expect(port is not None and port["port"] == 7172 and port["targetPort"] == "admin", f"Service port metrics 7172 -> admin, got {port}")
        endpoints = rendered.one("ServiceMonitor")["spec"]["endpoints"]
        expect([(e["port"], e["path"]) for e in endpoints] == [("metrics", "/metrics")], f"ServiceMonitor scrapes metrics /metrics, got {endpoints}")
        expect("grpc" in (container.get("readinessProbe") or {}), "metrics.enabled leaves the probes gRPC")
        admin_rules = [r for r in rendered.one("NetworkPolicy")["spec"]["ingress"] if any(p["port"] == "admin" for p in r["ports"])]
        expect([r["from"] for r in admin_rules] == [monitoring], f"the admin port admits metricsFrom only, got {admin_rules}")

    def secrets() -> None:
        values = {"secrets": {"values": {"historyHashKey": "s3cret-history", "decisionLogHashKey": "s3cret-log"}},
                  "config": "[history]\nbackend = \"redis\"\n"}
        rendered = render(charts.stepup, values)
        container, _ = find_stepup(rendered.one("Deployment")["spec"]["template"])
        with helm.Chart.load(charts.stepup) as chart:
            merged = chart.merge_values(values)
        assert_secrets(rendered, container, merged)
        expect("s3cret" not in json.dumps(rendered.one("Deployment")), "no secret value in the Deployment")

    def sidecar() -> None:
        rendered = render(charts.example, {})
        with helm.Chart.load(charts.stepup) as chart:
            defaults = chart.values
        expect(defaults["sidecar"]["probes"] is True and defaults["probes"]["type"] == "auto",
               f"values.yaml: sidecar.probes true and probes.type auto, got {defaults['sidecar']['probes']!r}, {defaults['probes']['type']!r}")
        container, where = find_stepup(stepup_pod(rendered))
        expect(where == "initContainers" and container.get("restartPolicy") == "Always", "a native sidecar")
        expect(flag(container["args"], "--listen") == "127.0.0.1:7171", f"the decision API on loopback, got {container['args']}")
        expect(flag(container["args"], "--admin") == "0.0.0.0:7172", f"the admin listener where the kubelet reaches it, got {container['args']}")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
        expect(ports == {"admin": 7172}, f"only the admin port declared (no grpc port), got {ports}")
        want = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
        got = {p: (dig(container, p, "httpGet", "path"), dig(container, p, "httpGet", "port")) for p in want}
        expect(got == {p: (path, "admin") for p, path in want.items()}, f"HTTP probes on the admin port, got {got}")

    def tls() -> None:
        rendered = render(charts.stepup, {"tls": {"secretName": "stepup-tls"}})
        container, _ = find_stepup(rendered.one("Deployment")["spec"]["template"])
        expect(dig(container, "readinessProbe", "httpGet", "path") == "/readyz", f"TLS: probes.type=auto is HTTP, got {container.get('readinessProbe')}")
        expect(flag(container["args"], "--admin") == "0.0.0.0:7172", f"--admin 0.0.0.0:7172 for the probes, got {container['args']}")
        rules = rendered.one("NetworkPolicy")["spec"]["ingress"]
        expect([[p["port"] for p in r["ports"]] for r in rules] == [["grpc"]], f"the NetworkPolicy admits no peer to the admin port, got {rules}")

    report.run("default values: admin listener on loopback (--admin 127.0.0.1:7172), no admin port, gRPC probes, a NetworkPolicy for the gRPC port only", default)
    report.run("sidecar defaults (sidecar.probes true, probes.type auto): native sidecar, decision API on loopback, "
               "startup/readiness /readyz and liveness /livez on the admin port 0.0.0.0:7172, no grpc port", sidecar)
    report.run("TLS with probes.type auto: HTTP probes on the admin port, which the NetworkPolicy admits to no peer", tls)
    report.run("metrics.enabled: --admin 0.0.0.0:7172, container port admin, Service port metrics, ServiceMonitor on /metrics", metrics)
    report.run("secrets.values: a Secret, the container's STEPUP_* secret variables from it, nothing secret elsewhere", secrets)


def run_all(report: Report, helm_dir: Path, tmp: Path) -> None:
    check_docs(report, helm_dir / "stepup")
    check_chart_metadata(report, helm_dir / "stepup")
    charts = prepare_charts(helm_dir, tmp)
    check_default_admin(report, charts)
    files = sorted((helm_dir / "stepup" / "ci").glob("*.yaml"))
    if not report.check("helm/stepup/ci has values files", bool(files), "none found"):
        return
    # stepup reloads policies live: by default a policy change is no rollout,
    # and the rollout option stays exercised by a CI values file.
    default = yaml.safe_load((helm_dir / "stepup" / "values.yaml").read_text())["policies"]["rolloutOnChange"]
    report.check("policies reload live by default (values.yaml: policies.rolloutOnChange: false)", default is False, f"got {default!r}")
    opted = [f.name for f in files if (load_values_file(f)[0].get("policies") or {}).get("rolloutOnChange") is True]
    report.check("a helm/stepup/ci values file sets policies.rolloutOnChange: true", bool(opted), "none does")
    for values_file in files:
        check_values_file(report, charts, values_file, tmp)
    check_example_defaults(report, charts, tmp)
    check_rejections(report, charts)


# --------------------------------------------------------------------------- mutation self-test

# Each mutation breaks a copy of the chart in a way a reviewer could miss; the
# checks above must then fail. (file, old, new, what it breaks)
MUTATIONS: list[tuple[str, str, str, str]] = [
    ("stepup/values.yaml", "  readOnlyRootFilesystem: true", "  readOnlyRootFilesystem: false", "writable root filesystem"),
    ("stepup/values.yaml", '    drop: ["ALL"]', '    drop: ["NET_RAW"]', "capabilities not all dropped"),
    ("stepup/templates/_helpers.tpl", '      {{- if ne $probe "liveness" }}', '      {{- if eq $probe "startup" }}', "readiness probe asks the wrong service"),
    ("stepup/templates/_helpers.tpl", '"readiness" "/readyz"', '"readiness" "/livez"', "HTTP readiness probe on /livez (never 503 on shutdown)"),
    ("stepup/templates/_helpers.tpl", '{{ printf "0.0.0.0:%d" (int $v.admin.port) }}', '{{ printf "127.0.0.1:%d" (int $v.admin.port) }}', "metrics enabled but the admin listener on loopback (unscrapeable)"),
    ("stepup/templates/_helpers.tpl", '{{- else }}{{ printf "127.0.0.1:%d" (int $v.admin.port) }}', '{{- else }}{{ printf "0.0.0.0:%d" (int $v.admin.port) }}', "admin listener on the pod IP by default"),
    ("stepup/templates/service.yaml", "      targetPort: admin", "      targetPort: metrics", "metrics Service port targeting no container port"),
    ("stepup/templates/deployment.yaml", '        {{- include "stepup.volumes" . | nindent 8 }}', "        []", "policy volume missing"),
    ("stepup/templates/service.yaml", "      targetPort: grpc", "      targetPort: 8080", "Service targets the wrong port"),
    ("stepup/values.schema.json", '  "additionalProperties": false,\n  "properties": {\n    "global"', '  "properties": {\n    "global"', "schema accepts unknown top-level keys"),
    ("stepup/templates/hpa.yaml", "  minReplicas:", "  minReplicas: 1\n  minReplicaz:", "HPA manifest invalid"),
    ("stepup/templates/deployment.yaml", '"probes" true', '"probes" false', "standalone without probes"),
    ("stepup/templates/_sidecar.tpl", "{{- if .Values.policies.rolloutOnChange }}", "{{- if true }}", "policy checksum regardless of rolloutOnChange"),
    ("stepup/templates/_sidecar.tpl", '{{- $lines = append $lines (printf "checksum/stepup-config: %s" .) }}', "", "config changes that do not roll the pods"),
    ("stepup/values.yaml", "  # when metrics.enabled; nothing else (kubelet probes come from the node,\n  # which a NetworkPolicy always admits).\n  enabled: true", "  enabled: false", "no NetworkPolicy by default"),
    ("stepup/templates/networkpolicy.yaml", "        {{- toYaml .Values.networkPolicy.ingressFrom | nindent 8 }}", "        - {}", "a NetworkPolicy that admits every peer on the gRPC port"),
    ("stepup/templates/_secrets.tpl", "      optional: true", "      optional: false", "secret keys required (a Secret with some keys cannot start the pod)"),
    ("stepup/templates/_helpers.tpl", "      readOnly: true\n    {{- if $v.config }}", "      readOnly: true\n      subPath: levels.yaml\n    {{- if $v.config }}", "a subPath policy mount (never updated, so never reloaded)"),
    ("stepup/templates/_helpers.tpl", "      mountPath: {{ $v.tls.mountPath }}\n      readOnly: true", "      mountPath: {{ $v.tls.mountPath }}\n      subPath: tls.crt\n      readOnly: true", "a subPath TLS mount (renewed certificates never reach the pod)"),
    ("stepup/templates/_helpers.tpl", "    - --listen-mode\n    - {{ $v.sidecar.unixSocket.mode | quote }}\n", "", "the socket's mode not passed"),
    ("stepup/templates/certificate.yaml", "  secretName: {{ include \"stepup.tlsSecretName\" . }}", "  secretName: {{ include \"stepup.fullname\" . }}", "a Certificate writing a Secret the pods do not mount"),
    ("stepup/values.yaml", "\n  probes: true\n", "\n  probes: false\n", "a sidecar without probes by default (the application starts before the policies load)"),
    ("stepup/templates/_helpers.tpl", '{{- else if and (eq $v.mode "sidecar") (or $v.sidecar.unixSocket.enabled (include "stepup.isLoopback" $v.sidecar.listen)) }}http', "{{- else if false }}http",
     "probes.type auto picking gRPC probes the kubelet cannot reach (a loopback sidecar)"),
    ("stepup/templates/_helpers.tpl", '{{- else if include "stepup.tlsSecretName" . }}http', "{{- else if false }}http", "probes.type auto picking gRPC probes on a TLS listener"),
    ("stepup/Chart.yaml", "artifacthub.io/category: security", "artifacthub.io/category: Security", "an Artifact Hub category Artifact Hub does not know"),
    ("stepup/Chart.yaml", "      image: stepup:0.1.0", "      image: stepup:latest", "artifacthub.io/images naming another image than the chart deploys"),
    ("stepup/Chart.yaml", "  artifacthub.io/prerelease: \"true\"", "  artifacthub.io/prerelease: \"yes\"", "an artifacthub.io/prerelease Artifact Hub cannot parse"),
    ("examples/payments-app/templates/networkpolicy.yaml", "    {{- if $stepup.metrics.enabled }}\n    - ports:", "    {{- if true }}\n    - ports:",
     "the example app admitting scrapers to the sidecar's admin port without metrics"),
]


def self_test(report: Report, tmp: Path) -> None:
    for file, old, new, what in MUTATIONS:
        name = f"self-test: a chart with {what} ({file}) fails the checks"
        work = Path(tempfile.mkdtemp(prefix="mutant-", dir=tmp))
        shutil.copytree(HELM_DIR / "stepup", work / "stepup")
        shutil.copytree(HELM_DIR / "examples", work / "examples")
        target = work / file
        text = target.read_text()
        if text.count(old) < 1:
            report.fail(name, f"mutation anchor not found in {file}; update MUTATIONS")
            continue
        target.write_text(text.replace(old, new))
        inner = Report(quiet=True, use_binary=False)
        try:
            run_all(inner, work, work)
        except helm.HelmError as exc:  # e.g. the mutant does not even load
            inner.fail("load", str(exc))
        if inner.failed:
            # The first failure's detail, minus the long check name.
            first = inner.failures[0]
            detail = first.split("): ", 1)[-1] if "): " in first else first
            report.ok(f"{name} [{detail.splitlines()[0][:120]}]")
        else:
            report.fail(name, "the broken chart passed every check")


# --------------------------------------------------------------------------- Dockerfile


def check_dockerfile(report: Report) -> None:
    path = ROOT / "Dockerfile"
    if not report.check("Dockerfile exists", path.is_file(), str(path)):
        return
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), str(path)], capture_output=True, text=True, check=False)
    report.check("Dockerfile: hadolint", proc.returncode == 0, proc.stdout + proc.stderr)

    try:
        commands = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as exc:
        report.fail("Dockerfile: BuildKit parser", str(exc))
        return
    report.ok("Dockerfile: BuildKit parser")
    stages: list[list[Any]] = []
    for command in commands:
        if command.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)

    def contract() -> None:
        expect(len(stages) >= 2, "multi-stage build")
        builds = [c for stage in stages[:-1] for c in stage if c.cmd == "RUN"]
        expect(any(re.search(r"\bcargo build --release --locked\b", " ".join(c.value)) for c in builds),
               "a build stage runs `cargo build --release --locked` (what CI runs)")
        final = stages[-1]
        base = final[0].value[0]
        expect(re.fullmatch(r"(gcr\.io/distroless/cc-debian\d+:nonroot|scratch)", base) is not None,
               f"final stage is distroless cc nonroot or scratch, got {base}")
        user = [c for c in final if c.cmd == "USER"]
        expect(bool(user) and re.fullmatch(r"65532(:65532)?", user[-1].value[0]) is not None,
               "final stage runs as numeric user 65532")
        entrypoint = [c for c in final if c.cmd == "ENTRYPOINT"]
        expect(bool(entrypoint) and entrypoint[-1].json and list(entrypoint[-1].value) == ["stepup"], 'ENTRYPOINT ["stepup"]')
        cmd = [c for c in final if c.cmd == "CMD"]
        expect(bool(cmd) and cmd[-1].json and list(cmd[-1].value) == ["serve", "--policies", "/etc/stepup/policies", "--listen", f"0.0.0.0:{GRPC_PORT}", "--admin", "0.0.0.0:7172"],
               'CMD ["serve","--policies","/etc/stepup/policies","--listen","0.0.0.0:7171","--admin","0.0.0.0:7172"]')
        exposed = sorted(port for c in final if c.cmd == "EXPOSE" for port in c.value)
        expect(exposed == ["7171", "7172"], f"EXPOSE 7171 (gRPC) and 7172 (admin), got {exposed}")
        copies = [c for c in final if c.cmd == "COPY"]
        expect(any(c.value[-1].rstrip("/") == "/usr/local/bin/stepup" for c in copies), "binary copied to /usr/local/bin/stepup")
        expect(any(c.value[0].rstrip("/") == "policies" and c.value[-1].rstrip("/") == "/etc/stepup/policies" for c in copies),
               "example policies baked in at /etc/stepup/policies (the chart's mount path)")
        with helm.Chart.load(CHART) as chart:
            expect(chart.values["policies"]["mountPath"] == "/etc/stepup/policies", "chart mounts policies where the image has them")

    report.run("Dockerfile: contract (stages, cargo build --release --locked, distroless nonroot, USER 65532, ENTRYPOINT, CMD, EXPOSE, policies)", contract)

    def toolchain() -> None:
        arg = next((c.value[0] for c in commands if c.cmd == "ARG" and c.value[0].startswith("RUST_VERSION=")), None)
        expect(arg is not None, "ARG RUST_VERSION=<toolchain> pins the build toolchain")
        image_version = tuple(int(x) for x in arg.split("=", 1)[1].split("."))
        msrv = re.search(r'^rust-version\s*=\s*"([0-9.]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
        if msrv:
            need = tuple(int(x) for x in msrv.group(1).split("."))
            expect(image_version >= need[:len(image_version)], f"RUST_VERSION {arg} is older than Cargo.toml rust-version {msrv.group(1)}")
        rustc = shutil.which("rustc")
        if rustc:
            out = subprocess.run([rustc, "--version"], capture_output=True, text=True, check=False).stdout
            local = re.search(r"rustc (\d+)\.(\d+)", out)
            if local and (int(local.group(1)), int(local.group(2))) != image_version[:2]:
                report.note(f"NOTE Dockerfile builds with Rust {arg.split('=')[1]} but this machine (and CI) has {out.strip()}; keep them in step")

    report.run("Dockerfile: build toolchain pinned and not older than Cargo.toml rust-version", toolchain)

    def ignore() -> None:
        patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
        for needed in ("Cargo.toml", "Cargo.lock", "build.rs", "src", "proto", "benches", "policies"):
            expect(needed not in patterns and f"/{needed}" not in patterns, f".dockerignore must not exclude {needed}")
        for unwanted in ("target", ".git"):
            expect(unwanted in patterns, f".dockerignore should exclude {unwanted}")

    report.run(".dockerignore keeps the crate and policies in the build context, target and .git out", ignore)

    name = "the policies baked into the image (policies/) pass `stepup check`"
    binary = find_stepup_binary()
    if binary is None:
        report.fail(name, NO_BINARY)
    else:
        proc = subprocess.run([str(binary), "check", "--policies", str(ROOT / "policies")], capture_output=True, text=True, check=False, timeout=60)
        report.check(name, proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}")


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-self-test", action="store_true", help="skip the mutation self-test")
    args = parser.parse_args()
    started = time.monotonic()
    report = Report()
    report.note(f"tools: Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
                f"kubernetes-validate {__import__('kubernetes_validate').__version__}, kube versions {', '.join(KUBE_VERSIONS)}")
    with tempfile.TemporaryDirectory(prefix="stepup-helm-check-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            run_all(report, HELM_DIR, tmp)
            if args.no_self_test:
                report.skip("self-test", "--no-self-test")
            else:
                self_test(report, tmp)
        except helm.HelmError as exc:
            report.fail("helm", f"{type(exc).__name__}: {exc}")
    check_dockerfile(report)
    elapsed = time.monotonic() - started
    if report.failed:
        print("FAILED:\n  " + "\n  ".join(report.failures))
    print(f"took {elapsed:.1f}s")
    # The plain closing line CI reads.
    print(f"helm: {report.passed} passed, {report.failed} failed, {report.skipped} skipped")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
