#![allow(missing_docs)] // criterion_group! generates undocumented items
#![expect(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a bench with bad fixtures should stop at once"
)]
//! Named IP list lookups (`ip_in`) over a list of 50,000 prefixes, 40,000
//! IPv4 and 10,000 IPv6 of mixed lengths, as a feed of Tor exits, VPN ranges
//! and hosting networks would be: hits and misses per family, an
//! IPv4-mapped IPv6 address, and the lookup from the address text (what
//! `ip_in` does besides the CEL call), and the whole `ip_in` CEL call. Also
//! the cost of reading the file.
//! Run: `cargo bench --bench lists`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stepup::internal::{IpList, Lists};

/// xorshift64: deterministic fixtures without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The list file's text, and the prefixes it holds.
fn fixture(rng: &mut Rng) -> (String, Vec<(IpAddr, u8)>) {
    let mut text = String::from("# bench list: 40,000 IPv4 and 10,000 IPv6 prefixes\n");
    let mut prefixes = Vec::with_capacity(50_000);
    for _ in 0..40_000 {
        let len: u8 = match rng.next() % 100 {
            0..45 => 32,
            45..80 => 24,
            _ => 16 + (rng.next() % 8) as u8,
        };
        let mask = u32::MAX << (32 - u32::from(len));
        let addr = Ipv4Addr::from((rng.next() >> 32) as u32 & mask);
        writeln!(text, "{addr}/{len}").expect("write to a string");
        prefixes.push((IpAddr::V4(addr), len));
    }
    for _ in 0..10_000 {
        let len: u8 = match rng.next() % 100 {
            0..40 => 128,
            40..80 => 48,
            _ => 32 + (rng.next() % 32) as u8,
        };
        let bits = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3 | (1 << 125); // 2000::/3
        let mask = u128::MAX << (128 - u32::from(len));
        let addr = Ipv6Addr::from(bits & mask);
        writeln!(text, "{addr}/{len}").expect("write to a string");
        prefixes.push((IpAddr::V6(addr), len));
    }
    (text, prefixes)
}

/// An address inside the prefix.
fn inside(rng: &mut Rng, (addr, len): (IpAddr, u8)) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let host = if len == 32 {
                0
            } else {
                (rng.next() as u32) & (u32::MAX >> len)
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
        }
        IpAddr::V6(a) => {
            let host = if len == 128 {
                0
            } else {
                (u128::from(rng.next()) << 64 | u128::from(rng.next())) & (u128::MAX >> len)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
        }
    }
}

const PROBES: usize = 4096;

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (text, prefixes) = fixture(&mut rng);
    let list = IpList::parse(Path::new("bench.txt"), &text).expect("the fixture parses");
    let (v4_ranges, v6_ranges) = list.ranges();
    eprintln!(
        "lists: {} prefixes ({} bytes of text) merged into {v4_ranges} IPv4 and {v6_ranges} IPv6 ranges ({} KiB)",
        list.prefixes(),
        text.len(),
        (v4_ranges * 8 + v6_ranges * 32) / 1024
    );

    let (v4, v6): (Vec<_>, Vec<_>) = prefixes.iter().partition(|(a, _)| a.is_ipv4());
    let hits = |rng: &mut Rng, from: &[(IpAddr, u8)]| -> Vec<IpAddr> {
        (0..PROBES)
            .map(|_| {
                let prefix = from[(rng.next() % from.len() as u64) as usize];
                inside(rng, prefix)
            })
            .collect()
    };
    let v4_hits = hits(&mut rng, &v4);
    let v6_hits = hits(&mut rng, &v6);
    let mapped_hits: Vec<IpAddr> = v4_hits
        .iter()
        .map(|a| match a {
            IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
            other => *other,
        })
        .collect();
    let misses = |rng: &mut Rng, v6: bool| -> Vec<IpAddr> {
        let mut out = Vec::with_capacity(PROBES);
        while out.len() < PROBES {
            let a = if v6 {
                IpAddr::V6(Ipv6Addr::from(
                    (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3 | (1 << 125),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from((rng.next() >> 32) as u32))
            };
            if !list.contains(a) {
                out.push(a);
            }
        }
        out
    };
    let v4_misses = misses(&mut rng, false);
    let v6_misses = misses(&mut rng, true);
    assert!(
        v4_hits
            .iter()
            .chain(&v6_hits)
            .chain(&mapped_hits)
            .all(|a| list.contains(*a))
    );
    let v4_hit_text: Vec<String> = v4_hits.iter().map(ToString::to_string).collect();
    let v6_hit_text: Vec<String> = v6_hits.iter().map(ToString::to_string).collect();

    let mut g = c.benchmark_group("lists/lookup");
    g.throughput(Throughput::Elements(PROBES as u64));
    for (name, probes) in [
        ("v4 hit", &v4_hits),
        ("v4 miss", &v4_misses),
        ("v6 hit", &v6_hits),
        ("v6 miss", &v6_misses),
        ("v4-mapped v6 hit", &mapped_hits),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0u32;
                for a in probes {
                    n += u32::from(list.contains(black_box(*a)));
                }
                n
            });
        });
    }
    for (name, probes) in [
        ("v4 hit from text", &v4_hit_text),
        ("v6 hit from text", &v6_hit_text),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0u32;
                for a in probes {
                    let ip: IpAddr = black_box(a.as_str()).parse().expect("valid address");
                    n += u32::from(list.contains(ip));
                }
                n
            });
        });
    }
    g.finish();

    // The whole CEL call as a condition makes it: `ip_in(ip, "tor_exits")`
    // with `ip` a string variable, in a child scope of a root context
    // holding the function, as the engine evaluates.
    let lists = Arc::new(Lists::from_ip_lists([(
        "tor_exits".to_owned(),
        list.clone(),
    )]));
    let env = Arc::new(cel::Env::stdlib());
    let program = env
        .compile(r#"ip_in(ip, "tor_exits")"#)
        .expect("the expression compiles");
    let mut root = cel::Context::with_env(env);
    stepup::internal::add_ip_in(&mut root, &lists);
    let mut g = c.benchmark_group("lists/ip_in");
    for (name, ip) in [("v4 hit", &v4_hit_text[0]), ("v6 hit", &v6_hit_text[0])] {
        let mut ctx = root.new_inner_scope();
        ctx.add_variable_from_value("ip", ip.clone());
        assert_eq!(program.execute(&ctx), Ok(cel::Value::Bool(true)));
        g.bench_function(name, |b| b.iter(|| program.execute(black_box(&ctx))));
    }
    g.finish();

    let mut g = c.benchmark_group("lists/load");
    g.sample_size(10);
    g.bench_function("parse and merge 50k prefixes", |b| {
        b.iter(|| IpList::parse(Path::new("bench.txt"), black_box(&text)).expect("parses"));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
