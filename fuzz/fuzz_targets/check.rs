//! Feeds arbitrary input to the checker: it must never panic, hang or overflow.
#![no_main]

use flowc::check::{MemLoader, check_files, check_text};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        // Text goes through the in-memory entry point.
        Ok(s) => {
            let _ = check_text("fuzz.flow", s);
        }
        // Raw bytes go through a loader, exercising the UTF-8 decoding (E0101).
        Err(_) => {
            let mut loader = MemLoader::new();
            loader.add("fuzz.flow", data.to_vec());
            let _ = check_files(&loader, &[PathBuf::from("fuzz.flow")]);
        }
    }
});
