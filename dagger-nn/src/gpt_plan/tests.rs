use super::*;
use dagger_ir::model::{Link, Platform};

fn link(latency: f64, bandwidth: f64) -> Link {
    Link { latency, bandwidth }
}

fn dgx(nodes: usize, network_bandwidth: f64) -> Platform {
    Platform::gpu_cluster(
        nodes,
        8,
        1000.0,
        link(3e-6, 300e9),
        link(5e-6, network_bandwidth),
    )
}

const GPT_1_7B: GptConfig = GptConfig::megatron(24, 2304, 24, 64);

#[test]
fn a_model_too_big_for_every_split_names_the_gpu_and_the_least_bytes() {
    let gpt = GptConfig::megatron(36, 4096, 32, 8); // 7.5B
    let one = Platform::gpu_cluster(1, 1, 1000.0, link(0.0, 1e9), link(0.0, 1e9));
    match plan(&gpt, &one, &GpuModel::a100_80gb()).unwrap_err() {
        Error::NoSplitFits {
            device,
            available,
            split,
            needed,
        } => {
            assert_eq!((device.as_str(), available), ("A100 80GB", 80 << 30));
            assert_eq!(split, "1 x 1 x 1, b 1");
            assert!(
                needed > 16 * gpt.parameters() && needed > available,
                "{needed}"
            );
        }
        e => panic!("{e}"),
    }
    // On 8 GPUs it fits, and the refusals say why.
    let choice = plan(&gpt, &dgx(1, 25e9), &GpuModel::a100_80gb()).unwrap();
    let refused = choice
        .candidates
        .iter()
        .find(|c| c.split.tensor == 1 && c.split.pipeline == 1);
    let reason = refused.unwrap().refused.as_ref().unwrap();
    assert!(
        reason.contains("over the 85899345920 bytes of a A100 80GB"),
        "{reason}"
    );
}

#[test]
fn without_a_pipeline_a_step_is_micro_batches_times_forward_and_backward() {
    let cluster_platform = dgx(1, 25e9);
    let cluster = Cluster::new(&cluster_platform).unwrap();
    let split = MegatronSplit {
        data: 2,
        tensor: 4,
        pipeline: 1,
        micro_batch: 4,
        interleave: 1,
    };
    let p = predict(&GPT_1_7B, &split, &cluster, &GpuModel::a100_80gb());
    let m = split.micro_batches(&GPT_1_7B);
    assert_eq!(m, 8);
    let expected = m as f64 * (p.stage_forward[0] + p.stage_backward[0]);
    assert!(
        (p.pipeline_seconds - expected).abs() < 1e-9 * expected,
        "{p:?}"
    );
    assert!(p.bubble_fraction.abs() < 1e-9);
    assert!(
        (p.step_seconds - expected - p.data_all_reduce_seconds - p.optimizer_seconds).abs() < 1e-9
    );
}

#[test]
fn a_tensor_parallel_all_reduce_rings_the_layer_output_over_nvlink() {
    let gpt = GPT_1_7B;
    assert_eq!(gpt.tensor_all_reduce_bytes(2), 2.0 * 2.0 * 2048.0 * 2304.0);
    let platform = dgx(2, 25e9);
    let cluster = Cluster::new(&platform).unwrap();
    let bytes = 4e6;
    // 4 GPUs of a node: 2 (t-1)/t x bytes / bandwidth + 2 (t-1) latencies.
    let inside = cluster.ring_all_reduce(&[0, 1, 2, 3], bytes);
    let expected = 2.0 * 3.0 / 4.0 * bytes / 300e9 + 6.0 * 3e-6;
    assert!((inside - expected).abs() < 1e-12, "{inside} vs {expected}");
    // A ring through both nodes goes at the network's pace.
    let across = cluster.ring_all_reduce(&[6, 7, 8, 9], bytes);
    assert!((across - (2.0 * 3.0 / 4.0 * bytes / 25e9 + 6.0 * 5e-6)).abs() < 1e-12);
    // Six of them a layer and micro-batch in a prediction.
    let split = MegatronSplit {
        data: 1,
        tensor: 8,
        pipeline: 2,
        micro_batch: 1,
        interleave: 1,
    };
    let p = predict(&gpt, &split, &cluster, &GpuModel::a100_80gb());
    let one = cluster.ring_all_reduce(&(0..8).collect::<Vec<_>>(), gpt.tensor_all_reduce_bytes(1));
    assert!((p.tensor_all_reduce_seconds - 12.0 * 6.0 * one).abs() < 1e-12);
}

