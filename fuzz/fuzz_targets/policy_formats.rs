//! Every policy format: Romana JSON, Kubernetes NetworkPolicy (one, a list,
//! YAML documents), the seed's third-party resource. No parser may panic,
//! and whatever parses must pass the log's own validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use romana_node::policy::formats::{parse_policy_file, parse_tpr};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = parse_policy_file(text) {
        for policy in &file.policies {
            raft_store::entry::policy::validate(policy).expect("a parsed policy is valid");
        }
        for policy in &file.network_policies {
            policy.validate().expect("a parsed NetworkPolicy is valid");
        }
    }
    if let Ok(policies) = parse_tpr("fuzz", text) {
        for policy in &policies {
            raft_store::entry::policy::validate(policy).expect("a parsed TPR is valid");
        }
    }
});
