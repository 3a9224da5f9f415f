//! Pulling images from a registry by the OCI distribution API and keeping their unpacked root
//! filesystems, one per manifest digest, under `$STATE/images/`:
//!
//! - `<hex>/rootfs/` the layers applied in order, `<hex>/config.json` the image's run config;
//!   a directory is renamed into place only when complete;
//! - `refs/<reference>` the manifest digest a tag last resolved to (IfNotPresent reuses it).
//!
//! Pulls run one at a time (a lock), so two pods of one image unpack it once.

use std::path::{Path, PathBuf};

use super::digest::{self, DigestError};
use super::image_config::{
    self, ACCEPT, Compression, ImageConfigError, Manifest, RunConfig, host_arch,
};
use super::image_ref::ImageRef;
use super::unpack::{self, UnpackError};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{what} not found in registry {registry} ({url} answered 404)")]
    NotFound {
        what: String,
        registry: String,
        url: String,
    },
    #[error("registry {registry} answered {status} for {url}: {body}")]
    Status {
        registry: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("registry {registry} unreachable: {source}")]
    Http {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "registry {0} is not on loopback: this kubelet speaks plain HTTP only (no TLS, no auth)"
    )]
    NotLoopback(String),
    #[error("{what}: {source}")]
    Digest {
        what: String,
        #[source]
        source: DigestError,
    },
    #[error(transparent)]
    Image(#[from] ImageConfigError),
    #[error("unpacking layer {layer}: {source}")]
    Unpack {
        layer: String,
        #[source]
        source: UnpackError,
    },
    #[error("image cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image is not present on the node and imagePullPolicy is Never")]
    NeverPull,
}

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Manifest digest (of the platform's image, not of an index).
    pub digest: String,
    pub rootfs: PathBuf,
    pub config: RunConfig,
}

pub struct ImageStore {
    dir: PathBuf,
    http: reqwest::Client,
    lock: tokio::sync::Mutex<()>,
}

