//! Sloth conformance: `slo-rules generate` on five of Sloth's own cases must give the rules
//! Sloth v0.16 generated for them.
//!
//! Two checks per case:
//! - always: the rules (names, expressions, labels, annotations, group order) equal Sloth's
//!   `expected.yaml` in `testdata/sloth/` exactly, except the `sloth_version` label;
//! - when `../shared/conformance/sloth/` is beside the repository: its `compare.py` (semantic
//!   PromQL comparison) prints `sloth: N/N rules match` for the output. Without that directory
//!   the test says loudly that this half was skipped.
//!
//! Run: `cargo test -p slo-rules --test conformance`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use test_support::{workspace_root, TempDir};

const CASES: [&str; 5] = [
    "base",
    "multifile",
    "getting-started",
    "kubernetes-apiserver",
    "home-wifi",
];

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/sloth")
        .join(case)
}

/// Runs `slo-rules generate` on a case's spec with its ARGS; returns the output file.
fn generate(case: &str, out_dir: &Path) -> PathBuf {
    let dir = case_dir(case);
    let args = std::fs::read_to_string(dir.join("ARGS")).unwrap();
    let out = out_dir.join(format!("{case}.yml"));
    let status = Command::new(env!("CARGO_BIN_EXE_slo-rules"))
        .arg("generate")
        .arg("--input")
        .arg(dir.join("slo.yaml"))
        .arg("--out")
        .arg(&out)
        .args(args.split_whitespace())
        .status()
        .unwrap();
    assert!(status.success(), "{case}: slo-rules generate failed");
    out
}

/// Every rule of every document of a rule file, with `sloth_version` dropped.
fn rules(path: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
        let Some(groups) = doc.get("groups").and_then(Value::as_sequence) else {
            continue;
        };
        for group in groups {
            let name = group["name"].as_str().unwrap().to_owned();
            for rule in group["rules"].as_sequence().unwrap() {
                let mut rule = rule.clone();
                if let Some(labels) = rule.get_mut("labels").and_then(Value::as_mapping_mut) {
                    labels.remove("sloth_version");
                }
                out.push((name.clone(), rule));
            }
        }
    }
    out
}

#[test]
fn rules_equal_sloths_own_outputs() {
    let tmp = TempDir::new("slo-rules-conformance");
    for case in CASES {
        let ours = rules(&generate(case, &tmp));
        let sloth = rules(&case_dir(case).join("expected.yaml"));
        assert_eq!(ours.len(), sloth.len(), "{case}: rule count");
        for (i, (o, s)) in ours.iter().zip(&sloth).enumerate() {
            assert_eq!(o, s, "{case}: rule {i} differs from Sloth's");
        }
    }
}

#[test]
fn compare_py_of_the_shared_set_matches_every_case() {
    let shared = workspace_root().join("../shared/conformance/sloth");
    let compare = shared.join("compare.py");
    if !compare.is_file() {
        eprintln!(
            "\n!!! SKIPPED: {} not found; compare.py ran on no case (the exact comparison with \
             testdata/sloth still ran)\n",
            compare.display()
        );
        return;
    }
    let venv = workspace_root().join(".venv/bin/python");
    let python = if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let tmp = TempDir::new("slo-rules-compare");
    for case in CASES {
        let out = generate(case, &tmp);
        let run = Command::new(&python)
            .arg(&compare)
            .arg(&out)
            .arg(shared.join(case))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (run `make deps`)", python.display()));
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        let last = stdout.lines().last().unwrap_or_default();
        eprintln!("{case}: {last}");
        assert!(
            run.status.success(),
            "{case}: compare.py failed:\n{stdout}\n{stderr}(PyYAML missing? run `make deps`)"
        );
        let (n, m) = last
            .strip_prefix("sloth: ")
            .and_then(|s| s.strip_suffix(" rules match"))
            .and_then(|s| s.split_once('/'))
            .unwrap_or_else(|| panic!("{case}: unexpected compare.py output {last:?}"));
        assert!(n == m && n != "0", "{case}: {last}");
    }
}
