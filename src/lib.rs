//! keygate: access keys for Kubernetes.
//!
//! A key is `kg_<ID>_<SECRET>`; its record (a hash, never the secret) lives in a Secret or a
//! file. kube-apiserver asks the webhook (`server`, `service`) to review bearer tokens; the
//! decision (`review`) reads the in-memory index (`store`) that the kube or dir store keeps in
//! sync. See design.md for the contract.
#![forbid(unsafe_code)]

pub mod certs;
pub mod cli;
pub mod commands;
pub mod fsutil;
pub mod keys;
pub mod keystore;
pub mod kubeclient;
pub mod kubeconfig;
pub mod metrics;
pub mod record;
pub mod review;
pub mod serve;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod usage;
