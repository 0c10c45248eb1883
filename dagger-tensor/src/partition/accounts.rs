//! The memory accounts of a placement being built (see the
//! [module docs](super)).

use super::{bytes, everywhere, is_param, resident};
use crate::{Tensor, TensorGraph};

/// The memory accounts of a placement being built, node by node in the
/// list scheduler's order: bytes held on each device now (a result is
/// freed once its last user is placed; parameters, outputs and updates
/// stay) and at most, which devices hold each parameter, and the cut.
pub(super) struct Accounts {
    pub(super) device_of: Vec<usize>,
    pub(super) held: Vec<u64>,
    pub(super) peak: Vec<u64>,
    /// Uses of each value not placed yet.
    remaining: Vec<usize>,
    pinned: Vec<bool>,
    pub(super) holders: Vec<Vec<usize>>,
    pub(super) cut_bytes: u64,
}

impl Accounts {
    pub(super) fn new(g: &TensorGraph, devices: usize) -> Self {
        let n = g.nodes().len();
        let mut remaining = vec![0usize; n];
        for node in g.nodes() {
            for a in &node.inputs {
                remaining[a.index()] += 1;
            }
        }
        let mut pinned = vec![false; n];
        for &v in g.outputs().iter().chain(g.updates().iter().map(|(_, v)| v)) {
            pinned[v.index()] = true;
        }
        Accounts {
            device_of: vec![0; n],
            held: vec![0; devices],
            peak: vec![0; devices],
            remaining,
            pinned,
            holders: vec![Vec::new(); n],
            cut_bytes: 0,
        }
    }

    /// Bytes computed node `v` needs on device `d`: its result and the
    /// parameters it uses that are not there yet.
    pub(super) fn need(&self, g: &TensorGraph, v: Tensor, d: usize) -> u64 {
        let params: u64 = (g.node(v).inputs.iter())
            .filter(|a| is_param(g, **a) && !self.holders[a.index()].contains(&d))
            .map(|&a| bytes(g, a))
            .sum();
        bytes(g, v) + params
    }

    /// Places computed node `v` on device `d`.
    pub(super) fn commit(&mut self, g: &TensorGraph, v: Tensor, d: usize) {
        let inputs = &g.node(v).inputs;
        for &a in inputs {
            if is_param(g, a) {
                if !self.holders[a.index()].contains(&d) {
                    if !self.holders[a.index()].is_empty() {
                        self.cut_bytes += bytes(g, a);
                    }
                    self.holders[a.index()].push(d);
                    self.held[d] += bytes(g, a);
                }
            } else if !everywhere(g, a) && self.device_of[a.index()] != d {
                self.cut_bytes += bytes(g, a);
            }
        }
        self.device_of[v.index()] = d;
        self.held[d] += bytes(g, v);
        self.peak[d] = self.peak[d].max(self.held[d]);
        for &a in inputs {
            if !resident(g, a) {
                self.remaining[a.index()] -= 1;
                if self.remaining[a.index()] == 0 && !self.pinned[a.index()] {
                    self.held[self.device_of[a.index()]] -= bytes(g, a);
                }
            }
        }
        if self.remaining[v.index()] == 0 && !self.pinned[v.index()] {
            self.held[d] -= bytes(g, v);
        }
    }
}