#[test]
fn a_slow_network_turns_the_choice_from_replicas_to_a_pipeline() {
    // One GPU a node: no tensor split; d 2 all-reduces 3.3 GB of gradients
    // over the network, p 2 sends only activations but idles in its bubble.
    let gpt = GPT_1_7B;
    let two =
        |bandwidth| Platform::gpu_cluster(2, 1, 1000.0, link(0.0, 1e12), link(5e-6, bandwidth));
    let gpu = GpuModel::a100_80gb();
    let fast = plan(&gpt, &two(1e12), &gpu).unwrap();
    assert_eq!(
        (fast.best().split.data, fast.best().split.pipeline),
        (2, 1),
        "{:?}",
        fast.best()
    );
    let slow = plan(&gpt, &two(1e9), &gpu).unwrap();
    assert_eq!(
        (slow.best().split.data, slow.best().split.pipeline),
        (1, 2),
        "{:?}",
        slow.best()
    );
    let best = |c: &Choice| c.best().prediction.clone().unwrap();
    assert!(best(&slow).step_seconds > best(&fast).step_seconds);
    assert!(best(&slow).bubble_fraction > 0.0);
}

#[test]
fn a_platform_without_gpus_or_a_config_without_heads_is_an_error() {
    let e = plan(&GPT_1_7B, &Platform::local(4), &GpuModel::a100_80gb()).unwrap_err();
    assert!(e.to_string().contains("no GPU"), "{e}");
    let bad = GptConfig {
        heads: 0,
        ..GPT_1_7B
    };
    let e = plan(&bad, &dgx(1, 25e9), &GpuModel::a100_80gb()).unwrap_err();
    assert!(e.to_string().contains("`heads` must be positive"), "{e}");
}

#[test]
fn the_best_of_one_grid_is_its_fastest_micro_batch_and_no_faster_than_the_choice() {
    let choice = plan(&GPT_1_7B, &dgx(1, 25e9), &GpuModel::a100_80gb()).unwrap();
    let seconds = |c: &Candidate| c.prediction.as_ref().unwrap().step_seconds;
    let of = choice.best_of(2, 4, 1).unwrap();
    assert_eq!(
        (of.split.data, of.split.tensor, of.split.pipeline),
        (2, 4, 1)
    );
    let same = choice.candidates.iter().filter(|c| {
        (c.split.data, c.split.tensor, c.split.pipeline) == (2, 4, 1) && c.prediction.is_some()
    });
    assert!(same.clone().count() > 1);
    assert!(same
        .clone()
        .all(|c| seconds(c) >= seconds(of) * (1.0 - 1e-9)));
    assert!(seconds(of) >= seconds(choice.best()));
    assert!(choice.best_of(3, 1, 1).is_none());
}

#[test]
fn interleaving_shrinks_the_bubble_for_more_transfers_and_memory() {
    // 1.7B on two nodes of 8: t 8 p 2 d 1, b 4: 16 micro-batches, 12
    // layers a stage, cut in v 1, 2, 4 chunks a GPU.
    let platform = dgx(2, 25e9);
    let cluster = Cluster::new(&platform).unwrap();
    let gpu = GpuModel::a100_80gb();
    let split = |interleave| MegatronSplit {
        data: 1,
        tensor: 8,
        pipeline: 2,
        micro_batch: 4,
        interleave,
    };
    let [one, two, four] = [1, 2, 4].map(|v| predict(&GPT_1_7B, &split(v), &cluster, &gpu));
    assert!(
        one.bubble_fraction > two.bubble_fraction && two.bubble_fraction > four.bubble_fraction
    );
    // The stages' work is the same, cut in chunks.
    for p in [&two, &four] {
        for s in 0..2 {
            let (a, b) = (p.stage_forward[s], one.stage_forward[s]);
            assert!((a - b).abs() < 1e-9 * b, "{a} vs {b}");
        }
    }
    // Without transfers a bubble of K - 1 = 1 stage's forward and backward
    // shrinks to 1 / v of one: the pipeline loses (f + b)(1 - 1/v).
    let fb = one.stage_forward[0] + one.stage_backward[0];
    let saved = one.pipeline_seconds - two.pipeline_seconds;
    assert!(saved > 0.0 && saved < fb / 2.0, "{saved} vs {fb}");
    // More activations in flight: stage 0 holds 5 chunks of 6 layers
    // (v 2), 9 of 3 (v 4), against 2 stages of 12.
    let bytes = |v| split(v).stage_bytes(&GPT_1_7B, 0);
    let inputs = GPT_1_7B.layer_input_bytes(4);
    let more = |v| (bytes(v) - bytes(1)) as f64 / inputs;
    assert!((more(2) - 6.0).abs() < 1e-6 && (more(4) - 3.0).abs() < 1e-6);
    // The plan offers the interleaved splits of a pipeline.
    let choice = plan(&GPT_1_7B, &platform, &gpu).unwrap();
    assert!(choice
        .candidates
        .iter()
        .any(|c| c.split == split(4) && c.prediction.is_some()));
}
