//! Plans GPT training on simulated DGX A100 clusters and sets the plan
//! beside Megatron-LM's published figures (Narayanan et al., SC21, Table 1).
//!
//! ```text
//! cargo run --release --example megatron_plan          # 64, 512, 3072 GPUs
//! cargo run --release --example megatron_plan -- --all # every row of Table 1
//! cargo run --release --example megatron_plan -- --gemm-efficiency 0.6
//! ```
//!
//! The cluster is `examples/platforms/dgx_a100.json` (8 nodes of 8 A100s:
//! NVLink at 300 GB/s a direction inside a node, one 200 Gb/s HDR adapter,
//! 25 GB/s, a GPU between nodes), grown with `Platform::gpu_cluster` to the
//! row's GPUs. Nothing runs on a GPU: every figure "predicted" is
//! `dagger_nn::gpt_plan`'s analytic model, simulated. Column `v` is the
//! model chunks a GPU interleaves (1: plain 1F1B).

use clap::Parser;
use dagger::ir::model::Platform;
use dagger::nn::gpt_plan::{plan, table_1_row, Candidate, GpuModel, PaperRow, TABLE_1};

/// The example's options.
#[derive(Parser, Debug)]
#[command(
    about = "Megatron splits of GPT models planned on simulated DGX A100 clusters, \
                   beside Narayanan et al. (SC21) Table 1"
)]
pub struct Options {
    /// Every row of Table 1, not only those of 64, 512 and 3072 GPUs.
    #[arg(long)]
    pub all: bool,
    /// The fraction of the A100's peak its matmuls reach.
    #[arg(long, default_value_t = GpuModel::a100_80gb().gemm_efficiency, value_parser = fraction)]
    pub gemm_efficiency: f64,
}

/// A number in (0, 1].
fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => Err(format!("`{text}` is not a fraction in (0, 1]")),
    }
}

/// The platform file: 8 DGX A100 nodes.
pub const DGX_A100: &str = include_str!("platforms/dgx_a100.json");

/// The cluster of `file`'s nodes grown (or shrunk) to `gpus` GPUs.
pub fn cluster(file: &Platform, gpus: usize) -> Platform {
    let p = &file.processors;
    let per_node = p.iter().filter(|q| q.node == p[0].node).count();
    let nvlink = file.device_device.unwrap_or(file.host_device);
    Platform::gpu_cluster(gpus / per_node, per_node, p[0].speed, nvlink, file.network)
}

fn split(c: &Candidate) -> String {
    let s = c.split;
    format!(
        "{} x {} x {}, b {}",
        s.data, s.tensor, s.pipeline, s.micro_batch
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    dagger::pipe::end_quietly_on_closed_pipe();
    let file = Platform::from_json(DGX_A100)?;
    assert_eq!(
        cluster(&file, 64),
        file,
        "the file is gpu_cluster at 8 nodes"
    );
    let options = Options::parse();
    let gpu = GpuModel {
        gemm_efficiency: options.gemm_efficiency,
        ..GpuModel::a100_80gb()
    };
    println!(
        "{} with matmuls at {:.0}% of peak",
        gpu.name,
        100.0 * gpu.gemm_efficiency
    );
    println!();
    let rows: Vec<&PaperRow> = if options.all {
        TABLE_1.iter().collect()
    } else {
        [64, 512, 3072]
            .iter()
            .filter_map(|&n| table_1_row(n))
            .collect()
    };
    println!("| model | GPUs | batch | predicted d x t x p, b | v | step s | TFLOP/s/GPU | paper d x t x p | paper TFLOP/s/GPU | ratio | paper's split predicted: b, v, step s, TFLOP/s/GPU | ratio |");
    println!("|---|---:|---:|---|---:|---:|---:|---|---:|---:|---|---:|");
    let mut details = Vec::new();
    for row in rows {
        let config = row.config;
        let choice = plan(&config, &cluster(&file, row.gpus), &gpu)?;
        let best = choice.best();
        let predicted = best.prediction.as_ref().expect("the chosen split is kept");
        let data = row.gpus / (row.tensor * row.pipeline);
        let theirs = choice.best_of(data, row.tensor, row.pipeline);
        let theirs_text = match theirs.and_then(|c| c.prediction.as_ref().map(|p| (c, p))) {
            Some((c, p)) => format!(
                "b {}, v {}, {:.2}, {:.0} | {:.2}",
                c.split.micro_batch,
                c.split.interleave,
                p.step_seconds,
                p.tflops_per_gpu,
                p.tflops_per_gpu / row.tflops_per_gpu
            ),
            None => "refused (memory) | -".into(),
        };
        println!(
            "| {}B | {} | {} | {} | {} | {:.2} | {:.0} | {} x {} x {} | {:.0} | {:.2} | {} |",
            row.billions,
            row.gpus,
            config.batch,
            split(best),
            best.split.interleave,
            predicted.step_seconds,
            predicted.tflops_per_gpu,
            data,
            row.tensor,
            row.pipeline,
            row.tflops_per_gpu,
            predicted.tflops_per_gpu / row.tflops_per_gpu,
            theirs_text,
        );
        let kept = choice
            .candidates
            .iter()
            .filter(|c| c.prediction.is_some())
            .count();
        details.push((
            row,
            choice.candidates.len(),
            kept,
            best.clone(),
            theirs.cloned(),
        ));
    }
    println!();
    println!("| model | whose | split | v | kept / splits | GiB a GPU | pipeline s | bubble | TP all-reduce s a stage | stage transfer ms | DP all-reduce s | Adam s |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (row, all, kept, best, theirs) in details {
        let paper_too = theirs.as_ref().is_some_and(|c| c.split == best.split);
        let whose = if paper_too {
            "chosen, paper's"
        } else {
            "chosen"
        };
        let others = theirs.filter(|_| !paper_too).map(|c| ("paper's", c));
        for (whose, c) in std::iter::once((whose, best)).chain(others) {
            let p = c.prediction.as_ref().expect("kept");
            let micro = c.split.micro_batches(&row.config) as f64;
            println!(
                "| {}B | {whose} | {} | {} | {kept} / {all} | {:.1} | {:.2} | {:.1}% | {:.2} | {:.2} | {:.2} | {:.3} |",
                row.billions,
                split(&c),
                c.split.interleave,
                c.bytes_per_gpu as f64 / (1u64 << 30) as f64,
                p.pipeline_seconds,
                100.0 * p.bubble_fraction,
                micro * p.tensor_all_reduce_seconds,
                1e3 * p.transfer_seconds,
                p.data_all_reduce_seconds,
                p.optimizer_seconds,
            );
        }
    }
    Ok(())
}
