//! One named IP list: CIDR prefixes read from a text file, kept per address
//! family as sorted, merged, non-overlapping ranges (`u32` for IPv4, `u128`
//! for IPv6), so a lookup is one binary search over plain integers and
//! allocates nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::ListError;

/// At most this many bad lines are reported per file; the rest are counted.
const MAX_LINE_ERRORS: usize = 20;

/// The ranges of one address family: `starts` sorted ascending, and
/// `ends[i]` the inclusive end of the range starting at `starts[i]`. Ranges
/// neither overlap nor touch (they are merged when built), so the only range
/// that can hold `x` is the last one starting at or before `x`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ranges<T> {
    starts: Box<[T]>,
    ends: Box<[T]>,
}

impl<T: Copy + Ord + Bound> Ranges<T> {
    /// Sorts and merges overlapping or adjacent ranges.
    fn build(mut ranges: Vec<(T, T)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                // `last.1 == MAX` already covers everything after it.
                Some(last) if last.1 == T::MAX || start <= last.1.next() => {
                    if end > last.1 {
                        last.1 = end;
                    }
                }
                _ => merged.push((start, end)),
            }
        }
        let (starts, ends): (Vec<T>, Vec<T>) = merged.into_iter().unzip();
        Self {
            starts: starts.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    #[inline]
    fn contains(&self, x: T) -> bool {
        let after = self.starts.partition_point(|&s| s <= x);
        after
            .checked_sub(1)
            .and_then(|i| self.ends.get(i))
            .is_some_and(|&end| x <= end)
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

/// IPv6 ranges, with the high 64 bits of each start kept alongside: the
/// search runs over `u64`s (a branchless loop; `u128` comparisons compile to
/// branches that random addresses mispredict), and only starts that tie
/// with the address on the high half are compared in full.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ranges6 {
    hi: Box<[u64]>,
    full: Ranges<u128>,
}

impl Ranges6 {
    fn build(ranges: Vec<(u128, u128)>) -> Self {
        let full = Ranges::build(ranges);
        let hi = full.starts.iter().map(|&s| (s >> 64) as u64).collect();
        Self { hi, full }
    }

    #[inline]
    fn contains(&self, x: u128) -> bool {
        let xh = (x >> 64) as u64;
        let after = self.hi.partition_point(|&h| h <= xh);
        let Some(last) = after.checked_sub(1) else {
            return false;
        };
        // The last range starting at or before `x`: `last` unless it (and
        // maybe others before it) starts in x's own /64 block, after `x`.
        let candidate = if self.hi.get(last) == Some(&xh) {
            // The ranges starting in this /64 block are few as a rule: walk
            // back a little, then search if there are more.
            let mut first = last;
            for _ in 0..8 {
                match first.checked_sub(1) {
                    Some(prev) if self.hi.get(prev) == Some(&xh) => first = prev,
                    _ => break,
                }
            }
            if first.checked_sub(1).and_then(|p| self.hi.get(p)) == Some(&xh) {
                first = self
                    .hi
                    .get(..first)
                    .map_or(0, |h| h.partition_point(|&h| h < xh));
            }
            let tied = self.full.starts.get(first..after).unwrap_or(&[]);
            match (first + tied.partition_point(|&s| s <= x)).checked_sub(1) {
                Some(i) => i,
                None => return false,
            }
        } else {
            last
        };
        self.full.ends.get(candidate).is_some_and(|&end| x <= end)
    }

    fn len(&self) -> usize {
        self.full.len()
    }
}

/// The integer types ranges are kept in.
trait Bound: Sized {
    const MAX: Self;
    /// `self + 1`, saturating.
    fn next(self) -> Self;
}

impl Bound for u32 {
    const MAX: Self = u32::MAX;
    fn next(self) -> Self {
        self.saturating_add(1)
    }
}

impl Bound for u128 {
    const MAX: Self = u128::MAX;
    fn next(self) -> Self {
        self.saturating_add(1)
    }
}

/// A set of IPv4 and IPv6 prefixes. IPv4-mapped IPv6 addresses
/// (`::ffff:192.0.2.1`) match the IPv4 prefixes, and prefixes written in that
/// form (`::ffff:192.0.2.0/120`) count as IPv4.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpList {
    v4: Ranges<u32>,
    v6: Ranges6,
    prefixes: usize,
}

