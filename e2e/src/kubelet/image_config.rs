//! The JSON documents of an image (manifest, index, config) and what the kubelet derives from
//! them: which layers to unpack, the command line (entrypoint/cmd overridden by the pod's
//! command/args as Kubernetes defines), and the user to run as.

use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The Accept header of a manifest request.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageConfigError {
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedManifest(String),
    #[error("unsupported layer media type {0:?}")]
    UnsupportedLayer(String),
    #[error("no manifest for linux/{0} in the image index")]
    NoPlatform(String),
    #[error(
        "image has no command: neither entrypoint/cmd in the image nor command/args in the pod"
    )]
    NoCommand,
    #[error("user {0:?}: not found in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?}: not found in the image's /etc/group")]
    UnknownGroup(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// A manifest is either one image or an index of per-platform images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index(Vec<Descriptor>),
}

/// Parses a manifest body; the media type comes from the body, else the Content-Type header.
pub fn parse_manifest(body: &[u8], content_type: &str) -> Result<Manifest, ImageConfigError> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| ImageConfigError::Malformed {
            what: "manifest",
            detail: e.to_string(),
        })?;
    let media = raw
        .media_type
        .clone()
        .unwrap_or_else(|| content_type.split(';').next().unwrap_or("").trim().into());
    match (media.as_str(), raw) {
        (
            OCI_MANIFEST | DOCKER_MANIFEST,
            RawManifest {
                config: Some(config),
                layers,
                ..
            },
        ) => Ok(Manifest::Image {
            config,
            layers: layers.unwrap_or_default(),
        }),
        (
            OCI_INDEX | DOCKER_LIST,
            RawManifest {
                manifests: Some(m), ..
            },
        ) => Ok(Manifest::Index(m)),
        (OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_LIST, _) => {
            Err(ImageConfigError::Malformed {
                what: "manifest",
                detail: format!("{media} without its config/layers or manifests"),
            })
        }
        (other, _) => Err(ImageConfigError::UnsupportedManifest(other.into())),
    }
}

/// The index entry for linux/`arch`.
pub fn pick_platform<'a>(
    entries: &'a [Descriptor],
    arch: &str,
) -> Result<&'a Descriptor, ImageConfigError> {
    entries
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .ok_or_else(|| ImageConfigError::NoPlatform(arch.into()))
}

/// This machine's architecture as images name it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

pub fn layer_compression(media_type: &str) -> Result<Compression, ImageConfigError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar" => Ok(Compression::None),
        other => Err(ImageConfigError::UnsupportedLayer(other.into())),
    }
}

/// The part of the image config that says how to run it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    config: Option<RunConfig>,
}

pub fn parse_config(body: &[u8]) -> Result<RunConfig, ImageConfigError> {
    let raw: RawConfig = serde_json::from_slice(body).map_err(|e| ImageConfigError::Malformed {
        what: "image config",
        detail: e.to_string(),
    })?;
    Ok(raw.config.unwrap_or_default())
}

/// Kubernetes' rule: `command` replaces the entrypoint (and drops the image's cmd); `args`
/// replaces the cmd.
pub fn command_line(
    image: &RunConfig,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, ImageConfigError> {
    let mut line: Vec<String> = if command.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        line.extend(args.iter().cloned());
    } else if command.is_empty() {
        line.extend(image.cmd.clone().unwrap_or_default());
    }
    if line.is_empty() {
        return Err(ImageConfigError::NoCommand);
    }
    Ok(line)
}

/// The image's `NAME=value` environment as pairs.
pub fn image_env(image: &RunConfig) -> Vec<(String, String)> {
    image
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Resolves the image's `User` (`uid`, `uid:gid`, `name`, `name:group`) with the image's own
/// /etc/passwd and /etc/group. Returns (uid, gid); an empty user is root.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<(u32, u32), ImageConfigError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() {
        return Ok((0, 0));
    }
    // passwd: name:x:uid:gid:...
    let by_user = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && (f[0] == u || f[2] == u)).then(|| (f[2].parse().ok(), f[3].parse().ok()))
    });
    let uid = match (u.parse::<u32>(), by_user) {
        (Ok(n), _) => n,
        (Err(_), Some((Some(n), _))) => n,
        _ => return Err(ImageConfigError::UnknownUser(u.into())),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g)
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
                .ok_or_else(|| ImageConfigError::UnknownGroup(g.into()))?,
        },
        // A numeric uid without a passwd entry runs with gid 0, as container runtimes do.
        None => by_user.and_then(|(_, gid)| gid).unwrap_or(0),
    };
    Ok((uid, gid))
}

