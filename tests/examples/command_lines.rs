//! The examples' command lines and bad input, in real processes.
//!
//! `example_child` is this test binary started again with that one test
//! selected: with `DAGGER_EXAMPLE_CHILD` set it runs the named example's
//! command line as the example's `main` does (arguments from
//! `DAGGER_EXAMPLE_ARGS`, one a line) and exits with its status; a panic
//! exits 101, as it would in the example itself.

use super::{cholesky, gpu_gemm, mergesort, quickstart, temp_dir, train_digits, wordcount};
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[test]
#[ignore = "the child-process entry point of the command-line tests, run by them"]
fn example_child() {
    let Ok(name) = std::env::var("DAGGER_EXAMPLE_CHILD") else {
        return;
    };
    let args = std::env::var("DAGGER_EXAMPLE_ARGS").unwrap_or_default();
    let args = std::iter::once(name.clone())
        .chain(args.lines().map(String::from))
        .map(std::ffi::OsString::from);
    dagger::pipe::end_quietly_on_closed_pipe();
    let code = match name.as_str() {
        "train_digits" => train_digits::run_cli(args) as i32,
        "cholesky" => {
            let cli = cholesky::Cli::parse_checked(args).unwrap_or_else(|e| e.exit());
            match cholesky::run(&cli) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cholesky: {e}");
                    1
                }
            }
        }
        "quickstart" => match <quickstart::Cli as clap::Parser>::try_parse_from(args) {
            Ok(_) => quickstart::run().map_or(1, |()| 0),
            Err(e) => e.exit(),
        },
        other => panic!("no example {other}"),
    };
    std::process::exit(code);
}

/// The command that runs `example` with `args` in a child process.
fn example_command(example: &str, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "command_lines::example_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DAGGER_EXAMPLE_CHILD", example)
        .env("DAGGER_EXAMPLE_ARGS", args.join("\n"));
    command
}

/// Runs `example` with `args` to the end.
fn run_example(example: &str, args: &[&str]) -> Output {
    example_command(example, args).output().unwrap()
}

