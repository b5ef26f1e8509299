//! Volume plugins, the CSI node client and the built-in local CSI driver.
//! Not yet implemented: see the kubelet and storage issues.
