//! Shared API helpers for deckhand: what the control plane and the node both need on top of
//! the Kubernetes types (k8s-openapi, never redefined). No IO lives here.
//!
//! - [`quantity`]: resource quantities (`100m`, `2Gi`) to milli-units and bytes.

pub mod quantity;
