//! STATUS: is the node's network ready for pods? The runtime reports the answer as the CRI
//! `NetworkReady` condition; the kubelet keeps pods off a node whose network is not ready.

use super::error::CniError;
use super::exec::{self, Command, Target};
use super::CniCaller;

impl CniCaller {
    /// `Ok` when the conf dir holds a valid network config and every plugin binary it names is
    /// installed. For a 1.1.0 network each plugin's STATUS is also run, in order, and the
    /// first failure returned (e.g. code 50, "the plugin is not available").
    ///
    /// STATUS goes to every plugin of a 1.1.0 list: a plugin that cannot speak 1.1.0 would fail
    /// every ADD of that list too, so reporting it here, before pods are scheduled, is right.
    pub async fn status(&self) -> Result<(), CniError> {
        let list = self.network()?;
        let plugins = exec::resolve_all(&list, &self.config.bin_dirs)?;
        if !list.cni_version.has_status_and_gc() {
            return Ok(());
        }
        let no_caps = serde_json::Map::new();
        for plugin in &plugins {
            let stdin = exec::plugin_stdin(&list, &plugin.conf, None, &no_caps, None);
            exec::exec(
                plugin,
                Command::Status,
                Target::default(),
                stdin,
                &self.config.bin_dirs,
                self.plugin_timeout,
            )
            .await?;
        }
        Ok(())
    }
}
