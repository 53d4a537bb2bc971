//! The operator API's JSON bodies: every body type either fails to decode
//! or decodes to a value that encodes again and decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use romana_api::cluster::{JoinRequest, NoteBody};
use romana_api::ipam::{AllocateBody, GcBody, NameBody, ReleaseBody};

fn round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_vec(&value).expect("a decoded body encodes");
        let again: T = serde_json::from_slice(&text).expect("an encoded body decodes");
        assert_eq!(
            serde_json::to_vec(&again).expect("encodes"),
            text,
            "stable round trip"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<AllocateBody>(data);
    round_trip::<ReleaseBody>(data);
    round_trip::<GcBody>(data);
    round_trip::<NameBody>(data);
    round_trip::<NoteBody>(data);
    round_trip::<JoinRequest>(data);
});
