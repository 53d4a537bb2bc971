//! The plugin's input: the network config on stdin and `CNI_ARGS`. The
//! input is `CNI_ARGS`, a NUL byte, then the config. Neither parser may
//! panic; a config that parses must name a supported version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use romana_cni::config::{CniArgs, NetConf};

fuzz_target!(|data: &[u8]| {
    let (args, stdin) = match data.iter().position(|b| *b == 0) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (&data[..0], data),
    };
    if let Ok(args) = std::str::from_utf8(args) {
        let _ = CniArgs::parse(args);
    }
    if let Ok(config) = NetConf::parse(stdin) {
        assert!(!config.cni_version.is_empty());
    }
});
