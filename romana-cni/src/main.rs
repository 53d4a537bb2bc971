//! The Romana CNI plugin (`romana`). Not built yet: until the CNI issue lands
//! this binary answers every invocation with a CNI error object saying so,
//! rather than pretending to configure anything.

fn main() {
    // CNI error code 4 is "invalid configuration"; 7 "invalid network config"
    // would also fit. A runtime shows `msg` to the user.
    println!(
        "{{\"cniVersion\":\"1.0.0\",\"code\":4,\"msg\":\"the romana CNI plugin is not implemented in this build\"}}"
    );
    std::process::exit(1);
}
