//! Applying image layers to a root filesystem, in order, with the OCI whiteout rules:
//! `dir/.wh.name` deletes `dir/name` of the layers below, `dir/.wh..wh..opq` empties `dir` of
//! what the layers below put there (this layer's own entries stay). Entries that would land
//! outside the root (`..`, absolute links followed out) are refused by the tar crate's
//! `unpack_in`, which every entry goes through.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading layer: {0}")]
    Read(#[source] std::io::Error),
    #[error("layer entry {path:?} leaves the root filesystem")]
    Escapes { path: PathBuf },
    #[error("layer entry {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a layer entry means besides "put this file here".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout {
    /// A normal entry.
    None,
    /// Remove what lower layers put in this directory.
    Opaque(PathBuf),
    /// Remove this path (file or tree) of the lower layers.
    Remove(PathBuf),
}

/// Classifies a (normalized, relative) entry path.
pub fn classify(rel: &Path) -> Whiteout {
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return Whiteout::None;
    };
    let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
    if name == OPAQUE {
        Whiteout::Opaque(dir)
    } else if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        Whiteout::Remove(dir.join(target))
    } else {
        Whiteout::None
    }
}

/// A layer path made relative to the root: `./usr/bin/x` and `/usr/bin/x` -> `usr/bin/x`;
/// `None` when it climbs out (`..`) or is empty (the root itself).
pub fn normalize(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Applies one uncompressed layer tar to `root`.
pub fn apply_layer(root: &Path, layer: impl Read) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(layer);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // Paths this layer wrote: an opaque marker must not delete them.
    let mut written: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let Some(rel) = normalize(&raw) else {
            if raw.components().any(|c| c == Component::ParentDir) {
                return Err(UnpackError::Escapes { path: raw });
            }
            continue; // "./": the root directory itself
        };
        match classify(&rel) {
            Whiteout::Remove(target) => remove_lower(root, &target)?,
            Whiteout::Opaque(dir) => empty_lower(root, &dir, &written)?,
            Whiteout::None => {
                let dst = root.join(&rel);
                replace_conflicting(&dst, entry.header().entry_type().is_dir())?;
                let unpacked = entry.unpack_in(root).map_err(|source| UnpackError::Io {
                    path: rel.clone(),
                    source,
                })?;
                if !unpacked {
                    return Err(UnpackError::Escapes { path: raw });
                }
                for a in rel.ancestors().filter(|a| !a.as_os_str().is_empty()) {
                    written.insert(a.to_path_buf());
                }
            }
        }
    }
    Ok(())
}

/// A directory entry over a non-directory, or anything over a directory, replaces it.
fn replace_conflicting(dst: &Path, is_dir: bool) -> Result<(), UnpackError> {
    let io = |source| UnpackError::Io {
        path: dst.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() && !is_dir => std::fs::remove_dir_all(dst).map_err(io),
        Ok(m) if !m.is_dir() && is_dir => std::fs::remove_file(dst).map_err(io),
        _ => Ok(()),
    }
}

/// Deletes `rel` under root (file, link or tree); absent is fine. The parent must resolve
/// inside the root, so a whiteout cannot delete through a symlink that points out of it.
fn remove_lower(root: &Path, rel: &Path) -> Result<(), UnpackError> {
    let path = root.join(rel);
    let io = |source| UnpackError::Io {
        path: rel.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent()
        && parent.exists()
    {
        let real_root = root.canonicalize().map_err(io)?;
        if !parent.canonicalize().map_err(io)?.starts_with(&real_root) {
            return Err(UnpackError::Escapes {
                path: rel.to_path_buf(),
            });
        }
    }
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path).map_err(io),
        Ok(_) => std::fs::remove_file(&path).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// Deletes the children of `dir` that this layer did not write.
fn empty_lower(root: &Path, dir: &Path, written: &HashSet<PathBuf>) -> Result<(), UnpackError> {
    let full = root.join(dir);
    let io = |source| UnpackError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(&full) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    for child in entries {
        let child = child.map_err(io)?;
        let rel = dir.join(child.file_name());
        if !written.contains(&rel) {
            remove_lower(root, &rel)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar from (path, Some(content) | None for a directory), owned by whoever runs
    /// the test: unpacking keeps ownerships, and only root may give files to someone else (the
    /// unit tier runs without root).
    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the process's effective uid and gid.
        let me = std::fs::metadata("/proc/self").unwrap();
        let (uid, gid) = (me.uid(), me.gid());
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(uid.into());
            h.set_gid(gid.into());
            h.set_mtime(0);
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("unpack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn classify_whiteouts() {
        assert_eq!(classify(Path::new("etc/passwd")), Whiteout::None);
        assert_eq!(
            classify(Path::new("etc/.wh.passwd")),
            Whiteout::Remove("etc/passwd".into())
        );
        assert_eq!(
            classify(Path::new("var/cache/.wh..wh..opq")),
            Whiteout::Opaque("var/cache".into())
        );
        assert_eq!(
            classify(Path::new(".wh.top")),
            Whiteout::Remove("top".into())
        );
    }

    #[test]
    fn normalize_strips_leading_parts_and_refuses_climbing() {
        assert_eq!(normalize(Path::new("./a/b")), Some("a/b".into()));
        assert_eq!(normalize(Path::new("/a/b")), Some("a/b".into()));
        assert_eq!(normalize(Path::new("./")), None);
        assert_eq!(normalize(Path::new("a/../../etc")), None);
    }

    #[test]
    fn upper_layer_whiteout_deletes_a_lower_file_and_a_lower_tree() {
        let root = tmp("wh");
        apply_layer(
            &root,
            &layer(&[
                ("etc/", None),
                ("etc/keep", Some("1")),
                ("etc/gone", Some("2")),
                ("opt/", None),
                ("opt/tree/", None),
                ("opt/tree/x", Some("3")),
            ])[..],
        )
        .unwrap();
        apply_layer(
            &root,
            &layer(&[("etc/.wh.gone", Some("")), ("opt/.wh.tree", Some(""))])[..],
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/keep")).unwrap(), "1");
        assert!(!root.join("etc/gone").exists());
        assert!(!root.join("etc/.wh.gone").exists(), "markers are not files");
        assert!(!root.join("opt/tree").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn opaque_directory_hides_lower_entries_but_keeps_its_own_layers() {
        let root = tmp("opq");
        apply_layer(
            &root,
            &layer(&[("d/", None), ("d/old", Some("o")), ("d/sub/", None)])[..],
        )
        .unwrap();
        apply_layer(
            &root,
            &layer(&[
                ("d/", None),
                ("d/new", Some("n")),
                ("d/.wh..wh..opq", Some("")),
            ])[..],
        )
        .unwrap();
        assert!(!root.join("d/old").exists());
        assert!(!root.join("d/sub").exists());
        assert_eq!(std::fs::read_to_string(root.join("d/new")).unwrap(), "n");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_replaces_a_lower_directory() {
        let root = tmp("replace");
        apply_layer(&root, &layer(&[("x/", None), ("x/y", Some("1"))])[..]).unwrap();
        apply_layer(&root, &layer(&[("x", Some("file now"))])[..]).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("x")).unwrap(), "file now");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn entries_climbing_out_are_refused() {
        let root = tmp("escape");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        // append_data refuses "..": write the name into the header directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(matches!(
            apply_layer(&root, &bytes[..]),
            Err(UnpackError::Escapes { .. })
        ));
        assert!(!root.parent().unwrap().join("escape").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
