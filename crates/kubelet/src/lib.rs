//! The kubelet: pod sources, pod workers, PLEG, status manager, probes, node status and lease,
//! volume manager and the kubelet HTTP API. Not yet implemented: see the kubelet issue.
