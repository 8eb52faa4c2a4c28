//! keygate: access keys for Kubernetes.
//!
//! A key is `kg_<ID>_<SECRET>` ([`token`]); its record ([`record`]: a hash, never the secret)
//! lives in a Secret or a file, written through [`keystore`]. kube-apiserver asks the webhook
//! ([`http`]) to review bearer tokens; the decision ([`review`]) reads the in-memory [`index`],
//! which the kube or dir store keeps in sync, and answers with the key's [`identity`].
//! [`serve`] wires it together; [`cli`] and [`commands`] are the command line on top.
//! docs/design.md is the reference for the formats and behaviour.
#![forbid(unsafe_code)]

pub mod admission;
pub mod age;
pub mod api;
pub mod apiservice;
pub mod authorizer;
pub mod causes;
pub mod cli;
pub mod commands;
pub mod console;
pub mod fsutil;
pub mod http;
pub mod identity;
pub mod index;
pub mod json;
pub mod keystore;
pub mod kubeclient;
pub mod kubeconfig;
pub mod lastuse;
pub mod metrics;
pub mod pki;
pub mod readthrough;
pub mod record;
pub mod requestheader;
pub mod review;
pub mod seal;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod usage;

#[cfg(test)]
mod fixtures;
