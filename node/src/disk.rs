//! Room on the data directory's filesystem (for the operator's pre-flight checks).

use std::path::Path;

/// Space of the filesystem holding a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    /// Bytes an unprivileged writer may still use (`f_bavail * f_frsize`).
    pub free: u64,
    /// Size of the filesystem (`f_blocks * f_frsize`).
    pub total: u64,
}

pub fn room(path: &Path) -> std::io::Result<Room> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let frsize = st.fragment_size() as u64;
    Ok(Room {
        free: (st.blocks_available() as u64).saturating_mul(frsize),
        total: (st.blocks() as u64).saturating_mul(frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_filesystem_of_a_directory() {
        let r = room(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(r.total > 0);
        assert!(r.free <= r.total);
    }

    #[test]
    fn a_missing_path_is_an_error() {
        assert!(room(Path::new("/nonexistent/ringshift")).is_err());
    }
}
