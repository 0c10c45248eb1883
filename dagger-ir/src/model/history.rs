//! History-based cost model: measured task times, kept per (task,
//! processor kind, input size bucket) as running mean and variance, and
//! persisted between runs, as StarPU's history-based performance models are.
//!
//! The model lives in one JSON file, `history.json`, in a directory:
//! `DAGGER_PERFMODEL_DIR` if set, else `$XDG_CACHE_HOME/dagger/perfmodel`,
//! else `~/.cache/dagger/perfmodel`. `dagger perfmodel` prints it.

use super::platform::ProcKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One measured execution.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Registered task name.
    pub task: String,
    /// Kind of processor it ran on.
    pub kind: ProcKind,
    /// Total size of its inputs in bytes (0 when unknown).
    pub bytes: u64,
    /// Size of its result in bytes (0 when unknown).
    pub output_bytes: u64,
    /// How long it ran.
    pub seconds: f64,
}

/// Running statistics of one entry (Welford's algorithm).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStats {
    /// Number of measurements.
    pub count: u64,
    /// Mean time in seconds.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Measurements whose result size was known.
    #[serde(default)]
    pub output_count: u64,
    /// Mean size of the result in bytes, over those.
    #[serde(default)]
    pub output_bytes: f64,
}

impl TaskStats {
    /// Adds one measurement.
    pub fn add(&mut self, seconds: f64) {
        self.count += 1;
        let delta = seconds - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (seconds - self.mean);
    }

    /// Adds the size of one measured result.
    pub fn add_output(&mut self, bytes: u64) {
        self.output_count += 1;
        self.output_bytes += (bytes as f64 - self.output_bytes) / self.output_count as f64;
    }

    /// Combines two sets of measurements (Chan et al.'s parallel update).
    pub fn merge(&mut self, other: &TaskStats) {
        if other.output_count > 0 {
            let outputs = self.output_count + other.output_count;
            self.output_bytes += (other.output_bytes - self.output_bytes)
                * other.output_count as f64
                / outputs as f64;
            self.output_count = outputs;
        }
        if other.count == 0 {
            return;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / count as f64;
        self.m2 +=
            other.m2 + delta * delta * (self.count as f64 * other.count as f64) / count as f64;
        self.count = count;
    }

    /// Sample standard deviation (0 below two measurements).
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }
}

/// Key of an entry: task, processor kind, size bucket.
type Key = (String, ProcKind, u32);

/// Measured task times. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryModel {
    entries: BTreeMap<Key, TaskStats>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    task: String,
    kind: ProcKind,
    size_bucket: u32,
    #[serde(flatten)]
    stats: TaskStats,
}

