//! Server-side cost from /proc: CPU seconds and memory of a server's whole process tree
//! (Postfix is a family of processes; Haraka may fork workers; mailwit and smtp-sink are one).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Clock ticks per second for /proc/<pid>/stat times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

struct ProcStat {
    ppid: u32,
    /// utime + cutime, in ticks. Children that exited and were reaped are folded into their
    /// parent's cutime/cstime by the kernel, so summing over the live tree counts every process
    /// once.
    user: u64,
    /// stime + cstime (time in the kernel on the processes' behalf), in ticks.
    system: u64,
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14 -> rest[11].
    let ppid = fields.get(1)?.parse().ok()?;
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<i64>().ok())
            .unwrap_or(0)
            .max(0) as u64
    };
    Some(ProcStat {
        ppid,
        user: field(11) + field(13),
        system: field(12) + field(14),
    })
}

/// The pid and all its live descendants.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = read_stat(pid) {
                children.entry(stat.ppid).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = children.get(&tree[next]) {
            tree.extend(kids);
        }
        next += 1;
    }
    tree
}

/// CPU seconds (user + system) consumed so far by the tree rooted at `root`.
pub fn cpu_seconds(root: u32) -> f64 {
    let split = cpu_split(root);
    split.user + split.system
}

/// CPU seconds consumed so far by a process tree, user and kernel apart.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSplit {
    pub user: f64,
    pub system: f64,
}

impl std::ops::Sub for CpuSplit {
    type Output = CpuSplit;
    fn sub(self, before: CpuSplit) -> CpuSplit {
        CpuSplit {
            user: (self.user - before.user).max(0.0),
            system: (self.system - before.system).max(0.0),
        }
    }
}

/// User and system CPU seconds (utime/stime from /proc/<pid>/stat) of the tree at `root`.
pub fn cpu_split(root: u32) -> CpuSplit {
    let (user, system) = process_tree(root)
        .into_iter()
        .filter_map(read_stat)
        .fold((0, 0), |(u, s), st| (u + st.user, s + st.system));
    let tps = ticks_per_second();
    CpuSplit {
        user: user as f64 / tps,
        system: system as f64 / tps,
    }
}

/// Memory of the tree in bytes: the sum of VmRSS (counts shared pages once per process, so
/// it over-states multi-process servers) and the sum of Pss (shared pages divided among the
/// processes that map them: the fair figure for comparing process-per-connection designs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
}

pub fn memory(root: u32) -> Memory {
    let mut total = Memory::default();
    for pid in process_tree(root) {
        total.rss += status_kib(pid, "VmRSS:").unwrap_or(0) * 1024;
        total.pss += pss_kib(pid).unwrap_or(0) * 1024;
    }
    total
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&text, key)
}

fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&text, "Pss:")
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Samples the tree's summed RSS in the background and keeps the peak.
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn start(root: u32) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, peak) = (stop.clone(), peak.clone());
            tokio::task::spawn_blocking(move || {
                while !stop.load(Ordering::Relaxed) {
                    let rss: u64 = process_tree(root)
                        .into_iter()
                        .filter_map(|pid| status_kib(pid, "VmRSS:"))
                        .sum::<u64>()
                        * 1024;
                    peak.fetch_max(rss, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        PeakRss { stop, peak, task }
    }

    /// Stops sampling and returns the peak in bytes.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// Raises this process's open-file limit to the hard limit (children inherit it), so 5,000
/// idle connections fit on both sides. Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// The 1-minute load average from /proc/loadavg (what `uptime` prints first).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The file system type holding `path` (longest mount-point prefix in /proc/mounts), e.g.
/// "ext4" or "tmpfs": the headline figures must come from the machine's disk.
pub fn filesystem_of(path: &std::path::Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount_point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            // /proc/mounts escapes spaces as \040.
            let mount_point = mount_point.replace("\\040", " ");
            path.starts_with(&mount_point)
                .then(|| (mount_point.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measured() {
        let me = std::process::id();
        assert!(process_tree(me).contains(&me));
        assert!(memory(me).rss > 0);
        // Burn a little CPU so the counter moves off zero on any clock.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(me) > 0.0);
    }

    #[test]
    fn the_file_system_of_a_path_is_its_longest_mount_point() {
        assert_eq!(
            super::filesystem_of(std::path::Path::new("/proc/self")).as_deref(),
            Some("proc")
        );
        assert!(super::load_average().is_some());
    }
}
