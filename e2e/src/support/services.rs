//! Services of the cluster under test.

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};

use super::SupportError;

/// The clusterIP of the Service `name` in `api`'s namespace: the address pods reach it at.
pub async fn cluster_ip(api: &Api<Service>, name: &str) -> Result<String, SupportError> {
    let svc = api.get(name).await.map_err(|source| SupportError::Api {
        what: format!("get service {name}"),
        source,
    })?;
    svc.spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| SupportError::Other(format!("service {name} has no clusterIP")))
}

/// The clusterIP of `default/kubernetes`, where in-cluster clients reach the API server.
pub async fn api_server_ip(client: &Client) -> Result<String, SupportError> {
    cluster_ip(&Api::namespaced(client.clone(), "default"), "kubernetes").await
}
