//! Mapping of image store errors to gRPC status codes, by variant.

use deckhand_image::registry::RegistryError;
use deckhand_image::StoreError;
use tonic::{Code, Status};

/// The gRPC status for a store error. The message is the store's own (it names the image and
/// says what to do); the code tells the caller whether retrying or fixing the request helps.
pub fn status_from_store(error: &StoreError) -> Status {
    Status::new(code(error), error.to_string())
}

fn code(error: &StoreError) -> Code {
    match error {
        StoreError::Reference(_) | StoreError::AmbiguousId { .. } => Code::InvalidArgument,
        StoreError::ImageNotFound(_) => Code::NotFound,
        StoreError::InUse { .. } => Code::FailedPrecondition,
        StoreError::Registry(e) => registry_code(e),
        StoreError::Content(_)
        | StoreError::Manifest(_)
        | StoreError::Config(_)
        | StoreError::Snapshot(_)
        | StoreError::Metadata(_)
        | StoreError::Hosts(_)
        | StoreError::Auth(_)
        | StoreError::Layer { .. }
        | StoreError::InvalidImage { .. }
        | StoreError::Import { .. }
        | StoreError::Internal(_) => Code::Internal,
    }
}

fn registry_code(error: &RegistryError) -> Code {
    match error {
        RegistryError::Unauthorized { .. } => Code::Unauthenticated,
        RegistryError::Forbidden { .. } => Code::PermissionDenied,
        RegistryError::ManifestNotFound { .. } | RegistryError::BlobNotFound { .. } => {
            Code::NotFound
        }
        RegistryError::UnknownHost { .. }
        | RegistryError::Connect { .. }
        | RegistryError::Tls { .. } => Code::Unavailable,
        RegistryError::Status { status, .. } => match status {
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            408 | 429 | 500..=599 => Code::Unavailable,
            _ => Code::Internal,
        },
        RegistryError::ManifestDigestMismatch { .. } | RegistryError::Protocol { .. } => {
            Code::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_map_by_variant() {
        let not_found = StoreError::Registry(RegistryError::ManifestNotFound {
            reference: "127.0.0.1:5000/bb:nope".into(),
            registry: "127.0.0.1:5000".into(),
        });
        let status = status_from_store(&not_found);
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("127.0.0.1:5000/bb:nope"));

        let unauthorized = StoreError::Registry(RegistryError::Unauthorized {
            reference: "r/x:1".into(),
            registry: "r".into(),
            hint: "registries.yaml".into(),
        });
        assert_eq!(code(&unauthorized), Code::Unauthenticated);
        let connect = StoreError::Registry(RegistryError::Connect {
            reference: "r/x:1".into(),
            endpoint: "http://r".into(),
            message: "refused".into(),
        });
        assert_eq!(code(&connect), Code::Unavailable);
        let overloaded = StoreError::Registry(RegistryError::Status {
            reference: "r/x:1".into(),
            endpoint: "http://r".into(),
            status: 503,
            body: String::new(),
        });
        assert_eq!(code(&overloaded), Code::Unavailable);
        assert_eq!(code(&StoreError::ImageNotFound("x".into())), Code::NotFound);
    }
}
