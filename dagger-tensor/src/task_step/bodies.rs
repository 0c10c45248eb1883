//! The bodies of a lowered step's tasks: a segment (feed its executable,
//! run it, pass its outputs on), an all-reduce over the replicas, and the
//! step's last task, which gathers its results.

use super::{StepFeed, Tensors};
use crate::backend::Executable;
use dagger_runtime::datum::Datum;
use dagger_runtime::task::Body;
use std::sync::{Arc, Mutex};

/// Where a segment input comes from.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// The step's feed, under this key (an input's share, or a travelling
    /// parameter).
    Feed(String),
    /// Output `slot` of the task passed as argument `arg`.
    Task { arg: usize, slot: usize },
}

/// A segment compiled: its executable and what feeds each of its inputs.
pub(super) struct Compiled {
    pub(super) exe: Mutex<Box<dyn Executable + Send>>,
    /// Each input of the executable: its name there, and its source.
    pub(super) sources: Vec<(String, Source)>,
    /// How many outputs it has.
    pub(super) outputs: usize,
}

/// Output `slot` of task argument `arg` (shared, not copied), or an error
/// naming what is missing.
fn operand(args: &[Option<Datum>], arg: usize, slot: usize) -> Result<&Arc<[f32]>, String> {
    args.get(arg)
        .and_then(Option::as_ref)
        .and_then(|d| d.downcast_ref::<Tensors>())
        .and_then(|t| t.0.get(slot))
        .ok_or_else(|| format!("operand {slot} of argument {arg} is missing"))
}

/// A segment's task: feed, run, pass the outputs on (argument 0 is the
/// step's feed).
pub(super) fn segment(segment: Arc<Compiled>) -> Body {
    Arc::new(move |args: &mut [Option<Datum>]| {
        let feed = args[0]
            .as_ref()
            .and_then(|d| d.downcast_ref::<StepFeed>())
            .ok_or("the step's feed is missing")?;
        let mut exe = segment.exe.lock().unwrap_or_else(|p| p.into_inner());
        for (name, source) in &segment.sources {
            let data = match source {
                Source::Feed(key) => feed
                    .0
                    .get(key)
                    .ok_or_else(|| format!("`{key}` was not fed before the run"))?,
                Source::Task { arg, slot } => operand(args, *arg, *slot)?,
            };
            exe.set(name, data).map_err(|e| e.to_string())?;
        }
        exe.run().map_err(|e| e.to_string())?;
        let outputs = (0..segment.outputs)
            .map(|k| exe.read_output(k).map(Arc::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Datum::new(Tensors(outputs)))
    })
}

/// An all-reduce's task: the sum (or, with `mean`, the mean) of one value
/// over a group's workers, worker `r`'s copy being output `picks[r]` of
/// argument `r`.
pub(super) fn reduce_over_workers(picks: Vec<usize>, mean: bool) -> Body {
    Arc::new(move |args: &mut [Option<Datum>]| {
        let mut sum = operand(args, 0, picks[0])?.to_vec();
        for (r, &slot) in picks.iter().enumerate().skip(1) {
            let part = operand(args, r, slot)?;
            if part.len() != sum.len() {
                return Err(format!(
                    "worker {r} of the group reduces {} elements, worker 0 {}",
                    part.len(),
                    sum.len()
                ));
            }
            for (s, p) in sum.iter_mut().zip(part.iter()) {
                *s += p;
            }
        }
        if mean {
            let scale = 1.0 / picks.len() as f32;
            sum.iter_mut().for_each(|s| *s *= scale);
        }
        Ok(Datum::new(Tensors(vec![sum.into()])))
    })
}

/// The step's last task: the values at `picks` (`(argument, slot)`), in
/// order (shared with the tasks that made them, not copied).
pub(super) fn gather(picks: Vec<(usize, usize)>) -> Body {
    Arc::new(move |args: &mut [Option<Datum>]| {
        let values = picks
            .iter()
            .map(|&(arg, slot)| operand(args, arg, slot).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Datum::new(Tensors(values)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(values: &[&[f32]]) -> Option<Datum> {
        Some(Datum::new(Tensors(
            values.iter().map(|&v| Arc::from(v)).collect(),
        )))
    }

    #[test]
    fn a_reduction_takes_each_workers_slot_and_checks_sizes() {
        let mean = reduce_over_workers(vec![1, 0], true);
        let mut args = [tensors(&[&[9.0], &[1.0, 2.0]]), tensors(&[&[3.0, 6.0]])];
        let out = mean(&mut args).unwrap();
        assert_eq!(*out.downcast_ref::<Tensors>().unwrap().0[0], [2.0, 4.0]);
        let mut uneven = [tensors(&[&[9.0], &[1.0, 2.0]]), tensors(&[&[3.0]])];
        let err = mean(&mut uneven).err().unwrap();
        assert_eq!(err, "worker 1 of the group reduces 1 elements, worker 0 2");
        let mut missing = [tensors(&[&[1.0]]), None];
        assert!(mean(&mut missing).is_err());
        let sum = reduce_over_workers(vec![0, 0], false);
        let mut args = [tensors(&[&[1.0, 2.0]]), tensors(&[&[3.0, 6.0]])];
        let out = sum(&mut args).unwrap();
        assert_eq!(*out.downcast_ref::<Tensors>().unwrap().0[0], [4.0, 8.0]);
    }
}