impl IpList {
    /// Builds a list from prefixes (address, prefix length). Host bits below
    /// the prefix length are ignored; lengths past the address size are
    /// clamped.
    pub fn from_prefixes(prefixes: impl IntoIterator<Item = (IpAddr, u8)>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut count = 0;
        for (addr, len) in prefixes {
            count += 1;
            match canonical(addr, len) {
                Prefix::V4(a, l) => v4.push(range_v4(a, l)),
                Prefix::V6(a, l) => v6.push(range_v6(a, l)),
            }
        }
        Self {
            v4: Ranges::build(v4),
            v6: Ranges6::build(v6),
            prefixes: count,
        }
    }

    /// Reads a list file: one prefix (`192.0.2.0/24`, `2001:db8::/32`) or
    /// address (a /32 or /128) per line; `#` starts a comment; blank lines
    /// are skipped. Every bad line is reported (up to a limit), with its
    /// file, line and column.
    pub fn read(path: &Path) -> Result<Self, Vec<ListError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ListError::Read {
                what: "IP list",
                path: path.to_path_buf(),
                message: e.to_string(),
            }]
        })?;
        Self::parse(path, &text)
    }

    /// Parses list text; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Vec<ListError>> {
        let mut prefixes = Vec::new();
        let mut errors = Vec::new();
        let mut bad = 0usize;
        for (i, line) in text.lines().enumerate() {
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some(p)) => prefixes.push(p),
                Err(e) => {
                    bad += 1;
                    if errors.len() < MAX_LINE_ERRORS {
                        errors.push(ListError::Line {
                            path: path.to_path_buf(),
                            line: i + 1,
                            column: e.column,
                            len: e.len,
                            source_line: line.to_owned(),
                            message: e.message,
                            help: e.help,
                        });
                    }
                }
            }
        }
        if bad > errors.len() {
            errors.push(ListError::More {
                path: path.to_path_buf(),
                count: bad - errors.len(),
            });
        }
        if errors.is_empty() {
            Ok(Self::from_prefixes(prefixes))
        } else {
            Err(errors)
        }
    }

    /// Whether `ip` is in one of the prefixes.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => {
                v6.to_ipv4_mapped()
                    .is_some_and(|v4| self.v4.contains(u32::from(v4)))
                    || self.v6.contains(u128::from(v6))
            }
        }
    }

    /// How many prefixes the list was built from (before merging).
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// How many disjoint ranges remain after merging (IPv4, IPv6).
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Feeds the merged ranges to `h` (what the list matches, whatever the
    /// file's comments, order or overlaps).
    pub(super) fn hash_into(&self, h: &mut Sha256) {
        h.update((self.v4.len() as u64).to_be_bytes());
        for (s, e) in self.v4.starts.iter().zip(self.v4.ends.iter()) {
            h.update(s.to_be_bytes());
            h.update(e.to_be_bytes());
        }
        h.update((self.v6.len() as u64).to_be_bytes());
        for (s, e) in self.v6.full.starts.iter().zip(self.v6.full.ends.iter()) {
            h.update(s.to_be_bytes());
            h.update(e.to_be_bytes());
        }
    }
}

enum Prefix {
    V4(Ipv4Addr, u8),
    V6(Ipv6Addr, u8),
}

/// IPv4-mapped IPv6 prefixes of /96 or longer become IPv4 prefixes.
fn canonical(addr: IpAddr, len: u8) -> Prefix {
    match addr {
        IpAddr::V4(a) => Prefix::V4(a, len.min(32)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) if len >= 96 => Prefix::V4(v4, (len - 96).min(32)),
            _ => Prefix::V6(a, len.min(128)),
        },
    }
}

fn mask_v4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

fn range_v4(a: Ipv4Addr, len: u8) -> (u32, u32) {
    let mask = mask_v4(len);
    let start = u32::from(a) & mask;
    (start, start | !mask)
}

fn range_v6(a: Ipv6Addr, len: u8) -> (u128, u128) {
    let mask = mask_v6(len);
    let start = u128::from(a) & mask;
    (start, start | !mask)
}

/// A bad line, before the file and line number are known.
struct LineError {
    column: usize,
    len: usize,
    message: String,
    help: Option<String>,
}

