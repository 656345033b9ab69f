//! Finding the programs and files the tests run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Set (to anything) when every workspace binary is known to be fresh, so [`workspace_bin`]
/// need not run cargo: `make test` sets it for `cargo test --workspace`, which builds every
/// workspace binary before running any test.
pub const PREBUILT_ENV: &str = "TEST_SUPPORT_PREBUILT_BINS";

/// The workspace root (this crate lives in `<root>/crates/test-support`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("test-support lies two levels below the workspace root")
        .to_path_buf()
}

/// Finds `name` on PATH, or panics telling to run `make deps`.
pub fn require_bin(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` not found on PATH: run `make deps` (installs the Debian packages)")
        })
}

/// The Python of the workspace venv (with the OpenTelemetry SDK), or a panic telling to run
/// `make deps`.
pub fn python() -> PathBuf {
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.is_file(),
        "{} missing: run `make deps` (creates the venv with the OpenTelemetry Python SDK)",
        p.display()
    );
    p
}

/// The binary `bin` of workspace package `package`, built (`cargo build -p <package> --bin
/// <bin>`) into the same target dir and profile as the calling test's own binary
/// `bin_of_this_crate` (from `env!("CARGO_BIN_EXE_...")`), so `cargo test -p <crate>` on a clean
/// tree runs a fresh binary of the other crate, not a missing or stale one. Built once per test
/// process; skipped when [`PREBUILT_ENV`] is set. Panics with cargo's output when the build fails.
pub fn workspace_bin(bin_of_this_crate: &str, package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let profile_dir = Path::new(bin_of_this_crate)
        .parent()
        .expect("binary path has a parent");
    let path = profile_dir.join(bin);
    if std::env::var_os(PREBUILT_ENV).is_some() {
        assert!(
            path.is_file(),
            "{} not found although {PREBUILT_ENV} is set: build it with `cargo build -p {package}`",
            path.display()
        );
        return path;
    }
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = built.get(bin) {
        return p.clone();
    }
    cargo_build(profile_dir, package, bin);
    assert!(
        path.is_file(),
        "`cargo build -p {package} --bin {bin}` succeeded but {} is missing (a --target triple?)",
        path.display()
    );
    built.insert(bin.to_string(), path.clone());
    path
}

/// Runs `cargo build -p package --bin bin` for the profile directory `profile_dir`
/// (`<target-dir>/<profile>`).
fn cargo_build(profile_dir: &Path, package: &str, bin: &str) {
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile dir has a UTF-8 name");
    // Cargo sets CARGO for the processes it runs (tests included).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--target-dir",
        ])
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {bin}: {e}"));
    assert!(
        out.status.success(),
        "`cargo build -p {package} --bin {bin}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
