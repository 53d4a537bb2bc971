//! The mirrored Kubernetes view: idempotent mirror and forget requests,
//! checked input, and a hash that an empty view leaves as it was.

use crate::entry::{
    ClusterRequest, Command, Labels, PodMirror, PodPort, PortProtocol, RequestMeta,
};
use crate::layout::AddressLayout;
use crate::state::{ClusterState, Effect, Outcome};

fn request(id: &str, command: Command) -> ClusterRequest {
    ClusterRequest::new(
        RequestMeta {
            actor: "kubernetes:controller@a".into(),
            request_id: id.into(),
            timestamp_ms: 1_700_000_000_000,
        },
        command,
    )
}

fn initialised() -> ClusterState {
    let mut state = ClusterState::default();
    let init = request(
        "init",
        Command::InitCluster {
            cluster_name: "romana".into(),
            voters_target: 3,
            layout: AddressLayout::default(),
        },
    );
    assert!(matches!(
        state.apply(1, 0, &init).outcome,
        Outcome::Applied(_)
    ));
    state
}

fn pod(labels: &[(&str, &str)]) -> PodMirror {
    PodMirror {
        namespace: "default".into(),
        name: "web".into(),
        uid: "uid-1".into(),
        node: Some("host1".into()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: vec![PodPort {
            name: Some("http".into()),
            port: 80,
            protocol: PortProtocol::Tcp,
        }],
    }
}

#[test]
fn mirrored_pods_and_namespaces_are_upserted_and_forgotten_idempotently() {
    let mut state = initialised();
    let hash_without_view = state.content_hash();
    let t1 = pod(&[("romana.io/tenant", "t1")]);
    let outcome = |state: &mut ClusterState, index: u64, id: &str, command: Command| {
        state.apply(index, 0, &request(id, command)).outcome
    };
    assert_eq!(
        outcome(&mut state, 2, "p1", Command::MirrorPod(t1.clone())),
        Outcome::Applied(Effect::Mirrored { changed: true })
    );
    assert_ne!(
        state.content_hash(),
        hash_without_view,
        "the view is hashed once it holds something"
    );
    // The same content again (a new leader's relist): no change.
    assert_eq!(
        outcome(&mut state, 3, "p2", Command::MirrorPod(t1.clone())),
        Outcome::Applied(Effect::Mirrored { changed: false })
    );
    assert_eq!(
        state
            .kubernetes
            .pod("default", "web")
            .map(|r| r.updated_index),
        Some(2)
    );
    // Relabelled: replaced.
    let t2 = pod(&[("romana.io/tenant", "t2")]);
    assert_eq!(
        outcome(&mut state, 4, "p3", Command::MirrorPod(t2.clone())),
        Outcome::Applied(Effect::Mirrored { changed: true })
    );
    assert_eq!(
        state.kubernetes.pod("default", "web").map(|r| &r.pod),
        Some(&t2)
    );
    let labels = Labels::from([("romana.io/tenant".to_string(), "t2".to_string())]);
    assert_eq!(
        outcome(
            &mut state,
            5,
            "n1",
            Command::MirrorNamespace {
                name: "team-b".into(),
                labels: labels.clone()
            }
        ),
        Outcome::Applied(Effect::Mirrored { changed: true })
    );
    let forget = || Command::ForgetPod {
        namespace: "default".into(),
        name: "web".into(),
    };
    assert_eq!(
        outcome(&mut state, 6, "f1", forget()),
        Outcome::Applied(Effect::Forgotten { existed: true })
    );
    assert_eq!(
        outcome(&mut state, 7, "f2", forget()),
        Outcome::Applied(Effect::Forgotten { existed: false })
    );
    assert_eq!(
        outcome(
            &mut state,
            8,
            "f3",
            Command::ForgetNamespace {
                name: "team-b".into()
            }
        ),
        Outcome::Applied(Effect::Forgotten { existed: true })
    );
    assert!(state.kubernetes.is_empty());
    // Bad input is refused and changes nothing.
    let mut bad = pod(&[]);
    bad.labels.insert("k".into(), "v\nforged".into());
    let before = state.kubernetes.clone();
    assert!(matches!(
        outcome(&mut state, 9, "bad", Command::MirrorPod(bad)),
        Outcome::Rejected(_)
    ));
    assert_eq!(state.kubernetes, before);
}