/// `train_digits --data DATA --svg SVG`, then `more`.
fn train_digits_on(data: &Path, svg: &Path, more: &[&str]) -> Command {
    let mut args = vec![
        "--data",
        data.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    example_command("train_digits", &args)
}

/// What a process printed on stderr.
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `rows` lines of a digits CSV: 64 pixels 0..16 and a label 0..9 each.
fn digits_csv(rows: usize) -> Vec<String> {
    (0..rows)
        .map(|r| {
            let pixels = (0..64).map(|p| ((r * 7 + p * 3) % 17).to_string());
            pixels
                .chain(std::iter::once((r % 10).to_string()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Writes `lines` to `dir/name`; returns the path.
fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn train_digits_rejects_bad_options_with_clap_errors() {
    for (args, culprit) in [
        (&["--epochs", "abc"][..], "'abc' for '--epochs"),
        (&["--epochs", "-3"], "'-3' for '--epochs"),
        (&["--epochs", "0"], "'0' for '--epochs"),
        (&["--seed", "-1"], "'-1' for '--seed"),
        (&["--workers", "0"], "'0' for '--workers"),
        (&["--epochs"], "a value is required for '--epochs"),
        (&["--frob"], "unexpected argument '--frob'"),
        (&["stray"], "unexpected argument 'stray'"),
    ] {
        let out = run_example("train_digits", args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(culprit), "{args:?}: {err}");
    }
    let out = run_example("train_digits", &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(help.contains("--epochs <EPOCHS>") && help.contains("--data <FILE>"));
    assert!(
        !help.contains("training and"),
        "--help does not train: {help}"
    );
}

#[test]
fn train_digits_rejects_bad_data_naming_the_file_line_and_value() {
    let dir = temp_dir("bad-digits");
    let good = digits_csv(60);
    let with_line = |line: usize, text: &str| {
        let mut lines = good.clone();
        lines[line - 1] = text.to_string();
        lines
    };
    let pixels = |last: &str| format!("{},{last}", vec!["1"; 64].join(","));
    let nan_pixel = format!("0,0,0,0,NaN,{},4", vec!["2"; 59].join(","));
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        ("empty.csv", vec![], vec!["no samples".into()]),
        (
            "few.csv",
            digits_csv(20),
            vec!["20 samples".into(), "one batch of 32".into()],
        ),
        (
            "negative.csv",
            with_line(3, &pixels("-1")),
            vec![":3:".into(), "label `-1`".into()],
        ),
        (
            "fraction.csv",
            with_line(7, &pixels("3.7")),
            vec![":7:".into(), "label `3.7`".into()],
        ),
        (
            "nan.csv",
            with_line(2, &nan_pixel),
            vec![":2:".into(), "column 5".into(), "`NaN`".into()],
        ),
        (
            "short.csv",
            with_line(4, "1,2,3"),
            vec![":4:".into(), "3 fields, expected 65".into()],
        ),
        (
            "words.csv",
            with_line(5, &pixels("seven")),
            vec![":5:".into(), "`seven`".into()],
        ),
    ];
    for (name, lines, expected) in cases {
        let path = write_lines(&dir, name, &lines);
        let svg = dir.join("curves.svg");
        let out = train_digits_on(&path, &svg, &[]).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&path.display().to_string()), "{name}: {err}");
        for part in expected {
            assert!(err.contains(&part), "{name}: `{part}` not in {err}");
        }
        assert!(!svg.exists(), "{name}: nothing was trained");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_digits_ends_quietly_when_its_output_pipe_closes() {
    let dir = temp_dir("digits-pipe");
    let data = write_lines(&dir, "digits.csv", &digits_csv(48));
    let svg = dir.join("curves.svg");
    let mut child = train_digits_on(&data, &svg, &["--epochs", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // As `train_digits | head -n 1`: the first line of the example, then the
    // reader goes away while it trains.
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("training and") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no digits: line");
    }
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), None, "ended by a signal, not {err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cholesky_rejects_bad_orders_and_says_which_stage_it_is_at() {
    let parse = |args: &[&str]| {
        cholesky::Cli::parse_checked(
            std::iter::once("cholesky")
                .chain(args.iter().copied())
                .map(Into::into),
        )
    };
    for (args, culprit) in [
        (
            &["1000", "256"][..],
            "N = 1000 is not a multiple of the tile order TILE = 256",
        ),
        (&["abc"], "'abc'"),
        (&["0"], "'0'"),
        (&["-64"], "'-64'"),
        (&["64", "32", "16"], "'16'"),
        (&["--frob"], "'--frob'"),
    ] {
        let err = parse(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        assert!(err.to_string().contains(culprit), "{args:?}: {err}");
    }
    let cli = parse(&[]).unwrap();
    assert_eq!((cli.n, cli.tile), (4096, 256));
    // The stages, on stderr, in order.
    let out = run_example("cholesky", &["64", "32"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let mut at = 0;
    for stage in [
        "cholesky: building the 64 x 64 positive definite matrix",
        "cholesky: faer's factorization",
        "cholesky: the graph under each of 10 policies",
    ] {
        let found = err[at..]
            .find(stage)
            .unwrap_or_else(|| panic!("{stage} in {err}"));
        at += found + stage.len();
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("| dagger, lookahead |"));
}

#[test]
fn mergesort_and_wordcount_take_their_documented_command_lines() {
    use clap::Parser;
    let sort = |args: &[&str]| mergesort::Cli::try_parse_from([&["mergesort"], args].concat());
    let cli = sort(&["10000000"]).unwrap();
    assert_eq!((cli.n, cli.bench, cli.policies), (10_000_000, false, false));
    assert!(sort(&["--bench"]).unwrap().bench);
    assert!(sort(&["500", "--policies"]).unwrap().policies);
    assert_eq!(sort(&[]).unwrap().n, 10_000_000);
    let count = |args: &[&str]| wordcount::Cli::try_parse_from([&["wordcount"], args].concat());
    let cli = count(&["128", "96"]).unwrap();
    assert_eq!((cli.megabytes, cli.chunks, cli.policies), (128, 96, false));
    let cli = count(&["64", "64", "--policies"]).unwrap();
    assert_eq!((cli.megabytes, cli.chunks, cli.policies), (64, 64, true));
    for (name, err, culprit) in [
        ("mergesort", sort(&["many"]).unwrap_err(), "'many'"),
        ("mergesort", sort(&["-5"]).unwrap_err(), "'-5'"),
        ("mergesort", sort(&["--frob"]).unwrap_err(), "'--frob'"),
        ("wordcount", count(&["abc"]).unwrap_err(), "'abc'"),
        ("wordcount", count(&["64", "0"]).unwrap_err(), "'0'"),
        (
            "wordcount",
            count(&["64", "64", "--polices"]).unwrap_err(),
            "'--polices'",
        ),
    ] {
        assert_eq!(err.exit_code(), 2, "{name}: {err}");
        assert!(err.to_string().contains(culprit), "{name}: {err}");
    }
}

#[test]
fn gpu_gemm_without_a_gpu_says_it_skips() {
    use dagger::cuda::CudaError;
    let said = gpu_gemm::skipped(&CudaError::NoDriver);
    assert!(said.contains("skipped: no GPU found"), "{said}");
    assert!(!said.contains("running on CPU"), "{said}");
    let said = gpu_gemm::skipped(&CudaError::NoDevice(0, 0));
    assert!(said.contains("no GPU found"), "{said}");
    let said = gpu_gemm::skipped(&CudaError::NoCublas);
    assert!(
        said.contains("GPU 0 cannot be used") && said.contains("cuBLAS"),
        "{said}"
    );
}

#[test]
fn train_digits_without_a_gpu_says_so_once_and_trains_on_the_cpu() {
    if dagger::cuda::gpus().is_ok_and(|found| !found.is_empty()) {
        eprintln!("skipped: this machine has a GPU, so `--gpus 1` trains there");
        return;
    }
    let dir = temp_dir("digits-no-gpu");
    let data = write_lines(&dir, "digits.csv", &digits_csv(48));
    let svg = dir.join("curves.svg");
    let out = train_digits_on(&data, &svg, &["--epochs", "1", "--gpus", "1"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", stderr(&out));
    let line = "; training on the CPU (--gpus 1 asked for)";
    assert_eq!(said.matches(line).count(), 1, "{said}");
    assert!(
        said.contains("no CUDA driver found (libcuda.so is not on this machine)")
            || said.contains("no GPU found"),
        "{said}"
    );
    assert!(!said.contains("running on CPU;"), "{said}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quickstart_takes_help_and_refuses_anything_else() {
    let help = run_example("quickstart", &["--help"]);
    let said = String::from_utf8_lossy(&help.stdout);
    assert_eq!(help.status.code(), Some(0), "{}", stderr(&help));
    assert!(said.contains("task graph on every local core"), "{said}");
    let bad = run_example("quickstart", &["--epochs", "3"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--epochs"), "{}", stderr(&bad));
}
