//! The standard `process_*` figures of Prometheus' client libraries (CPU
//! seconds, resident and virtual memory, start time, open and maximum file
//! descriptors), read from /proc/self at each scrape, so they are as fresh
//! as the scrape. Where /proc cannot be read a figure is left out.

use std::path::Path;

/// What /proc said; `None` where it could not be read.
#[derive(Debug, Default)]
pub struct ProcessFigures {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    /// Unix seconds.
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Reads this process's figures.
pub fn read() -> ProcessFigures {
    let root = Path::new("/proc");
    let stat = std::fs::read_to_string(root.join("self/stat")).ok();
    let stat = stat.as_deref().and_then(StatFields::parse);
    let ticks = clock_ticks_per_second();
    let boot = std::fs::read_to_string(root.join("stat"))
        .ok()
        .and_then(|text| boot_time_seconds(&text));
    ProcessFigures {
        cpu_seconds: stat
            .as_ref()
            .zip(ticks)
            .map(|(s, hz)| (s.utime + s.stime) as f64 / hz),
        resident_memory_bytes: stat
            .as_ref()
            .zip(page_size())
            .map(|(s, page)| s.rss_pages.saturating_mul(page)),
        virtual_memory_bytes: stat.as_ref().map(|s| s.vsize_bytes),
        start_time_seconds: stat
            .as_ref()
            .zip(ticks)
            .zip(boot)
            .map(|((s, hz), boot)| boot as f64 + s.starttime as f64 / hz),
        open_fds: std::fs::read_dir(root.join("self/fd"))
            .ok()
            .map(|entries| entries.count() as u64),
        max_fds: std::fs::read_to_string(root.join("self/limits"))
            .ok()
            .and_then(|text| max_open_files(&text)),
    }
}

/// The fields of /proc/self/stat used here (proc(5)), in clock ticks,
/// pages and bytes.
#[derive(Debug, PartialEq)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

impl StatFields {
    fn parse(text: &str) -> Option<StatFields> {
        // `pid (comm) state …`: comm may hold spaces and parentheses, so
        // the fields are counted from the last `)`. Field 3 (state) is
        // index 0 here, so field N is index N - 3.
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(StatFields {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize_bytes: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// `btime` of /proc/stat: the boot time in unix seconds.
fn boot_time_seconds(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|n| n.trim().parse().ok())
}

/// The soft limit of `Max open files` in /proc/self/limits.
fn max_open_files(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf only reads a system constant.
    let bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(bytes).ok().filter(|&b| b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let fields = StatFields::parse(line).expect("parsed");
        assert_eq!(
            fields,
            StatFields {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize_bytes: 104_857_600,
                rss_pages: 2560,
            }
        );
        assert_eq!(StatFields::parse("4242 (cut"), None);
    }

    #[test]
    fn limits_and_boot_time_are_read_from_their_lines() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited unlimited files\n"),
            None
        );
        assert_eq!(
            boot_time_seconds("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_has_figures_on_linux() {
        let figures = read();
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(figures.resident_memory_bytes.is_some_and(|b| b > 0));
        assert!(figures.open_fds.is_some_and(|n| n >= 3));
        assert!(figures.max_fds.is_some_and(|n| n >= 3));
        let started = figures.start_time_seconds.expect("a start time");
        let now = crate::clock::unix_seconds() as f64;
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(figures.cpu_seconds.is_some_and(|s| s >= 0.0));
    }
}
