//! The standard `process_*` metrics of Prometheus clients (CPU time,
//! memory, file descriptors, start time), read from `/proc` at scrape time
//! on Linux; elsewhere, and for any file `/proc` does not give, the metrics
//! are left out rather than reported as zero.

use std::fmt::Write as _;

/// Clock ticks per second of the times in `/proc/<pid>/stat`: the kernel
/// reports them in `USER_HZ`, 100 on every architecture Linux runs on today
/// (Prometheus' own procfs reader assumes the same).
const USER_HZ: f64 = 100.0;

/// What `/proc` tells about this process.
#[derive(Debug, Default, PartialEq)]
struct Process {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

/// Appends the `process_*` metrics /proc gives (none off Linux).
pub fn render(w: &mut String) {
    if cfg!(target_os = "linux") {
        write_process(w, &read());
    }
}

fn read() -> Process {
    let file = |path: &str| std::fs::read_to_string(path).ok();
    let stat = file("/proc/self/stat");
    let stat = stat.as_deref().map(stat_fields);
    let field = |i: usize| {
        stat.as_ref()
            .and_then(|f| f.get(i))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let status = file("/proc/self/status");
    let status_kib = |key: &str| {
        status
            .as_deref()
            .and_then(|s| status_kib(s, key))
            .map(|kib| kib.saturating_mul(1024))
    };
    let boot_time = file("/proc/stat").as_deref().and_then(boot_time);
    Process {
        // utime + stime: fields 14 and 15 of stat(5).
        cpu_seconds: field(11)
            .zip(field(12))
            .map(|(user, system)| (user + system) as f64 / USER_HZ),
        resident_bytes: status_kib("VmRSS:"),
        virtual_bytes: field(20),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: file("/proc/self/limits")
            .as_deref()
            .and_then(max_open_files),
        // starttime: field 22, ticks after boot.
        start_time_seconds: boot_time
            .zip(field(19))
            .map(|(boot, ticks)| boot as f64 + ticks as f64 / USER_HZ),
    }
}

/// The fields of `/proc/self/stat` after the command name, from field 3
/// (`state`) on: the name is in parentheses and may hold spaces and
/// parentheses itself, so the fields start after the last `)`.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_ascii_whitespace().collect())
        .unwrap_or_default()
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `btime` of `/proc/stat`: boot time, Unix seconds.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn write_process(w: &mut String, p: &Process) {
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    };
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds.map(|v| v.to_string()),
    );
    metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds.map(|v| v.to_string()),
    );
    metric(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        p.max_fds.map(|v| v.to_string()),
    );
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes.map(|v| v.to_string()),
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes.map(|v| v.to_string()),
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds.map(|v| v.to_string()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_proc_gives() {
        // A command name with a space and a parenthesis in it.
        let stat = "4242 (stepup (x) y) S 1 4242 4242 0 -1 4194560 3000 0 0 0 \
                    250 130 0 0 20 0 9 0 12345 987654321 4096 18446744073709551615";
        let f = stat_fields(stat);
        assert_eq!(f.first(), Some(&"S"));
        assert_eq!(f.get(11), Some(&"250"), "utime");
        assert_eq!(f.get(12), Some(&"130"), "stime");
        assert_eq!(f.get(19), Some(&"12345"), "starttime");
        assert_eq!(f.get(20), Some(&"987654321"), "vsize");
        assert_eq!(
            status_kib("Name:\tstepup\nVmRSS:\t   20480 kB\n", "VmRSS:"),
            Some(20480)
        );
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764892800\nprocesses 9\n"),
            Some(1_764_892_800)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             127431               127431               processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn left_out_when_unknown() {
        let mut out = String::new();
        write_process(
            &mut out,
            &Process {
                open_fds: Some(12),
                ..Default::default()
            },
        );
        assert_eq!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\nprocess_open_fds 12\n"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let p = read();
        assert!(p.cpu_seconds.is_some_and(|c| c >= 0.0), "{p:?}");
        assert!(p.resident_bytes.is_some_and(|b| b > 1 << 20), "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        assert!(p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started in the last day, and not in the future (give or take the
        // rounding of boot time to a second).
        assert!(
            p.start_time_seconds
                .is_some_and(|s| s <= now + 1.0 && s > now - 86_400.0),
            "{p:?} now {now}"
        );
    }
}
