//! `fsGroup`: a pod's volumes (all but hostPath) are made the group's before a container starts,
//! as the real kubelet does (`SetVolumeOwnership`): writable ones (persistentVolumeClaim,
//! emptyDir) group read/write, the read-only ones it writes itself (secret, configMap,
//! projected, downwardAPI) group readable; directories also get group search and the setgid bit
//! so new files inherit the group.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The mode an entry gets: `0660` (writable volume) or `0440` (read-only) added; directories
/// also `0110` and setgid.
pub fn group_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut m = mode | if read_only { 0o440 } else { 0o660 };
    if is_dir {
        m |= 0o110 | 0o2000;
    }
    m & 0o7777
}

/// Applies `gid` recursively (symlinks are not followed). Skips entries already right, so a
/// restart over a large volume is quick.
pub fn apply(path: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.gid() != gid {
        std::os::unix::fs::lchown(path, None, Some(gid))?;
    }
    let want = group_mode(meta.mode() & 0o7777, meta.is_dir(), read_only);
    if meta.mode() & 0o7777 != want {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            apply(&entry?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(group_mode(0o755, true, false), 0o2775);
        assert_eq!(group_mode(0o600, false, false), 0o660);
        assert_eq!(group_mode(0o700, false, false), 0o760);
        assert_eq!(group_mode(0o644, false, false), 0o664);
        // A secret key file with defaultMode 0400 becomes readable by the group only.
        assert_eq!(group_mode(0o400, false, true), 0o440);
        assert_eq!(group_mode(0o755, true, true), 0o2755);
    }

    #[test]
    fn applies_recursively() {
        let d = std::env::temp_dir().join(format!("fsgroup-{}", std::process::id()));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), b"x").unwrap();
        std::fs::set_permissions(d.join("sub/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        // Only root may give files to any group; anyone may to a group of their own (the unit
        // tier runs without root), where the modes still show what `apply` did.
        let own_gid = std::fs::metadata(&d).unwrap().gid();
        let gid = if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
            4242
        } else {
            own_gid
        };
        apply(&d, gid, false).unwrap();
        let f = std::fs::metadata(d.join("sub/f")).unwrap();
        assert_eq!(f.gid(), gid);
        assert_eq!(f.mode() & 0o777, 0o660);
        assert_eq!(
            std::fs::metadata(d.join("sub")).unwrap().mode() & 0o7777,
            0o2775
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
