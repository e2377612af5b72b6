"""Validates stepup's /metrics with the Prometheus project's own parsers.

    python check.py TEXT_FILE OPENMETRICS_FILE

TEXT_FILE is a scrape in the text format 0.0.4, OPENMETRICS_FILE one in
OpenMetrics 1.0, both taken after known traffic (tests/telemetry.rs writes
them and runs this script). Exits 1 with the failures listed.
"""

import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def families(parse, body, fmt):
    try:
        return {f.name: f for f in parse(body)}
    except Exception as e:  # the parser's verdict is the check
        failures.append(f"{fmt}: does not parse: {e!r}")
        return {}


def histogram_consistent(family, fmt):
    """Cumulative buckets, ending in +Inf equal to _count, per label set."""
    series = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        key = tuple(sorted(labels.items()))
        series.setdefault(key, {"buckets": [], "count": None})
        if s.name.endswith("_bucket"):
            series[key]["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            series[key]["count"] = s.value
    check(series, f"{fmt}: {family.name} has no series")
    for key, v in series.items():
        counts = [c for _, c in v["buckets"]]
        check(counts == sorted(counts), f"{fmt}: {family.name}{key} buckets not cumulative")
        check(
            v["buckets"] and v["buckets"][-1][0] == float("inf"),
            f"{fmt}: {family.name}{key} has no +Inf bucket",
        )
        check(
            v["buckets"] and v["buckets"][-1][1] == v["count"],
            f"{fmt}: {family.name}{key} +Inf bucket differs from _count",
        )
    return series


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    om = open(sys.argv[2], encoding="utf-8").read()
    check(om.endswith("# EOF\n"), "openmetrics: does not end with # EOF")

    for fmt, fams in (
        ("text", families(text_families, text, "text")),
        ("openmetrics", families(openmetrics_families, om, "openmetrics")),
    ):
        for name, f in fams.items():
            check(f.type != "unknown", f"{fmt}: {name} has samples outside a typed family")
            check(
                name.startswith(("stepup_", "process_")),
                f"{fmt}: {name} is not named stepup_* or process_*",
            )
        # The prometheus_client parsers name a counter's family without _total.
        want = {
            "stepup_decisions": "counter",
            "stepup_grpc_requests": "counter",
            "stepup_decision_duration_seconds": "histogram",
            "stepup_grpc_server_handling_seconds": "histogram",
            "stepup_build_info": "gauge",
            "stepup_policy_last_reload_success_timestamp_seconds": "gauge",
            "process_cpu_seconds": "counter",
            "process_resident_memory_bytes": "gauge",
            "process_virtual_memory_bytes": "gauge",
            "process_open_fds": "gauge",
            "process_max_fds": "gauge",
            "process_start_time_seconds": "gauge",
        }
        for name, typ in want.items():
            got = fams.get(name)
            check(got is not None and got.type == typ, f"{fmt}: {name}: want a {typ}, got {got and got.type}")
        for name, f in fams.items():
            if f.type == "histogram":
                series = histogram_consistent(f, fmt)
                if name == "stepup_grpc_server_handling_seconds":
                    methods = {dict(k).get("method") for k in series}
                    check(
                        {"Decide", "Check", "RecordStepUp"} <= methods,
                        f"{fmt}: {name} methods {sorted(m for m in methods if m)}",
                    )
                    decide = series.get((("method", "Decide"),))
                    check(decide and decide["count"] == 5, f"{fmt}: Decide calls {decide and decide['count']}")
            if f.type == "counter":
                check(
                    all(s.name in (name + "_total", name + "_created") for s in f.samples),
                    f"{fmt}: counter {name} has samples not named {name}_total",
                )
        if fmt == "openmetrics":
            for name, unit in (
                ("stepup_decision_duration_seconds", "seconds"),
                ("process_resident_memory_bytes", "bytes"),
                ("process_cpu_seconds", "seconds"),
            ):
                got = fams.get(name)
                check(got is not None and got.unit == unit, f"openmetrics: {name} unit {got and got.unit!r}")
        build = fams.get("stepup_build_info")
        check(
            build is not None and [s.value for s in build.samples] == [1.0] and "version" in build.samples[0].labels,
            f"{fmt}: stepup_build_info {build and build.samples}",
        )

    # Both formats carry the same stepup samples (process ones move between
    # the two scrapes).
    def samples(fams):
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in fams.values()
            if f.name.startswith("stepup_")
            for s in f.samples
        )

    check(
        samples(families(text_families, text, "text")) == samples(families(openmetrics_families, om, "openmetrics")),
        "the text and OpenMetrics scrapes carry different stepup samples",
    )

    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("ok: both expositions parse and carry the expected families")


main()
