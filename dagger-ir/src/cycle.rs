//! Naming a cycle: once a topological sort is stuck, the nodes it could
//! not order each have a predecessor among them, so walking back from one
//! of them must come round to a node already seen. The nodes from that
//! node's first visit on form a cycle.
//!
//! Both the task IR's verifier and the scheduling problems use this walk;
//! it is linear in the cycle's length (a million-node ring is named at
//! once), since each node's place on the walk is kept in a table.

/// The cycle reached by walking back from `start`, in edge order and closed
/// (its first node repeated at the end). `previous(n)` names a predecessor of
/// `n` that is itself on or behind a cycle (one the sort left over); node
/// indices are below `bound`.
pub(crate) fn walk_back(
    start: usize,
    bound: usize,
    mut previous: impl FnMut(usize) -> usize,
) -> Vec<usize> {
    let mut seen = vec![start];
    let mut position = vec![usize::MAX; bound];
    position[start] = 0;
    let mut at = start;
    loop {
        let prev = previous(at);
        let pos = position[prev];
        if pos != usize::MAX {
            let mut cycle: Vec<usize> = seen[pos..].iter().rev().copied().collect();
            cycle.push(cycle[0]);
            return cycle;
        }
        position[prev] = seen.len();
        seen.push(prev);
        at = prev;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_finds_the_cycle_behind_a_tail_in_edge_order() {
        // Edges 0 -> 1 -> 2 -> 3 -> 1 and 3 -> 4: from 4, back through 3, 2
        // and 1 to 3 again, so the cycle is 1 -> 2 -> 3 -> 1.
        let pred = |n: usize| [usize::MAX, 3, 1, 2, 3][n];
        assert_eq!(walk_back(4, 5, pred), vec![1, 2, 3, 1]);
    }

    #[test]
    fn a_ring_of_a_million_is_walked_in_one_pass() {
        let n = 1_000_000;
        let cycle = walk_back(0, n, |k| (k + n - 1) % n);
        assert_eq!(cycle.len(), n + 1);
        assert_eq!((cycle[0], cycle[1], cycle[n]), (1, 2, 1));
    }
}
