//! Activation request parsing (both the JSON and the `TKAR1-` text form).
//! Whatever parses must re-encode and parse back to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tka::request::ActivationRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(req) = ActivationRequest::parse(text) else { return };
    // The JSON form always round-trips.
    assert_eq!(ActivationRequest::parse(&req.to_json()).expect("own JSON parses"), req);
    // The text form round-trips whenever it can be produced.
    if let Ok(t) = req.to_text() {
        assert_eq!(ActivationRequest::parse(&t).expect("own text parses"), req);
    }
});