/// A tag or digest as a file name: everything but `[A-Za-z0-9._-]` becomes `_`.
pub fn ref_file_name(image: &ImageRef) -> String {
    image
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl ImageStore {
    pub fn new(dir: PathBuf, http: reqwest::Client) -> Self {
        Self {
            dir,
            http,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The image's root filesystem, pulled as `policy` (a container's imagePullPolicy) says.
    pub async fn ensure(&self, image: &ImageRef, policy: &str) -> Result<Pulled, PullError> {
        let _one_at_a_time = self.lock.lock().await;
        let local = self.local_digest(image);
        let cached = local.as_deref().and_then(|d| self.load(d));
        match (policy, cached) {
            ("Never", cached) => cached.ok_or(PullError::NeverPull),
            ("IfNotPresent", Some(cached)) => Ok(cached),
            // Always (and IfNotPresent without a local copy): ask the registry what the tag
            // names now; layers are fetched only for a digest not unpacked yet.
            _ => self.pull(image).await,
        }
    }

    /// The digest this reference names locally: its own digest, or what its tag resolved to.
    fn local_digest(&self, image: &ImageRef) -> Option<String> {
        image.digest.clone().or_else(|| {
            std::fs::read_to_string(self.dir.join("refs").join(ref_file_name(image)))
                .ok()
                .map(|s| s.trim().to_string())
        })
    }

    fn image_dir(&self, digest: &str) -> PathBuf {
        self.dir.join(digest::hex_part(digest))
    }

    fn load(&self, digest: &str) -> Option<Pulled> {
        let dir = self.image_dir(digest);
        let config: RunConfig =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
        Some(Pulled {
            digest: digest.to_string(),
            rootfs: dir.join("rootfs"),
            config,
        })
    }

    async fn pull(&self, image: &ImageRef) -> Result<Pulled, PullError> {
        if !image.is_loopback() {
            return Err(PullError::NotLoopback(image.registry.clone()));
        }
        let (mut body, mut ctype) = self.manifest(image, image.reference()).await?;
        // A reference by digest names what the registry answers first (an index, possibly).
        if let Some(want) = &image.digest {
            digest::verify(want, &body).map_err(|source| PullError::Digest {
                what: format!("manifest of {image}"),
                source,
            })?;
        }
        let mut parsed = image_config::parse_manifest(&body, &ctype)?;
        if let Manifest::Index(entries) = &parsed {
            let entry = image_config::pick_platform(entries, host_arch())?.clone();
            (body, ctype) = self.manifest(image, &entry.digest).await?;
            digest::verify(&entry.digest, &body).map_err(|source| PullError::Digest {
                what: format!("manifest {}", entry.digest),
                source,
            })?;
            parsed = image_config::parse_manifest(&body, &ctype)?;
        }
        let Manifest::Image { config, layers } = parsed else {
            return Err(ImageConfigError::Malformed {
                what: "manifest",
                detail: "an index inside an index".into(),
            }
            .into());
        };
        let manifest_digest = digest::sha256(&body);
        if let Some(have) = self.load(&manifest_digest) {
            self.remember(image, &manifest_digest)?;
            return Ok(have);
        }
        let config_blob = self.blob(image, &config.digest).await?;
        let run = image_config::parse_config(&config_blob)?;
        let final_dir = self.image_dir(&manifest_digest);
        let tmp = self.dir.join(format!(
            "{}.partial-{}",
            digest::hex_part(&manifest_digest),
            std::process::id()
        ));
        let cache_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PullError::Cache { path, source }
        };
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(cache_err(&tmp))?;
        }
        let rootfs = tmp.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(cache_err(&rootfs))?;
        for layer in &layers {
            let compression = image_config::layer_compression(&layer.media_type)?;
            let blob = self.blob(image, &layer.digest).await?;
            let root = rootfs.clone();
            let name = layer.digest.clone();
            tokio::task::spawn_blocking(move || match compression {
                Compression::Gzip => {
                    unpack::apply_layer(&root, flate2::read::GzDecoder::new(&blob[..]))
                }
                Compression::None => unpack::apply_layer(&root, &blob[..]),
            })
            .await
            .map_err(|e| PullError::Cache {
                path: rootfs.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|source| PullError::Unpack {
                layer: name,
                source,
            })?;
        }
        let config_json = serde_json::to_vec(&run).map_err(|e| PullError::Cache {
            path: tmp.join("config.json"),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(tmp.join("config.json"), config_json).map_err(cache_err(&tmp))?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(cache_err(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(cache_err(&final_dir))?;
        self.remember(image, &manifest_digest)?;
        self.load(&manifest_digest).ok_or_else(|| PullError::Cache {
            path: final_dir,
            source: std::io::Error::other("unreadable right after unpacking"),
        })
    }

    fn remember(&self, image: &ImageRef, digest: &str) -> Result<(), PullError> {
        let refs = self.dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|source| PullError::Cache {
            path: refs.clone(),
            source,
        })?;
        let path = refs.join(ref_file_name(image));
        std::fs::write(&path, digest).map_err(|source| PullError::Cache { path, source })
    }

    fn url(image: &ImageRef, kind: &str, reference: &str) -> String {
        format!(
            "http://{}/v2/{}/{kind}/{reference}",
            image.registry, image.repository
        )
    }

    async fn get(
        &self,
        image: &ImageRef,
        url: &str,
        what: String,
        accept: Option<&str>,
    ) -> Result<(Vec<u8>, String), PullError> {
        let http_err = |source| PullError::Http {
            registry: image.registry.clone(),
            source,
        };
        let mut req = self.http.get(url);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        let resp = req.send().await.map_err(http_err)?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.bytes().await.map_err(http_err)?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(PullError::NotFound {
                what,
                registry: image.registry.clone(),
                url: url.into(),
            });
        }
        if !status.is_success() {
            return Err(PullError::Status {
                registry: image.registry.clone(),
                url: url.into(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            });
        }
        Ok((body.to_vec(), ctype))
    }

    async fn manifest(
        &self,
        image: &ImageRef,
        reference: &str,
    ) -> Result<(Vec<u8>, String), PullError> {
        let url = Self::url(image, "manifests", reference);
        self.get(
            image,
            &url,
            format!("manifest {}:{reference}", image.repository),
            Some(ACCEPT),
        )
        .await
    }

    /// A blob, checked against its digest.
    async fn blob(&self, image: &ImageRef, digest: &str) -> Result<Vec<u8>, PullError> {
        let url = Self::url(image, "blobs", digest);
        let (body, _) = self
            .get(image, &url, format!("blob {digest}"), None)
            .await?;
        digest::verify(digest, &body).map_err(|source| PullError::Digest {
            what: format!("blob {digest}"),
            source,
        })?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_file_names_are_flat_and_distinct() {
        let a = super::super::image_ref::parse("127.0.0.1:15006/ringshift-node:dev")
            .unwrap()
            .unwrap();
        let b = super::super::image_ref::parse("127.0.0.1:15006/ringshift-node:dev2")
            .unwrap()
            .unwrap();
        assert_eq!(ref_file_name(&a), "127.0.0.1_15006_ringshift-node_dev");
        assert_ne!(ref_file_name(&a), ref_file_name(&b));
        assert!(!ref_file_name(&a).contains('/'));
    }
}
