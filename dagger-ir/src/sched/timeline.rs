//! Processor timelines for insertion-based list scheduling: the busy slots
//! of each processor, and the search for the first idle gap a run fits in
//! (the insertion policy of HEFT).
//!
//! A processor's slots, sorted by `(start, finish)` (they do not overlap, so
//! their finishes are sorted too), are kept in chunks of at most
//! [`CHUNK`] slots; each chunk knows the longest gap before one of its
//! slots, and a max-tree over the chunks finds the next chunk with a long
//! enough gap. The search skips by binary search the slots that end before
//! the run's inputs are ready, tries the rest of that chunk, then jumps
//! from chunk to chunk: `O(CHUNK + log slots)` however many short gaps lie
//! in between. Inserting a slot costs `O(CHUNK + log slots)`, plus a
//! rebuild of the tree, `O(slots / CHUNK)`, once every `CHUNK / 2` inserts.
//! The answer is exactly that of trying every gap in order.

/// Most slots in a chunk; a fuller one splits in two.
pub(crate) const CHUNK: usize = 128;

/// One processor's busy slots.
#[derive(Clone, Default)]
struct Timeline {
    /// The slots, in order, chunked; no chunk is empty.
    chunks: Vec<Vec<(f64, f64)>>,
    /// `gap[k]`: the longest `start - previous finish` over chunk `k`'s slots
    /// (the very first slot has none: minus infinity).
    gap: Vec<f64>,
    /// Max-tree over `gap`: `tree[1]` is the root, leaves from `leaves`.
    tree: Vec<f64>,
    leaves: usize,
}

impl Timeline {
    /// The finish of the slot before chunk `k`'s first (none for the first chunk).
    fn finish_before(&self, k: usize) -> Option<f64> {
        k.checked_sub(1)
            .map(|p| self.chunks[p].last().expect("chunks are not empty").1)
    }

    fn chunk_gap(&self, k: usize) -> f64 {
        let mut previous = self.finish_before(k);
        let mut longest = f64::NEG_INFINITY;
        for &(start, finish) in &self.chunks[k] {
            if let Some(p) = previous {
                longest = longest.max(start - p);
            }
            previous = Some(finish);
        }
        longest
    }

    fn rebuild_tree(&mut self) {
        self.leaves = self.chunks.len().next_power_of_two();
        self.tree = vec![f64::NEG_INFINITY; 2 * self.leaves];
        self.tree[self.leaves..self.leaves + self.gap.len()].copy_from_slice(&self.gap);
        for i in (1..self.leaves).rev() {
            self.tree[i] = self.tree[2 * i].max(self.tree[2 * i + 1]);
        }
    }

    fn refresh(&mut self, k: usize) {
        if k >= self.chunks.len() {
            return;
        }
        self.gap[k] = self.chunk_gap(k);
        let mut i = self.leaves + k;
        self.tree[i] = self.gap[k];
        while i > 1 {
            i /= 2;
            self.tree[i] = self.tree[2 * i].max(self.tree[2 * i + 1]);
        }
    }

    /// The first chunk at or after `from` whose longest gap is at least `least`.
    fn next_chunk_with_gap(&self, from: usize, least: f64) -> Option<usize> {
        self.descend(1, 0, self.leaves, from, least)
    }

    fn descend(&self, node: usize, lo: usize, hi: usize, from: usize, least: f64) -> Option<usize> {
        if hi <= from || self.tree[node] < least {
            return None;
        }
        if hi - lo == 1 {
            return Some(lo);
        }
        let mid = (lo + hi) / 2;
        self.descend(2 * node, lo, mid, from, least)
            .or_else(|| self.descend(2 * node + 1, mid, hi, from, least))
    }

    fn earliest_start(&self, ready: f64, duration: f64) -> f64 {
        // A slot that ends before `ready` neither holds the run nor moves it.
        let mut k = self
            .chunks
            .partition_point(|c| c.last().expect("chunks are not empty").1 < ready);
        let Some(chunk) = self.chunks.get(k) else {
            return ready;
        };
        let from = chunk.partition_point(|s| s.1 < ready);
        let mut candidate = ready;
        for &(start, finish) in &chunk[from..] {
            if candidate + duration <= start {
                return candidate;
            }
            candidate = candidate.max(finish);
        }
        // Past the first slot at or after `ready`, a run fits before slot `j`
        // only if `start_j - finish_(j-1)` is about `duration` or more; the
        // slack covers rounding (`finish + duration <= start` is what decides).
        let last = self
            .chunks
            .last()
            .and_then(|c| c.last())
            .map_or(0.0, |s| s.1);
        let least = duration - 4.0 * f64::EPSILON * last.abs();
        loop {
            let Some(next) = self.next_chunk_with_gap(k + 1, least) else {
                return candidate.max(last);
            };
            k = next;
            candidate = candidate.max(self.finish_before(k).expect("not the first chunk"));
            for &(start, finish) in &self.chunks[k] {
                if candidate + duration <= start {
                    return candidate;
                }
                candidate = candidate.max(finish);
            }
        }
    }

