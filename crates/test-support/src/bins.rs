//! Finding the programs and files the tests run.

use std::path::{Path, PathBuf};

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
