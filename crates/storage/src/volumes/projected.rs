//! projected: configMap, secret, downwardAPI and serviceAccountToken sources merged into one
//! atomic-writer payload on a tmpfs. Two sources writing the same path is an error (the API
//! server rejects it too; a kubelet fed from static manifests must not silently pick one).

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource};

use super::objects::{config_map_files, secret_files, DEFAULT_MODE};
use super::{downward_api, LookupError, VolumeContext, VolumeError};
use crate::atomic_writer::{FileProjection, Payload};

pub(super) fn payload(
    pod: &Pod,
    src: &ProjectedVolumeSource,
    ctx: &VolumeContext<'_>,
    context: &str,
) -> Result<Payload, VolumeError> {
    let default_mode = src.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    let mut owner: Vec<(String, String)> = Vec::new();
    for (i, source) in src.sources.iter().flatten().enumerate() {
        let (what, files) = if let Some(cm) = &source.config_map {
            let files = config_map_files(
                pod,
                &cm.name,
                cm.items.as_deref(),
                default_mode,
                cm.optional.unwrap_or(false),
                ctx.objects,
                context,
            )?;
            (
                format!("configMap {:?}", cm.name),
                files.unwrap_or_default(),
            )
        } else if let Some(s) = &source.secret {
            let files = secret_files(
                pod,
                &s.name,
                s.items.as_deref(),
                default_mode,
                s.optional.unwrap_or(false),
                ctx.objects,
                context,
            )?;
            (format!("secret {:?}", s.name), files.unwrap_or_default())
        } else if let Some(d) = &source.downward_api {
            let files = downward_api::items_payload(
                pod,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                &ctx.node_allocatable,
                context,
            )?;
            ("downwardAPI".to_string(), files)
        } else if let Some(t) = &source.service_account_token {
            let token =
                ctx.objects
                    .service_account_token(pod, t)
                    .map_err(|source: LookupError| VolumeError::Lookup {
                        context: context.to_string(),
                        source,
                    })?;
            let run_as_user = pod
                .spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|s| s.run_as_user)
                .map(|u| u as u32);
            // Upstream: a token owned by the pod's user, or guarded by an fsGroup, is 0600.
            let mode = if run_as_user.is_some() || ctx.fs_group.is_some() {
                0o600
            } else {
                default_mode as u32
            };
            let mut files = Payload::new();
            files.insert(
                t.path.clone(),
                FileProjection {
                    data: token,
                    mode,
                    fs_user: run_as_user,
                },
            );
            ("serviceAccountToken".to_string(), files)
        } else {
            return Err(VolumeError::Invalid {
                context: context.to_string(),
                message: format!(
                    "projected source {i} has no supported source (configMap, secret, downwardAPI, serviceAccountToken)"
                ),
            });
        };
        for (path, file) in files {
            if let Some((_, first)) = owner.iter().find(|(p, _)| *p == path) {
                return Err(VolumeError::Invalid {
                    context: context.to_string(),
                    message: format!(
                        "conflicting duplicate paths: {path:?} is projected by both {first} and {what}"
                    ),
                });
            }
            owner.push((path.clone(), what.clone()));
            payload.insert(path, file);
        }
    }
    Ok(payload)
}
