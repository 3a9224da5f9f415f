//! A container's environment, built as the kubelet builds it: envFrom first, then env in order
//! (each value may use `$(VAR)` of the variables before it), downward-API fields, Secret and
//! ConfigMap keys. Pure: the Secrets and ConfigMaps it needs are fetched beforehand.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use ringshift_operator::k8s::quantity;

use super::expand::expand;

/// The Secrets and ConfigMaps of the pod's namespace that the container refers to. A name that
/// is absent was not found.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
}

/// Facts about the running pod that the downward API exposes.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: &'a str,
    /// The `default/kubernetes` Service's clusterIP and port (KUBERNETES_SERVICE_HOST/PORT).
    pub api_host: String,
    pub api_port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvError {
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("key {key:?} not found in {kind} {name:?}")]
    KeyNotFound {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("env var {var:?}: unsupported field path {path:?}")]
    FieldPath { var: String, path: String },
    #[error("env var {var:?}: unsupported resource {resource:?}")]
    Resource { var: String, resource: String },
    #[error("env var {var:?}: {detail}")]
    Invalid { var: String, detail: String },
}

/// The ordered environment of `container` (later entries override earlier ones).
pub fn build_env(
    container: &Container,
    facts: &PodFacts<'_>,
    sources: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env: Vec<(String, String)> = vec![
        ("KUBERNETES_SERVICE_HOST".into(), facts.api_host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), facts.api_port.to_string()),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS".into(),
            facts.api_port.to_string(),
        ),
    ];
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(data) => data
                    .iter()
                    .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v.clone())),
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(data) => data.iter().for_each(|(k, v)| {
                    set(
                        &mut env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                }),
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    Some(field_value(&var.name, f, facts)?)
                } else if let Some(r) = &from.resource_field_ref {
                    Some(resource_value(&var.name, r, container, facts)?)
                } else if let Some(s) = &from.secret_key_ref {
                    let found = match sources.secrets.get(&s.name) {
                        None => None,
                        Some(data) => match data.get(&s.key) {
                            Some(v) => Some(String::from_utf8_lossy(v).into_owned()),
                            None if s.optional == Some(true) => None,
                            None => {
                                return Err(EnvError::KeyNotFound {
                                    kind: "secret",
                                    name: s.name.clone(),
                                    key: s.key.clone(),
                                });
                            }
                        },
                    };
                    match found {
                        None if s.optional != Some(true)
                            && !sources.secrets.contains_key(&s.name) =>
                        {
                            return Err(EnvError::SecretNotFound(s.name.clone()));
                        }
                        other => other,
                    }
                } else if let Some(c) = &from.config_map_key_ref {
                    let found = match sources.config_maps.get(&c.name) {
                        None => None,
                        Some(data) => match data.get(&c.key) {
                            Some(v) => Some(v.clone()),
                            None if c.optional == Some(true) => None,
                            None => {
                                return Err(EnvError::KeyNotFound {
                                    kind: "configmap",
                                    name: c.name.clone(),
                                    key: c.key.clone(),
                                });
                            }
                        },
                    };
                    match found {
                        None if c.optional != Some(true)
                            && !sources.config_maps.contains_key(&c.name) =>
                        {
                            return Err(EnvError::ConfigMapNotFound(c.name.clone()));
                        }
                        other => other,
                    }
                } else {
                    return Err(EnvError::Invalid {
                        var: var.name.clone(),
                        detail: "valueFrom has no source".into(),
                    });
                }
            }
            (Some(v), None) => {
                let snapshot: HashMap<&str, &str> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Some(expand(v, |name| snapshot.get(name).map(|s| s.to_string())))
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

/// Expands `$(VAR)` in command and args with the final environment.
pub fn expand_args(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    items
        .iter()
        .map(|s| expand(s, |name| map.get(name).map(|v| v.to_string())))
        .collect()
}

/// Value of a downward-API field path (also used for downwardAPI volume files).
pub fn field_value(
    var: &str,
    f: &ObjectFieldSelector,
    facts: &PodFacts<'_>,
) -> Result<String, EnvError> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let path = f.field_path.as_str();
    let bracketed = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| k.to_string())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => facts.node_name.to_string(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        _ => {
            if let Some(k) = bracketed("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|m| m.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = bracketed("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|m| m.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(EnvError::FieldPath {
                    var: var.to_string(),
                    path: path.to_string(),
                });
            }
        }
    };
    Ok(value)
}

fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Node capacity reported for unset limits (the node object says the same).
pub const NODE_CPU: f64 = 2.0;
pub const NODE_MEMORY: f64 = 8.0 * 1024.0 * 1024.0 * 1024.0;

