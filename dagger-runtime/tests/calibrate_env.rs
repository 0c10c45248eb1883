//! `DAGGER_CALIBRATE=1` adds every task's measured time to the history
//! model in `DAGGER_PERFMODEL_DIR` when the runtime is dropped. (One test
//! in this binary: it sets process-wide variables.)

use dagger_ir::model::{HistoryModel, ProcKind};
use dagger_runtime::Runtime;

fn slow(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

#[test]
fn a_calibrated_runtime_records_task_times_across_runs() {
    let dir = std::env::temp_dir().join(format!("dagger-calibrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("DAGGER_PERFMODEL_DIR", &dir);
    std::env::set_var("DAGGER_CALIBRATE", "1");
    for _ in 0..2 {
        let rt = Runtime::builder().threads(2).build();
        let a = rt.spawn(slow, (5u64,));
        let b = rt.spawn(slow, (5u64,));
        assert_eq!(a.wait().unwrap() + b.wait().unwrap(), 10);
    }
    std::env::remove_var("DAGGER_CALIBRATE");
    let model = HistoryModel::load(&dir).unwrap();
    let (task, kind, _, stats) = model.entries().next().expect("one entry");
    assert_eq!((task, kind), ("calibrate_env::slow", ProcKind::Cpu));
    assert_eq!(stats.count, 4, "two tasks in each of two runs");
    assert!(stats.mean >= 0.005 && stats.mean < 0.5, "{}", stats.mean);
    let _ = std::fs::remove_dir_all(dir);
}
