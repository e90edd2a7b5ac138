//! System and process figures from sysinfo: only this process is refreshed,
//! no per-thread tasks, at most once per second (by the monitor thread).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Clone, Debug, Default, Serialize)]
pub struct SystemSnapshot {
    pub memory_used_percent: f64,
    pub memory_available_bytes: u64,
    pub cpu_percent: f64,
    pub cpu_count: usize,
    pub process_rss_bytes: u64,
    pub process_cpu_percent: f64,
    pub disk_used_percent: f64,
    pub disk_free_bytes: u64,
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

/// Figures this platform cannot give (sysinfo refused) stay zero.
pub struct SystemSampler {
    system: Option<System>,
    disks: Option<Disks>,
    pid: Option<Pid>,
    db_path: PathBuf,
}

impl SystemSampler {
    pub fn new(db_path: &Path) -> SystemSampler {
        SystemSampler {
            system: System::new()
                .map_err(|e| log::warn!("no system figures: {e}"))
                .ok(),
            disks: Disks::new_with_refreshed_list()
                .map_err(|e| log::warn!("no disk figures: {e}"))
                .ok(),
            pid: sysinfo::get_current_pid().ok(),
            db_path: db_path.to_owned(),
        }
    }

    pub fn sample(&mut self) -> SystemSnapshot {
        let mut snapshot = SystemSnapshot {
            db_bytes: file_len(&self.db_path),
            wal_bytes: file_len(&wal_path(&self.db_path)),
            cpu_count: 1,
            ..SystemSnapshot::default()
        };
        if let Some(disks) = &mut self.disks {
            disks.refresh(false);
            (snapshot.disk_used_percent, snapshot.disk_free_bytes) =
                disk_figures(disks, &self.db_path);
        }
        let Some(system) = &mut self.system else {
            return snapshot;
        };
        system.refresh_memory();
        system.refresh_cpu_usage();
        if let Some(pid) = self.pid {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
        }
        let total = system.total_memory();
        let available = system.available_memory();
        snapshot.memory_used_percent = percent(total.saturating_sub(available), total);
        snapshot.memory_available_bytes = available;
        snapshot.cpu_percent = f64::from(system.global_cpu_usage());
        snapshot.cpu_count = system.cpus().len().max(1);
        if let Some(process) = self.pid.and_then(|pid| system.process(pid)) {
            snapshot.process_rss_bytes = process.memory();
            snapshot.process_cpu_percent = f64::from(process.cpu_usage());
        }
        snapshot
    }
}

/// The disk holding the database: the longest mount point above it.
fn disk_figures(disks: &Disks, db_path: &Path) -> (f64, u64) {
    let db = std::fs::canonicalize(db_path).unwrap_or_else(|_| db_path.to_owned());
    disks
        .iter()
        .filter(|d| db.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0.0, 0), |d| {
            let total = d.total_space();
            (
                percent(total.saturating_sub(d.available_space()), total),
                d.available_space(),
            )
        })
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}
