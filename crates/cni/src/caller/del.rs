//! DEL: detach a pod sandbox. Idempotent, as the spec demands of runtimes and plugins alike:
//! a second DEL, a DEL that never had an ADD, and a DEL after the netns is gone all succeed.

use super::cache;
use super::config::NetworkConfigList;
use super::error::CniError;
use super::exec::{self, Command, Target};
use super::{cached_attachments, format_cni_args, Attachment, CniCaller};

impl CniCaller {
    /// Run DEL on the plugins in reverse order.
    ///
    /// With a cached ADD the cached config, CNI_ARGS and capability args are used, and the
    /// cached result is the prevResult (0.4.0+), whatever the conf dir holds now. Without one
    /// (never added, or already deleted) the current network gets a DEL without prevResult,
    /// which plugins must tolerate; with no network config at all there is nothing to undo.
    /// The cache entry is removed only after every plugin succeeded, so a failed DEL can be
    /// retried with the same inputs.
    pub async fn del(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let _guard = self.locks.lock(&att.container_id, &att.ifname).await;
        let current = self.network();
        let cached = cached_attachments(
            self.cache_dir(),
            current.as_ref().ok(),
            &att.container_id,
            &att.ifname,
        )?;
        // A netns that is gone is not an error: the spec lets DEL go without CNI_NETNS, and
        // plugins then release only what lives outside it (IPs, host rules).
        let netns = att.netns.exists().then_some(att.netns.as_path());

        if cached.is_empty() {
            let list = match current {
                Ok(list) => list,
                Err(CniError::NoConfig { dir }) => {
                    tracing::info!(
                        container = %att.container_id,
                        dir = %dir.display(),
                        "CNI DEL: no cached attachment and no network config, nothing to undo"
                    );
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let args = format_cni_args(&att.cni_args());
            return self
                .del_list(&list, att, netns, &args, &att.capability_args(), None)
                .await;
        }
        for entry in cached {
            let args = format_cni_args(&entry.cni_args);
            let prev = if entry.list.cni_version.has_check() {
                entry.result.as_ref()
            } else {
                None
            };
            self.del_list(&entry.list, att, netns, &args, &entry.capability_args, prev)
                .await?;
            cache::remove(&entry.path)?;
        }
        Ok(())
    }

    pub(super) async fn del_list(
        &self,
        list: &NetworkConfigList,
        att: &Attachment,
        netns: Option<&std::path::Path>,
        args: &str,
        caps: &serde_json::Map<String, serde_json::Value>,
        prev: Option<&serde_json::Value>,
    ) -> Result<(), CniError> {
        let plugins = exec::resolve_all(list, &self.config.bin_dirs)?;
        let target = Target {
            container_id: Some(&att.container_id),
            netns,
            ifname: Some(&att.ifname),
            args: Some(args),
        };
        for plugin in plugins.iter().rev() {
            let stdin = exec::plugin_stdin(list, &plugin.conf, prev, caps, None);
            exec::exec(
                plugin,
                Command::Del,
                target,
                stdin,
                &self.config.bin_dirs,
                self.plugin_timeout,
            )
            .await?;
        }
        Ok(())
    }
}
