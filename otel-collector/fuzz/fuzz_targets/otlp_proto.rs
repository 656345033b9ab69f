//! Fuzz target `otlp_proto`: see `otel_collector::fuzzing::otlp_proto`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otel_collector::fuzzing::otlp_proto(data));
