//! GC: remove what the network holds for attachments that no longer exist, e.g. after the
//! runtime lost a sandbox in a crash. Cached attachments not in the valid list get a DEL (any
//! cniVersion); 1.1.0 plugins then also get GC with the valid list, to clean up what they hold
//! without a cache entry (IPs reserved by an ADD that was interrupted before it was cached).

use std::collections::HashSet;

use super::cache;
use super::error::CniError;
use super::exec::{self, Command, Target};
use super::{format_cni_args, Attachment, AttachmentKey, CniCaller};

impl CniCaller {
    /// Keep `valid` (every attachment of every sandbox the runtime still has), remove the rest.
    /// Runs every step even when one fails; the failures come back together in
    /// [`CniError::Gc`]. Must not run concurrently with an ADD whose sandbox is not in `valid`
    /// yet: that attachment would be collected.
    pub async fn gc(&self, valid: &[AttachmentKey]) -> Result<(), CniError> {
        let list = self.network()?;
        let keep: HashSet<(&str, &str)> = valid
            .iter()
            .map(|k| (k.container_id.as_str(), k.ifname.as_str()))
            .collect();
        let mut errors = Vec::new();

        for entry in cache::scan(self.cache_dir(), Some(&list.name), None)? {
            if keep.contains(&(entry.container_id.as_str(), entry.ifname.as_str())) {
                continue;
            }
            let att = Attachment {
                container_id: entry.container_id.clone(),
                ifname: entry.ifname.clone(),
                ..Attachment::default()
            };
            let _guard = self.locks.lock(&att.container_id, &att.ifname).await;
            let prev = if entry.list.cni_version.has_check() {
                entry.result.as_ref()
            } else {
                None
            };
            let args = format_cni_args(&entry.cni_args);
            // The sandbox is gone, so is its netns: DEL without one.
            let done = self
                .del_list(&entry.list, &att, None, &args, &entry.capability_args, prev)
                .await
                .and_then(|()| cache::remove(&entry.path));
            if let Err(e) = done {
                errors.push(e);
            }
        }

        if list.cni_version.has_status_and_gc() && !list.disable_gc {
            let plugins = exec::resolve_all(&list, &self.config.bin_dirs)?;
            let valid_json = serde_json::to_value(valid).expect("attachment keys serialize");
            let no_caps = serde_json::Map::new();
            for plugin in &plugins {
                let stdin = exec::plugin_stdin(
                    &list,
                    &plugin.conf,
                    None,
                    &no_caps,
                    Some(("cni.dev/valid-attachments", valid_json.clone())),
                );
                if let Err(e) = exec::exec(
                    plugin,
                    Command::Gc,
                    Target::default(),
                    stdin,
                    &self.config.bin_dirs,
                    self.plugin_timeout,
                )
                .await
                {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::Gc {
                network: list.name,
                errors,
            })
        }
    }
}
