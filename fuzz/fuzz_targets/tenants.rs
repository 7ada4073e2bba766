//! The tenants file (`datacap apply`): `datacap_store::parse_tenants`, the function `apply`
//! and `validate` run on the operator's file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = datacap_store::parse_tenants(text);
    }
});
