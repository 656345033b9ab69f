//! Replays the fuzz corpus on the stable toolchain: every file under
//! `testdata/fuzz/<target>/` (the seed corpus, and every input that once crashed a target,
//! kept as a regression) goes through the same function the fuzz target calls
//! ([`otel_collector::fuzzing`]). `make fuzz` (nightly, cargo-fuzz) searches for new inputs.
//!
//! Run: `cargo test -p otel-collector --test fuzz_replay`.

use otel_collector::fuzzing::TARGETS;
use std::path::PathBuf;

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/fuzz")
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let mut dirs: Vec<String> = std::fs::read_dir(corpus_root())
        .expect("testdata/fuzz exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(dirs, names);
}

#[test]
fn the_corpus_and_past_crashes_replay_without_panics() {
    let mut failed = Vec::new();
    for (name, run) in TARGETS {
        let dir = corpus_root().join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= 3,
            "{name}: only {} corpus files",
            files.len()
        );
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(f.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
}
