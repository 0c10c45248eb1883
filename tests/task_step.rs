//! A training step lowered to a task graph trains exactly as the compiled
//! `Program` does, however it is cut and placed, under every policy.

#[path = "common/lowered.rs"]
mod lowered;
use dagger::ir::model::HistoryModel;
use dagger::ir::model::Platform;
use dagger::ir::sched::{DynamicPolicy, HeftScheduler, SharedCores};
use dagger::nn::Net;
use dagger::tensor::task_step::strategy::{parallelize, Strategy};
use dagger::tensor::task_step::{lower_step, LowerOptions, StepPlacement, TaskStep};
use dagger::tensor::CpuBackend;
use dagger::Runtime;
use lowered::*;

/// `step` lowered over two equal devices joined by a free link (a slow one
/// would keep everything on one), in tasks of at most `max_nodes` nodes;
/// both devices hold some.
fn lowered_on_two_devices(step: &Net, max_nodes: usize) -> TaskStep {
    let options = LowerOptions {
        max_nodes,
        ..LowerOptions::default()
    };
    lowered_on_two_devices_with(step, options)
}

/// The same with every option given.
fn lowered_on_two_devices_with(step: &Net, options: LowerOptions) -> TaskStep {
    lowered_on_two_devices_by(step, options, &CpuBackend::default())
}

/// How many all-reduce tasks a lowered step has.
fn all_reduce_tasks(lowered: &TaskStep) -> usize {
    let tasks = lowered.dag().graph().tasks();
    tasks
        .iter()
        .filter(|t| t.name.starts_with("step.all_reduce"))
        .count()
}

