//! The platform: processors and the links between them.

use serde::{Deserialize, Serialize};

/// What kind of processor a task runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcKind {
    /// A CPU core of this process.
    Cpu,
    /// A GPU of this node.
    Gpu,
    /// A CPU core of another process or node.
    Remote,
}

impl std::fmt::Display for ProcKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcKind::Cpu => "cpu",
            ProcKind::Gpu => "gpu",
            ProcKind::Remote => "remote",
        })
    }
}

/// One processor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Processor {
    /// Its kind.
    pub kind: ProcKind,
    /// Relative speed (1.0: a reference CPU core); a task's analytic time is divided by it.
    pub speed: f64,
    /// The node it belongs to (0: this process).
    #[serde(default)]
    pub node: usize,
}

/// A link's cost model: moving `b` bytes takes `latency + b / bandwidth` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Seconds per message.
    pub latency: f64,
    /// Bytes per second.
    pub bandwidth: f64,
}

impl Link {
    /// Time to move `bytes` over the link.
    pub fn transfer_time(&self, bytes: u64) -> f64 {
        self.latency + bytes as f64 / self.bandwidth
    }
}

/// Processors and links. Processors of one node share memory (no transfer);
/// between nodes, and between a CPU and a GPU, data crosses a link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    /// The processors, by index.
    pub processors: Vec<Processor>,
    /// Between two nodes.
    pub network: Link,
    /// Between host memory and a GPU.
    pub host_device: Link,
}

impl Platform {
    /// `cores` CPU cores of one node (the default platform of a runtime).
    pub fn local(cores: usize) -> Self {
        Platform {
            processors: (0..cores.max(1))
                .map(|_| Processor {
                    kind: ProcKind::Cpu,
                    speed: 1.0,
                    node: 0,
                })
                .collect(),
            network: Link {
                latency: 5e-6,
                bandwidth: 1e9,
            },
            host_device: Link {
                latency: 10e-6,
                bandwidth: 12e9,
            },
        }
    }

    /// Time to move `bytes` from processor `a` to processor `b` (zero when they share memory).
    pub fn transfer_time(&self, a: usize, b: usize, bytes: u64) -> f64 {
        let (pa, pb) = (&self.processors[a], &self.processors[b]);
        if pa.node != pb.node {
            self.network.transfer_time(bytes)
        } else if (pa.kind == ProcKind::Gpu) != (pb.kind == ProcKind::Gpu)
            || (pa.kind == ProcKind::Gpu && a != b)
        {
            self.host_device.transfer_time(bytes)
        } else {
            0.0
        }
    }

    /// Reads a platform file (this type as JSON).
    pub fn from_json(text: &str) -> crate::Result<Platform> {
        let p: Platform =
            serde_json::from_str(text).map_err(|e| crate::IrError::Json(e.to_string()))?;
        if p.processors.is_empty() {
            return Err(crate::IrError::Json(
                "a platform needs at least one processor".into(),
            ));
        }
        if let Some(bad) = p
            .processors
            .iter()
            .position(|q| !(q.speed > 0.0 && q.speed.is_finite()))
        {
            return Err(crate::IrError::Json(format!(
                "processor {bad} has a speed that is not positive"
            )));
        }
        for (field, link) in [("network", &p.network), ("host_device", &p.host_device)] {
            if !(link.bandwidth > 0.0 && link.bandwidth.is_finite()) {
                return Err(crate::IrError::Json(format!(
                    "\"{field}\".\"bandwidth\" is {} but must be a positive number of bytes per second",
                    link.bandwidth
                )));
            }
            if !(link.latency >= 0.0 && link.latency.is_finite()) {
                return Err(crate::IrError::Json(format!(
                    "\"{field}\".\"latency\" is {} but must be a finite, non-negative number of seconds",
                    link.latency
                )));
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_cost_nothing_in_shared_memory_and_latency_plus_size_otherwise() {
        let mut p = Platform::local(2);
        p.processors.push(Processor {
            kind: ProcKind::Gpu,
            speed: 20.0,
            node: 0,
        });
        p.processors.push(Processor {
            kind: ProcKind::Remote,
            speed: 1.0,
            node: 1,
        });
        assert_eq!(p.transfer_time(0, 1, 1 << 20), 0.0);
        assert_eq!(p.transfer_time(0, 2, 12_000), 10e-6 + 1e-6);
        assert_eq!(p.transfer_time(1, 3, 1_000_000_000), 5e-6 + 1.0);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(Platform::from_json(&text).unwrap(), p);
        assert!(Platform::from_json(r#"{"processors": [], "network": {"latency": 0, "bandwidth": 1}, "host_device": {"latency": 0, "bandwidth": 1}}"#).is_err());
    }

    #[test]
    fn a_link_without_bandwidth_or_with_a_negative_latency_is_refused_by_field() {
        let file = |network: &str, host: &str| {
            format!(
                r#"{{"processors": [{{"kind": "cpu", "speed": 1}}],
                    "network": {network}, "host_device": {host}}}"#
            )
        };
        let ok = r#"{"latency": 0, "bandwidth": 1e9}"#;
        assert!(Platform::from_json(&file(ok, ok)).is_ok());
        let e = Platform::from_json(&file(r#"{"latency": 0, "bandwidth": 0}"#, ok)).unwrap_err();
        assert!(
            e.to_string().contains(r#""network"."bandwidth" is 0"#),
            "{e}"
        );
        let e = Platform::from_json(&file(ok, r#"{"latency": -1, "bandwidth": 1}"#)).unwrap_err();
        assert!(
            e.to_string().contains(r#""host_device"."latency" is -1"#),
            "{e}"
        );
    }
}