/// One line: `Ok(None)` for blank and comment lines.
fn parse_line(line: &str) -> Result<Option<(IpAddr, u8)>, LineError> {
    let content = line.split_once('#').map_or(line, |(before, _)| before);
    let Some(token) = content.split_whitespace().next() else {
        return Ok(None);
    };
    // Byte offsets are fine for slicing; columns are counted in characters.
    let start = content.find(token).unwrap_or(0);
    let column = content.get(..start).map_or(0, |s| s.chars().count()) + 1;
    let err = |message: String, help: Option<String>| LineError {
        column,
        len: token.chars().count(),
        message,
        help,
    };
    if let Some(extra) = content.get(start + token.len()..).map(str::trim)
        && !extra.is_empty()
    {
        let at = content
            .get(..start + token.len())
            .map_or(0, |s| s.chars().count())
            + content
                .get(start + token.len()..)
                .map_or(0, |s| s.chars().count() - s.trim_start().chars().count())
            + 1;
        return Err(LineError {
            column: at,
            len: extra.chars().count(),
            message: format!("unexpected `{extra}` after the prefix"),
            help: Some("write one prefix per line; comments start with `#`".to_owned()),
        });
    }
    let (addr_text, len_text) = match token.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (token, None),
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        return Err(err(
            format!("`{token}` is not an IP address or CIDR prefix"),
            Some("write an address (`192.0.2.1`, `2001:db8::1`) or a prefix (`192.0.2.0/24`, `2001:db8::/32`)".to_owned()),
        ));
    };
    let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => bits,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if n <= u32::from(bits) => u8::try_from(n).unwrap_or(bits),
            Ok(_) => {
                return Err(err(
                    format!("prefix length `/{l}` in `{token}` is longer than {bits} bits"),
                    None,
                ));
            }
            Err(_) => {
                return Err(err(
                    format!("prefix length `/{l}` in `{token}` is not a number"),
                    None,
                ));
            }
        },
    };
    let network = match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len))),
    };
    if network != addr {
        return Err(err(
            format!("`{token}` has host bits set"),
            Some(format!("the network is `{network}/{len}`")),
        ));
    }
    Ok(Some((addr, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> IpList {
        IpList::parse(Path::new("l.txt"), text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn errors(text: &str) -> Vec<String> {
        IpList::parse(Path::new("lists/l.txt"), text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn ipv4_prefixes_and_bare_addresses() {
        let l = list("# Tor exits\n\n192.0.2.0/24\n198.51.100.7   # one host\n  10.0.0.0/8\n");
        assert!(l.contains(ip("192.0.2.0")));
        assert!(l.contains(ip("192.0.2.255")));
        assert!(!l.contains(ip("192.0.3.0")));
        assert!(!l.contains(ip("192.0.1.255")));
        assert!(l.contains(ip("198.51.100.7")));
        assert!(!l.contains(ip("198.51.100.8")));
        assert!(!l.contains(ip("198.51.100.6")));
        assert!(l.contains(ip("10.255.255.255")));
        assert!(!l.contains(ip("11.0.0.0")));
        assert_eq!(l.prefixes(), 3);
    }

    #[test]
    fn ipv6_prefixes_and_bare_addresses() {
        let l = list("2001:db8::/32\n2001:db9::1\n");
        assert!(l.contains(ip("2001:db8::")));
        assert!(l.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!l.contains(ip("2001:db7:ffff::")));
        assert!(l.contains(ip("2001:db9::1")));
        assert!(!l.contains(ip("2001:db9::2")));
        // The families are separate: 192.0.2.1 is not ::c000:201.
        assert!(!l.contains(ip("192.0.2.1")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_prefixes() {
        let l = list("192.0.2.0/24\n::ffff:203.0.113.0/120\n");
        assert!(l.contains(ip("::ffff:192.0.2.9")));
        assert!(!l.contains(ip("::ffff:192.0.3.9")));
        // A mapped prefix in the file is an IPv4 prefix.
        assert!(l.contains(ip("203.0.113.200")));
        assert!(l.contains(ip("::ffff:203.0.113.200")));
        assert_eq!(l.ranges(), (2, 0));
        // A short IPv6 prefix covering the mapped range still matches as IPv6.
        let all = list("::/0\n");
        assert!(all.contains(ip("::ffff:192.0.2.9")));
        assert!(!all.contains(ip("192.0.2.9")));
    }

    #[test]
    fn overlapping_and_adjacent_prefixes_merge() {
        let l = list(
            "10.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n11.0.0.0/8\n13.0.0.0/8\n0.0.0.0/32\n255.255.255.255\n",
        );
        assert_eq!(l.ranges(), (4, 0), "10/8 + 11/8 touch; 10.1/16 is inside");
        for yes in [
            "10.0.0.0",
            "11.255.255.255",
            "13.1.1.1",
            "0.0.0.0",
            "255.255.255.255",
        ] {
            assert!(l.contains(ip(yes)), "{yes}");
        }
        for no in [
            "9.255.255.255",
            "12.0.0.0",
            "14.0.0.0",
            "0.0.0.1",
            "255.255.255.254",
        ] {
            assert!(!l.contains(ip(no)), "{no}");
        }
        let everything = list("0.0.0.0/0\n128.0.0.0/1\n::/0\n::1\n");
        assert_eq!(everything.ranges(), (1, 1));
        assert!(everything.contains(ip("255.255.255.255")));
        assert!(everything.contains(ip("ffff::1")));
    }

    #[test]
    fn empty_list_matches_nothing() {
        let l = list("# nothing yet\n\n");
        assert!(!l.contains(ip("0.0.0.0")));
        assert!(!l.contains(ip("::")));
        assert_eq!(l.prefixes(), 0);
    }

    #[test]
    fn matches_a_linear_scan() {
        // Pseudo-random prefixes, checked against the obvious definition.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prefixes: Vec<(u32, u8)> = (0..300)
            .map(|_| {
                let len = u8::try_from(8 + next() % 25).unwrap();
                (u32::try_from(next() >> 32).unwrap() & mask_v4(len), len)
            })
            .collect();
        let l = IpList::from_prefixes(
            prefixes
                .iter()
                .map(|&(a, len)| (IpAddr::V4(Ipv4Addr::from(a)), len)),
        );
        for _ in 0..20_000 {
            let probe = u32::try_from(next() >> 32).unwrap();
            let expected = prefixes.iter().any(|&(a, len)| probe & mask_v4(len) == a);
            assert_eq!(l.contains(IpAddr::V4(probe.into())), expected, "{probe:#x}");
        }
    }

    #[test]
    fn ipv6_matches_a_linear_scan() {
        // Prefixes clustered in a few /64 blocks, so that many starts tie on
        // their high half, plus wider ones around them.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let blocks: Vec<u128> = (0..4)
            .map(|_| u128::from(next() & 0xffff_0000_0000_ffff) << 64)
            .collect();
        let mut prefixes: Vec<(u128, u8)> = Vec::new();
        for _ in 0..400 {
            let block = blocks[(next() % 4) as usize];
            let len = u8::try_from(64 + next() % 65).unwrap();
            prefixes.push(((block | u128::from(next())) & mask_v6(len), len));
        }
        for _ in 0..20 {
            let len = u8::try_from(16 + next() % 48).unwrap();
            let a = (u128::from(next()) << 64 | u128::from(next())) & mask_v6(len);
            prefixes.push((a, len));
        }
        let l = IpList::from_prefixes(
            prefixes
                .iter()
                .map(|&(a, len)| (IpAddr::V6(Ipv6Addr::from(a)), len)),
        );
        for i in 0..40_000 {
            let probe = if i % 2 == 0 {
                blocks[(next() % 4) as usize] | u128::from(next())
            } else {
                u128::from(next()) << 64 | u128::from(next())
            };
            let expected = prefixes.iter().any(|&(a, len)| probe & mask_v6(len) == a);
            assert_eq!(
                l.contains(IpAddr::V6(Ipv6Addr::from(probe))),
                expected,
                "{probe:#x}"
            );
        }
    }

    #[test]
    fn bad_lines_name_file_line_and_what() {
        let errs = errors(
            "192.0.2.0/24\nnot-an-ip\n10.0.0.1/8\n  192.0.2.0/33 # x\n2001:db8::/129\n10.0.0.0/x\n1.2.3.4 5.6.7.8\n",
        );
        assert_eq!(
            errs,
            [
                "lists/l.txt:2:1: `not-an-ip` is not an IP address or CIDR prefix",
                "lists/l.txt:3:1: `10.0.0.1/8` has host bits set",
                "lists/l.txt:4:3: prefix length `/33` in `192.0.2.0/33` is longer than 32 bits",
                "lists/l.txt:5:1: prefix length `/129` in `2001:db8::/129` is longer than 128 bits",
                "lists/l.txt:6:1: prefix length `/x` in `10.0.0.0/x` is not a number",
                "lists/l.txt:7:9: unexpected `5.6.7.8` after the prefix",
            ]
        );
        let e = IpList::parse(Path::new("l.txt"), "10.0.0.1/8\n").unwrap_err();
        match &e[..] {
            [ListError::Line { help, len, .. }] => {
                assert_eq!(help.as_deref(), Some("the network is `10.0.0.0/8`"));
                assert_eq!(*len, 10);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn many_bad_lines_are_capped() {
        let text = "x\n".repeat(25);
        let errs = errors(&text);
        assert_eq!(errs.len(), MAX_LINE_ERRORS + 1);
        assert_eq!(
            errs.last().unwrap(),
            "lists/l.txt: 5 more bad lines not shown"
        );
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let e = IpList::read(Path::new("/nonexistent/tor.txt")).unwrap_err();
        let text = e[0].to_string();
        assert!(
            text.starts_with("cannot read IP list `/nonexistent/tor.txt`: "),
            "{text}"
        );
    }
}