impl HistoryModel {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The size bucket of `bytes`: its bit length (0 for 0; sizes within a
    /// factor of two share a bucket).
    pub fn size_bucket(bytes: u64) -> u32 {
        64 - bytes.leading_zeros()
    }

    /// Adds a measurement.
    pub fn record(&mut self, m: &Measurement) {
        let key = (m.task.clone(), m.kind, Self::size_bucket(m.bytes));
        let stats = self.entries.entry(key).or_default();
        stats.add(m.seconds);
        if m.output_bytes > 0 {
            stats.add_output(m.output_bytes);
        }
    }

    /// Adds every measurement of `other`.
    pub fn merge(&mut self, other: &HistoryModel) {
        for (k, s) in &other.entries {
            self.entries.entry(k.clone()).or_default().merge(s);
        }
    }

    /// The mean measured time of `task` on `kind` for inputs of about `bytes`, if measured.
    pub fn estimate(&self, task: &str, kind: ProcKind, bytes: u64) -> Option<f64> {
        self.entries
            .get(&(task.to_string(), kind, Self::size_bucket(bytes)))
            .map(|s| s.mean)
    }

    /// The mean measured size of `task`'s result for inputs of about
    /// `bytes` (on any processor kind), if measured.
    pub fn output_bytes(&self, task: &str, bytes: u64) -> Option<u64> {
        let bucket = Self::size_bucket(bytes);
        self.entries
            .iter()
            .filter(|((t, _, b), s)| t == task && *b == bucket && s.output_count > 0)
            .max_by_key(|(_, s)| s.output_count)
            .map(|(_, s)| s.output_bytes.round() as u64)
    }

    /// Every entry: task, kind, size bucket, statistics.
    pub fn entries(&self) -> impl Iterator<Item = (&str, ProcKind, u32, &TaskStats)> {
        self.entries
            .iter()
            .map(|((t, k, b), s)| (t.as_str(), *k, *b, s))
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where models live: see the [module docs](self).
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("DAGGER_PERFMODEL_DIR") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache.join("dagger").join("perfmodel")
    }

    /// Loads the model of `dir` (empty when there is none yet).
    pub fn load(dir: &Path) -> crate::Result<HistoryModel> {
        let path = dir.join("history.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HistoryModel::new()),
            Err(e) => return Err(crate::IrError::Json(format!("{}: {e}", path.display()))),
        };
        let records: Vec<Record> = serde_json::from_str(&text)
            .map_err(|e| crate::IrError::Json(format!("{}: {e}", path.display())))?;
        Ok(HistoryModel {
            entries: records
                .into_iter()
                .map(|r| ((r.task, r.kind, r.size_bucket), r.stats))
                .collect(),
        })
    }

    /// Saves the model into `dir` (created if needed), replacing the file atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let records: Vec<Record> = self
            .entries
            .iter()
            .map(|((task, kind, size_bucket), stats)| Record {
                task: task.clone(),
                kind: *kind,
                size_bucket: *size_bucket,
                stats: *stats,
            })
            .collect();
        let text = serde_json::to_string_pretty(&records).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!("history.json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, dir.join("history.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(task: &str, bytes: u64, seconds: f64) -> Measurement {
        Measurement {
            output_bytes: 0,
            task: task.into(),
            kind: ProcKind::Cpu,
            bytes,
            seconds,
        }
    }

    #[test]
    fn means_and_deviations_by_bucket_survive_merge_and_disk() {
        let mut a = HistoryModel::new();
        for s in [1.0, 2.0, 3.0] {
            a.record(&m("t::f", 1000, s));
        }
        a.record(&m("t::f", 1_000_000, 50.0));
        assert_eq!(a.estimate("t::f", ProcKind::Cpu, 1000), Some(2.0));
        assert_eq!(
            a.estimate("t::f", ProcKind::Cpu, 1023),
            Some(2.0),
            "same bucket"
        );
        assert_eq!(a.estimate("t::f", ProcKind::Cpu, 1_000_000), Some(50.0));
        assert_eq!(a.estimate("t::f", ProcKind::Gpu, 1000), None);
        let mut b = HistoryModel::new();
        for s in [4.0, 5.0] {
            b.record(&m("t::f", 1000, s));
        }
        a.merge(&b);
        let (_, _, _, stats) = a.entries().next().unwrap();
        assert_eq!(stats.count, 5);
        assert!((stats.mean - 3.0).abs() < 1e-12);
        assert!((stats.stddev() - 2.5f64.sqrt()).abs() < 1e-12);

        let dir = std::env::temp_dir().join(format!("dagger-history-{}", std::process::id()));
        assert!(
            HistoryModel::load(&dir).unwrap().is_empty(),
            "no file yet: empty"
        );
        a.save(&dir).unwrap();
        assert_eq!(HistoryModel::load(&dir).unwrap(), a);
        std::fs::write(dir.join("history.json"), "[{").unwrap();
        assert!(HistoryModel::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("history.json"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn result_sizes_are_averaged_and_merged_per_input_bucket() {
        let mut a = HistoryModel::new();
        let mut b = HistoryModel::new();
        let sized = |out: u64| Measurement {
            output_bytes: out,
            ..m("t", 1000, 0.1)
        };
        a.record(&sized(100));
        a.record(&sized(300));
        b.record(&sized(500));
        a.record(&m("t", 1000, 0.1)); // size unknown: not averaged in
        assert_eq!(a.output_bytes("t", 1000), Some(200));
        a.merge(&b);
        assert_eq!(a.output_bytes("t", 1000), Some(300));
        assert_eq!(a.output_bytes("t", 8), None, "another input bucket");
        assert_eq!(a.output_bytes("u", 1000), None);
    }
}
