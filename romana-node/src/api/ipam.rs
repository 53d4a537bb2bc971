//! The topology and IPAM part of the node API: layout, hosts, tenants,
//! segments, address allocation, release and garbage collection.
//!
//! Reads answer from this node's replica. Writes go through
//! [`Node::propose`](crate::node::Node::propose) (forwarded to the leader when needed) and answer once
//! this node has applied them, so a read right after a write sees it.

use std::net::Ipv4Addr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use raft_store::entry::{AllocationRequest, ContainerInterface};
use raft_store::layout::AddressLayout;
use raft_store::state::DEFAULT_SEGMENT_NAME;
use raft_store::state::{Allocation, ClusterState, Effect, Outcome, Rejection};
use raft_store::Command;
use romana_api::cluster::WriteResult;
use romana_api::ipam::{
    AddressView, AllocateBody, AllocationFilter, AllocationView, GcBody, HostView, LayoutView,
    NameBody, ReleaseBody, SegmentView, TenantView,
};
use romana_api::paths::{
    ADDRESS_ROUTE, PATH_ALLOCATIONS, PATH_GC, PATH_HOSTS, PATH_LAYOUT, PATH_RELEASE, PATH_TENANTS,
    SEGMENTS_ROUTE, SEGMENT_ROUTE, TENANT_ROUTE,
};

use super::{client_actor, parse_json, write_result, Listener};
use crate::api_error::ApiError;
use crate::node::{new_request_id, Node};

pub fn routes() -> Router<Node> {
    Router::new()
        .route(PATH_LAYOUT, get(layout))
        .route(PATH_HOSTS, get(hosts))
        .route(PATH_TENANTS, get(list_tenants).post(create_tenant))
        .route(TENANT_ROUTE, delete(delete_tenant))
        .route(SEGMENTS_ROUTE, get(list_segments).post(create_segment))
        .route(SEGMENT_ROUTE, delete(delete_segment))
        .route(PATH_ALLOCATIONS, get(list_allocations).post(allocate))
        .route(PATH_RELEASE, post(release))
        .route(PATH_GC, post(garbage_collect))
        .route(ADDRESS_ROUTE, get(show_address))
}

fn cluster_layout(state: &ClusterState) -> Result<AddressLayout, ApiError> {
    state
        .layout()
        .copied()
        .ok_or_else(|| ApiError::Unavailable("the cluster is not initialised yet".into()))
}

/// Proposes `command` on behalf of the caller and reports it as a write.
async fn write(
    node: &Node,
    listener: Listener,
    headers: &HeaderMap,
    command: Command,
    request_id: Option<String>,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let request_id = request_id.unwrap_or_else(new_request_id);
    let actor = client_actor(node, listener, headers);
    let applied = node
        .propose(command, actor, Some(request_id.clone()))
        .await?;
    write_result(request_id, applied)
}

async fn layout(State(node): State<Node>) -> Result<Json<LayoutView>, ApiError> {
    let layout = cluster_layout(&node.shared.read().state)?;
    Ok(Json(LayoutView {
        cidr: layout.cidr(),
        host_bits: layout.host_bits,
        tenant_bits: layout.tenant_bits,
        segment_bits: layout.segment_bits,
        endpoint_bits: layout.endpoint_bits,
        max_hosts: layout.max_hosts(),
        max_tenants: layout.max_tenants(),
        segments_per_tenant: layout.max_segments_per_tenant(),
        pods_per_block: layout.usable_endpoints(),
        drawing: layout.draw(),
    }))
}

async fn hosts(State(node): State<Node>) -> Result<Json<Vec<HostView>>, ApiError> {
    let projection = node.shared.read();
    let state = &projection.state;
    let layout = cluster_layout(state)?;
    let mut views: Vec<HostView> = state
        .nodes
        .iter()
        .map(|(name, record)| HostView {
            name: name.clone(),
            host_number: record.host_number,
            prefix: layout.host_cidr(record.host_number),
            underlay_ip: record.underlay_ip,
            address: record.address.clone(),
            allocations: state
                .allocations
                .values()
                .filter(|a| &a.host == name)
                .count(),
        })
        .collect();
    views.sort_by_key(|h| h.host_number);
    Ok(Json(views))
}

