//! Discovery: `/apis`, `/apis/keygate.dev`, `/apis/keygate.dev/v1alpha1`.
//!
//! `watch` is not listed, as it is not served: kube-controller-manager's garbage collector and
//! quota controllers only take up resources that list `watch` (and `list`, `delete`), so they
//! leave accesskeys alone instead of failing on them.
//!
//! No OpenAPI document is served (`/openapi/v2` and `/v3` answer `404`). kube-aggregator treats
//! a `404` there as "this server provides no spec" and skips it, and kubectl's client-side
//! validation skips a kind the schema does not know (kubectl's `validateResource`: "resource is
//! not present, let's just skip validation"); kubectl 1.25+ sends `fieldValidation` only where
//! the OpenAPI document says the server supports it, and otherwise validates client-side, with
//! the same outcome. So `kubectl create -f` works without one; `kubectl explain` does not.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery,
};

use super::types::{API_VERSION, GROUP, KIND, PLURAL, VERSION};

fn group() -> APIGroup {
    let gv = GroupVersionForDiscovery {
        group_version: API_VERSION.to_owned(),
        version: VERSION.to_owned(),
    };
    APIGroup {
        name: GROUP.to_owned(),
        preferred_version: Some(gv.clone()),
        server_address_by_client_cidrs: None,
        versions: vec![gv],
    }
}

/// `GET /apis`.
pub fn group_list() -> APIGroupList {
    APIGroupList {
        groups: vec![group()],
    }
}

/// `GET /apis/keygate.dev`.
pub fn api_group() -> APIGroup {
    group()
}

fn verbs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// `GET /apis/keygate.dev/v1alpha1`.
pub fn resource_list() -> APIResourceList {
    APIResourceList {
        group_version: API_VERSION.to_owned(),
        resources: vec![
            APIResource {
                name: PLURAL.to_owned(),
                singular_name: "accesskey".to_owned(),
                namespaced: false,
                kind: KIND.to_owned(),
                verbs: verbs(&["create", "delete", "get", "list", "patch"]),
                short_names: Some(verbs(&["ak"])),
                categories: None,
                group: None,
                version: None,
                storage_version_hash: None,
            },
            APIResource {
                name: format!("{PLURAL}/regenerate"),
                singular_name: String::new(),
                namespaced: false,
                kind: "AccessKeyRegenerate".to_owned(),
                verbs: verbs(&["create"]),
                short_names: None,
                categories: None,
                group: None,
                version: None,
                storage_version_hash: None,
            },
        ],
    }
}
