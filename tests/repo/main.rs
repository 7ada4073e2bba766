//! Repository checks: the conventions, documents and deployment files of the repository
//! held to what the code does (every module says why it exists, no stubs, every metric
//! documented, the OpenAPI document valid, the Kubernetes manifests, the systemd unit and
//! the container image). They read files from the tree and start no daemon; the
//! end-to-end tests are in `tests/e2e/`.

use std::path::PathBuf;

mod deploy;
mod tidy;

/// The repository's root.
fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
