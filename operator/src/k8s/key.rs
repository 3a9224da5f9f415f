//! The namespace and name that identify one object, and the API scoped to its namespace.

use std::fmt;

use k8s_openapi::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};

use super::error::Error;

/// Namespace and name of an object (all ringshift kinds are namespaced).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of `obj`, which must have a namespace.
    pub fn of(obj: &impl ResourceExt) -> Result<ObjectKey, Error> {
        let name = obj.name_any();
        match obj.namespace() {
            Some(ns) => Ok(ObjectKey::new(ns, name)),
            None => Err(Error::NoNamespace(name)),
        }
    }

    /// The key of `obj` for logs and backoff, with an empty namespace when it has none.
    pub fn lossy(obj: &impl ResourceExt) -> ObjectKey {
        ObjectKey::new(obj.namespace().unwrap_or_default(), obj.name_any())
    }

    /// This object's kind `K` in its namespace, through `client`.
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        scoped(client, &self.namespace)
    }
}

/// The kind `K` in namespace `ns`, through `client`.
pub fn scoped<K>(client: &Client, ns: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    Api::namespaced(client.clone(), ns)
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;

    fn pod(ns: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: ns.map(Into::into),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_key_reads_namespace_slash_name() {
        let key = ObjectKey::of(&pod(Some("shop"))).expect("namespaced");
        assert_eq!(key, ObjectKey::new("shop", "web-0"));
        assert_eq!(key.to_string(), "shop/web-0");
    }

    #[test]
    fn an_object_without_a_namespace_has_no_key_but_a_lossy_one() {
        assert!(matches!(
            ObjectKey::of(&pod(None)),
            Err(Error::NoNamespace(n)) if n == "web-0"
        ));
        assert_eq!(ObjectKey::lossy(&pod(None)).to_string(), "/web-0");
    }
}
