//! The gradient buckets of a program and the thread that reduces them.
//!
//! A [`Buckets`] knows, for every bucket of
//! [`AllReduce`](dagger_ir::tensor::TensorOp::AllReduce) nodes, which node
//! completes its last gradient. The program calls [`Buckets::after_node`]
//! after each node: when a bucket's gradients are all computed, they are
//! packed into its staging buffer and handed to the [`Reducer`] thread,
//! which runs the ring all-reduce while the program goes on with the rest
//! of the backward pass. An all-reduce node waits for its bucket
//! ([`Buckets::reduced`]) and copies its part out.

use super::collective::{ring_all_reduce_mean, ring_all_reduce_sum, ring_broadcast, RingLink};
use dagger_ir::tensor::{ParallelGroup, Tensor, TensorError, TensorGraph, TensorOp};
use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

/// A request to the reducer thread.
enum Request {
    /// Average bucket `.0`'s staging buffer over the workers.
    Reduce(usize, Vec<f32>, bool),
    /// Replace the buffer by worker 0's.
    Broadcast(Vec<f32>),
}

/// A reply: the request's bucket (`usize::MAX` for a broadcast) and buffer.
type Reply = (usize, Result<Vec<f32>, String>);

/// The thread running a worker's collectives, in the order requested.
pub struct Reducer {
    requests: Option<Sender<Request>>,
    replies: Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
}