fn tenant_views(state: &ClusterState, only: Option<&str>) -> Result<Vec<TenantView>, ApiError> {
    let layout = cluster_layout(state)?;
    let views = state
        .tenants
        .iter()
        .filter(|(name, _)| only.is_none_or(|only| only == name.as_str()))
        .map(|(name, tenant)| {
            let base = layout.address(raft_store::layout::AddressParts {
                host: 0,
                tenant: tenant.number,
                segment: 0,
                endpoint: 0,
            });
            let mut segments: Vec<SegmentView> = tenant
                .segments
                .iter()
                .map(|(segment, record)| SegmentView {
                    name: segment.clone(),
                    number: record.number,
                    allocations: state
                        .allocations
                        .values()
                        .filter(|a| &a.tenant == name && &a.segment == segment)
                        .count(),
                })
                .collect();
            segments.sort_by_key(|s| s.number);
            TenantView {
                name: name.clone(),
                number: tenant.number,
                match_mask: format!("{base}/{}", layout.tenant_mask(false)),
                segments,
                allocations: state
                    .allocations
                    .values()
                    .filter(|a| &a.tenant == name)
                    .count(),
            }
        })
        .collect();
    Ok(views)
}

async fn list_tenants(State(node): State<Node>) -> Result<Json<Vec<TenantView>>, ApiError> {
    tenant_views(&node.shared.read().state, None).map(Json)
}

async fn create_tenant(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let body: NameBody = parse_json(&body)?;
    write(
        &node,
        listener,
        &headers,
        Command::CreateTenant { name: body.name },
        body.request_id,
    )
    .await
}

async fn delete_tenant(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    write(
        &node,
        listener,
        &headers,
        Command::DeleteTenant { name: tenant },
        None,
    )
    .await
}

