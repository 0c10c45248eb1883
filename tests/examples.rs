//! The examples' own code, checked on small inputs (each example is
//! compiled in as a module, so these tests call its functions directly).

#[allow(dead_code)]
#[path = "../examples/mergesort.rs"]
mod mergesort;

#[allow(dead_code)]
#[path = "../examples/wordcount.rs"]
mod wordcount;

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use dagger::Runtime;

#[test]
fn mergesort_sorts_every_size() {
    let rt = Runtime::builder().threads(2).build();
    for n in [0, 1, 3, 1000, 100_003, 1 << 20] {
        let data = mergesort::random_u64(n, n as u64 + 1);
        let mut expected = data.clone();
        expected.sort_unstable();
        let sorted = rt.spawn(mergesort::msort, (data,)).wait().unwrap();
        assert_eq!(sorted, expected, "n = {n}");
    }
}

#[test]
fn mergesort_sorts_skewed_and_patterned_data() {
    let rt = Runtime::builder().threads(2).build();
    let n = 200_003;
    let random = mergesort::random_u64(n, 5);
    let inputs: Vec<(&str, Vec<u64>)> = vec![
        ("all equal", vec![42; n]),
        ("sorted", (0..n as u64).collect()),
        ("reversed", (0..n as u64).rev().collect()),
        ("three values", random.iter().map(|x| x % 3).collect()),
        (
            "narrow range near the top",
            random.iter().map(|x| u64::MAX - x % 1000).collect(),
        ),
        (
            "one outlier",
            (0..n as u64)
                .map(|i| if i == 7 { u64::MAX } else { i % 64 })
                .collect(),
        ),
    ];
    for (name, data) in inputs {
        let mut expected = data.clone();
        expected.sort_unstable();
        let sorted = rt.spawn(mergesort::msort, (data,)).wait().unwrap();
        assert_eq!(sorted, expected, "{name}");
    }
}

