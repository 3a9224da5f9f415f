//! The StatefulSet of shard nodes.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::names::{
    self, ADMIN_PORT, ADMIN_TOKEN_DIR, ADMIN_TOKEN_KEY, AUTH_DIR, DATA_DIR, DATA_PORT,
};
use super::tuning::{self, Tuning};
use super::{owner_reference, pod_settings};

/// User and group of the node image (distroless `nonroot`).
const NODE_UID: i64 = 65532;
use crate::crd::{ShardCluster, StorageSpec};
use crate::log_format::LogFormat;

/// Number of pods the StatefulSet must have.
///
/// Never fewer than the members that hold data in the committed placement
/// (StatefulSets remove the highest ordinals first), and never shrinking while
/// a member has not acknowledged the committed epoch.
pub fn replicas(
    cluster: &str,
    spec_replicas: i32,
    current: Option<i32>,
    data_holders: &BTreeSet<String>,
    all_acknowledged: bool,
) -> i32 {
    let floor = data_holders
        .iter()
        .filter_map(|m| names::ordinal(cluster, m))
        .map(|o| o.saturating_add(1))
        .max()
        .unwrap_or(0);
    let mut n = spec_replicas.max(floor);
    if !all_acknowledged && let Some(c) = current {
        n = n.max(c);
    }
    n
}

/// Storage the StatefulSet keeps: its volume claim templates are immutable,
/// so once it exists, what it was created with wins.
pub fn live_storage(sts: &StatefulSet) -> Option<StorageSpec> {
    let vct = sts.spec.volume_claim_templates.as_ref()?;
    let data = vct
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(names::DATA_VOLUME))?;
    let spec = data.spec.as_ref()?;
    let size = spec
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?
        .clone();
    Some(StorageSpec {
        size,
        storage_class_name: spec.storage_class_name.clone(),
    })
}

/// Whether two storage specs ask for the same volumes.
pub fn same_storage(a: &StorageSpec, b: &StorageSpec) -> bool {
    a.storage_class_name == b.storage_class_name && a.size.0.trim() == b.size.0.trim()
}