async fn list_segments(
    State(node): State<Node>,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<SegmentView>>, ApiError> {
    let projection = node.shared.read();
    let mut views = tenant_views(&projection.state, Some(&tenant))?;
    match views.pop() {
        Some(view) => Ok(Json(view.segments)),
        None => Err(ApiError::from_rejection(&Rejection::UnknownTenant {
            name: tenant,
        })),
    }
}

async fn create_segment(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let body: NameBody = parse_json(&body)?;
    let command = Command::CreateSegment {
        tenant,
        name: body.name,
    };
    write(&node, listener, &headers, command, body.request_id).await
}

async fn delete_segment(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    Path((tenant, segment)): Path<(String, String)>,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    write(
        &node,
        listener,
        &headers,
        Command::DeleteSegment {
            tenant,
            name: segment,
        },
        None,
    )
    .await
}

pub fn allocation_view(
    layout: &AddressLayout,
    address: Ipv4Addr,
    allocation: &Allocation,
) -> AllocationView {
    let parts = layout
        .decode(address)
        .unwrap_or(raft_store::layout::AddressParts {
            host: 0,
            tenant: 0,
            segment: 0,
            endpoint: 0,
        });
    let block_base = layout.address(raft_store::layout::AddressParts {
        endpoint: 0,
        ..parts
    });
    AllocationView {
        address,
        block: format!("{block_base}/{}", layout.block_prefix_len()),
        gateway: layout.address(raft_store::layout::AddressParts {
            endpoint: 1,
            ..parts
        }),
        host: allocation.host.clone(),
        tenant: allocation.tenant.clone(),
        segment: allocation.segment.clone(),
        container_id: allocation.owner.container_id.clone(),
        ifname: allocation.owner.ifname.clone(),
        pod_namespace: allocation.pod_namespace.clone(),
        pod_name: allocation.pod_name.clone(),
        network: allocation.network.clone(),
        allocated_at_ms: allocation.allocated_at_ms,
        allocated_index: allocation.allocated_index,
        actor: allocation.actor.clone(),
        newly_allocated: true,
    }
}

async fn allocate(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    Extension(kubernetes): Extension<super::Kubernetes>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AllocationView>, ApiError> {
    let body: AllocateBody = parse_json(&body)?;
    let owner = ContainerInterface {
        container_id: body.container_id,
        ifname: body.ifname,
    };
    owner.validate().map_err(ApiError::BadRequest)?;
    let host = body.host.unwrap_or_else(|| node.config.name.clone());
    if host == node.config.name
        && !node
            .firewall_ready
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        // Fail closed: no pod of this host gets an address before the
        // isolation rules are in place.
        return Err(ApiError::Unavailable(
            "this host's isolation rules are not in place yet; try again shortly".into(),
        ));
    }
    let (tenant, segment) = match body.tenant {
        Some(tenant) => (
            tenant,
            body.segment
                .unwrap_or_else(|| DEFAULT_SEGMENT_NAME.to_string()),
        ),
        None => {
            pod_tenant(
                &node,
                kubernetes.0.as_ref(),
                &body.pod_namespace,
                &body.pod_name,
            )
            .await?
        }
    };
    let request = AllocationRequest {
        host,
        tenant,
        segment,
        owner,
        pod_namespace: body.pod_namespace,
        pod_name: body.pod_name,
        network: body.network,
    };
    let written = write(
        &node,
        listener,
        &headers,
        Command::AllocateAddress(request),
        body.request_id,
    )
    .await?;
    let Outcome::Applied(Effect::AddressAllocated { address, existing }) = written.0.outcome else {
        return Err(ApiError::Internal(format!(
            "unexpected allocation outcome: {}",
            written.0.outcome
        )));
    };
    // The write has been applied here; the allocation is in this replica
    // unless a later entry already released it again.
    let projection = node.shared.read();
    let layout = cluster_layout(&projection.state)?;
    let allocation = projection.state.allocations.get(&address).ok_or_else(|| {
        ApiError::Conflict(format!(
            "{address} was released again before it could be reported"
        ))
    })?;
    let mut view = allocation_view(&layout, address, allocation);
    view.newly_allocated = !existing;
    Ok(Json(view))
}

/// The tenant and segment of a Kubernetes pod, from its labels (or its
/// namespace's, or the default tenant); a missing segment of a known tenant
/// is created (segments are named by pods' labels, tenants are configured).
async fn pod_tenant(
    node: &Node,
    kubernetes: Option<&crate::kubernetes::Context>,
    namespace: &Option<String>,
    name: &Option<String>,
) -> Result<(String, String), ApiError> {
    let (Some(kubernetes), Some(namespace), Some(name)) = (kubernetes, namespace, name) else {
        return Err(ApiError::BadRequest(
            "tenant is missing: give a tenant, or (on a node run with --kubernetes) the pod's namespace and name".into(),
        ));
    };
    let found = kubernetes
        .resolve_pod(&node.shared, namespace, name)
        .await?;
    let (tenant_known, segment_known) = {
        let projection = node.shared.read();
        match projection.state.tenants.get(&found.tenant) {
            Some(record) => (true, record.segments.contains_key(&found.segment)),
            None => (false, false),
        }
    };
    if !tenant_known {
        return Err(ApiError::NotFound(format!(
            "pod {namespace}/{name}: tenant {:?} (from {}) is not configured; add it to the tenants of the romana-config ConfigMap or create it with `romanactl tenant create {}`",
            found.tenant, found.tenant_source, found.tenant
        )));
    }
    if !segment_known {
        crate::kubernetes::ensure_segment(
            node,
            &found.tenant,
            &found.segment,
            format!("node:{}", node.config.name),
        )
        .await
        .map_err(|reason| {
            ApiError::BadRequest(format!(
                "pod {namespace}/{name}: segment {:?} of tenant {:?} (label romana.io/segment): {reason}",
                found.segment, found.tenant
            ))
        })?;
    }
    tracing::debug!(pod = %format!("{namespace}/{name}"), tenant = %found.tenant, source = %found.tenant_source, segment = %found.segment, "resolved a pod's tenant");
    Ok((found.tenant, found.segment))
}

async fn release(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let body: ReleaseBody = parse_json(&body)?;
    let owner = ContainerInterface {
        container_id: body.container_id,
        ifname: body.ifname,
    };
    owner.validate().map_err(ApiError::BadRequest)?;
    // A DEL retired the pod's veth before asking: delete it (and any other
    // retired meanwhile) whatever becomes of the release.
    node.link_reaper.wake();
    write(
        &node,
        listener,
        &headers,
        Command::ReleaseAddress(owner),
        body.request_id,
    )
    .await
}

async fn garbage_collect(
    State(node): State<Node>,
    Extension(listener): Extension<Listener>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WriteResult<Outcome>>, ApiError> {
    let body: GcBody = parse_json(&body)?;
    let valid: Vec<ContainerInterface> = body
        .valid
        .into_iter()
        .map(|owner| ContainerInterface {
            container_id: owner.container_id,
            ifname: owner.ifname,
        })
        .collect();
    for owner in &valid {
        owner.validate().map_err(ApiError::BadRequest)?;
    }
    let command = Command::GarbageCollect {
        host: body.host.unwrap_or_else(|| node.config.name.clone()),
        network: body.network,
        valid,
    };
    write(&node, listener, &headers, command, body.request_id).await
}

async fn list_allocations(
    State(node): State<Node>,
    Query(filter): Query<AllocationFilter>,
) -> Result<Json<Vec<AllocationView>>, ApiError> {
    let projection = node.shared.read();
    let state = &projection.state;
    let layout = cluster_layout(state)?;
    let views = state
        .allocations
        .iter()
        .filter(|(_, a)| filter.host.as_ref().is_none_or(|h| &a.host == h))
        .filter(|(_, a)| filter.tenant.as_ref().is_none_or(|t| &a.tenant == t))
        .filter(|(_, a)| filter.segment.as_ref().is_none_or(|s| &a.segment == s))
        .map(|(address, allocation)| allocation_view(&layout, *address, allocation))
        .collect();
    Ok(Json(views))
}

async fn show_address(
    State(node): State<Node>,
    Path(address): Path<String>,
) -> Result<Json<AddressView>, ApiError> {
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{address:?} is not an IPv4 address")))?;
    let projection = node.shared.read();
    let state = &projection.state;
    let layout = cluster_layout(state)?;
    let parts = layout.decode(address).ok_or_else(|| {
        ApiError::NotFound(format!(
            "{address} is outside the pod CIDR {}",
            layout.cidr()
        ))
    })?;
    let host = state
        .nodes
        .iter()
        .find(|(_, r)| r.host_number == parts.host)
        .map(|(name, _)| name.clone());
    let tenant = state.tenants.iter().find(|(_, t)| t.number == parts.tenant);
    let segment = tenant.and_then(|(_, t)| {
        t.segments
            .iter()
            .find(|(_, s)| s.number == parts.segment)
            .map(|(name, _)| name.clone())
    });
    let kind = match parts.endpoint {
        0 => "network",
        1 => "gateway",
        e if e == layout.last_endpoint() => "broadcast",
        _ => "pod",
    };
    Ok(Json(AddressView {
        address,
        host_number: parts.host,
        tenant_number: parts.tenant,
        segment_number: parts.segment,
        endpoint: parts.endpoint,
        host,
        tenant: tenant.map(|(name, _)| name.clone()),
        segment,
        kind: kind.to_string(),
        allocation: state
            .allocations
            .get(&address)
            .map(|allocation| allocation_view(&layout, address, allocation)),
    }))
}
