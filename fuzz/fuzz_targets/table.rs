//! Fuzz target `table`: see `fuzz/readers.rs`. `cargo +nightly fuzz run table` (from `fuzz/`'s parent).
#![no_main]

// Each target uses one reader of the shared file.
#[allow(dead_code)]
#[path = "../readers.rs"]
mod readers;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| readers::table(bytes));