    fn occupy(&mut self, start: f64, finish: f64) {
        if self.chunks.is_empty() {
            let mut first = Vec::with_capacity(CHUNK + 1);
            first.push((start, finish));
            self.chunks.push(first);
            self.gap.push(f64::NEG_INFINITY);
            self.rebuild_tree();
            return;
        }
        let k = self
            .chunks
            .partition_point(|c| *c.last().expect("chunks are not empty") < (start, finish))
            .min(self.chunks.len() - 1);
        let chunk = &mut self.chunks[k];
        let at = chunk.partition_point(|s| *s < (start, finish));
        chunk.insert(at, (start, finish));
        if chunk.len() > CHUNK {
            let upper = chunk.split_off(CHUNK / 2);
            self.chunks.insert(k + 1, upper);
            self.gap.insert(k + 1, f64::NEG_INFINITY);
            self.gap[k] = self.chunk_gap(k);
            self.gap[k + 1] = self.chunk_gap(k + 1);
            if k + 2 < self.chunks.len() {
                self.gap[k + 2] = self.chunk_gap(k + 2);
            }
            self.rebuild_tree();
        } else {
            self.refresh(k);
            self.refresh(k + 1);
        }
    }
}

/// The timelines of all processors.
#[derive(Clone)]
pub(crate) struct Timelines {
    lines: Vec<Timeline>,
}

impl Timelines {
    /// Empty timelines for `processors` processors.
    pub(crate) fn new(processors: usize) -> Self {
        Timelines {
            lines: vec![Timeline::default(); processors],
        }
    }

    /// Earliest start at or after `ready` of a run of `duration` on `proc`,
    /// in the first idle gap it fits (the insertion policy of HEFT).
    pub(crate) fn earliest_start(&self, proc: usize, ready: f64, duration: f64) -> f64 {
        self.lines[proc].earliest_start(ready, duration)
    }

    /// Marks `proc` busy from `start` to `finish`.
    pub(crate) fn occupy(&mut self, proc: usize, start: f64, finish: f64) {
        self.lines[proc].occupy(start, finish);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The insertion policy by its definition: every gap in order (`slots`
    /// sorted).
    fn every_gap(slots: &[(f64, f64)], ready: f64, duration: f64) -> f64 {
        let mut candidate = ready;
        for &(start, finish) in slots {
            if candidate + duration <= start {
                return candidate;
            }
            candidate = candidate.max(finish);
        }
        candidate
    }

    #[test]
    fn the_insertion_policy_fills_the_first_gap_that_fits() {
        let mut lines = Timelines::new(1);
        for (s, f) in [(10.0, 12.0), (0.0, 2.0), (5.0, 7.0), (7.0, 7.0)] {
            lines.occupy(0, s, f);
        }
        assert_eq!(lines.earliest_start(0, 0.0, 3.0), 2.0);
        assert_eq!(lines.earliest_start(0, 3.0, 3.0), 7.0);
        assert_eq!(lines.earliest_start(0, 6.0, 4.0), 12.0);
        assert_eq!(lines.earliest_start(0, 20.0, 1.0), 20.0);
    }

    #[test]
    fn chunked_search_agrees_with_trying_every_gap() {
        // Thousands of slots (many chunks) with gaps of every size, some
        // zero-length slots, and runs placed where the policy says.
        let mut state = 7u64;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut lines = Timelines::new(1);
        let mut slots = Vec::new();
        for _ in 0..3000 {
            let ready = next(40_000) as f64 * 0.25;
            let duration = [0.0, 0.5, 1.0, 3.0, 7.5, 40.0][next(6) as usize];
            let start = lines.earliest_start(0, ready, duration);
            assert_eq!(
                start,
                every_gap(&slots, ready, duration),
                "{ready} {duration}"
            );
            lines.occupy(0, start, start + duration);
            let at = slots.partition_point(|s| *s < (start, start + duration));
            slots.insert(at, (start, start + duration));
        }
        for ready in [0.0, 17.25, 5000.0, 1e9] {
            for duration in [0.0, 0.25, 2.0, 100.0, f64::INFINITY] {
                assert_eq!(
                    lines.earliest_start(0, ready, duration),
                    every_gap(&slots, ready, duration)
                );
            }
        }
    }
}
