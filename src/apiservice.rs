//! What kube-apiserver's aggregation layer needs to route `keygate.dev/v1alpha1` to keygate:
//! the `APIService` (with the CA that signed keygate's serving certificate) and, for the
//! sidecar or loopback layout, a `Service` of type `ExternalName` in front of keygate.
//!
//! kube-apiserver checks keygate's serving certificate against the name
//! `<service>.<namespace>.svc`, whatever address it dials: that name must be among the
//! certificate's subject alternative names (`keygate certs --san`).

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};
use rustls_pki_types::pem::PemObject as _;

/// The API group and version keygate serves.
pub const GROUP: &str = "keygate.dev";
pub const VERSION: &str = "v1alpha1";

/// Where the aggregation layer finds keygate.
#[derive(Debug, Clone)]
pub struct ApiServiceSettings {
    pub service_name: String,
    pub service_namespace: String,
    pub port: u16,
    /// PEM of the CA that signed keygate's serving certificate.
    pub ca_pem: Vec<u8>,
    /// Also a `Service` of type `ExternalName` pointing at this host (`localhost` for keygate
    /// next to kube-apiserver); `None` when the Service exists already (in-cluster layout).
    pub external_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiServiceError {
    #[error("--certificate-authority holds no PEM certificate")]
    NoCa,
    #[error("cannot write the manifests as YAML: {0}")]
    Yaml(String),
}

impl ApiServiceSettings {
    /// The `APIService` `v1alpha1.keygate.dev`.
    pub fn api_service(&self) -> APIService {
        APIService {
            metadata: ObjectMeta {
                name: Some(format!("{VERSION}.{GROUP}")),
                ..ObjectMeta::default()
            },
            spec: Some(APIServiceSpec {
                group: Some(GROUP.to_owned()),
                version: Some(VERSION.to_owned()),
                // A group of its own, ordered after the built-in ones in discovery.
                group_priority_minimum: 1000,
                version_priority: 100,
                ca_bundle: Some(ByteString(self.ca_pem.clone())),
                service: Some(ServiceReference {
                    name: Some(self.service_name.clone()),
                    namespace: Some(self.service_namespace.clone()),
                    port: Some(i32::from(self.port)),
                }),
                insecure_skip_tls_verify: None,
            }),
            status: None,
        }
    }

    /// The `ExternalName` Service, when one is wanted.
    pub fn service(&self) -> Option<Service> {
        let host = self.external_name.as_ref()?;
        Some(Service {
            metadata: ObjectMeta {
                name: Some(self.service_name.clone()),
                namespace: Some(self.service_namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".to_owned()),
                external_name: Some(host.clone()),
                ports: Some(vec![ServicePort {
                    name: Some("https".to_owned()),
                    port: i32::from(self.port),
                    target_port: Some(IntOrString::Int(i32::from(self.port))),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        })
    }

    /// The manifests as YAML documents, for `kubectl apply -f -`.
    pub fn to_yaml(&self) -> Result<String, ApiServiceError> {
        let has_cert = rustls_pki_types::CertificateDer::pem_slice_iter(&self.ca_pem)
            .next()
            .is_some_and(|c| c.is_ok());
        if !has_cert {
            return Err(ApiServiceError::NoCa);
        }
        let mut out = yaml(&self.api_service())?;
        if let Some(svc) = self.service() {
            out.push_str("---\n");
            out.push_str(&yaml(&svc)?);
        }
        Ok(out)
    }
}

/// One YAML document of a typed object (k8s-openapi adds `apiVersion` and `kind` when it
/// serializes).
fn yaml(v: &impl serde::Serialize) -> Result<String, ApiServiceError> {
    serde_saphyr::to_string(v).map_err(|e| ApiServiceError::Yaml(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn settings(external: Option<&str>) -> ApiServiceSettings {
        ApiServiceSettings {
            service_name: "keygate-api".into(),
            service_namespace: "keygate".into(),
            port: 8443,
            ca_pem: crate::pki::generate_ca("keygate CA", 30)
                .unwrap()
                .cert
                .into_bytes(),
            external_name: external.map(str::to_owned),
        }
    }

    #[test]
    fn apiservice_and_external_name_service_parse_back() {
        let s = settings(Some("localhost"));
        let text = s.to_yaml().unwrap();
        let docs: Vec<&str> = text.split("---\n").collect();
        assert_eq!(docs.len(), 2, "{text}");
        let api: serde_json::Value = serde_saphyr::from_str(docs[0]).unwrap();
        assert_eq!(api["apiVersion"], "apiregistration.k8s.io/v1");
        assert_eq!(api["kind"], "APIService");
        assert_eq!(api["metadata"]["name"], "v1alpha1.keygate.dev");
        assert_eq!(api["spec"]["group"], "keygate.dev");
        assert_eq!(api["spec"]["version"], "v1alpha1");
        assert_eq!(api["spec"]["service"]["name"], "keygate-api");
        assert_eq!(api["spec"]["service"]["namespace"], "keygate");
        assert_eq!(api["spec"]["service"]["port"], 8443);
        let ca = base64::engine::general_purpose::STANDARD
            .decode(api["spec"]["caBundle"].as_str().unwrap())
            .unwrap();
        assert_eq!(ca, s.ca_pem);
        let svc: serde_json::Value = serde_saphyr::from_str(docs[1]).unwrap();
        assert_eq!(svc["kind"], "Service");
        assert_eq!(svc["spec"]["type"], "ExternalName");
        assert_eq!(svc["spec"]["externalName"], "localhost");
        assert_eq!(svc["spec"]["ports"][0]["port"], 8443);
        assert_eq!(svc["metadata"]["namespace"], "keygate");
    }

    #[test]
    fn no_service_and_no_ca() {
        let text = settings(None).to_yaml().unwrap();
        assert!(!text.contains("---"), "{text}");
        let mut s = settings(None);
        s.ca_pem = b"nope".to_vec();
        assert!(matches!(s.to_yaml(), Err(ApiServiceError::NoCa)));
    }
}
