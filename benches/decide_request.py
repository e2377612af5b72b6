#!/usr/bin/env python3
"""Writes the load benchmarks' fixed Decide request, gRPC-framed (flag byte 0,
big-endian u32 length), to the file named by the first argument; with
`--worst` after it, the worst-case request of benches/isolation.sh instead.

Hand-encoded so nothing but python3 is needed: a 2,500 refund from a trusted
device in a usual country, on an aal1 session that authenticated two minutes
ago, so policies/ answers CHALLENGE (aal2) through the signals and rules.
Used by benches/load.sh, benches/callgrind.sh and benches/isolation.sh.

The worst-case request is a `probe.worst` (benches/worst.yaml) at the
server's size limits: 64 roles of 1,024 bytes each, shaped so that no
condition of that policy can stop early.
"""
import struct, sys, time

def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)

def tag(field, wire):
    return varint(field << 3 | wire)

def string(field, text):
    data = text.encode()
    return tag(field, 2) + varint(len(data)) + data

def message(field, data):
    return tag(field, 2) + varint(len(data)) + data

def uint(field, n):
    return tag(field, 0) + varint(n)

def double(field, x):
    return tag(field, 1) + struct.pack("<d", x)

def number_value(x):  # google.protobuf.Value { number_value = 2 }
    return double(2, x)

def string_value(text):  # google.protobuf.Value { string_value = 3 }
    return string(3, text)

def list_value(values):  # google.protobuf.Value { list_value = 6 }
    return message(6, b"".join(message(1, v) for v in values))

def map_entry(field, key, value):
    return message(field, string(1, key) + message(2, value))

request = b"".join([
    string(1, "payments.refund"),  # action
    message(2, string(1, "user-42") + string(2, "acme") + string(3, "support")  # subject
        + map_entry(4, "usual_countries", list_value([string_value("DE"), string_value("FR")]))
        + map_entry(4, "timezone", string_value("Europe/Berlin"))),
    message(3, string(1, "sess-9f2c") + string(2, "urn:stepup:aal1")  # session
        + string(3, "pwd") + message(4, uint(1, int(time.time()) - 120))),
    message(4, string(1, "dev-7a1b") + uint(2, 1) + string(3, "ios")),  # device
    message(5, string(1, "203.0.113.7") + string(2, "DE") + uint(3, 3320)),  # network
    message(6, string(1, "refund") + string(2, "rf-1001")  # resource
        + map_entry(3, "amount", number_value(2500.0))),
    map_entry(7, "fraud_score", number_value(0.12)),  # attributes
])
if sys.argv[2:] == ["--worst"]:
    def role(i):  # distinct, 1,024 bytes, every substring the rules test but the last
        text = "p" + "a" * 500 + f"{i:03d}" + "a" * 505 + "zzyywwvvuuttss" + "q"
        assert len(text) == 1024
        return text
    request = b"".join([
        string(1, "probe.worst"),  # action
        message(2, string(1, "user-42") + b"".join(  # subject, 64 roles
            string(3, role(i)) for i in range(64))),
    ])
elif sys.argv[2:]:
    sys.exit(f"usage: {sys.argv[0]} FILE [--worst]")
with open(sys.argv[1], "wb") as out:
    out.write(b"\0" + struct.pack(">I", len(request)) + request)
