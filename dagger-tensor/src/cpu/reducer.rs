//! The gradient buckets of a program and the thread that reduces them.
//!
//! A [`Buckets`] knows, for every bucket of
//! [`AllReduce`](crate::TensorOp::AllReduce) nodes, which node
//! completes its last gradient. The program calls [`Buckets::after_node`]
//! after each node: when a bucket's gradients are all computed, they are
//! packed into its staging buffer and handed to the [`Reducer`] thread,
//! which runs the ring all-reduce while the program goes on with the rest
//! of the backward pass. An all-reduce node waits for its bucket
//! ([`Buckets::reduced`]) and copies its part out.

use super::collective::{ring_all_reduce_mean, ring_all_reduce_sum, ring_broadcast, RingLink};
use crate::{plan_buckets, BucketPlans, Tensor, TensorError, TensorGraph};
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

    /// Sends bucket `bucket`'s packed values to be averaged (`mean`) or
    /// summed over the workers; [`Reducer::receive_bucket`] gets them back.
    pub fn reduce(&self, bucket: usize, data: Vec<f32>, mean: bool) -> Result<(), TensorError> {
        self.send(Request::Reduce(bucket, data, mean))
    }

    /// Waits for the next reduced bucket: its number and values (buckets
    /// come back in the order they were sent).
    pub fn receive_bucket(&self) -> Result<(usize, Vec<f32>), TensorError> {
        match self.receive()? {
            (usize::MAX, _) => Err(TensorError::Collective(
                "a broadcast reply arrived during a step".into(),
            )),
            (b, result) => Ok((b, result.map_err(TensorError::Collective)?)),
        }
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

/// The reducer of each [`ParallelGroup`](crate::ParallelGroup)
/// this worker belongs to, by its index.
pub type Reducers = [Option<Reducer>; 2];

/// The state of one bucket in a run.
struct BucketState {
    /// The staging buffer while it is here (not with the reducer).
    staging: Option<Vec<f32>>,
    /// Whether the buffer holds this step's reduced values.
    reduced: bool,
}

/// The buckets of a program (see the [module docs](self)).
#[derive(Default)]
pub struct Buckets {
    plans: BucketPlans,
    states: Vec<BucketState>,
}

impl Buckets {
    /// The buckets of `g`'s all-reduce nodes; an error if a node would wait
    /// for a gradient computed after it.
    pub fn of(g: &TensorGraph) -> Result<Buckets, TensorError> {
        let plans = plan_buckets(g)?;
        let states = plans
            .buckets
            .iter()
            .map(|p| BucketState {
                staging: Some(vec![0.0; p.len()]),
                reduced: false,
            })
            .collect();
        Ok(Buckets { plans, states })
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
        for (b, (plan, state)) in self.plans.buckets.iter().zip(&mut self.states).enumerate() {
            if plan.launch_after != i {
                continue;
            }
            let Some(mut staging) = state.staging.take() else {
                return Err(TensorError::Collective(format!(
                    "bucket {b} is still being reduced: an earlier run failed during its all-reduce"
                )));
            };
            for m in &plan.members {
                staging[m.range.clone()].copy_from_slice(data(m.operand));
            }
            match &reducers[plan.group.index()] {
                Some(r) => r.reduce(b, staging, plan.is_mean())?,
                None => {
                    state.staging = Some(staging);
                    state.reduced = true;
                }
            }
        }
        Ok(())
    }

    /// The reduced values of all-reduce node `i`, waiting for its bucket.
    pub fn reduced(&mut self, i: usize, reducers: &Reducers) -> Result<&[f32], TensorError> {
        let b = self.plans.of_node[i].expect("an all-reduce node");
        let plan = &self.plans.buckets[b];
        while !self.states[b].reduced {
            let reducer = reducers[plan.group.index()]
                .as_ref()
                .ok_or_else(|| TensorError::Collective("a bucket was never sent".into()))?;
            let (got, data) = reducer.receive_bucket()?;
            let state = &mut self.states[got];
            state.staging = Some(data);
            state.reduced = true;
        }
        let range = plan.range_of(i).expect("a member of its bucket");
        Ok(&self.states[b].staging.as_ref().expect("reduced buffer")[range])
    }

    /// Marks every bucket as not yet reduced for the next run.
    pub fn reset(&mut self) {
        for state in &mut self.states {
            state.reduced = false;
        }
    }
}
