//! Settings parsing and validation: any bytes, both platforms; never panics.
#![no_main]
use akvsync::settings::{self, Platform};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for platform in [Platform::Windows, Platform::Linux] {
        if let Ok(validated) = settings::parse_bytes(data, platform) {
            // What validates must render.
            let _ = settings::render::report(&validated);
        }
    }
});
