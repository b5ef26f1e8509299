//! ADD: attach a pod sandbox to the network. All or nothing: on any failure the plugins that
//! ran (and the one that failed, which may have half-allocated) get a DEL before the error is
//! returned.

use serde_json::Value;

use super::cache;
use super::config::NetworkConfigList;
use super::error::CniError;
use super::exec::{self, Command, Resolved, Target};
use super::result::AddResult;
use super::{format_cni_args, Attachment, CniCaller};

impl CniCaller {
    /// Run ADD on every plugin of the current network, in order, each getting the previous
    /// one's result; parse and cache the last result.
    ///
    /// May take as long as the plugins do (bounded per plugin by the plugin timeout).
    /// Cancelling (dropping) the future kills the running plugin but skips the rollback: the
    /// runtime's teardown DEL then cleans up, as it must after any failed sandbox start.
    pub async fn add(&self, att: &Attachment) -> Result<AddResult, CniError> {
        att.validate()?;
        let list = self.network()?;
        // Every binary first: a missing one fails before anything was allocated.
        let plugins = exec::resolve_all(&list, &self.config.bin_dirs)?;
        if !att.netns.exists() {
            return Err(CniError::InvalidAttachment {
                container_id: att.container_id.clone(),
                reason: format!(
                    "network namespace {} does not exist; ADD needs the sandbox's netns",
                    att.netns.display()
                ),
            });
        }
        let _guard = self.locks.lock(&att.container_id, &att.ifname).await;

        let cni_args = att.cni_args();
        let args = format_cni_args(&cni_args);
        let caps = att.capability_args();
        let target = Target {
            container_id: Some(&att.container_id),
            netns: Some(&att.netns),
            ifname: Some(&att.ifname),
            args: Some(&args),
        };

        let mut prev: Option<Value> = None;
        for (i, plugin) in plugins.iter().enumerate() {
            let stdin = exec::plugin_stdin(&list, &plugin.conf, prev.as_ref(), &caps, None);
            let step = exec::exec(
                plugin,
                Command::Add,
                target,
                stdin,
                &self.config.bin_dirs,
                self.plugin_timeout,
            )
            .await
            .and_then(|out| {
                // Checked per plugin, not just at the end: a garbled result would otherwise
                // be handed on as the next plugin's prevResult.
                AddResult::from_json(&out).map_err(|source| CniError::BadResult {
                    plugin: plugin.conf.plugin_type.clone(),
                    command: "ADD",
                    container_id: Some(att.container_id.clone()),
                    source,
                })
            });
            match step {
                Ok(result) => prev = Some(result.raw),
                Err(err) => {
                    self.rollback(&list, &plugins[..=i], target, prev.as_ref(), &caps)
                        .await;
                    return Err(err);
                }
            }
        }
        let raw = prev.expect("a validated list has at least one plugin");
        let result = AddResult::from_value(raw.clone()).expect("checked after each plugin");

        let entry = cache::Entry {
            path: cache::path(self.cache_dir(), &list.name, &att.container_id, &att.ifname),
            list: list.clone(),
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            netns: Some(att.netns.to_string_lossy().into_owned()),
            capability_args: caps.clone(),
            cni_args,
            result: Some(raw),
        };
        if let Err(err) = cache::write(self.cache_dir(), &entry) {
            // Without the cache a later DEL could not be exact; better not to leave it attached.
            self.rollback(&list, &plugins, target, Some(&result.raw), &caps)
                .await;
            return Err(err);
        }
        tracing::debug!(
            network = %list.name,
            container = %att.container_id,
            ip = ?result.pod_ips(&att.ifname).primary(),
            "CNI ADD done"
        );
        Ok(result)
    }

    /// DEL, in reverse, the plugins an ADD got to. Errors are logged, not returned: the ADD's
    /// error is the one the caller needs, and the runtime's teardown DEL retries.
    async fn rollback(
        &self,
        list: &NetworkConfigList,
        ran: &[Resolved],
        target: Target<'_>,
        prev: Option<&Value>,
        caps: &serde_json::Map<String, Value>,
    ) {
        let prev = if list.cni_version.has_check() {
            prev
        } else {
            None
        };
        for plugin in ran.iter().rev() {
            let stdin = exec::plugin_stdin(list, &plugin.conf, prev, caps, None);
            if let Err(err) = exec::exec(
                plugin,
                Command::Del,
                target,
                stdin,
                &self.config.bin_dirs,
                self.plugin_timeout,
            )
            .await
            {
                tracing::warn!(error = %err, "rolling back a failed CNI ADD");
            }
        }
    }
}
