//! The admin-token Secret. Created once with a random token and never
//! rewritten, so node restarts and operator failovers keep the same token.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::names::{self, ADMIN_TOKEN_KEY};
use super::owner_reference;
use crate::crd::ShardCluster;

/// A token that can not be printed by accident.
pub struct AdminToken(String);

impl AdminToken {
    /// 32 random bytes from the OS, hex-encoded.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The Secret holding `token`.
pub fn admin_secret(cluster: &ShardCluster, token: &AdminToken) -> Secret {
    let name = cluster.name_any();
    Secret {
        metadata: ObjectMeta {
            name: Some(names::admin_secret(&name)),
            namespace: cluster.namespace(),
            labels: Some(names::labels(&name)),
            owner_references: owner_reference(cluster).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_KEY.to_string(),
            ByteString(token.0.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_never_printed() {
        let a = AdminToken::generate().unwrap();
        let b = AdminToken::generate().unwrap();
        assert_ne!(a.0, b.0);
        assert_eq!(a.0.len(), 64);
        assert!(!format!("{a:?}").contains(&a.0));
        let c = ShardCluster::new("demo", serde_json::from_str("{}").unwrap());
        let s = admin_secret(&c, &a);
        assert_eq!(s.metadata.name.as_deref(), Some("demo-admin-token"));
        assert_eq!(s.data.unwrap()["token"].0, a.0.as_bytes());
    }
}
