//! The scheduling problem: a DAG of tasks with a cost per processor and a
//! communication cost per edge, as in the list-scheduling literature.
//!
//! The file format (what `dagger sched` reads) is
//!
//! ```json
//! {"processors": 3,
//!  "tasks": [{"id": "n1", "cost": [14, 16, 9]}, {"id": "n2", "cost": [13, 19, 18]}],
//!  "edges": [{"from": "n1", "to": "n2", "comm": 18}]}
//! ```
//!
//! where `cost[p]` is the task's time on processor `p` and `comm` is paid
//! only when the two tasks run on different processors. Reading a file
//! checks it: malformed JSON, a cost row of the wrong length, an edge naming
//! an unknown task, a duplicate id, a negative cost and a cycle are errors
//! that name the culprit.
//!
//! Read against a [`Platform`] ([`Problem::from_json_on`], `dagger sched
//! --platform`), the processors are the platform's (`processors` may be
//! left out), a task may give one cost, its time on a processor of speed
//! 1.0 (each processor's is that over its speed), and an edge may give the
//! `bytes` it moves instead of `comm`: it costs the platform's slowest
//! transfer of that many bytes between two of its processors (the model
//! has one cost per edge).

use crate::cycle::walk_back;
use crate::error::{IrError, Result};
use crate::model::Platform;
use serde::Deserialize;
use std::collections::HashMap;

