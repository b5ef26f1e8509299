//! The service proxy (nftables) and NetworkPolicy enforcement.
//! Not yet implemented: see the service proxy issue.
