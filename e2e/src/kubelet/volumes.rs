//! A pod's volumes as host directories: PVC directories that outlive the pod (one per claim,
//! exposed to the PV controller as a pre-bound hostPath PersistentVolume), Secret, ConfigMap,
//! projected and downward-API files, emptyDirs. The shim bind-mounts them at the mount paths.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Secret, ServiceAccount, Volume,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::env::{PodFacts, field_value};
use super::shim::BindMount;

pub const SA_TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume:?}: {what}: {source}")]
    Api {
        volume: String,
        what: String,
        source: kube::Error,
    },
    #[error("volume {volume:?}: {kind} {name:?} not found")]
    NotFound {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error("volume {volume:?}: key {key:?} not found")]
    KeyNotFound { volume: String, key: String },
    #[error(
        "volume {volume:?}: unsupported volume type (supported: persistentVolumeClaim, secret, configMap, projected, downwardAPI, emptyDir, hostPath)"
    )]
    Unsupported { volume: String },
    #[error("volume {volume:?}: path {path:?} must be relative and stay inside the volume")]
    BadPath { volume: String, path: String },
    #[error("volume {volume:?}: {path}: {source}")]
    Io {
        volume: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("volume {volume:?}: {detail}")]
    Field { volume: String, detail: String },
}

/// Where the harness keeps a PersistentVolume's data.
pub fn pv_dir(state_dir: &Path, pv_name: &str) -> PathBuf {
    state_dir.join("volumes").join(pv_name)
}

/// Materializes every volume of the pod; returns volume name -> host path.
pub async fn prepare(
    client: &Client,
    state_dir: &Path,
    pod_dir: &Path,
    facts: &PodFacts<'_>,
) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let ns = facts
        .pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out = HashMap::new();
    let volumes = facts
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in &volumes {
        let path = prepare_one(client, &ns, state_dir, pod_dir, facts, v).await?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

async fn prepare_one(
    client: &Client,
    ns: &str,
    state_dir: &Path,
    pod_dir: &Path,
    facts: &PodFacts<'_>,
    v: &Volume,
) -> Result<PathBuf, VolumeError> {
    let name = v.name.clone();
    let own_dir = pod_dir.join("volumes").join(&v.name);
    let io = |path: &Path, source| VolumeError::Io {
        volume: name.clone(),
        path: path.to_path_buf(),
        source,
    };
    if let Some(claim) = &v.persistent_volume_claim {
        return claim_dir(client, ns, state_dir, &v.name, &claim.claim_name).await;
    }
    if let Some(host) = &v.host_path {
        let path = PathBuf::from(&host.path);
        if !path.exists()
            && matches!(
                host.type_.as_deref(),
                None | Some("") | Some("DirectoryOrCreate")
            )
        {
            std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
        }
        return Ok(path);
    }
    if v.empty_dir.is_some() {
        if !own_dir.exists() {
            std::fs::create_dir_all(&own_dir).map_err(|e| io(&own_dir, e))?;
            // World-writable as the real kubelet makes it: any container user can write there.
            std::fs::set_permissions(&own_dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| io(&own_dir, e))?;
        }
        return Ok(own_dir);
    }
    let mut files = Files::new(&name);
    if let Some(s) = &v.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        match get::<Secret>(client, ns, &secret_name, &name).await? {
            Some(obj) => files.add_keys(
                secret_data(&obj),
                s.items.as_deref(),
                s.default_mode,
                s.optional,
            )?,
            None if s.optional == Some(true) => {}
            None => {
                return Err(VolumeError::NotFound {
                    volume: name,
                    kind: "secret",
                    name: secret_name,
                });
            }
        }
    } else if let Some(c) = &v.config_map {
        match get::<ConfigMap>(client, ns, &c.name, &name).await? {
            Some(obj) => files.add_keys(
                config_map_data(&obj),
                c.items.as_deref(),
                c.default_mode,
                c.optional,
            )?,
            None if c.optional == Some(true) => {}
            None => {
                return Err(VolumeError::NotFound {
                    volume: name,
                    kind: "configmap",
                    name: c.name.clone(),
                });
            }
        }
    } else if let Some(d) = &v.downward_api {
        files.add_downward(
            d.items.as_deref().unwrap_or_default(),
            d.default_mode,
            facts,
        )?;
    } else if let Some(p) = &v.projected {
        for src in p.sources.iter().flatten() {
            if let Some(s) = &src.secret {
                match get::<Secret>(client, ns, &s.name, &name).await? {
                    Some(obj) => files.add_keys(
                        secret_data(&obj),
                        s.items.as_deref(),
                        p.default_mode,
                        s.optional,
                    )?,
                    None if s.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::NotFound {
                            volume: name,
                            kind: "secret",
                            name: s.name.clone(),
                        });
                    }
                }
            }
            if let Some(c) = &src.config_map {
                match get::<ConfigMap>(client, ns, &c.name, &name).await? {
                    Some(obj) => files.add_keys(
                        config_map_data(&obj),
                        c.items.as_deref(),
                        p.default_mode,
                        c.optional,
                    )?,
                    None if c.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::NotFound {
                            volume: name,
                            kind: "configmap",
                            name: c.name.clone(),
                        });
                    }
                }
            }
            if let Some(d) = &src.downward_api {
                files.add_downward(
                    d.items.as_deref().unwrap_or_default(),
                    p.default_mode,
                    facts,
                )?;
            }
            if let Some(t) = &src.service_account_token {
                let sa = facts
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                // Bound to the pod, as a real kubelet does: the token dies with the pod, and the
                // apiserver extends the admission-injected 3607 s expiry (this kubelet does not
                // rotate tokens).
                let req = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: Some(t.audience.clone().into_iter().collect()),
                        expiration_seconds: t.expiration_seconds,
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Pod".into()),
                            name: facts.pod.metadata.name.clone(),
                            uid: facts.pod.metadata.uid.clone(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
                let token = api
                    .create_token_request(&sa, &PostParams::default(), &req)
                    .await
                    .map_err(|source| VolumeError::Api {
                        volume: name.clone(),
                        what: format!("token request for service account {sa:?}"),
                        source,
                    })?;
                let value = token.status.and_then(|s| s.token).unwrap_or_default();
                files.add(&t.path, value.into_bytes(), p.default_mode)?;
            }
        }
    } else {
        return Err(VolumeError::Unsupported { volume: name });
    }
    files.write_to(&own_dir)?;
    Ok(own_dir)
}

