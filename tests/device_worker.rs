//! Accelerator workers in the executor: tasks with a device body
//! (`#[task(gpu = ...)]`) placed on an accelerator run that body with the
//! device, tasks without one never go there, and errors name the task.
//!
//! The accelerator here is a test device whose "device bodies" run on the
//! host and count themselves: it checks the executor's routing, not a GPU
//! (the GPU's own tests are in `dagger-cuda`, and skip without one).

use dagger::device::Accelerator;
use dagger::device::Residency;
use dagger::ir::model::{HistoryModel, ProcKind, Processor};
use dagger::ir::sched::HeftScheduler;
use dagger::prelude::*;
use dagger::Datum;
use dagger::{Dag, DynamicPolicy, GraphBuilder, RunError};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A test accelerator: counts the device bodies it ran and the times the
/// runtime waited for their work (`finished`; when `faulty`, that wait
/// reports a fault); reports itself 50 times as fast as a core so that
/// the placements want it. It tracks the residency of [`Homed`] values
/// (their flag says whether it "holds" them) and counts its prefetches.
#[derive(Default)]
struct CountingDevice {
    ran: AtomicUsize,
    finished: AtomicUsize,
    faulty: AtomicBool,
    prefetched: AtomicUsize,
}

/// A value the test device can hold: `on_device` is set by a prefetch;
/// `bytes` is what the device reports it would take to copy.
#[derive(Clone)]
struct Homed {
    on_device: Arc<AtomicBool>,
    bytes: u64,
    value: f64,
}

impl Homed {
    fn new(value: f64, bytes: u64, on_device: bool) -> Homed {
        Homed {
            on_device: Arc::new(AtomicBool::new(on_device)),
            bytes,
            value,
        }
    }
}