#[test]
fn the_static_mergesort_graph_sorts_under_every_policy() {
    let rt = Runtime::builder().threads(2).build();
    let model = dagger::ir::model::HistoryModel::new();
    for (n, leaves) in [(0, 4), (5, 8), (10_007, 5), (100_000, 16)] {
        let data = mergesort::random_u64(n, 9);
        let mut expected = data.clone();
        expected.sort_unstable();
        let dag = mergesort::msort_graph(&data, leaves);
        let mut runs = 0;
        rt.run_under_every_policy(&dag, &(), &model, |run| {
            assert_eq!(run.output, expected, "n = {n}, {}", run.policy);
            runs += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(runs, 10);
    }
}

#[test]
fn wordcount_graph_matches_a_sequential_count() {
    let text = wordcount::corpus(200_000, 3);
    let parts = wordcount::chunks(&text, 7);
    assert_eq!(parts.concat(), text, "chunks cover the corpus exactly");
    let counts = Runtime::builder()
        .threads(2)
        .build()
        .run(&wordcount::wordcount_graph(parts), ())
        .unwrap();
    assert_eq!(counts, wordcount::count_words(text));
}

#[test]
fn quickstart_runs_and_its_two_front_ends_agree() {
    quickstart::main().expect("the quickstart succeeds");
}

#[allow(dead_code)]
#[path = "../examples/cholesky.rs"]
mod cholesky;

#[test]
fn tiled_cholesky_factors_the_matrix_under_every_policy() {
    let (n, b) = (192, 48);
    let a = cholesky::spd_matrix(n, 5);
    let dag = cholesky::cholesky_graph(&a, b);
    let rt = Runtime::builder().threads(2).build();
    let model = dagger::ir::model::HistoryModel::new();
    let tiles = rt.run(&dag, ()).unwrap();
    assert_eq!(tiles.len(), 10, "4 x 4 tiles: 10 on and below the diagonal");
    let l = cholesky::assemble(&tiles, n, b).unwrap();
    assert!(cholesky::residual(&l, &a) < 1e-13, "L L^T = A");
    // The check itself can fail: the unfactored lower triangle is far off.
    let mut lower = a.clone();
    for j in 0..n {
        for i in 0..j {
            lower[(i, j)] = 0.0;
        }
    }
    assert!(cholesky::residual(&lower, &a) > 1.0);
    let mut policies = Vec::new();
    rt.run_under_every_policy(&dag, &(), &model, |run| {
        let err = cholesky::residual(&cholesky::assemble(&run.output, n, b).unwrap(), &a);
        assert!(err < 1e-13, "{}: residual {err}", run.policy);
        assert_eq!(
            run.predicted.is_some(),
            policies.len() >= 6,
            "{}",
            run.policy
        );
        policies.push(run.policy);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        policies,
        [
            "work-stealing",
            "eager",
            "round-robin",
            "random",
            "dmda",
            "dmdas",
            "heft",
            "cpop",
            "peft",
            "lookahead"
        ]
    );
}

#[allow(dead_code)]
#[path = "../examples/train_digits.rs"]
mod train_digits;

#[test]
fn train_digits_reaches_97_percent_on_the_held_out_fifth() {
    let all = train_digits::load_digits(&train_digits::digits_path()).unwrap();
    assert_eq!(all.len(), 1797);
    let (train_set, test_set) = train_digits::split(&all, 7);
    assert_eq!((train_set.len(), test_set.len()), (1437, 360));
    let config = train_digits::Config {
        epochs: 30,
        ..Default::default()
    };
    let mut steps = 0;
    let (epochs, trainer) = train_digits::train(&config, &train_set, &test_set, |_, _, loss| {
        assert!(loss.is_finite());
        steps += 1;
    })
    .unwrap();
    assert_eq!(steps, 30 * (1437 / 32));
    let last = epochs.last().unwrap();
    assert!(
        last.test_accuracy >= 0.97,
        "test accuracy {}",
        last.test_accuracy
    );
    assert!(
        last.loss < epochs[0].loss / 5.0,
        "loss {} -> {}",
        epochs[0].loss,
        last.loss
    );
    // The curves are drawn, and the parameters survive a save and load.
    let dir = std::env::temp_dir().join(format!("dagger-digits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    train_digits::plot(&epochs, &dir.join("curves.svg")).unwrap();
    let svg = std::fs::read_to_string(dir.join("curves.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("test accuracy"));
    let file = dir.join("params.safetensors");
    let train_digits::Trainer::Single(trainer) = trainer else {
        panic!("one worker")
    };
    dagger::nn::save_params(&trainer, &file).unwrap();
    let (net, ..) = train_digits::model(&config, config.batch);
    let mut fresh = dagger::nn::Program::compile(&net, Default::default()).unwrap();
    let loaded = dagger::nn::load_params(&mut fresh, &file);
    // The file also holds Adam's state, which the bare model does not have.
    let err = loaded.unwrap_err().to_string();
    assert!(err.contains("is not a parameter of this program"), "{err}");
    let mut again = dagger::nn::Program::compile(
        &train_digits::train_step(&config).unwrap(),
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        dagger::nn::load_params(&mut again, &file).unwrap(),
        trainer.params().len()
    );
    for (name, _, values) in trainer.params() {
        assert_eq!(again.get(name).unwrap(), values, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_digits_on_a_gpu_learns_as_well() {
    if let Err(e) = dagger::cuda::gpus() {
        println!("skipping: {e}");
        return;
    }
    let all = train_digits::load_digits(&train_digits::digits_path()).unwrap();
    let (train_set, test_set) = train_digits::split(&all, 7);
    let config = train_digits::Config {
        epochs: 30,
        gpus: 1,
        ..Default::default()
    };
    let (epochs, _) = train_digits::train(&config, &train_set, &test_set, |_, _, _| {}).unwrap();
    let last = epochs.last().unwrap();
    assert!(
        last.test_accuracy >= 0.97,
        "test accuracy on a GPU {}",
        last.test_accuracy
    );
}

#[test]
fn train_digits_on_two_workers_learns_as_well() {
    let all = train_digits::load_digits(&train_digits::digits_path()).unwrap();
    let (train_set, test_set) = train_digits::split(&all, 7);
    let config = train_digits::Config {
        epochs: 30,
        workers: 2,
        ..Default::default()
    };
    let (epochs, _) = train_digits::train(&config, &train_set, &test_set, |_, _, _| {}).unwrap();
    let last = epochs.last().unwrap();
    assert!(
        last.test_accuracy >= 0.97,
        "test accuracy {}",
        last.test_accuracy
    );
}