async fn get<K>(
    client: &Client,
    ns: &str,
    obj: &str,
    volume: &str,
) -> Result<Option<K>, VolumeError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.get_opt(obj).await.map_err(|source| VolumeError::Api {
        volume: volume.to_string(),
        what: format!("reading {} {obj:?}", K::kind(&())),
        source,
    })
}

pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

pub fn config_map_data(c: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = c
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in c.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

/// The directory of a claim. Claims already bound to a hostPath volume use its path; others get
/// a directory keyed by the claim's UID (a new claim of the same name starts empty) and a
/// PersistentVolume pre-bound to the claim so that the PV controller marks the claim Bound.
async fn claim_dir(
    client: &Client,
    ns: &str,
    state_dir: &Path,
    volume: &str,
    claim: &str,
) -> Result<PathBuf, VolumeError> {
    let pvc = get::<PersistentVolumeClaim>(client, ns, claim, volume)
        .await?
        .ok_or_else(|| VolumeError::NotFound {
            volume: volume.into(),
            kind: "persistentvolumeclaim",
            name: claim.into(),
        })?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let api_err = |what: String| {
        move |source| VolumeError::Api {
            volume: volume.to_string(),
            what,
            source,
        }
    };
    if let Some(bound) = spec.volume_name.as_deref().filter(|n| !n.is_empty()) {
        let pv = pvs
            .get_opt(bound)
            .await
            .map_err(api_err(format!("reading persistentvolume {bound:?}")))?;
        let dir = match pv.and_then(|pv| pv.spec).and_then(|s| s.host_path) {
            Some(h) => PathBuf::from(h.path),
            None => pv_dir(state_dir, bound),
        };
        std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Io {
            volume: volume.into(),
            path: dir.clone(),
            source,
        })?;
        return Ok(dir);
    }
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let pv_name = format!("pvc-{uid}");
    let dir = pv_dir(state_dir, &pv_name);
    std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Io {
        volume: volume.into(),
        path: dir.clone(),
        source,
    })?;
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": {"ringshift.dev/local-volume": "true"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": spec.storage_class_name.clone().unwrap_or_default(),
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": dir.to_string_lossy(), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim, "uid": uid}
        }
    }))
    .map_err(|e| VolumeError::Field { volume: volume.into(), detail: format!("building PersistentVolume: {e}") })?;
    match pvs.create(&PostParams::default(), &pv).await {
        Ok(_) => tracing::info!(pv = %pv_name, claim, ns, "created persistent volume"),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(source) => {
            return Err(VolumeError::Api {
                volume: volume.into(),
                what: format!("creating persistentvolume {pv_name:?}"),
                source,
            });
        }
    }
    Ok(dir)
}

/// Files of a Secret/ConfigMap/projected/downwardAPI volume, collected before writing.
struct Files {
    volume: String,
    entries: Vec<(PathBuf, Vec<u8>, u32)>,
}

const DEFAULT_MODE: i32 = 0o644;

impl Files {
    fn new(volume: &str) -> Self {
        Self {
            volume: volume.into(),
            entries: vec![],
        }
    }

    fn add(&mut self, rel: &str, data: Vec<u8>, mode: Option<i32>) -> Result<(), VolumeError> {
        let path = safe_relative(rel).ok_or_else(|| VolumeError::BadPath {
            volume: self.volume.clone(),
            path: rel.into(),
        })?;
        let mode = (mode.unwrap_or(DEFAULT_MODE) & 0o777) as u32;
        self.entries.retain(|(p, _, _)| *p != path);
        self.entries.push((path, data, mode));
        Ok(())
    }

