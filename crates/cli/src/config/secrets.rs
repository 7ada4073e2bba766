//! Secrets' sources: a file or an environment variable a key names, read only when a
//! command asks for it, with a warning (naming the file and its mode, never its content)
//! when others may read it.

use super::*;

/// Reads a secret from the file or env var `source` names; `what` names it in errors (the
/// secret itself never appears).
pub fn read_secret(source: &KeySource, what: &str) -> anyhow::Result<SecretString> {
    let text = match source {
        KeySource::File(path) => {
            warn_if_shared(path, what);
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {what} file {}", path.display()))?
        }
        KeySource::Env(name) => {
            std::env::var(name).with_context(|| format!("{what} env var {name} is not set"))?
        }
    };
    Ok(SecretString::from(text.trim().to_owned()))
}

/// Warns (naming the file and its mode, never its content) when a secret file is
/// readable or writable by others, or by a group other than the process's own: `chmod 600`
/// it. A group bit for the process's own group passes: Kubernetes mounts secret volumes
/// as `0440` owned by the pod's `fsGroup`, which is the daemon's group and nobody else's.
pub fn warn_if_shared(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.mode() & 0o777;
            let foreign_group = own_group() != Some(metadata.gid());
            if mode & 0o007 != 0 || (mode & 0o070 != 0 && foreign_group) {
                tracing::warn!(
                    file = %path.display(),
                    mode = %format!("{mode:04o}"),
                    secret = what,
                    "a secret file is readable by its group or others; chmod 600 it"
                );
            }
        }
    }
}

/// The process's effective group id (Linux: `/proc/self/status`), if it can be read.
fn own_group() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Gid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Reads the encryption key from the file or env var the config names. A missing file,
/// an unset variable or a malformed key is an error; the key text is never printed.
pub fn load_key(encryption: &EncryptionConfig) -> anyhow::Result<EncryptionKey> {
    let text = match &encryption.source {
        KeySource::File(path) => {
            warn_if_shared(path, "encryption key");
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read encryption key file {}", path.display()))?
        }
        KeySource::Env(name) => std::env::var(name)
            .with_context(|| format!("encryption key env var {name} is not set"))?,
    };
    Ok(EncryptionKey::parse(
        &encryption.key_id,
        &SecretString::from(text),
    )?)
}
