//! A minimal writer of the MaxMind DB format (spec:
//! <https://maxmind.github.io/MaxMind-DB/>), for tests only: tests build the
//! tiny databases they need instead of checking in binary files. An IPv6
//! tree with 32-bit records; IPv4 prefixes live under `::/96` as in
//! MaxMind's own databases. Not compiled into the library: unit tests
//! include it as a module and integration tests can with `#[path]`.

#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::IpAddr;

/// A value of the MaxMind DB data section.
#[derive(Clone, Debug)]
pub enum Value {
    /// UTF-8 string.
    Str(String),
    /// IEEE 754 double.
    Double(f64),
    /// Unsigned 16-bit integer.
    U16(u16),
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// Map with string keys.
    Map(Vec<(String, Value)>),
    /// Array.
    Array(Vec<Value>),
}

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Self {
        Value::Str(s.to_owned())
    }

    /// A map value.
    pub fn map<const N: usize>(entries: [(&str, Value); N]) -> Self {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// A GeoIP2 city record: country code and coordinates.
    pub fn city(country: &str, lat: f64, lon: f64) -> Self {
        Value::map([
            ("country", Value::map([("iso_code", Value::str(country))])),
            (
                "location",
                Value::map([
                    ("latitude", Value::Double(lat)),
                    ("longitude", Value::Double(lon)),
                    ("accuracy_radius", Value::U16(20)),
                ]),
            ),
        ])
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => {
                control(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Double(d) => {
                control(out, 3, 8);
                out.extend_from_slice(&d.to_be_bytes());
            }
            Value::U16(n) => uint(out, 5, u64::from(*n)),
            Value::U32(n) => uint(out, 6, u64::from(*n)),
            Value::U64(n) => uint(out, 9, *n),
            Value::Map(entries) => {
                control(out, 7, entries.len());
                for (k, v) in entries {
                    Value::Str(k.clone()).encode(out);
                    v.encode(out);
                }
            }
            Value::Array(items) => {
                control(out, 11, items.len());
                for v in items {
                    v.encode(out);
                }
            }
        }
    }
}

/// A control byte (and extended type and size bytes) for `kind` and `size`.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (first_type, extended) = if kind <= 7 {
        (kind << 5, None)
    } else {
        (0, Some(kind - 7))
    };
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65_536 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    out.push(first_type | size_bits);
    if let Some(e) = extended {
        out.push(e);
    }
    out.extend(extra);
}

fn uint(out: &mut Vec<u8>, kind: u8, n: u64) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

#[derive(Clone, Copy)]
enum Child {
    Empty,
    Node(usize),
    Data(usize),
}

/// Builds a database in memory.
pub struct MmdbWriter {
    database_type: String,
    nodes: Vec<[Child; 2]>,
    data: Vec<u8>,
}

impl MmdbWriter {
    /// An empty database of `database_type` (e.g. `GeoLite2-City`).
    pub fn new(database_type: &str) -> Self {
        Self {
            database_type: database_type.to_owned(),
            nodes: vec![[Child::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// Maps the prefix `cidr` (`192.0.2.0/24`, `2001:db8::/32`) to `value`.
    /// Insert wider prefixes before narrower ones inside them.
    pub fn insert(&mut self, cidr: &str, value: Value) {
        let (addr, len) = cidr.split_once('/').unwrap();
        let addr: IpAddr = addr.parse().unwrap();
        let len: usize = len.parse().unwrap();
        let (bits, len) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), len + 96),
            IpAddr::V6(a) => (u128::from(a), len),
        };
        let offset = self.data.len();
        value.encode(&mut self.data);
        let mut node = 0;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == len {
                self.nodes[node][bit] = Child::Data(offset);
                return;
            }
            node = match self.nodes[node][bit] {
                Child::Node(next) => next,
                other => {
                    // Split an empty or data record into a node whose two
                    // halves keep what it held.
                    let fill = match other {
                        Child::Data(d) => Child::Data(d),
                        _ => Child::Empty,
                    };
                    self.nodes.push([fill; 2]);
                    let next = self.nodes.len() - 1;
                    self.nodes[node][bit] = Child::Node(next);
                    next
                }
            };
        }
    }

    /// The database file's bytes.
    pub fn finish(self) -> Vec<u8> {
        let node_count = self.nodes.len();
        let record = |c: Child| -> u32 {
            (match c {
                Child::Empty => node_count,
                Child::Node(i) => i,
                Child::Data(off) => node_count + 16 + off,
            }) as u32
        };
        let mut out = Vec::new();
        for [left, right] in &self.nodes {
            out.extend_from_slice(&record(*left).to_be_bytes());
            out.extend_from_slice(&record(*right).to_be_bytes());
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        Value::map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_764_000_000)),
            ("database_type", Value::Str(self.database_type.clone())),
            (
                "description",
                Value::map([("en", Value::str("stepup test database"))]),
            ),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("node_count", Value::U32(node_count as u32)),
            ("record_size", Value::U16(32)),
        ])
        .encode(&mut out);
        out
    }
}
