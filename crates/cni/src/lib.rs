//! CNI plugins (bridge, host-local, portmap, loopback), the CNI caller and the VXLAN overlay.
//! Not yet implemented: see the node networking issue.
