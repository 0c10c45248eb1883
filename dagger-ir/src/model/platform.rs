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
    /// Between two GPUs of one node (NVLink), where they have their own
    /// link; without it (the default, and files without the field) they
    /// cross `host_device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_device: Option<Link>,
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
            device_device: None,
        }
    }

    /// `nodes` nodes of `gpus_per_node` GPUs each (processor `n *
    /// gpus_per_node + i` is GPU `i` of node `n`, of relative speed
    /// `gpu_speed`), the GPUs of a node joined by `nvlink`, nodes by
    /// `network` (each GPU's own share of its node's network: one adapter
    /// per GPU, as in a DGX). The host link is [`Platform::local`]'s.
    pub fn gpu_cluster(
        nodes: usize,
        gpus_per_node: usize,
        gpu_speed: f64,
        nvlink: Link,
        network: Link,
    ) -> Self {
        Platform {
            processors: (0..nodes * gpus_per_node)
                .map(|i| Processor {
                    kind: ProcKind::Gpu,
                    speed: gpu_speed,
                    node: i / gpus_per_node.max(1),
                })
                .collect(),
            network,
            device_device: Some(nvlink),
            ..Platform::local(1)
        }
    }

    /// Time to move `bytes` from processor `a` to processor `b` (zero when they share memory).
    pub fn transfer_time(&self, a: usize, b: usize, bytes: u64) -> f64 {
        let (pa, pb) = (&self.processors[a], &self.processors[b]);
        if pa.node != pb.node {
            self.network.transfer_time(bytes)
        } else if let (ProcKind::Gpu, ProcKind::Gpu, Some(link), true) =
            (pa.kind, pb.kind, self.device_device, a != b)
        {
            link.transfer_time(bytes)
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
        let links = [
            ("network", Some(&p.network)),
            ("host_device", Some(&p.host_device)),
            ("device_device", p.device_device.as_ref()),
        ];
        for (field, link) in links.into_iter().filter_map(|(f, l)| l.map(|l| (f, l))) {
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

    #[test]
    fn gpus_of_one_node_use_nvlink_and_of_two_nodes_the_network() {
        let nvlink = Link {
            latency: 2e-6,
            bandwidth: 300e9,
        };
        let network = Link {
            latency: 5e-6,
            bandwidth: 25e9,
        };
        let p = Platform::gpu_cluster(2, 4, 100.0, nvlink, network);
        assert_eq!(p.processors.len(), 8);
        assert_eq!((p.processors[3].node, p.processors[4].node), (0, 1));
        assert!(p.processors.iter().all(|q| q.kind == ProcKind::Gpu));
        assert_eq!(p.transfer_time(0, 3, 300_000), 2e-6 + 1e-6);
        assert_eq!(p.transfer_time(3, 4, 25_000), 5e-6 + 1e-6);
        assert_eq!(p.transfer_time(2, 2, 1 << 30), 0.0);
        // Without the field, GPUs of one node cross the host link, as before.
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(Platform::from_json(&text).unwrap(), p);
        let old = Platform {
            device_device: None,
            ..p.clone()
        };
        assert!(!serde_json::to_string(&old)
            .unwrap()
            .contains("device_device"));
        assert_eq!(old.transfer_time(0, 3, 12_000), 10e-6 + 1e-6);
        let bad = text.replace("300000000000.0", "0");
        let e = Platform::from_json(&bad).unwrap_err();
        assert!(
            e.to_string()
                .contains(r#""device_device"."bandwidth" is 0"#),
            "{e}"
        );
    }

    #[test]
    fn the_dgx_a100_file_is_the_constructor_at_eight_nodes() {
        let file = include_str!("../../../examples/platforms/dgx_a100.json");
        let p = Platform::from_json(file).unwrap();
        let built = Platform::gpu_cluster(
            8,
            8,
            p.processors[0].speed,
            p.device_device.unwrap(),
            p.network,
        );
        assert_eq!(p, built);
    }
}
