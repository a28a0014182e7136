//! Process measurements from procfs (Linux): CPU time and resident memory.

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat`
/// (`sysconf(_SC_CLK_TCK)`, 100 on every Linux architecture we run on).
pub const CLK_TCK: f64 = 100.0;

/// CPU seconds (user + system, all threads) the process has used, from
/// fields 14 and 15 of `/proc/<pid>/stat` (proc(5)); `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

/// [`cpu_seconds`] of this process.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.nth(11)?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// Whether process `pid` is gone: no `/proc/<pid>/stat`, or its state
/// (field 3) is zombie or dead (an exited child the harness has not reaped).
pub fn exited(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, None | Some("Z" | "X" | "x"))
}

/// Resident set size in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Percentile `q` (0..=1) of unsorted samples, nearest rank; `None` if empty.
pub fn percentile(samples: &mut [u32], q: f64) -> Option<u32> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    Some(samples[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (tokio rt) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert!(own_cpu_seconds().is_some());
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        assert!(!exited(std::process::id()));
    }

    #[test]
    fn an_exited_child_is_exited_before_and_after_it_is_reaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !exited(pid) {
            assert!(std::time::Instant::now() < deadline, "a zombie counts as exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
        assert!(exited(pid));
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(50));
        assert_eq!(percentile(&mut v, 0.99), Some(99));
        assert_eq!(percentile(&mut [], 0.5), None);
    }
}
