//! keygate's integration tests, in one binary (each test binary would link the crate again).
//! Helpers live in `common`; the end-to-end suite against a real kube-apiserver is
//! tests/e2e/run.sh (hack/e2e.sh).

mod common;

mod authorize;
mod cli_api;
mod cli_dir;
mod cli_errors;
mod cli_kube;
mod cli_usage;
mod console;
mod embedded;
mod faults;
mod frontproxy;
mod hostile;
mod overload;
mod properties;
mod records;
mod secrets;
mod webhook;