/// The home directory of `uid` in an /etc/passwd, else `/` (what runtimes give a user
/// without an entry).
pub fn home_of(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn img() -> RunConfig {
        RunConfig {
            entrypoint: Some(s(&["/usr/local/bin/app"])),
            cmd: Some(s(&["serve"])),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_override_as_kubernetes_does() {
        assert_eq!(
            command_line(&img(), &[], &[]).unwrap(),
            s(&["/usr/local/bin/app", "serve"])
        );
        assert_eq!(
            command_line(&img(), &[], &s(&["run", "-v"])).unwrap(),
            s(&["/usr/local/bin/app", "run", "-v"])
        );
        assert_eq!(
            command_line(&img(), &s(&["/bin/x"]), &[]).unwrap(),
            s(&["/bin/x"])
        );
        assert_eq!(
            command_line(&img(), &s(&["/bin/x"]), &s(&["a"])).unwrap(),
            s(&["/bin/x", "a"])
        );
        assert_eq!(
            command_line(&RunConfig::default(), &[], &[]),
            Err(ImageConfigError::NoCommand)
        );
    }

    #[test]
    fn users_resolve_through_the_images_account_files() {
        let passwd =
            "root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n";
        let group = "root:x:0:\nnonroot:x:65532:\nstaff:x:50:\n";
        assert_eq!(resolve_user("", passwd, group), Ok((0, 0)));
        assert_eq!(
            resolve_user("65532:65532", passwd, group),
            Ok((65532, 65532))
        );
        assert_eq!(resolve_user("nonroot", passwd, group), Ok((65532, 65532)));
        assert_eq!(resolve_user("65532", passwd, group), Ok((65532, 65532)));
        assert_eq!(resolve_user("1000", passwd, group), Ok((1000, 0)));
        assert_eq!(
            resolve_user("nonroot:staff", passwd, group),
            Ok((65532, 50))
        );
        assert_eq!(home_of(passwd, 65532), "/home/nonroot");
        assert_eq!(home_of(passwd, 7), "/");
        assert!(matches!(
            resolve_user("nobody", passwd, group),
            Err(ImageConfigError::UnknownUser(_))
        ));
        assert!(matches!(
            resolve_user("0:wheel", passwd, group),
            Err(ImageConfigError::UnknownGroup(_))
        ));
    }

    #[test]
    fn manifests_and_indexes_parse() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":3},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l","size":9}]}"#;
        match parse_manifest(m, "").unwrap() {
            Manifest::Image { config, layers } => {
                assert_eq!(config.digest, "sha256:c");
                assert_eq!(layers.len(), 1);
                assert_eq!(
                    layer_compression(&layers[0].media_type),
                    Ok(Compression::Gzip)
                );
            }
            other => panic!("{other:?}"),
        }
        // No mediaType in the body: the Content-Type header says it.
        let idx = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"x","digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"arm64"}},
            {"mediaType":"x","digest":"sha256:b","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let Manifest::Index(entries) = parse_manifest(idx, OCI_INDEX).unwrap() else {
            panic!("an index")
        };
        assert_eq!(pick_platform(&entries, "amd64").unwrap().digest, "sha256:b");
        assert!(pick_platform(&entries, "s390x").is_err());
        assert!(matches!(
            parse_manifest(
                b"{}",
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            ),
            Err(ImageConfigError::UnsupportedManifest(_))
        ));
        assert!(layer_compression("application/vnd.oci.image.layer.v1.tar+zstd").is_err());
    }

    #[test]
    fn config_env_and_defaults() {
        let c = parse_config(br#"{"architecture":"amd64","config":{"Entrypoint":["/a"],"Env":["PATH=/bin","X=a=b"],"User":"65532:65532"}}"#).unwrap();
        assert_eq!(c.entrypoint, Some(s(&["/a"])));
        assert_eq!(
            image_env(&c),
            vec![("PATH".into(), "/bin".into()), ("X".into(), "a=b".into())]
        );
        assert_eq!(parse_config(b"{}").unwrap(), RunConfig::default());
    }
}
