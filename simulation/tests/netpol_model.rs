//! The upstream NetworkPolicy suite's cases ([`simulation::netpol`])
//! against the policy compiler, in-process: for every probe of every case,
//! the table `policy explain` predicts must be the expected one. The same
//! cases run against real kubelets in `kubernetes_netpol.rs`.

use simulation::netpol::{cases, Model, Table};

#[test]
fn the_compiler_predicts_every_upstream_table() {
    let mut failures = Vec::new();
    let mut probes = 0;
    for case in cases() {
        let mut model = Model::new();
        let steps = (case.steps)(&model.addresses);
        for (i, step) in steps.iter().enumerate() {
            for action in &step.actions {
                model
                    .act(action)
                    .unwrap_or_else(|e| panic!("{}: step {i}: {e}", case.name));
            }
            for probe in &step.probes {
                probes += 1;
                let expected = Table::expected(probe);
                let predicted = model.predict(probe);
                if predicted != expected {
                    failures.push(format!(
                        "{} step {i} {}/{}: expected\n{expected}predicted\n{predicted}",
                        case.name, probe.protocol, probe.port
                    ));
                }
            }
        }
    }
    assert!(probes >= 40, "only {probes} probes");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
