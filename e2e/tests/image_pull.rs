//! The process kubelet's image pulls against a registry served in the test (no cluster): layers
//! applied with whiteouts, blobs checked against their digests, pull policies. Binds
//! 127.K.7.1 (K = RINGSHIFT_TEST_NET, default 0).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ringshift_e2e::kubelet::digest::sha256;
use ringshift_e2e::kubelet::image_ref;
use ringshift_e2e::kubelet::image_store::{ImageStore, PullError};
use serde_json::json;

fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        // Owned by whoever runs the test: unpacking keeps ownerships, and only root may give
        // files to someone else (the unit tier runs without root).
        let me = std::fs::metadata("/proc/self").unwrap();
        h.set_uid(std::os::unix::fs::MetadataExt::uid(&me).into());
        h.set_gid(std::os::unix::fs::MetadataExt::gid(&me).into());
        h.set_mtime(0);
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

#[derive(Default)]
struct Registry {
    /// "repo:reference" -> manifest body
    manifests: HashMap<String, Vec<u8>>,
    /// digest -> blob (possibly not matching, to test verification)
    blobs: HashMap<String, Vec<u8>>,
    manifest_gets: AtomicUsize,
    blob_gets: AtomicUsize,
}

impl Registry {
    /// Adds an image of `layers` under repo:tag; returns the manifest digest.
    fn add(&mut self, repo: &str, tag: &str, layers: &[Vec<u8>], entrypoint: &str) -> String {
        let layer_descs: Vec<_> = layers
            .iter()
            .map(|l| {
                let d = sha256(l);
                self.blobs.insert(d.clone(), l.clone());
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": l.len()})
            })
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": [entrypoint], "User": "65532:65532", "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let config_digest = sha256(&config);
        self.blobs.insert(config_digest.clone(), config.clone());
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layer_descs,
        }))
        .unwrap();
        let digest = sha256(&manifest);
        self.manifests
            .insert(format!("{repo}:{tag}"), manifest.clone());
        self.manifests.insert(format!("{repo}:{digest}"), manifest);
        digest
    }
}

async fn manifest(
    State(r): State<Arc<Registry>>,
    Path((repo, reference)): Path<(String, String)>,
) -> Response {
    r.manifest_gets.fetch_add(1, Ordering::SeqCst);
    match r.manifests.get(&format!("{repo}:{reference}")) {
        Some(m) => (
            [(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.manifest.v1+json",
            )],
            m.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn blob(
    State(r): State<Arc<Registry>>,
    Path((_repo, digest)): Path<(String, String)>,
) -> Response {
    r.blob_gets.fetch_add(1, Ordering::SeqCst);
    match r.blobs.get(&digest) {
        Some(b) => b.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(reg: Registry) -> (String, Arc<Registry>) {
    let net: u8 = std::env::var("RINGSHIFT_TEST_NET")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(format!("127.{net}.7.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let reg = Arc::new(reg);
    let app = Router::new()
        .route("/v2/{repo}/manifests/{reference}", get(manifest))
        .route("/v2/{repo}/blobs/{digest}", get(blob))
        .with_state(reg.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, reg)
}

fn store(name: &str) -> (ImageStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("image-pull-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    (ImageStore::new(dir.clone(), http), dir)
}

#[tokio::test]
async fn pulls_layers_with_whiteouts_and_honours_pull_policies() {
    let mut reg = Registry::default();
    let lower = layer(&[
        ("bin/app", b"v1"),
        ("bin/old-tool", b"x"),
        ("var/cache/a", b"a"),
    ]);
    let upper = layer(&[
        ("bin/.wh.old-tool", b""),
        ("var/cache/.wh..wh..opq", b""),
        ("var/cache/b", b"b"),
    ]);
    let digest = reg.add("app", "v1", &[lower, upper], "/bin/app");
    let (addr, reg) = serve(reg).await;
    let (store, dir) = store("policies");
    let image = image_ref::parse(&format!("{addr}/app:v1"))
        .unwrap()
        .unwrap();

    let pulled = store.ensure(&image, "IfNotPresent").await.unwrap();
    assert_eq!(pulled.digest, digest);
    let root = &pulled.rootfs;
    assert_eq!(std::fs::read(root.join("bin/app")).unwrap(), b"v1");
    assert!(!root.join("bin/old-tool").exists(), "whiteout applied");
    assert!(
        !root.join("var/cache/a").exists(),
        "opaque dir hid the lower entry"
    );
    assert_eq!(std::fs::read(root.join("var/cache/b")).unwrap(), b"b");
    assert_eq!(pulled.config.entrypoint, Some(vec!["/bin/app".to_string()]));
    assert_eq!(pulled.config.user.as_deref(), Some("65532:65532"));
    let (m, b) = (
        reg.manifest_gets.load(Ordering::SeqCst),
        reg.blob_gets.load(Ordering::SeqCst),
    );
    assert_eq!((m, b), (1, 3), "one manifest, config and two layers");

    // IfNotPresent: nothing asked of the registry. Always: the manifest only (digest cached).
    store.ensure(&image, "IfNotPresent").await.unwrap();
    assert_eq!(reg.manifest_gets.load(Ordering::SeqCst), 1);
    let again = store.ensure(&image, "Always").await.unwrap();
    assert_eq!(again.digest, digest);
    assert_eq!(reg.manifest_gets.load(Ordering::SeqCst), 2);
    assert_eq!(reg.blob_gets.load(Ordering::SeqCst), 3);
    // By digest, too.
    let by_digest = image_ref::parse(&format!("{addr}/app@{digest}"))
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .ensure(&by_digest, "IfNotPresent")
            .await
            .unwrap()
            .digest,
        digest
    );

    // Never with nothing cached, and a missing tag.
    let other = image_ref::parse(&format!("{addr}/app:v2"))
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.ensure(&other, "Never").await,
        Err(PullError::NeverPull)
    ));
    let err = store.ensure(&other, "IfNotPresent").await.unwrap_err();
    assert!(matches!(err, PullError::NotFound { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_refused() {
    let mut reg = Registry::default();
    let good = layer(&[("bin/app", b"v1")]);
    reg.add("app", "v1", std::slice::from_ref(&good), "/bin/app");
    // The registry serves other bytes under the layer's digest.
    let tampered = layer(&[("bin/app", b"evil")]);
    reg.blobs.insert(sha256(&good), tampered);
    let (addr, _reg) = serve(reg).await;
    let (store, dir) = store("tampered");
    let image = image_ref::parse(&format!("{addr}/app:v1"))
        .unwrap()
        .unwrap();
    let err = store.ensure(&image, "IfNotPresent").await.unwrap_err();
    assert!(matches!(err, PullError::Digest { .. }), "{err}");
    assert!(
        !dir.join(ringshift_e2e::kubelet::digest::hex_part(&sha256(&good)))
            .exists()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