/// One step under HEFT's static placement on `rt`'s workers.
fn heft_step<'a>(
    rt: &'a Runtime,
    model: &'a HistoryModel,
) -> impl FnMut(&mut TaskStep, &Batch<'_>) -> Vec<Vec<f32>> + 'a {
    move |l, inputs| {
        let feed = l.feed(inputs).unwrap();
        let (results, _) = rt
            .run_scheduled(l.dag(), (feed,), &HeftScheduler, model)
            .unwrap();
        l.finish(results)
    }
}

#[test]
fn a_lowered_step_trains_as_the_program_does_however_it_is_cut() {
    let step = step();
    let want = reference(&step);
    assert!(
        want.0[STEPS - 1] < want.0[0],
        "the reference learns: {:?}",
        want.0
    );
    let rt = Runtime::builder().threads(2).build();
    for max_nodes in [usize::MAX, 5, 1] {
        let options = LowerOptions {
            max_nodes,
            ..LowerOptions::default()
        };
        let mut lowered = lower_step(&step, &StepPlacement::OneDevice, options).unwrap();
        let tasks = lowered.segments().len();
        if max_nodes == usize::MAX {
            assert_eq!(tasks, 1, "one device, no limit: one task");
            assert!(
                lowered.travelling_params().is_empty(),
                "all stay in the one task"
            );
        } else {
            assert!(tasks > 5, "{max_nodes} nodes a task: {tasks} tasks");
        }
        let got = lowered_training(&step, &mut lowered, |l, inputs| l.run(&rt, inputs).unwrap());
        assert_close(&format!("{max_nodes} nodes a task"), &got, &want, 1e-6);
    }
}

#[test]
fn a_step_partitioned_over_two_devices_moves_its_parameters_and_trains_alike() {
    let step = step();
    let want = reference(&step);
    let mut lowered = lowered_on_two_devices(&step, 4);
    assert!(
        !lowered.travelling_params().is_empty(),
        "some parameters are used on both devices and travel"
    );
    let rt = Runtime::builder().threads(2).build();
    let model = HistoryModel::new();
    // Under HEFT's static placement, and under each dynamic policy.
    let got = lowered_training(&step, &mut lowered, heft_step(&rt, &model));
    assert_close("HEFT", &got, &want, 1e-6);
    for policy in [DynamicPolicy::Eager, DynamicPolicy::Dmda] {
        let mut lowered = lowered_on_two_devices(&step, 4);
        let got = lowered_training(&step, &mut lowered, |l, inputs| {
            let feed = l.feed(inputs).unwrap();
            let results = rt
                .run_with_policy(l.dag(), (feed,), policy, &model)
                .unwrap();
            l.finish(results)
        });
        assert_close(policy.name(), &got, &want, 1e-6);
    }
}

#[test]
fn a_trace_shows_each_segment_as_a_span_under_its_name() {
    let step = step();
    let options = LowerOptions {
        max_nodes: 3,
        ..LowerOptions::default()
    };
    let mut lowered = lower_step(&step, &StepPlacement::OneDevice, options).unwrap();
    for (name, values) in step.initial_params(SEED) {
        lowered.set_param(&name, &values).unwrap();
    }
    let rt = Runtime::builder().threads(2).build();
    let (x, y) = batch();
    rt.start_trace();
    lowered.run(&rt, &[("x", &x), ("y", &y)]).unwrap();
    let trace = rt.stop_trace();
    let mut spans: Vec<String> = trace
        .events
        .iter()
        .map(|e| e.name.as_str().to_string())
        .collect();
    spans.sort();
    let mut names: Vec<String> = lowered.segments().iter().map(|s| s.name.clone()).collect();
    names.push("step.results".into());
    names.sort();
    assert_eq!(spans, names);
    assert!(names.iter().any(|n| n.contains("matmul")), "{names:?}");
}

#[test]
fn feeding_a_step_wrongly_fails_naming_what_is_wrong() {
    let step = step();
    let mut lowered =
        lower_step(&step, &StepPlacement::OneDevice, LowerOptions::default()).unwrap();
    let err = lowered.set_param("nope", &[1.0]).unwrap_err().to_string();
    assert!(err.contains("`nope`"), "{err}");
    for (name, values) in step.initial_params(SEED) {
        lowered.set_param(&name, &values).unwrap();
    }
    let rt = Runtime::builder().threads(2).build();
    let (x, _) = batch();
    let err = lowered.run(&rt, &[("x", &x)]).unwrap_err().to_string();
    assert!(err.contains("`y` was not fed"), "{err}");
    let err = lowered
        .run(&rt, &[("x", &x[..3]), ("y", &x[..3])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`x` needs"), "{err}");
}

#[test]
fn data_parallel_replicas_average_their_gradients_and_train_as_one_worker() {
    let want = reference(&step());
    let rt = Runtime::builder().threads(2).build();
    for replicas in [2, 4] {
        let (net, loss) = model(BATCH / replicas).unwrap();
        // Small buckets; the lowering reduces each gradient as it comes.
        let replica = net.data_parallel_step(loss, &OPTIMIZER, 256).unwrap();
        let options = LowerOptions {
            data: replicas,
            max_nodes: 6,
            ..LowerOptions::default()
        };
        let mut lowered = lower_step(&replica, &StepPlacement::OneDevice, options).unwrap();
        let names: Vec<&str> = lowered.segments().iter().map(|s| s.name.as_str()).collect();
        assert!(names.iter().all(|n| n.starts_with("step.w0.")), "{names:?}");
        let all_reduces = all_reduce_tasks(&lowered);
        assert_eq!(all_reduces, 7, "6 gradients and the loss");
        let got = lowered_training(&replica, &mut lowered, |l, inputs| {
            l.run(&rt, inputs).unwrap()
        });
        assert_close(&format!("{replicas} replicas"), &got, &want, 1e-5);
    }
}

#[test]
fn inputs_that_do_not_split_over_the_replicas_or_do_not_exist_are_refused() {
    let (net, loss) = model(BATCH / 2).unwrap();
    let replica = net.data_parallel_step(loss, &OPTIMIZER, 1 << 20).unwrap();
    let options = LowerOptions {
        data: 2,
        ..LowerOptions::default()
    };
    let lowered = lower_step(&replica, &StepPlacement::OneDevice, options).unwrap();
    let err = lowered.feed(&[("x", &[1.0; 5])]).unwrap_err().to_string();
    assert_eq!(
        err,
        "input `x` has 5 elements, which do not split into 2 equal shares"
    );
    let err = lowered.feed(&[("z", &[1.0; 4])]).unwrap_err().to_string();
    assert!(err.contains("`z`"), "{err}");
}

#[test]
fn micro_batches_placed_over_two_devices_pipeline_and_train_as_the_whole_batch() {
    let want = reference(&step());
    let micro = 4;
    let (net, loss) = model(BATCH / micro).unwrap();
    let (whole, total) = net.micro_batched(loss, micro).unwrap();
    let step = whole.train_step(total, &[], &OPTIMIZER).unwrap();
    let mut lowered = lowered_on_two_devices(&step, 8);
    let rt = Runtime::builder().threads(2).build();
    let model = HistoryModel::new();
    let got = lowered_training(&step, &mut lowered, heft_step(&rt, &model));
    assert_close("4 micro-batches on 2 devices", &got, &want, 1e-5);
}

#[test]
fn tensor_parallel_shards_sum_their_partials_and_train_as_one_device() {
    let want = megatron::one_device();
    let rt = Runtime::builder().threads(2).build();
    // (data, tensor): shards of one replica, then 2 replicas of 2 shards.
    for (data, tensor) in [(1, 2), (2, 2)] {
        let model = megatron::model();
        let (net, loss) = model.net(BATCH / data, tensor).unwrap();
        let step = if data > 1 {
            net.data_parallel_step(loss, &OPTIMIZER, 1 << 20).unwrap()
        } else {
            net.train_step(loss, &[], &OPTIMIZER).unwrap()
        };
        let options = LowerOptions {
            data,
            tensor,
            max_nodes: 6,
            ..LowerOptions::default()
        };
        let mut lowered = lower_step(&step, &StepPlacement::OneDevice, options).unwrap();
        let full = megatron::set_shards(&mut lowered, &step, data, tensor);
        let sums = all_reduce_tasks(&lowered);
        // Per replica: each block's forward sum, and the second block's
        // backward one (the first block's input needs no gradient); per
        // shard, with replicas, the data-parallel means.
        assert!(sums >= 3 * data, "{sums} all-reduce tasks");
        let mut losses = Vec::new();
        for _ in 0..STEPS {
            let (x, y) = batch();
            losses.push(lowered.run(&rt, &[("x", &x), ("y", &y)]).unwrap()[0][0]);
        }
        let joined = megatron::joined(&lowered, &full, tensor);
        let got = (losses, joined);
        assert_close(&format!("{data} x {tensor}"), &got, &want, 1e-5);
    }
}

#[test]
fn data_tensor_and_pipeline_parallelism_together_train_as_one_device() {
    let want = megatron::one_device();
    let (data, tensor, micro) = (2, 2, 2);
    let model = megatron::model();
    let (net, loss) = model.net(BATCH / (data * micro), tensor).unwrap();
    let (whole, total) = net.micro_batched(loss, micro).unwrap();
    let step = whole
        .data_parallel_step(total, &OPTIMIZER, 1 << 20)
        .unwrap();
    let options = LowerOptions {
        data,
        tensor,
        max_nodes: 8,
        ..LowerOptions::default()
    };
    let mut lowered = lowered_on_two_devices_with(&step, options);
    let full = megatron::set_shards(&mut lowered, &step, data, tensor);
    let rt = Runtime::builder().threads(2).build();
    let model_costs = HistoryModel::new();
    let mut losses = Vec::new();
    for _ in 0..STEPS {
        let (x, y) = batch();
        let out = heft_step(&rt, &model_costs)(&mut lowered, &[("x", &x), ("y", &y)]);
        losses.push(out[0][0]);
    }
    let joined = megatron::joined(&lowered, &full, tensor);
    assert_close(
        "2 x 2 x 2 micro-batches on 2 devices",
        &(losses, joined),
        &want,
        1e-5,
    );
}

/// The training step of `megatron::model()` under `s`, and its placement
/// (micro-batches pipelined over two devices).
fn megatron_step(s: Strategy) -> Result<(Net, StepPlacement), String> {
    let step = megatron::model()
        .strategy_step(s, BATCH, &OPTIMIZER, 1 << 20)
        .map_err(|e| e.to_string())?;
    let placement = if s.micro > 1 {
        two_devices()
    } else {
        StepPlacement::OneDevice
    };
    Ok((step, placement))
}

#[test]
fn parallelize_predicts_every_split_keeps_what_fits_and_its_choice_trains_right() {
    // Every grid of up to 4 workers, and two pipelined ones.
    let mut strategies = Strategy::grid(4, &[1]);
    for (data, tensor) in [(1, 1), (2, 2)] {
        strategies.push(Strategy {
            data,
            tensor,
            micro: 2,
        });
    }
    let build = |s: Strategy| megatron_step(s).map(|(net, placement)| ((*net).clone(), placement));
    let platform = Platform::local(2);
    let options = LowerOptions {
        max_nodes: 8,
        ..LowerOptions::default()
    };
    let heft = |s: &TaskStep| s.predict(&platform, &HistoryModel::new(), &HeftScheduler);
    let (choice, mut lowered) = parallelize(&strategies, build, &heft, 1 << 30, options).unwrap();
    assert_eq!(choice.candidates.len(), strategies.len());
    let three = choice
        .candidates
        .iter()
        .find(|c| c.strategy.tensor == 3)
        .unwrap();
    let why = three.refused.as_deref().unwrap();
    assert!(
        why.contains("block 1's hidden width 8 does not split 3 ways"),
        "{why}"
    );
    let kept: Vec<f64> = choice
        .candidates
        .iter()
        .filter_map(|c| c.predicted_seconds)
        .collect();
    assert!(kept.len() >= 6, "{:?}", choice.candidates);
    let best = choice.best().predicted_seconds.unwrap();
    assert!(kept.iter().all(|&p| best <= p), "{best} vs {kept:?}");
    // The chosen step is a working step: it trains as one device does.
    let s = choice.best().strategy;
    let (step, _) = megatron_step(s).unwrap();
    let full = megatron::set_shards(&mut lowered, &step, s.data, s.tensor);
    let rt = Runtime::builder().threads(2).build();
    let mut losses = Vec::new();
    for _ in 0..STEPS {
        let (x, y) = batch();
        losses.push(lowered.run(&rt, &[("x", &x), ("y", &y)]).unwrap()[0][0]);
    }
    let got = (losses, megatron::joined(&lowered, &full, s.tensor));
    assert_close(
        &format!("the choice, {s}"),
        &got,
        &megatron::one_device(),
        1e-5,
    );
    // Memory too small for any: the error names the least a worker needs.
    let build = |s: Strategy| megatron_step(s).map(|(net, placement)| ((*net).clone(), placement));
    let err = parallelize(&strategies, build, &heft, 1000, options)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no strategy fits: the least memory one needs is"),
        "{err}"
    );
    assert!(err.contains("1000 available"), "{err}");
    // On one machine's shared cores, the shards of a split run side by
    // side: 2 replicas predict faster than one device, where each task
    // alone already uses both cores they predict no faster (the work
    // alone: no time a task, free streams and copies).
    let options = LowerOptions {
        task_seconds: 0.0,
        stream_bytes_per_second: f64::INFINITY,
        copy_bytes_per_second: f64::INFINITY,
        ..options
    };
    let predict = |alone: f64| {
        let strategies = [1, 2].map(|data| Strategy {
            data,
            tensor: 1,
            micro: 1,
        });
        let build =
            |s: Strategy| megatron_step(s).map(|(net, placement)| ((*net).clone(), placement));
        let machine = SharedCores::new(2.0, alone);
        let shared = |s: &TaskStep| s.predict_shared(&machine);
        let (choice, _) = parallelize(&strategies, build, &shared, 1 << 30, options).unwrap();
        let seconds: Vec<f64> = choice
            .candidates
            .iter()
            .map(|c| c.predicted_seconds.unwrap())
            .collect();
        [seconds[0], seconds[1]]
    };
    let [one, two] = predict(1.0);
    assert!(two < 0.75 * one, "2 replicas {two} s vs one device {one} s");
    let [one, two] = predict(2.0);
    assert!(two >= one, "2 replicas {two} s vs one device alone {one} s");
}
