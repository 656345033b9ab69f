//! Fuzz target `otlp_json`: see `otel_collector::fuzzing::otlp_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otel_collector::fuzzing::otlp_json(data));
