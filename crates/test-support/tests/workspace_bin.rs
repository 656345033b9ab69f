//! `workspace_bin` builds a binary its test needs when it is missing (as on a clean tree).
//! Run: `cargo test -p test-support --test workspace_bin`.

use std::process::Command;

use test_support::bins::{workspace_bin, PREBUILT_ENV};

#[test]
fn a_missing_workspace_binary_is_built_before_use() {
    // `make test` sets it; this test is about the build that happens without it (the only
    // test in this binary, so no other thread reads the environment meanwhile).
    std::env::remove_var(PREBUILT_ENV);
    let own = env!("CARGO_BIN_EXE_test-support-hello");
    // Cargo built it before the tests; delete it, as on a tree where nobody built it.
    std::fs::remove_file(own).expect("remove the binary cargo built for this test");
    let bin = workspace_bin(own, "test-support", "test-support-hello");
    assert_eq!(bin, std::path::Path::new(own));
    let out = Command::new(&bin).output().expect("run the rebuilt binary");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from test-support\n"
    );
    // A second call in the same process reuses the first build.
    assert_eq!(
        workspace_bin(own, "test-support", "test-support-hello"),
        bin
    );
}
