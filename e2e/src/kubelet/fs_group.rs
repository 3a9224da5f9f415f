//! `fsGroup`: a pod's writable volumes (persistentVolumeClaim, emptyDir) are made the group's,
//! group-writable, with the setgid bit on directories so new files inherit the group, as the
//! real kubelet does before a non-root container starts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The mode `path` gets: group read/write added, group execute where the owner has it, setgid
/// on directories.
pub fn group_mode(mode: u32, is_dir: bool) -> u32 {
    let mut m = mode | 0o060;
    if mode & 0o100 != 0 || is_dir {
        m |= 0o010;
    }
    if is_dir {
        m |= 0o2000;
    }
    m & 0o7777
}

/// Applies `gid` recursively (symlinks are not followed). Skips entries already right, so a
/// restart over a large volume is quick.
pub fn apply(path: &Path, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.gid() != gid {
        std::os::unix::fs::lchown(path, None, Some(gid))?;
    }
    let want = group_mode(meta.mode() & 0o7777, meta.is_dir());
    if meta.mode() & 0o7777 != want {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            apply(&entry?.path(), gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(group_mode(0o755, true), 0o2775);
        assert_eq!(group_mode(0o600, false), 0o660);
        assert_eq!(group_mode(0o700, false), 0o770);
        assert_eq!(group_mode(0o644, false), 0o664);
    }

    #[test]
    fn applies_recursively() {
        let d = std::env::temp_dir().join(format!("fsgroup-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), b"x").unwrap();
        std::fs::set_permissions(d.join("sub/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        apply(&d, 4242).unwrap();
        let f = std::fs::metadata(d.join("sub/f")).unwrap();
        assert_eq!(f.gid(), 4242);
        assert_eq!(f.mode() & 0o777, 0o660);
        assert_eq!(
            std::fs::metadata(d.join("sub")).unwrap().mode() & 0o7777,
            0o2775
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