impl Accelerator for CountingDevice {
    fn describe(&self) -> String {
        "test accelerator (device bodies run on the host)".into()
    }
    fn processor(&self) -> Processor {
        Processor {
            kind: ProcKind::Gpu,
            speed: 50.0,
            node: 0,
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn residency(&self, value: &Datum) -> Option<Residency> {
        let homed = value.downcast_ref::<Homed>()?;
        Some(Residency {
            bytes: homed.bytes,
            on_host: true,
            on_device: homed.on_device.load(Ordering::SeqCst),
        })
    }
    fn prefetch(&self, value: &Datum) {
        if let Some(homed) = value.downcast_ref::<Homed>() {
            self.prefetched.fetch_add(1, Ordering::SeqCst);
            homed.on_device.store(true, Ordering::SeqCst);
        }
    }
    fn finish(&self) -> Result<(), String> {
        if self.faulty.load(Ordering::SeqCst) {
            return Err("the device reported a fault".into());
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[task(cost = 1e-3, gpu = square_on_device)]
fn square(v: Vec<f64>) -> Vec<f64> {
    v.iter().map(|x| x * x).collect()
}

fn square_on_device(device: &CountingDevice, v: Vec<f64>) -> Result<Vec<f64>, String> {
    device.ran.fetch_add(1, Ordering::Relaxed);
    Ok(v.iter().map(|x| x * x).collect())
}

/// No device body: must stay on the CPU workers.
#[task(cost = 1e-3)]
fn total(a: Vec<f64>, b: Vec<f64>) -> f64 {
    a.iter().chain(&b).sum()
}

/// A device body that asks for a device of another type.
#[task(cost = 1e-3, gpu = negate_on_a_string)]
fn negate(x: f64) -> f64 {
    -x
}

fn negate_on_a_string(_device: &String, x: f64) -> Result<f64, String> {
    Ok(-x)
}

#[task(cost = 1e-3, gpu = fail_on_device)]
fn fragile(x: f64) -> Result<f64, String> {
    Ok(x)
}

fn fail_on_device(_device: &CountingDevice, _x: f64) -> Result<f64, String> {
    Err("the device ran out of memory".into())
}

/// Pairs of squares summed: 8 `square`s (device bodies) and 4 `total`s.
fn squares_graph() -> Dag<(), Vec<f64>> {
    let g = GraphBuilder::new();
    let squares: Vec<_> = (0..8)
        .map(|i| square::on(&g).node(g.constant(vec![i as f64; 1000])))
        .collect();
    let totals: Vec<Value<f64>> = squares
        .chunks(2)
        .map(|p| total::on(&g).node(p[0], p[1]))
        .collect();
    g.finish(totals)
}

fn expected() -> Vec<f64> {
    (0..4)
        .map(|p| 1000.0 * ((2 * p) as f64).powi(2) + 1000.0 * ((2 * p + 1) as f64).powi(2))
        .collect()
}

fn runtime(device: &Arc<CountingDevice>) -> Runtime {
    Runtime::builder()
        .threads(2)
        .accelerator(device.clone())
        .build()
}

#[test]
fn the_platform_lists_the_device_after_the_cores() {
    let device = Arc::new(CountingDevice::default());
    let rt = runtime(&device);
    assert_eq!(rt.threads(), 2);
    assert_eq!(rt.devices().len(), 1);
    let kinds: Vec<ProcKind> = rt
        .platform()
        .unwrap()
        .processors
        .iter()
        .map(|p| p.kind)
        .collect();
    assert_eq!(kinds, vec![ProcKind::Cpu, ProcKind::Cpu, ProcKind::Gpu]);
}

#[test]
fn heft_runs_device_bodies_on_the_device_and_the_rest_on_cores() {
    let device = Arc::new(CountingDevice::default());
    let rt = runtime(&device);
    rt.start_trace();
    let (out, schedule) = rt
        .run_scheduled(
            &squares_graph(),
            (),
            &HeftScheduler,
            &HistoryModel::default(),
        )
        .unwrap();
    let trace = rt.stop_trace();
    assert_eq!(out, expected());
    let on_device = schedule.placement.iter().filter(|p| p.0 == 2).count();
    assert!(on_device > 0, "HEFT used the 50x device: {schedule:?}");
    assert_eq!(device.ran.load(Ordering::Relaxed), on_device);
    assert_eq!(
        device.finished.load(Ordering::SeqCst),
        on_device,
        "the worker waited for each device body's work"
    );
    for e in &trace.events {
        if e.name.as_str().ends_with("total") {
            assert!(
                e.worker < 2,
                "`total` has no device body but ran on worker {}",
                e.worker
            );
        }
    }
    let gpu_measured = trace
        .measurements()
        .filter(|m| m.kind == ProcKind::Gpu)
        .count();
    assert_eq!(
        gpu_measured, on_device,
        "device runs are measured as GPU times"
    );
}

#[test]
fn dmda_sends_device_bodies_to_the_device_and_work_stealing_never_does() {
    let device = Arc::new(CountingDevice::default());
    let rt = runtime(&device);
    let out = rt
        .run_with_policy(
            &squares_graph(),
            (),
            DynamicPolicy::Dmda,
            &HistoryModel::default(),
        )
        .unwrap();
    assert_eq!(out, expected());
    assert!(device.ran.load(Ordering::Relaxed) > 0);
    for policy in DynamicPolicy::ALL {
        let out = rt
            .run_with_policy(&squares_graph(), (), policy, &HistoryModel::default())
            .unwrap();
        assert_eq!(out, expected(), "{policy:?}");
    }
    let before = device.ran.load(Ordering::Relaxed);
    assert_eq!(rt.run(&squares_graph(), ()).unwrap(), expected());
    assert_eq!(device.ran.load(Ordering::Relaxed), before);
}

#[test]
fn a_device_body_error_names_the_task() {
    let device = Arc::new(CountingDevice::default());
    let rt = runtime(&device);
    let on_device = |dag: &Dag<(), f64>| {
        rt.run_with_policy(dag, (), DynamicPolicy::Dmda, &HistoryModel::default())
    };
    let g = GraphBuilder::new();
    let x = negate::on(&g).node(g.constant(2.0));
    let err = on_device(&g.finish(x)).unwrap_err();
    assert!(
        matches!(&err, RunError::TaskFailed { task, message }
            if task.ends_with("negate") && message.contains("String")),
        "{err}"
    );
    let g = GraphBuilder::new();
    let x = fragile::on(&g).node(g.constant(2.0));
    let err = on_device(&g.finish(x)).unwrap_err();
    assert!(
        matches!(&err, RunError::TaskFailed { task, message }
            if task.ends_with("fragile") && message == "the device ran out of memory"),
        "{err}"
    );
    // A fault found while waiting for a body's work fails that task.
    device.faulty.store(true, Ordering::SeqCst);
    let g = GraphBuilder::new();
    let x = square::on(&g).node(g.constant(vec![3.0]));
    let err = rt
        .run_with_policy(
            &g.finish(x),
            (),
            DynamicPolicy::Dmda,
            &HistoryModel::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, RunError::TaskFailed { task, message }
            if task.ends_with("square") && message == "the device reported a fault"),
        "{err}"
    );
}

/// Doubles a held value; its device body fails unless the runtime
/// prefetched the input before running it.
#[task(cost = 1e-3, gpu = double_on_device)]
fn double(x: Homed) -> Homed {
    Homed::new(2.0 * x.value, x.bytes, false)
}

fn double_on_device(device: &CountingDevice, x: Homed) -> Result<Homed, String> {
    if !x.on_device.load(Ordering::SeqCst) {
        return Err("the input was not prefetched".into());
    }
    device.ran.fetch_add(1, Ordering::Relaxed);
    Ok(Homed::new(2.0 * x.value, x.bytes, true))
}

#[test]
fn inputs_of_tasks_queued_on_a_device_are_prefetched_before_they_run() {
    let device = Arc::new(CountingDevice::default());
    let rt = runtime(&device);
    let g = GraphBuilder::new();
    let mut x = g.constant(Homed::new(1.0, 8, false));
    for _ in 0..4 {
        x = double::on(&g).node(x);
    }
    let (out, schedule) = rt
        .run_scheduled(&g.finish(x), (), &HeftScheduler, &HistoryModel::default())
        .unwrap();
    assert_eq!(out.value, 16.0);
    assert!(schedule.placement.iter().all(|p| p.0 == 2), "{schedule:?}");
    assert_eq!(device.ran.load(Ordering::Relaxed), 4);
    assert_eq!(device.prefetched.load(Ordering::SeqCst), 4, "one per input");
}

#[test]
fn dmda_weighs_where_the_inputs_are() {
    // The device is 50x as fast, but copying a 100 GB input to it would
    // take seconds: dmda keeps the task on a core unless the input is
    // already on the device.
    let place = |on_device: bool| {
        let device = Arc::new(CountingDevice::default());
        let rt = runtime(&device);
        let g = GraphBuilder::new();
        let x = double::on(&g).node(g.constant(Homed::new(1.0, 100 << 30, on_device)));
        let out = rt
            .run_with_policy(
                &g.finish(x),
                (),
                DynamicPolicy::Dmda,
                &HistoryModel::default(),
            )
            .unwrap();
        assert_eq!(out.value, 2.0);
        device.ran.load(Ordering::Relaxed)
    };
    assert_eq!(place(false), 0, "a far input keeps the task on a core");
    assert_eq!(place(true), 1, "a near one sends it to the device");
}

/// Side of the matrices of the GPU test.
const SIDE: usize = 64;

#[task(cost = 1.0, gpu = matmul_on_gpu)]
fn matmul(a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    let mut c = vec![0.0; SIDE * SIDE];
    for i in 0..SIDE {
        for k in 0..SIDE {
            for j in 0..SIDE {
                c[i * SIDE + j] += a[i * SIDE + k] * b[k * SIDE + j];
            }
        }
    }
    c
}

fn matmul_on_gpu(
    gpu: &dagger::cuda::GpuDevice,
    a: Vec<f64>,
    b: Vec<f64>,
) -> Result<Vec<f64>, dagger::cuda::CudaError> {
    let (a, b) = (gpu.upload(SIDE, SIDE, &a)?, gpu.upload(SIDE, SIDE, &b)?);
    let mut c = gpu.zeros(SIDE, SIDE)?;
    gpu.gemm(1.0, &a, &b, 0.0, &mut c)?;
    gpu.download(&c)
}

#[test]
fn a_gpu_worker_runs_cublas_bodies_placed_by_heft() {
    let gpus = dagger::platform::gpu_workers();
    let Some(gpu) = gpus.first() else {
        println!(
            "skipping: no GPU ({})",
            dagger::cuda::gpus()
                .err()
                .map_or("none found".into(), |e| e.to_string())
        );
        return;
    };
    let rt = Runtime::builder()
        .threads(2)
        .accelerator(gpu.clone())
        .build();
    let g = GraphBuilder::new();
    let a: Vec<f64> = (0..SIDE * SIDE).map(|i| (i % 13) as f64 - 6.0).collect();
    let b: Vec<f64> = (0..SIDE * SIDE).map(|i| (i % 7) as f64 * 0.25).collect();
    let c = matmul::on(&g).node(g.constant(a.clone()), g.constant(b.clone()));
    let d = matmul::on(&g).node(c, g.constant(b.clone()));
    rt.start_trace();
    let (out, schedule) = rt
        .run_scheduled(&g.finish(d), (), &HeftScheduler, &HistoryModel::default())
        .unwrap();
    let trace = rt.stop_trace();
    assert_eq!(out, matmul(matmul(a, b.clone()), b));
    assert!(schedule.placement.iter().all(|p| p.0 == 2), "{schedule:?}");
    assert_eq!(
        trace
            .measurements()
            .filter(|m| m.kind == ProcKind::Gpu)
            .count(),
        2
    );
}
