//! Prints `hello from test-support`: the smallest workspace binary, which the tests of
//! `test_support::bins::workspace_bin` delete and have rebuilt.

fn main() {
    println!("hello from test-support");
}
