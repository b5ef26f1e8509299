//! CHECK (0.4.0+): ask every plugin whether the attachment is still as the ADD left it.

use super::error::CniError;
use super::exec::{self, Command, Target};
use super::{cached_attachments, format_cni_args, Attachment, CniCaller};

impl CniCaller {
    /// Run CHECK on the plugins in order, each with the cached ADD result as prevResult and the
    /// cached config. `Ok` also when the network sets `disableCheck` (nothing is run then).
    /// Errors with [`CniError::NotAttached`] when there is no cached ADD to check against.
    pub async fn check(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let _guard = self.locks.lock(&att.container_id, &att.ifname).await;
        let current = self.network();
        let cached = cached_attachments(
            self.cache_dir(),
            current.as_ref().ok(),
            &att.container_id,
            &att.ifname,
        )?;
        let Some(entry) = cached.into_iter().next() else {
            return Err(CniError::NotAttached {
                network: current.map(|l| l.name).unwrap_or_default(),
                container_id: att.container_id.clone(),
                ifname: att.ifname.clone(),
                dir: self.cache_dir().join("results"),
            });
        };
        let list = &entry.list;
        if !list.cni_version.has_check() {
            return Err(CniError::Unsupported {
                network: list.name.clone(),
                version: list.cni_version.as_str(),
                command: "CHECK",
                hint: "CHECK needs cniVersion 0.4.0 or later",
            });
        }
        if list.disable_check {
            return Ok(());
        }
        let plugins = exec::resolve_all(list, &self.config.bin_dirs)?;
        let args = format_cni_args(&entry.cni_args);
        let target = Target {
            container_id: Some(&att.container_id),
            netns: Some(&att.netns),
            ifname: Some(&att.ifname),
            args: Some(&args),
        };
        for plugin in &plugins {
            let stdin = exec::plugin_stdin(
                list,
                &plugin.conf,
                entry.result.as_ref(),
                &entry.capability_args,
                None,
            );
            exec::exec(
                plugin,
                Command::Check,
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
