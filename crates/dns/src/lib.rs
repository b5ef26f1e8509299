//! Node-local cluster DNS serving `cluster.local` from the agent's watch cache.
//! Not yet implemented: see the node networking issue.
