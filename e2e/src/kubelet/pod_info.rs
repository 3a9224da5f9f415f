//! `pod-info.json` in each pod's directory: the facts the kubelet API server (e2e/kubelet-api)
//! needs about a pod and cannot read from files of its own, its UID and address (port-forward
//! dials the address).

use std::path::Path;

use serde::{Deserialize, Serialize};

pub const FILE: &str = "pod-info.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub uid: String,
    pub ip: String,
}

/// Writes the file whole (a temporary file renamed over it), so a reader never sees half of it.
pub fn write(dir: &Path, info: &PodInfo) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec(info).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, dir.join(FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_the_api_server_reads_it() {
        let dir = std::env::temp_dir().join(format!("pod-info-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let info = PodInfo {
            uid: "0b1c".into(),
            ip: "127.40.0.7".into(),
        };
        write(&dir, &info).unwrap();
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["uid"], "0b1c");
        assert_eq!(v["ip"], "127.40.0.7");
        assert!(!dir.join(format!("{FILE}.tmp")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
