//! Task priorities of list scheduling: upward and downward ranks
//! (Topcuoglu, Hariri and Wu, 2002), on mean computation costs and the
//! edges' communication costs. Each takes `O(tasks x processors + edges)`.

use super::problem::Problem;
use std::cmp::Ordering;

/// `rank_u(t) = mean_cost(t) + max over successors s of (comm(t, s) + rank_u(s))`:
/// the length of the longest path from `t` to an exit task.
pub fn upward_rank(problem: &Problem) -> Vec<f64> {
    let order = problem.topo_order().expect("problems are acyclic");
    let mut rank = vec![0.0; problem.len()];
    for &t in order.iter().rev() {
        let tail = problem.succ[t]
            .iter()
            .map(|&(s, c)| c + rank[s])
            .fold(0.0, f64::max);
        rank[t] = problem.mean_cost(t) + tail;
    }
    rank
}

/// `rank_d(t) = max over predecessors p of (rank_d(p) + mean_cost(p) + comm(p, t))`:
/// the length of the longest path from an entry task to `t`, `t` excluded.
pub fn downward_rank(problem: &Problem) -> Vec<f64> {
    let order = problem.topo_order().expect("problems are acyclic");
    let mean: Vec<f64> = (0..problem.len()).map(|t| problem.mean_cost(t)).collect();
    let mut rank = vec![0.0; problem.len()];
    for &t in &order {
        rank[t] = problem.pred[t]
            .iter()
            .map(|&(p, c)| rank[p] + mean[p] + c)
            .fold(0.0, f64::max);
    }
    rank
}

/// Orders priorities from high to low; priorities equal up to rounding
/// (relative 1e-9) tie, and ties go to the lower task index.
pub(crate) fn by_priority(priority: &[f64], a: usize, b: usize) -> Ordering {
    let (x, y) = (priority[a], priority[b]);
    if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) {
        a.cmp(&b)
    } else {
        y.total_cmp(&x)
    }
}

/// Whether two priorities are equal up to rounding.
pub(crate) fn same(x: f64, y: f64) -> bool {
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
}
