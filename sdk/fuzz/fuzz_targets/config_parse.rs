//! Arbitrary text into `Config::parse`: it must answer `Ok` or a clear `Error::Config`, never panic,
//! never hang, never allocate without bound.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// A config "file" in the repository root, so that the relative paths of the example configs
/// (`models/ssd-mobilenet-v2-coco.toml`, `footage/...`) resolve as they do for a user.
const CONFIG_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz.toml");

fuzz_target!(|data: &[u8]| {
    // Config::load refuses non-UTF-8 before parsing; parse takes text.
    let text = String::from_utf8_lossy(data);
    match ocellus::config::Config::parse(&text, Path::new(CONFIG_PATH)) {
        Ok(_) => {}
        Err(e) => {
            // Every refusal says something (formatting it must not panic either).
            assert!(!e.to_string().is_empty(), "an empty error: {e:?}");
        }
    }
});
