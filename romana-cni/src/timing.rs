//! Where an invocation's time goes: wall-clock phases, logged (at info)
//! with its outcome, so that one line of the log breaks an ADD down into
//! config parsing, the node's round trip (and the node's own share of it,
//! from its `Server-Timing` header), veth creation, the pod's and the
//! host's addresses and routes, and the result. The process's own start
//! and exit are outside: `deploy/bench-cni.sh` measures them as the cost
//! of a `VERSION` call.

use std::fmt::Write;
use std::time::{Duration, Instant};

pub struct Phases {
    started: Instant,
    last: Instant,
    marks: Vec<(&'static str, Duration)>,
    /// The node's own time for its requests, summed, ms.
    node_ms: Option<f64>,
}

impl Phases {
    /// Phases counted from `started` (the process's first instruction in
    /// `main`).
    pub fn since(started: Instant) -> Self {
        Self {
            started,
            last: started,
            marks: Vec::new(),
            node_ms: None,
        }
    }

    /// Ends the phase `name` now; the next one starts here.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.marks.push((name, now - self.last));
        self.last = now;
    }

    /// Adds what the node reported for one of its requests.
    pub fn node(&mut self, ms: Option<f64>) {
        if let Some(ms) = ms {
            *self.node_ms.get_or_insert(0.0) += ms;
        }
    }

    /// `2.10 ms (config 0.05, allocate 1.20 [node 0.90], ...)`.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut text = format!("{:.2} ms (", ms(self.last - self.started));
        for (i, (name, took)) in self.marks.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let _ = write!(text, "{name} {:.2}", ms(*took));
            if *name == "allocate" || *name == "release" {
                if let Some(node) = self.node_ms {
                    let _ = write!(text, " [node {node:.2}]");
                }
            }
        }
        text.push(')');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_phase_and_the_nodes_share() {
        let mut phases = Phases::since(Instant::now());
        phases.mark("config");
        phases.node(Some(0.5));
        phases.node(None);
        phases.node(Some(0.25));
        phases.mark("allocate");
        phases.mark("veth");
        let summary = phases.summary();
        assert!(summary.contains("(config "), "{summary}");
        assert!(summary.contains(", allocate "), "{summary}");
        assert!(summary.contains("[node 0.75]"), "{summary}");
        assert!(
            summary.ends_with(')') && summary.contains(", veth "),
            "{summary}"
        );
    }
}
