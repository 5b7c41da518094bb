//! Fuzz target `text`: see `fuzz/readers.rs`. `cargo +nightly fuzz run text` (from `fuzz/`'s parent).
#![no_main]

// Each target uses one reader of the shared file.
#[allow(dead_code)]
#[path = "../readers.rs"]
mod readers;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| readers::text(bytes));