fn resource_value(
    var: &str,
    r: &ResourceFieldSelector,
    own: &Container,
    facts: &PodFacts<'_>,
) -> Result<String, EnvError> {
    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => own,
        Some(name) => facts
            .pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .find(|c| c.name == name)
            .ok_or_else(|| EnvError::Invalid {
                var: var.into(),
                detail: format!("no container {name:?}"),
            })?,
    };
    let (section, resource) = r
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError::Resource {
            var: var.into(),
            resource: r.resource.clone(),
        })?;
    let res = target.resources.as_ref();
    let map = match section {
        "limits" => res.and_then(|x| x.limits.as_ref()),
        "requests" => res.and_then(|x| x.requests.as_ref()),
        _ => {
            return Err(EnvError::Resource {
                var: var.into(),
                resource: r.resource.clone(),
            });
        }
    };
    let default = match resource {
        "cpu" => {
            if section == "limits" {
                NODE_CPU
            } else {
                0.0
            }
        }
        "memory" => {
            if section == "limits" {
                NODE_MEMORY
            } else {
                0.0
            }
        }
        "ephemeral-storage" => 0.0,
        _ => {
            return Err(EnvError::Resource {
                var: var.into(),
                resource: r.resource.clone(),
            });
        }
    };
    let parse = |q: &str| {
        parse_quantity(q).ok_or_else(|| EnvError::Invalid {
            var: var.into(),
            detail: format!("bad quantity {q:?}"),
        })
    };
    let amount = match map.and_then(|m| m.get(resource)) {
        Some(q) => parse(&q.0)?,
        None => default,
    };
    let divisor = match &r.divisor {
        Some(d) => parse(&d.0)?,
        None => 1.0,
    };
    if divisor <= 0.0 {
        return Err(EnvError::Invalid {
            var: var.into(),
            detail: "divisor must be positive".into(),
        });
    }
    // The kubelet rounds up, so a 250m CPU limit reads as 1 with the default divisor.
    Ok(format!("{}", (amount / divisor).ceil() as u64))
}

/// A non-negative Kubernetes quantity (`250m`, `1.5`, `64Mi`, `2G`, `1e3`), parsed by the
/// operator's own parser.
pub fn parse_quantity(q: &str) -> Option<f64> {
    quantity::parse(q.trim()).ok().filter(|v| *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"serviceAccountName": "runner", "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn facts(p: &Pod) -> PodFacts<'_> {
        PodFacts {
            pod: p,
            pod_ip: "127.0.0.12".into(),
            host_ip: "127.0.0.1".into(),
            node_name: "local",
            api_host: "127.15.0.1".into(),
            api_port: 443,
        }
    }

    #[test]
    fn downward_api_and_expansion() {
        let p = pod();
        let c = container(json!({"name": "c", "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "ADDR", "value": "$(POD_IP):6379"},
            {"name": "LATER_REF", "value": "$(DEFINED_LATER)"},
            {"name": "DEFINED_LATER", "value": "x"}
        ]}));
        let env = build_env(&c, &facts(&p), &Sources::default()).unwrap();
        assert_eq!(get(&env, "POD_IP"), Some("127.0.0.12"));
        assert_eq!(get(&env, "POD_NAME"), Some("web-0"));
        assert_eq!(get(&env, "POD_NAMESPACE"), Some("shop"));
        assert_eq!(get(&env, "APP"), Some("web"));
        assert_eq!(get(&env, "ADDR"), Some("127.0.0.12:6379"));
        assert_eq!(get(&env, "LATER_REF"), Some("$(DEFINED_LATER)"));
        // In-cluster clients reach the apiserver through the kubernetes Service.
        assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("127.15.0.1"));
        assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT"), Some("443"));
        let args = expand_args(&["--bind=$(POD_IP)".into(), "$$(POD_IP)".into()], &env);
        assert_eq!(args, vec!["--bind=127.0.0.12", "$(POD_IP)"]);
    }

    #[test]
    fn secrets_and_config_maps() {
        let p = pod();
        let mut s = Sources::default();
        s.secrets.insert(
            "auth".into(),
            BTreeMap::from([("password".into(), b"hunter2".to_vec())]),
        );
        s.config_maps.insert(
            "cfg".into(),
            BTreeMap::from([("MODE".into(), "fast".into())]),
        );
        let c = container(json!({"name": "c",
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "auth"}, "prefix": "S_"}],
        "env": [
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
            {"name": "M2", "value": "$(MODE)-2"}
        ]}));
        let env = build_env(&c, &facts(&p), &s).unwrap();
        assert_eq!(get(&env, "MODE"), Some("fast"));
        assert_eq!(get(&env, "S_password"), Some("hunter2"));
        assert_eq!(get(&env, "PASS"), Some("hunter2"));
        assert_eq!(get(&env, "OPT"), None);
        assert_eq!(get(&env, "M2"), Some("fast-2"));
    }

    #[test]
    fn missing_sources_are_errors() {
        let p = pod();
        let c = container(json!({"name": "c", "env": [
            {"name": "P", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password"}}}]}));
        assert_eq!(
            build_env(&c, &facts(&p), &Sources::default()),
            Err(EnvError::SecretNotFound("auth".into()))
        );
        let mut s = Sources::default();
        s.secrets.insert("auth".into(), BTreeMap::new());
        assert!(matches!(
            build_env(&c, &facts(&p), &s),
            Err(EnvError::KeyNotFound { .. })
        ));
        let c = container(json!({"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}));
        assert_eq!(
            build_env(&c, &facts(&p), &s),
            Err(EnvError::ConfigMapNotFound("cfg".into()))
        );
        let c = container(
            json!({"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
        );
        assert!(matches!(
            build_env(&c, &facts(&p), &s),
            Err(EnvError::FieldPath { .. })
        ));
    }

    #[test]
    fn resource_fields_round_up() {
        let p = pod();
        let c = container(
            json!({"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}, "env": [
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
            ]}),
        );
        let env = build_env(&c, &facts(&p), &Sources::default()).unwrap();
        assert_eq!(get(&env, "CPU"), Some("1"));
        assert_eq!(get(&env, "MEM"), Some("64"));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2x"), None);
        assert_eq!(parse_quantity("-1"), None);
    }
}