impl Reducer {
    /// Starts the thread on `link`.
    pub fn start(mut link: Box<dyn RingLink>) -> Reducer {
        let (requests, inbox) = channel::<Request>();
        let (outbox, replies) = channel::<Reply>();
        let thread = std::thread::Builder::new()
            .name(format!("dagger-reducer-{}", link.rank()))
            .spawn(move || {
                let mut scratch = Vec::new();
                for request in inbox {
                    let reply = match request {
                        Request::Reduce(b, mut data, mean) => {
                            let link = link.as_mut();
                            let r = if mean {
                                ring_all_reduce_mean(link, &mut data, &mut scratch)
                            } else {
                                ring_all_reduce_sum(link, &mut data, &mut scratch)
                            };
                            (b, r.map(|()| data).map_err(|e| e.to_string()))
                        }
                        Request::Broadcast(mut data) => {
                            let r = ring_broadcast(link.as_mut(), &mut data);
                            (usize::MAX, r.map(|()| data).map_err(|e| e.to_string()))
                        }
                    };
                    if outbox.send(reply).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the reducer thread");
        Reducer {
            requests: Some(requests),
            replies,
            thread: Some(thread),
        }
    }

    fn send(&self, request: Request) -> Result<(), TensorError> {
        let gone = || TensorError::Collective("the reducer thread stopped".into());
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(request)
            .map_err(|_| gone())
    }

    fn receive(&self) -> Result<Reply, TensorError> {
        self.replies
            .recv()
            .map_err(|_| TensorError::Collective("the reducer thread stopped".into()))
    }

    /// Gives every worker worker 0's `data`.
    pub fn broadcast(&self, data: Vec<f32>) -> Result<Vec<f32>, TensorError> {
        self.send(Request::Broadcast(data))?;
        match self.receive()? {
            (usize::MAX, Ok(data)) => Ok(data),
            (_, Err(e)) => Err(TensorError::Collective(e)),
            (b, Ok(_)) => Err(TensorError::Collective(format!(
                "bucket {b} came back during a broadcast"
            ))),
        }
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reducer of each [`ParallelGroup`] this worker belongs to, by
/// [`ParallelGroup::index`].
pub type Reducers = [Option<Reducer>; 2];

/// One bucket: its all-reduce nodes, their operands' places in the staging
/// buffer, and the node after which all operands exist.
struct Bucket {
    members: Vec<(usize, Tensor, Range<usize>)>,
    /// Average rather than sum.
    group: ParallelGroup,
    launch_after: usize,
    /// The staging buffer while it is here (not with the reducer).
    staging: Option<Vec<f32>>,
    /// Whether the buffer holds this step's reduced values.
    reduced: bool,
}

/// The buckets of a program (see the [module docs](self)).
#[derive(Default)]
pub struct Buckets {
    buckets: Vec<Bucket>,
    /// Bucket of each all-reduce node, by node index.
    of_node: Vec<Option<usize>>,
}

impl Buckets {
    /// The buckets of `g`'s all-reduce nodes; an error if a node would wait
    /// for a gradient computed after it.
    pub fn of(g: &TensorGraph) -> Result<Buckets, TensorError> {
        let mut out = Buckets {
            buckets: Vec::new(),
            of_node: vec![None; g.nodes().len()],
        };
        let mut index_of: Vec<(u32, usize)> = Vec::new();
        for (i, node) in g.nodes().iter().enumerate() {
            let TensorOp::AllReduce { bucket, group } = node.op else {
                continue;
            };
            let b = match index_of.iter().find(|(id, _)| *id == bucket) {
                Some(&(_, b)) => b,
                None => {
                    index_of.push((bucket, out.buckets.len()));
                    out.buckets.push(Bucket {
                        members: Vec::new(),
                        group,
                        launch_after: 0,
                        staging: None,
                        reduced: false,
                    });
                    out.buckets.len() - 1
                }
            };
            let operand = node.inputs[0];
            let bucket = &mut out.buckets[b];
            let start = bucket.members.last().map_or(0, |m| m.2.end);
            bucket
                .members
                .push((i, operand, start..start + node.shape.numel()));
            bucket.launch_after = bucket.launch_after.max(operand.index());
            out.of_node[i] = Some(b);
        }
        for bucket in &mut out.buckets {
            if let Some(&(node, _, _)) = bucket.members.iter().find(|m| m.0 < bucket.launch_after) {
                return Err(TensorError::Collective(format!(
                    "all-reduce %{node} comes before its bucket's last gradient %{}",
                    bucket.launch_after
                )));
            }
            let len = bucket.members.last().map_or(0, |m| m.2.end);
            bucket.staging = Some(vec![0.0; len]);
        }
        Ok(out)
    }

    /// After node `i` ran: sends every bucket now complete to the reducer
    /// of its group (or, with none, one worker, keeps it: the mean or sum
    /// over one worker). `data(v)` reads a value.
    pub fn after_node<'a>(
        &mut self,
        i: usize,
        reducers: &Reducers,
        data: impl Fn(Tensor) -> &'a [f32],
    ) -> Result<(), TensorError> {
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            if bucket.launch_after != i {
                continue;
            }
            let Some(mut staging) = bucket.staging.take() else {
                return Err(TensorError::Collective(format!(
                    "bucket {b} is still being reduced: an earlier run failed during its all-reduce"
                )));
            };
            for (_, operand, range) in &bucket.members {
                staging[range.clone()].copy_from_slice(data(*operand));
            }
            let mean = bucket.group == ParallelGroup::Data;
            match &reducers[bucket.group.index()] {
                Some(r) => r.send(Request::Reduce(b, staging, mean))?,
                None => {
                    bucket.staging = Some(staging);
                    bucket.reduced = true;
                }
            }
        }
        Ok(())
    }

    /// The reduced values of all-reduce node `i`, waiting for its bucket.
    pub fn reduced(&mut self, i: usize, reducers: &Reducers) -> Result<&[f32], TensorError> {
        let b = self.of_node[i].expect("an all-reduce node");
        let group = self.buckets[b].group.index();
        while !self.buckets[b].reduced {
            let reducer = reducers[group]
                .as_ref()
                .ok_or_else(|| TensorError::Collective("a bucket was never sent".into()))?;
            let (got, result) = reducer.receive()?;
            let bucket = self.buckets.get_mut(got).ok_or_else(|| {
                TensorError::Collective("a broadcast reply arrived during a step".into())
            })?;
            bucket.staging = Some(result.map_err(TensorError::Collective)?);
            bucket.reduced = true;
        }
        let bucket = &self.buckets[b];
        let range = bucket
            .members
            .iter()
            .find(|m| m.0 == i)
            .expect("member")
            .2
            .clone();
        Ok(&bucket.staging.as_ref().expect("reduced buffer")[range])
    }

    /// Marks every bucket as not yet reduced for the next run.
    pub fn reset(&mut self) {
        for bucket in &mut self.buckets {
            bucket.reduced = false;
        }
    }
}
