//! Shared API types for deckhand: re-exports of the Kubernetes types, ids and conditions.
//! No IO lives here. It grows with the kubelet and control-plane issues.
