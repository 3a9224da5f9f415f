//! Harness images: a reference without a registry (`ringshift-testpod:dev`, and the
//! ShardCluster default `ringshift-node:<version>` that operator tests use) maps to a binary
//! built from this workspace, run on the host's tree; a command whose program is a workspace
//! binary is looked up the same way. References that name a registry are pulled instead
//! (`image_store`).

use std::path::{Path, PathBuf};

/// Image repository (the name without registry, tag or digest) -> binary in the bin dir.
pub const IMAGE_TABLE: &[(&str, &str)] = &[
    ("ringshift-node", "ringshift-node"),
    ("ringshift-operator", "ringshift-operator"),
    ("ringshift-kubectl-plugin", "ringshift-kubectl-plugin"),
    ("ringshift-load", "ringshift-load"),
    ("ringshift-testpod", "ringshift-testpod"),
];

/// The repository part of an image reference: `registry:5000/org/ringshift-node:1.2@sha256:..`
/// -> `ringshift-node`.
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The binary name an image maps to, if it is a known image.
pub fn binary_for_image(image: &str) -> Option<&'static str> {
    let repo = repository(image);
    IMAGE_TABLE
        .iter()
        .find(|(name, _)| *name == repo)
        .map(|(_, bin)| *bin)
}

/// What to execute for a container: `(program, args)`, or an error message for the
/// ErrImagePull waiting reason.
///
/// Without `command` the image's binary runs with `args` (its entrypoint). With `command`, a
/// program named like a workspace binary (`ringshift-node` or `/usr/local/bin/ringshift-node`)
/// resolves to the bin dir; anything else (e.g. `/bin/sh`) runs from the host as written.
pub fn resolve(
    image: &str,
    command: &[String],
    args: &[String],
    bin_dir: &Path,
) -> Result<(PathBuf, Vec<String>), String> {
    let image_bin = binary_for_image(image).ok_or_else(|| {
        format!(
            "image {image:?} is not a ringshift image (known: {})",
            known_images()
        )
    })?;
    let (program, rest): (PathBuf, Vec<String>) = match command.split_first() {
        None => (bin_dir.join(image_bin), args.to_vec()),
        Some((first, more)) => {
            let base = first.rsplit('/').next().unwrap_or(first);
            let program = if IMAGE_TABLE.iter().any(|(_, bin)| *bin == base) {
                bin_dir.join(base)
            } else {
                PathBuf::from(first)
            };
            (program, more.iter().chain(args).cloned().collect())
        }
    };
    Ok((program, rest))
}

fn known_images() -> String {
    IMAGE_TABLE
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_registry_tag_and_digest() {
        assert_eq!(repository("ringshift-node:dev"), "ringshift-node");
        assert_eq!(
            repository("ghcr.io/ringshift/ringshift-node:0.1.0"),
            "ringshift-node"
        );
        assert_eq!(
            repository("localhost:5000/ringshift-node@sha256:abc"),
            "ringshift-node"
        );
        assert_eq!(repository("ringshift-node"), "ringshift-node");
    }

    #[test]
    fn image_runs_its_binary_with_args() {
        let bin = Path::new("/b");
        let (p, a) = resolve("ringshift-node:1", &[], &["--x".into()], bin).unwrap();
        assert_eq!(p, Path::new("/b/ringshift-node"));
        assert_eq!(a, vec!["--x"]);
    }

    #[test]
    fn command_with_workspace_binary_resolves_to_bin_dir() {
        let bin = Path::new("/b");
        let cmd = vec![
            "/usr/local/bin/ringshift-operator".to_string(),
            "run".to_string(),
        ];
        let (p, a) = resolve("ringshift-operator:1", &cmd, &["-v".into()], bin).unwrap();
        assert_eq!(p, Path::new("/b/ringshift-operator"));
        assert_eq!(a, vec!["run", "-v"]);
    }

    #[test]
    fn other_commands_run_from_the_host() {
        let cmd = vec!["/bin/sh".to_string(), "-c".to_string()];
        let (p, a) = resolve(
            "ringshift-testpod:x",
            &cmd,
            &["echo hi".into()],
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(p, Path::new("/bin/sh"));
        assert_eq!(a, vec!["-c", "echo hi"]);
    }

    #[test]
    fn unknown_image_is_an_error() {
        let err = resolve("nginx:1.25", &[], &[], Path::new("/b")).unwrap_err();
        assert!(err.contains("nginx"), "{err}");
    }
}
