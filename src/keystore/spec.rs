//! `--store kube|dir:PATH`: which store the records live in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// Secrets in the key namespace of the cluster the kubeconfig (or in-cluster config) points to.
    Kube,
    /// YAML/JSON files in a directory.
    Dir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid --store value {0:?}: expected `kube` or `dir:PATH` (e.g. dir:./keygate-data/keys)"
)]
pub struct StoreSpecError(String);

impl FromStr for StoreSpec {
    type Err = StoreSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kube" => Ok(StoreSpec::Kube),
            _ => match s.strip_prefix("dir:") {
                Some(p) if !p.is_empty() => Ok(StoreSpec::Dir(PathBuf::from(p))),
                _ => Err(StoreSpecError(s.to_owned())),
            },
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Kube => f.write_str("kube"),
            StoreSpec::Dir(p) => write!(f, "dir:{}", p.display()),
        }
    }
}

/// True when running in a pod (the in-cluster config is available).
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

impl StoreSpec {
    /// The default when `--store` is not given: kube inside a cluster, else the embedded dir
    /// store under the data dir, so `keys create` and `serve` with no flags meet in one place.
    pub fn default_for(data_dir: &Path) -> Self {
        if in_cluster() {
            StoreSpec::Kube
        } else {
            StoreSpec::Dir(data_dir.join("keys"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_names_the_flag_on_error() {
        assert_eq!("kube".parse::<StoreSpec>().unwrap(), StoreSpec::Kube);
        assert_eq!(
            "dir:/tmp/k".parse::<StoreSpec>().unwrap(),
            StoreSpec::Dir("/tmp/k".into())
        );
        let err = "dir:".parse::<StoreSpec>().unwrap_err().to_string();
        assert!(err.contains("--store"), "{err}");
        assert!("s3://x".parse::<StoreSpec>().is_err());
    }
}
