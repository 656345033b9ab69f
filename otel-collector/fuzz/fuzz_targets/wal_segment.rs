//! Fuzz target `wal_segment`: see `otel_collector::fuzzing::wal_segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otel_collector::fuzzing::wal_segment(data));
