//! Whether kube-apiserver serves the AccessKey API, asked the way any client would: discovery
//! of `keygate.dev/v1alpha1` with the caller's own credentials. Clients (the CLI, the console)
//! use the API when it is served and Part 1's Secrets only when the group is not registered at
//! all: an APIService that exists but is unavailable must never send them around it.

use http::Request;

use super::types::API_VERSION;

/// The APIService that registers the AccessKey API with kube-apiserver.
pub const APISERVICE: &str = "v1alpha1.keygate.dev";

/// Where keys are managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Discovery answered: keys go through the AccessKey API.
    Api,
    /// The group is not registered (`404`): no APIService, records are written directly.
    NotRegistered,
}

#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    /// kube-apiserver answered, but not with the group's discovery document.
    #[error(
        "the AccessKey API (APIService {APISERVICE}) is not available: GET /apis/{API_VERSION} \
         answered {code}: {message}. Check `kubectl get apiservice {APISERVICE}` (its Available \
         condition says why) and that `keygate serve --api` is running and reachable from \
         kube-apiserver. While the APIService exists, keys are never written as Secrets directly"
    )]
    Unavailable { code: u16, message: String },
    #[error(
        "cannot reach the API server to look for the AccessKey API (APIService {APISERVICE}): {} ({})",
        crate::causes::Chain(&**.error),
        crate::causes::kube_fix(&**.error)
    )]
    Unreachable { error: Box<kube::Error> },
}

/// Asks kube-apiserver for the discovery document of `keygate.dev/v1alpha1`.
pub async fn served(client: &kube::Client) -> Result<Served, ServedError> {
    let req = Request::get(format!("/apis/{API_VERSION}"))
        .body(Vec::new())
        .map_err(|e| ServedError::Unreachable {
            error: Box::new(kube::Error::HttpError(e)),
        })?;
    match client.request_text(req).await {
        Ok(_) => Ok(Served::Api),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Served::NotRegistered),
        Err(kube::Error::Api(s)) => Err(ServedError::Unavailable {
            code: s.code,
            message: s.message.trim().trim_matches('"').trim().to_owned(),
        }),
        Err(other) => Err(ServedError::Unreachable {
            error: Box::new(other),
        }),
    }
}
