//! Pod networking for deckhand.
//!
//! So far this crate holds the CNI *caller* ([`caller`]): what libcni / containerd's go-cni do
//! for a runtime — load the node's network config, run the plugin chain for a pod sandbox,
//! cache what was done so teardown is exact. deckhand's own CNI plugins and the VXLAN overlay
//! follow (see the node networking issue).

pub mod caller;

pub use caller::{
    AddResult, Attachment, AttachmentKey, Bandwidth, CniCaller, CniConfig, CniError, CniVersion,
    Dns, Interface, IpConfig, IpNet, NetworkConfigList, PluginConfig, PodIps, PortMapping,
    Protocol, ResultError, Route, DEFAULT_PLUGIN_TIMEOUT,
};
