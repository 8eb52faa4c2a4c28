//! The AccessKey API (`keygate.dev/v1alpha1`, `accesskeys`), served behind kube-apiserver's
//! aggregation layer: any authenticated user mints and manages their own keys, bounded by the
//! cluster's RBAC, not by the client.
//!
//! The listener authenticates kube-apiserver's front proxy (see `requestheader`) and hands each
//! request here with the [`Caller`] it named.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Request, StatusCode};

use crate::http::HttpResponse;

/// The user kube-apiserver authenticated, as its front proxy passed them on (`X-Remote-User`,
/// `X-Remote-Group`, `X-Remote-Extra-*`). kube-apiserver 1.20 sends no uid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub username: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the API needs to run (the library's settings; the CLI converts its flags into them).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Where key records live (`--namespace`).
    pub namespace: String,
    /// The username prefix of keys (`--user-prefix`).
    pub user_prefix: String,
}

/// The API's request handler.
pub struct AccessKeyApi {
    #[allow(dead_code)] // SKELETON: replaced by the API implementation.
    client: kube::Client,
    #[allow(dead_code)]
    settings: ApiSettings,
}

impl AccessKeyApi {
    pub fn new(client: kube::Client, settings: ApiSettings) -> Self {
        AccessKeyApi { client, settings }
    }

    /// Answers one request (body already read, within the listener's limits) for `caller`.
    pub async fn handle(&self, _req: Request<Bytes>, _caller: Caller) -> HttpResponse {
        crate::http::text(StatusCode::NOT_FOUND, "SKELETON: not implemented yet")
    }
}