/// The mean of the finite values (zero when there are none).
pub(crate) fn finite_mean(values: &[f64]) -> f64 {
    let (sum, n) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// A DAG of tasks with per-processor costs and per-edge communication costs.
/// A cost may be infinite: that processor cannot run that task, and no
/// scheduler places it there (graphs made by the runtime do this for tasks
/// without a device body; files cannot).
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Number of processors.
    pub processors: usize,
    /// Task ids, by task index.
    pub ids: Vec<String>,
    /// `cost[t][p]`: time of task `t` on processor `p`.
    pub cost: Vec<Vec<f64>>,
    /// `succ[t]`: `(successor, comm)` pairs.
    pub succ: Vec<Vec<(usize, f64)>>,
    /// `pred[t]`: `(predecessor, comm)` pairs.
    pub pred: Vec<Vec<(usize, f64)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    processors: usize,
    tasks: Vec<TaskEntry>,
    #[serde(default)]
    edges: Vec<EdgeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskEntry {
    id: String,
    cost: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeEntry {
    from: String,
    to: String,
    #[serde(default)]
    comm: f64,
    #[serde(default)]
    bytes: Option<u64>,
}

impl Problem {
    /// Reads and checks a problem file (see the [module docs](self)).
    pub fn from_json(text: &str) -> Result<Problem> {
        Self::checked(serde_json::from_str(text).map_err(|e| IrError::Json(e.to_string()))?)
    }

    /// Reads a problem file whose processors are `platform`'s (see the
    /// [module docs](self)).
    pub fn from_json_on(text: &str, platform: &Platform) -> Result<Problem> {
        let mut file: File =
            serde_json::from_str(text).map_err(|e| IrError::Json(e.to_string()))?;
        let n = platform.processors.len();
        if file.processors != 0 && file.processors != n {
            return Err(IrError::Json(format!(
                "\"processors\" is {} but the platform has {n}",
                file.processors
            )));
        }
        file.processors = n;
        for t in &mut file.tasks {
            if let [reference] = t.cost[..] {
                t.cost = platform
                    .processors
                    .iter()
                    .map(|p| reference / p.speed)
                    .collect();
            }
        }
        for e in &mut file.edges {
            if let Some(bytes) = e.bytes.take() {
                e.comm = (0..n)
                    .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
                    .map(|(a, b)| platform.transfer_time(a, b, bytes))
                    .fold(0.0, f64::max);
            }
        }
        Self::checked(file)
    }

    fn checked(file: File) -> Result<Problem> {
        let bad = |node: &str, message: String| IrError::Malformed {
            node: format!("`{node}`"),
            message,
        };
        if file.processors == 0 {
            return Err(IrError::Json("\"processors\" must be at least 1".into()));
        }
        let mut index = HashMap::new();
        for (i, t) in file.tasks.iter().enumerate() {
            if index.insert(t.id.clone(), i).is_some() {
                return Err(IrError::Duplicate {
                    what: "task id",
                    name: t.id.clone(),
                });
            }
            if t.cost.len() != file.processors {
                return Err(bad(
                    &t.id,
                    format!(
                        "has {} costs but there are {} processors",
                        t.cost.len(),
                        file.processors
                    ),
                ));
            }
            if t.cost.iter().any(|c| !c.is_finite() || *c < 0.0) {
                return Err(bad(&t.id, "costs must be finite and not negative".into()));
            }
        }
        let n = file.tasks.len();
        let (mut succ, mut pred) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        for e in &file.edges {
            let find = |id: &str| {
                index.get(id).copied().ok_or_else(|| IrError::UnknownNode {
                    name: id.to_string(),
                    context: format!("edge {} -> {}", e.from, e.to),
                })
            };
            let (a, b) = (find(&e.from)?, find(&e.to)?);
            if e.bytes.is_some() {
                return Err(bad(
                    &e.from,
                    format!(
                        "edge to `{}` gives bytes: read the file with a platform",
                        e.to
                    ),
                ));
            }
            if !e.comm.is_finite() || e.comm < 0.0 {
                return Err(bad(
                    &e.from,
                    format!("edge to `{}` has a negative or infinite comm", e.to),
                ));
            }
            succ[a].push((b, e.comm));
            pred[b].push((a, e.comm));
        }
        let (ids, cost) = file.tasks.into_iter().map(|t| (t.id, t.cost)).unzip();
        let problem = Problem {
            processors: file.processors,
            ids,
            cost,
            succ,
            pred,
        };
        problem.topo_order()?;
        Ok(problem)
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Mean cost of task `t` over the processors that can run it (an
    /// infinite cost says a processor cannot: a task with no GPU body on
    /// a GPU).
    pub fn mean_cost(&self, t: usize) -> f64 {
        finite_mean(&self.cost[t])
    }

    /// A topological order (smallest index first among ready tasks), or the
    /// cycle that prevents one.
    pub fn topo_order(&self) -> Result<Vec<usize>> {
        let mut indegree: Vec<usize> = self.pred.iter().map(Vec::len).collect();
        let mut ready: std::collections::BTreeSet<usize> =
            (0..self.len()).filter(|&t| indegree[t] == 0).collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(t) = ready.pop_first() {
            order.push(t);
            for &(s, _) in &self.succ[t] {
                indegree[s] -= 1;
                if indegree[s] == 0 {
                    ready.insert(s);
                }
            }
        }
        if order.len() == self.len() {
            return Ok(order);
        }
        // Walk predecessors among the leftovers until one repeats.
        let start = (0..self.len())
            .find(|&t| indegree[t] > 0)
            .expect("a task is left");
        let cycle = walk_back(start, self.len(), |at| {
            self.pred[at]
                .iter()
                .map(|p| p.0)
                .find(|&p| indegree[p] > 0)
                .expect("on a cycle")
        });
        Err(IrError::Cycle {
            path: cycle
                .into_iter()
                .map(|t| format!("`{}`", self.ids[t]))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProcKind, Processor};

    #[test]
    fn a_platform_gives_processors_speeds_and_link_costs() {
        // Two CPU cores and a GPU four times as fast, on one node.
        let mut platform = Platform::local(2);
        platform.processors.push(Processor {
            kind: ProcKind::Gpu,
            speed: 4.0,
            node: 0,
        });
        let text = r#"{"tasks": [{"id": "a", "cost": [8]}, {"id": "b", "cost": [1, 2, 3]}],
                      "edges": [{"from": "a", "to": "b", "bytes": 12000000}]}"#;
        let p = Problem::from_json_on(text, &platform).unwrap();
        assert_eq!(p.processors, 3);
        assert_eq!(p.cost, vec![vec![8.0, 8.0, 2.0], vec![1.0, 2.0, 3.0]]);
        // The slowest transfer between two processors: host to GPU.
        let comm = platform.host_device.transfer_time(12_000_000);
        assert_eq!(p.succ[0], vec![(1, comm)]);
        let err = Problem::from_json_on(r#"{"processors": 2, "tasks": []}"#, &platform)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"processors\" is 2 but the platform has 3"),
            "{err}"
        );
        let err = Problem::from_json(text).unwrap_err().to_string();
        assert!(err.contains("\"processors\" must be at least 1"), "{err}");
        let bytes_alone = r#"{"processors": 1, "tasks": [{"id": "a", "cost": [1]}, {"id": "b", "cost": [1]}],
                             "edges": [{"from": "a", "to": "b", "bytes": 5}]}"#;
        let err = Problem::from_json(bytes_alone).unwrap_err().to_string();
        assert!(
            err.contains("gives bytes: read the file with a platform"),
            "{err}"
        );
        let with_count = text.replacen('{', r#"{"processors": 1, "#, 1);
        let err = Problem::from_json(&with_count).unwrap_err().to_string();
        assert!(
            err.contains("has 3 costs but there are 1 processors"),
            "{err}"
        );
    }
}