    fn add_keys(
        &mut self,
        data: BTreeMap<String, Vec<u8>>,
        items: Option<&[KeyToPath]>,
        default_mode: Option<i32>,
        optional: Option<bool>,
    ) -> Result<(), VolumeError> {
        match items {
            None => data
                .into_iter()
                .try_for_each(|(k, v)| self.add(&k, v, default_mode)),
            Some(items) => items.iter().try_for_each(|item| match data.get(&item.key) {
                Some(v) => self.add(&item.path, v.clone(), item.mode.or(default_mode)),
                None if optional == Some(true) => Ok(()),
                None => Err(VolumeError::KeyNotFound {
                    volume: self.volume.clone(),
                    key: item.key.clone(),
                }),
            }),
        }
    }

    fn add_downward(
        &mut self,
        items: &[DownwardAPIVolumeFile],
        default_mode: Option<i32>,
        facts: &PodFacts<'_>,
    ) -> Result<(), VolumeError> {
        for item in items {
            let value = match &item.field_ref {
                Some(f) => field_value(&item.path, f, facts).map_err(|e| VolumeError::Field {
                    volume: self.volume.clone(),
                    detail: e.to_string(),
                })?,
                None => String::new(),
            };
            self.add(&item.path, value.into_bytes(), item.mode.or(default_mode))?;
        }
        Ok(())
    }

    /// Replaces the directory's content with the collected files.
    fn write_to(&self, dir: &Path) -> Result<(), VolumeError> {
        let io = |path: &Path, source| VolumeError::Io {
            volume: self.volume.clone(),
            path: path.to_path_buf(),
            source,
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        for (rel, data, mode) in &self.entries {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::write(&path, data).map_err(|e| io(&path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| io(&path, e))?;
        }
        Ok(())
    }
}

/// A path inside a volume: relative, no `..`, not empty.
pub fn safe_relative(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| p.to_path_buf())
}

/// The bind mounts of one container: each volumeMount (with subPath) onto its mount path.
pub fn mounts_for(
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<BindMount>, String> {
    let mut out = vec![];
    for m in container.volume_mounts.iter().flatten() {
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| format!("volumeMount {:?} refers to no volume of the pod", m.name))?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            None => base.clone(),
            Some(sub) => {
                let rel = safe_relative(sub)
                    .ok_or_else(|| format!("volumeMount {:?}: bad subPath {sub:?}", m.name))?;
                let p = base.join(rel);
                if !p.exists() {
                    std::fs::create_dir_all(&p)
                        .map_err(|e| format!("creating subPath {}: {e}", p.display()))?;
                }
                p
            }
        };
        if !m.mount_path.starts_with('/') {
            return Err(format!(
                "volumeMount {:?}: mountPath {:?} must be absolute",
                m.name, m.mount_path
            ));
        }
        out.push(BindMount {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: m.read_only == Some(true),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relative_paths_only() {
        assert!(safe_relative("token").is_some());
        assert!(safe_relative("a/b.txt").is_some());
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../x").is_none());
        assert!(safe_relative("").is_none());
    }

    #[test]
    fn key_files_respect_items_and_modes() {
        let dir = std::env::temp_dir().join(format!("vol-test-{}", std::process::id()));
        let mut f = Files::new("v");
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]);
        let items: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "b", "path": "sub/bee", "mode": 0o600}]))
                .unwrap();
        f.add_keys(data.clone(), Some(&items), None, None).unwrap();
        f.write_to(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("sub/bee")).unwrap(), b"2");
        assert!(!dir.join("a").exists());
        let mode = std::fs::metadata(dir.join("sub/bee"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let missing: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "zz", "path": "z"}])).unwrap();
        assert!(matches!(
            f.add_keys(data.clone(), Some(&missing), None, None),
            Err(VolumeError::KeyNotFound { .. })
        ));
        assert!(f.add_keys(data, Some(&missing), None, Some(true)).is_ok());
        let evil = BTreeMap::from([("../../x".to_string(), b"1".to_vec())]);
        assert!(matches!(
            Files::new("v").add_keys(evil, None, None, None),
            Err(VolumeError::BadPath { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mounts_follow_volume_mounts() {
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "token", "mountPath": SA_TOKEN_DIR, "readOnly": true}
        ]}))
        .unwrap();
        let vols = HashMap::from([
            ("data".to_string(), PathBuf::from("/s/d")),
            ("token".to_string(), PathBuf::from("/s/t")),
        ]);
        let m = mounts_for(&c, &vols).unwrap();
        assert_eq!(
            m[0],
            BindMount {
                source: "/s/d".into(),
                target: "/data".into(),
                read_only: false
            }
        );
        assert!(m[1].read_only);
        let bad: Container = serde_json::from_value(
            json!({"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
        )
        .unwrap();
        assert!(mounts_for(&bad, &vols).is_err());
    }
}