/// Arguments of the node container; `$(VAR)` is expanded by the kubelet.
pub fn node_args(
    cluster_uid: &str,
    password_file: Option<&str>,
    log_retention: std::time::Duration,
    tuning: &Tuning,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--data-dir",
        DATA_DIR,
        // Every interface of the pod's own network, as servers on a real cluster bind (so
        // `kubectl port-forward` reaches them); peers and the operator dial the pod IP.
        "--listen",
        &format!("0.0.0.0:{DATA_PORT}"),
        "--admin-listen",
        &format!("0.0.0.0:{ADMIN_PORT}"),
        "--member-name",
        "$(POD_NAME)",
        "--cluster-uid",
        cluster_uid,
        "--admin-token-file",
        &format!("{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}"),
        "--log-retention-secs",
        &log_retention.as_secs().max(1).to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(tuning.args());
    if let Some(p) = password_file {
        args.extend(["--password-file".to_string(), p.to_string()]);
    }
    args
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The StatefulSet of `cluster` with `replicas` pods and `storage` volumes;
/// nodes keep unread change-log records for `log_retention`, run with `tuning` and log in
/// `log_format` (the operator's own: one setting for every log the deployment writes).
pub fn statefulset(
    cluster: &ShardCluster,
    replicas: i32,
    storage: &StorageSpec,
    log_retention: std::time::Duration,
    tuning: &Tuning,
    log_format: LogFormat,
) -> StatefulSet {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let uid = cluster.uid().unwrap_or_default();
    let password_file = spec
        .auth
        .as_ref()
        .and_then(|a| a.password_secret_ref.as_ref())
        .map(|r| format!("{AUTH_DIR}/{}", r.key));

    let mut mounts = vec![
        VolumeMount {
            name: names::DATA_VOLUME.into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "admin-token".into(),
            mount_path: ADMIN_TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    let mut volumes = vec![Volume {
        name: "admin-token".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::admin_secret(&name)),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(r) = spec
        .auth
        .as_ref()
        .and_then(|a| a.password_secret_ref.as_ref())
    {
        mounts.push(VolumeMount {
            name: "auth".into(),
            mount_path: AUTH_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(Volume {
            name: "auth".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(r.name.clone()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    let resources = tuning::resources(spec.resources.as_ref(), tuning);

    let container = Container {
        name: "node".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().into()),
        args: Some(node_args(
            &uid,
            password_file.as_deref(),
            log_retention,
            tuning,
        )),
        env: Some(vec![
            field_env("POD_IP", "status.podIP"),
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            EnvVar {
                name: "RINGSHIFT_LOG_FORMAT".into(),
                value: Some(log_format.as_str().into()),
                ..Default::default()
            },
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("redis".into()),
                container_port: DATA_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/readyz".into()),
                port: IntOrString::String("admin".into()),
                scheme: Some("HTTP".into()),
                ..Default::default()
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let selector = names::selector_labels(&name);
    let pod_settings = spec.pod.as_ref();
    let mut pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        // The image's non-root user; fsGroup makes the volume writable for it. With
        // the container's settings this meets the PodSecurity `restricted` level.
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NODE_UID),
            run_as_group: Some(NODE_UID),
            fs_group: Some(NODE_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // Nodes never call the Kubernetes API: no token in their pods.
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(30),
        ..Default::default()
    };
    pod_settings::apply_scheduling(&name, pod_settings, &mut pod_spec);
    let mut storage_requests = BTreeMap::new();
    storage_requests.insert("storage".to_string(), Quantity(storage.size.0.clone()));

    StatefulSet {
        metadata: ObjectMeta {
            name: Some(names::statefulset(&name)),
            namespace: cluster.namespace(),
            labels: Some(names::labels(&name)),
            owner_references: owner_reference(cluster).map(|o| vec![o]),
            ..Default::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names::headless_service(&name)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(pod_settings::pod_metadata(&name, pod_settings)),
                spec: Some(pod_spec),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(names::DATA_VOLUME.into()),
                    labels: Some(selector),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(storage_requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AuthSpec, SecretKeyRef, ShardClusterSpec};

    fn cluster(spec_json: serde_json::Value) -> ShardCluster {
        let spec: ShardClusterSpec = serde_json::from_value(spec_json).unwrap();
        let mut c = ShardCluster::new("demo", spec);
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    fn holders(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn never_fewer_pods_than_members_holding_data() {
        // Scaling 5 -> 3 while demo-4 still owns ranges keeps all five pods.
        assert_eq!(
            replicas("demo", 3, Some(5), &holders(&["demo-0", "demo-4"]), true),
            5
        );
        // Once demo-3 and demo-4 own nothing and every node acknowledged, shrink.
        assert_eq!(
            replicas("demo", 3, Some(5), &holders(&["demo-0", "demo-2"]), true),
            3
        );
        // Not every node acknowledged the epoch: do not shrink yet.
        assert_eq!(
            replicas("demo", 3, Some(5), &holders(&["demo-0"]), false),
            5
        );
        // Scale-out is immediate.
        assert_eq!(
            replicas("demo", 5, Some(3), &holders(&["demo-0"]), false),
            5
        );
        // Holders of another cluster do not count.
        assert_eq!(replicas("demo", 1, None, &holders(&["other-7"]), true), 1);
    }

    #[test]
    fn node_pods_meet_the_restricted_pod_security_level() {
        let c = cluster(serde_json::json!({"replicas": 1}));
        let pod = statefulset(
            &c,
            1,
            &c.spec.storage,
            HOUR,
            &Tuning::default(),
            LogFormat::Text,
        )
        .spec
        .template
        .spec
        .unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(NODE_UID));
        assert_eq!(psc.fs_group, Some(NODE_UID));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        assert!(sc.privileged.is_none());
    }

    #[test]
    fn pods_bind_every_interface_and_carry_the_cluster_uid() {
        let c = cluster(serde_json::json!({"replicas": 3}));
        let sts = statefulset(
            &c,
            3,
            &c.spec.storage,
            HOUR,
            &Tuning::default(),
            LogFormat::Text,
        );
        let spec = sts.spec;
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            spec.update_strategy.unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        assert_eq!(spec.service_name.as_deref(), Some("demo-nodes"));
        let pod = spec.template.spec.unwrap();
        let node = &pod.containers[0];
        let args = node.args.clone().unwrap();
        assert_eq!(
            args,
            [
                "--data-dir",
                "/data",
                "--listen",
                "0.0.0.0:6379",
                "--admin-listen",
                "0.0.0.0:8080",
                "--member-name",
                "$(POD_NAME)",
                "--cluster-uid",
                "uid-1",
                "--admin-token-file",
                "/etc/ringshift/admin/token",
                "--log-retention-secs",
                "3600",
                "--cache-bytes",
                "268435456",
                "--memtable-bytes",
                "16777216",
                "--durability",
                "durable"
            ]
        );
        // No address but the wildcard: the pod's network namespace is its own.
        assert!(!args.iter().any(|a| a.contains("POD_IP")));
        let env = node.env.clone().unwrap();
        let pod_ip = env.iter().find(|e| e.name == "POD_IP").unwrap();
        assert_eq!(
            pod_ip
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "status.podIP"
        );
        let probe = node.readiness_probe.clone().unwrap().http_get.unwrap();
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        assert_eq!(probe.port, IntOrString::String("admin".into()));
        let owner = sts.metadata.owner_references.unwrap();
        assert_eq!(owner[0].uid, "uid-1");
        assert_eq!(owner[0].controller, Some(true));
    }

    #[test]
    fn storage_and_auth_come_from_the_spec() {
        let mut c = cluster(serde_json::json!({
            "storage": {"size": "5Gi", "storageClassName": "fast"},
        }));
        c.spec.auth = Some(AuthSpec {
            password_secret_ref: Some(SecretKeyRef {
                name: "pw".into(),
                key: "pass".into(),
            }),
        });
        let sts = statefulset(
            &c,
            3,
            &c.spec.storage,
            HOUR,
            &Tuning::default(),
            LogFormat::Text,
        );
        assert_eq!(live_storage(&sts), Some(c.spec.storage.clone()));
        let pod = sts.spec.template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.ends_with(&["--password-file".into(), "/etc/ringshift/auth/pass".into()]));
        assert!(
            pod.volumes
                .unwrap()
                .iter()
                .any(|v| v.secret.as_ref().unwrap().secret_name == Some("pw".into()))
        );
    }

    #[test]
    fn serialized_statefulset_carries_no_status() {
        let c = cluster(serde_json::json!({}));
        let v = serde_json::to_value(statefulset(
            &c,
            3,
            &c.spec.storage,
            HOUR,
            &Tuning::default(),
            LogFormat::Text,
        ))
        .unwrap();
        assert!(v.get("status").is_none());
    }

    fn pod_of(c: &ShardCluster, tuning: &Tuning) -> (ObjectMeta, PodSpec) {
        let t = statefulset(c, 3, &c.spec.storage, HOUR, tuning, LogFormat::Text)
            .spec
            .template;
        (t.metadata.unwrap(), t.spec.unwrap())
    }

    #[test]
    fn pod_settings_reach_the_pod_template() {
        let c = cluster(serde_json::json!({"pod": {
            "labels": {"team": "cache"},
            "annotations": {"example.com/owner": "sre"},
            "nodeSelector": {"disktype": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "cache",
                             "effect": "NoSchedule"}],
            "priorityClassName": "ringshift-critical",
            "imagePullSecrets": [{"name": "registry"}]
        }}));
        let (meta, pod) = pod_of(&c, &Tuning::default());
        let labels = meta.labels.unwrap();
        assert_eq!(labels["team"], "cache");
        for (k, v) in names::selector_labels("demo") {
            assert_eq!(labels[&k], v, "selector label {k}");
        }
        assert_eq!(meta.annotations.unwrap()["example.com/owner"], "sre");
        assert_eq!(pod.node_selector.unwrap()["disktype"], "ssd");
        let terms = pod
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms[0].match_expressions.as_ref().unwrap()[0].key, "zone");
        let tol = pod.tolerations.unwrap();
        assert_eq!(tol[0].key.as_deref(), Some("dedicated"));
        assert_eq!(tol[0].effect.as_deref(), Some("NoSchedule"));
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("ringshift-critical")
        );
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry");
        // The default spread stays when the user gives none.
        assert_eq!(
            pod.topology_spread_constraints.unwrap()[0].topology_key,
            "kubernetes.io/hostname"
        );
        // The security settings are the operator's, whatever spec.pod says.
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn without_pod_settings_only_the_operators_labels_and_the_default_spread() {
        let c = cluster(serde_json::json!({}));
        let (meta, pod) = pod_of(&c, &Tuning::default());
        assert_eq!(meta.labels, Some(names::labels("demo")));
        assert!(meta.annotations.is_none());
        assert!(pod.node_selector.is_none());
        assert!(pod.affinity.is_none());
        assert!(pod.tolerations.is_none());
        assert!(pod.priority_class_name.is_none());
        assert!(pod.image_pull_secrets.is_none());
        let spread = pod.topology_spread_constraints.unwrap();
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
        // Unset resources: requests sized from the tuning, no limit.
        let r = pod.containers[0].resources.clone().unwrap();
        let requests = r.requests.unwrap();
        assert_eq!(requests["cpu"].0, "100m");
        assert_eq!(requests["memory"].0, "704Mi");
        assert!(r.limits.is_none());
    }

    #[test]
    fn tuning_reaches_the_node_flags_and_the_memory_limit() {
        let c = cluster(serde_json::json!({"tuning": {
            "cacheBytes": "1Gi", "memtableBytes": "32Mi", "durability": "None"
        }}));
        let t = tuning::resolve(c.spec.tuning.as_ref()).unwrap();
        let (_, pod) = pod_of(&c, &t);
        let node = &pod.containers[0];
        let args = node.args.clone().unwrap();
        let flag = |f: &str| {
            let i = args.iter().position(|a| a == f).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(flag("--cache-bytes"), "1073741824");
        assert_eq!(flag("--memtable-bytes"), "33554432");
        assert_eq!(flag("--durability"), "none");
        // 1024Mi + 4 x 32Mi + 384Mi.
        let r = node.resources.clone().unwrap();
        assert_eq!(r.requests.unwrap()["memory"].0, "1536Mi");
    }

    #[test]
    fn a_changed_pod_setting_changes_the_template_and_nothing_else() {
        // A template change is what makes the StatefulSet a new revision, which the
        // operator rolls one pod at a time.
        let before = cluster(serde_json::json!({}));
        let after = cluster(serde_json::json!({"pod": {"tolerations": [
            {"key": "k", "operator": "Exists"}]}}));
        let t = Tuning::default();
        let a = statefulset(&before, 3, &before.spec.storage, HOUR, &t, LogFormat::Text).spec;
        let b = statefulset(&after, 3, &after.spec.storage, HOUR, &t, LogFormat::Text).spec;
        assert_ne!(a.template, b.template);
        assert_eq!(a.selector, b.selector);
        assert_eq!(a.volume_claim_templates, b.volume_claim_templates);
    }

    #[test]
    fn nodes_log_in_the_operators_format() {
        let c = cluster(serde_json::json!({}));
        let node = |format| {
            let sts = statefulset(&c, 3, &c.spec.storage, HOUR, &Tuning::default(), format);
            sts.spec.template.spec.unwrap().containers[0].clone()
        };
        let env_of = |n: &Container| -> Vec<Option<String>> {
            let env = n.env.clone().unwrap();
            env.into_iter()
                .filter(|e| e.name == "RINGSHIFT_LOG_FORMAT")
                .map(|e| e.value)
                .collect()
        };
        let (json, text) = (node(LogFormat::Json), node(LogFormat::Text));
        assert_eq!(env_of(&json), [Some("json".to_string())]);
        assert_eq!(env_of(&text), [Some("text".to_string())]);
        // Only that variable differs: the node's flags stay as they were.
        assert_eq!(json.args, text.args);
        assert!(!json.args.unwrap().iter().any(|a| a.contains("log-format")));
    }

    proptest::proptest! {
        /// Whatever the spec says, no member that holds data loses its pod, and a shrink
        /// waits for every acknowledgement.
        #[test]
        fn replicas_keep_every_data_holder(
            spec in 1i32..50,
            current in proptest::option::of(0i32..60),
            holders in proptest::collection::btree_set(0i32..60, 0..10),
            acked in proptest::bool::ANY,
        ) {
            let names: BTreeSet<String> = holders.iter().map(|o| names::member("demo", *o)).collect();
            let n = replicas("demo", spec, current, &names, acked);
            proptest::prop_assert!(n >= spec);
            for o in &holders {
                proptest::prop_assert!(n > *o, "demo-{} holds data but only {} pods", o, n);
            }
            if !acked && let Some(c) = current {
                proptest::prop_assert!(n >= c);
            }
            let floor = holders.iter().map(|o| o + 1).max().unwrap_or(0);
            if acked || current.is_none() {
                proptest::prop_assert_eq!(n, spec.max(floor));
            }
        }
    }
}
