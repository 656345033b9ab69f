//! Fuzz target `config`: see `otel_collector::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otel_collector::fuzzing::config(data));
