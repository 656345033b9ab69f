//! Fuzz target `prometheus_translate`: see `otel_collector::fuzzing::prometheus_translate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otel_collector::fuzzing::prometheus_translate(data));
