//! What a caller may do beyond reaching the API, decided with SubjectAccessReviews.
//!
//! kube-apiserver has already authorized every request it proxies here: the aggregator runs
//! inside kube-apiserver's handler chain (`DefaultBuildHandlerChain`: authentication, then
//! `WithAuthorization`, then the aggregator's proxy handler), so `create accesskeys` or
//! `delete accesskeys` reached keygate only if RBAC (or another authorizer) allowed it. What
//! RBAC cannot express is asked here, as the caller or as a key's creator, with keygate's own
//! client (it needs `create` on `subjectaccessreviews`):
//! - key admin: the custom verb `administer` on `accesskeys.keygate.dev` (so `kubectl auth
//!   can-i administer accesskeys.keygate.dev` explains it), cached per caller for a few seconds;
//! - a key never exceeds its creator: `bind` on the role's ClusterRole (cluster-wide, or in each
//!   scoped namespace) and `impersonate` on each extra group.
//!
//! A review that fails or times out is a `503` naming the cause, never an allow.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use moka::sync::Cache;

use super::Caller;
use super::status::ApiError;
use crate::keystore::provision::cluster_wide_role;
use crate::record::{Creator, Role};

/// The custom RBAC verb that makes a caller a key admin.
pub const VERB_ADMINISTER: &str = "administer";

/// One right, as a SubjectAccessReview's resource attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Right {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub name: String,
    /// `None`: cluster-wide.
    pub namespace: Option<String>,
}

impl Right {
    /// `bind` on the ClusterRole a key with `role` gets (cluster-wide, or in `namespace`).
    pub fn bind(role: Role, namespace: Option<&str>) -> Self {
        Right {
            verb: "bind",
            group: "rbac.authorization.k8s.io",
            resource: "clusterroles",
            name: match namespace {
                None => cluster_wide_role(role),
                Some(_) => role.cluster_role(),
            }
            .to_owned(),
            namespace: namespace.map(str::to_owned),
        }
    }

    /// `impersonate` on the group `group` (core API group).
    pub fn impersonate_group(group: &str) -> Self {
        Right {
            verb: "impersonate",
            group: "",
            resource: "groups",
            name: group.to_owned(),
            namespace: None,
        }
    }

    /// What the refusal says: the right, and how one gets it.
    pub fn missing(&self, who: &str) -> String {
        let scope = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide".to_owned(),
        };
        let resource = if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let how = match (self.verb, &self.namespace) {
            ("bind", Some(_)) => "a RoleBinding there to a role granting it",
            ("bind", None) => "a ClusterRoleBinding to a ClusterRole granting it",
            _ => "a ClusterRoleBinding to a ClusterRole granting it",
        };
        format!(
            "{who} may not {verb} {resource} {name:?} {scope}, which this key needs (a key never \
             exceeds its creator). Ask a cluster admin for {how} (check with `kubectl auth can-i \
             {verb} {resource}/{name}{ns}`), or ask for less",
            verb = self.verb,
            name = self.name,
            ns = self
                .namespace
                .as_ref()
                .map(|n| format!(" -n {n}"))
                .unwrap_or_default(),
        )
    }
}

/// Asks kube-apiserver, with keygate's own client.
pub struct Rights {
    client: kube::Client,
    timeout: Duration,
    /// Caller (username, groups, extra) → key admin, briefly.
    admins: Cache<String, bool>,
}

impl Rights {
    pub fn new(client: kube::Client, timeout: Duration, cache_ttl: Duration) -> Self {
        Rights {
            client,
            timeout,
            admins: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(cache_ttl)
                .build(),
        }
    }

    /// Whether `who` has `right`.
    pub async fn allowed(&self, who: &Creator, right: &Right) -> Result<bool, ApiError> {
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.username.clone()),
                groups: Some(who.groups.clone()).filter(|g| !g.is_empty()),
                extra: Some(who.extra.clone()).filter(|e| !e.is_empty()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(right.verb.to_owned()),
                    group: Some(right.group.to_owned()),
                    resource: Some(right.resource.to_owned()),
                    name: Some(right.name.clone()).filter(|n| !n.is_empty()),
                    namespace: right.namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let pp = PostParams::default();
        let unavailable = |cause: String| {
            ApiError::unavailable(format!(
                "cannot check whether {} may {} {}: the SubjectAccessReview to kube-apiserver \
                 failed ({cause}); keygate needs `create` on subjectaccessreviews.\
                 authorization.k8s.io and a reachable kube-apiserver. Try again shortly",
                who.username, right.verb, right.resource
            ))
        };
        match tokio::time::timeout(self.timeout, api.create(&pp, &sar)).await {
            Err(_) => Err(unavailable(format!(
                "no answer within {}s",
                self.timeout.as_secs_f32()
            ))),
            Ok(Err(e)) => Err(unavailable(crate::causes::chain(&e))),
            Ok(Ok(answer)) => Ok(answer.status.is_some_and(|s| s.allowed)),
        }
    }

    /// Whether `caller` is a key admin (`administer` on accesskeys.keygate.dev).
    pub async fn is_key_admin(&self, caller: &Caller) -> Result<bool, ApiError> {
        // serde_json of a tuple of strings and a map cannot fail; the key is exact.
        let cache_key = serde_json::to_string(&(&caller.username, &caller.groups, &caller.extra))
            .unwrap_or_default();
        if let Some(hit) = self.admins.get(&cache_key) {
            return Ok(hit);
        }
        let right = Right {
            verb: VERB_ADMINISTER,
            group: super::types::GROUP,
            resource: super::types::PLURAL,
            name: String::new(),
            namespace: None,
        };
        let allowed = self.allowed(&creator_of(caller), &right).await?;
        self.admins.insert(cache_key, allowed);
        Ok(allowed)
    }

    /// Checks that `who` may hand out `role` (in `namespaces`, or cluster-wide when empty) and
    /// each of `groups`; the first missing right is a `403` naming it.
    pub async fn check_escalation(
        &self,
        who: &Creator,
        role: Option<Role>,
        namespaces: &[String],
        groups: &[String],
    ) -> Result<(), ApiError> {
        let mut rights = Vec::new();
        if let Some(role) = role {
            if namespaces.is_empty() {
                rights.push(Right::bind(role, None));
            }
            for ns in namespaces {
                rights.push(Right::bind(role, Some(ns)));
            }
        }
        rights.extend(groups.iter().map(|g| Right::impersonate_group(g)));
        for right in &rights {
            if !self.allowed(who, right).await? {
                return Err(ApiError::forbidden(right.missing(&who.username)));
            }
        }
        Ok(())
    }
}

/// The caller as a record's creator.
pub fn creator_of(caller: &Caller) -> Creator {
    Creator {
        username: caller.username.clone(),
        groups: caller.groups.clone(),
        extra: caller.extra.clone(),
    }
}
