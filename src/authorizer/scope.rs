//! Whether a request lies inside a key's scope: its namespaces and its rules.
//!
//! Rules have the shape and meaning of RBAC `PolicyRule`s (`ScopeRule`): `*` matches any verb,
//! API group, resource or name; a resource `*/status` matches the `status` subresource of any
//! resource; `pods/log` matches that subresource only; a non-resource URL ending in `*` matches
//! every path it begins. As in RBAC, rules with resources cover resource requests only and rules
//! with non-resource URLs non-resource requests only.
//!
//! Namespaces bound resource requests: a request in another namespace, and a request with no
//! namespace (a cluster-scoped resource, or a list across all namespaces), is outside. A
//! non-resource request (`/healthz`, `/metrics`, ...) is not in any namespace: with namespaces
//! set, it is inside only when a rule names its URL. A scope with neither namespaces nor rules
//! holds everything.

use crate::record::ScopeRule;

/// A resource request, as kube-apiserver's `resourceAttributes` describe it (borrowed from the
/// review; [`crate::authorizer::creator`] keeps an owned copy only as a cache key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResourceRequest<'a> {
    pub namespace: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
}

/// What a SubjectAccessReview asks: a verb on a resource, or on a non-resource URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attributes<'a> {
    Resource {
        verb: &'a str,
        res: ResourceRequest<'a>,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

impl<'a> Attributes<'a> {
    pub fn verb(&self) -> &'a str {
        match self {
            Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
        }
    }
}

/// Which part of a scope a request falls outside of; the reason an answer gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outside {
    /// A resource request in a namespace the scope does not list.
    Namespace,
    /// A resource request with no namespace, under a namespace scope.
    ClusterWide,
    /// A non-resource URL under a namespace scope, which no rule names.
    NonResource,
    /// No rule of the scope matches the request.
    Rules,
}

impl Outside {
    pub fn as_str(self) -> &'static str {
        match self {
            Outside::Namespace => "outside_namespaces",
            Outside::ClusterWide => "outside_namespaces_cluster_wide",
            Outside::NonResource => "outside_namespaces_non_resource",
            Outside::Rules => "outside_rules",
        }
    }

    /// What to tell the user, after "the key's scope".
    pub fn explain(self) -> &'static str {
        match self {
            Outside::Namespace => "does not include this namespace",
            Outside::ClusterWide => {
                "is limited to namespaces, and this request is cluster-wide (no namespace)"
            }
            Outside::NonResource => {
                "is limited to namespaces, and no scope rule names this non-resource URL"
            }
            Outside::Rules => "has no rule that matches this verb and resource",
        }
    }
}

/// Whether `attrs` lies inside the scope made of `namespaces` and `rules`.
pub fn check(
    namespaces: &[String],
    rules: &[ScopeRule],
    attrs: &Attributes<'_>,
) -> Result<(), Outside> {
    match attrs {
        Attributes::Resource { res, .. } if !namespaces.is_empty() => {
            if res.namespace.is_empty() {
                return Err(Outside::ClusterWide);
            }
            if !namespaces.iter().any(|n| n == res.namespace) {
                return Err(Outside::Namespace);
            }
        }
        Attributes::NonResource { .. } if !namespaces.is_empty() && rules.is_empty() => {
            return Err(Outside::NonResource);
        }
        _ => {}
    }
    if rules.is_empty() || rules.iter().any(|r| rule_allows(r, attrs)) {
        return Ok(());
    }
    Err(match attrs {
        Attributes::NonResource { .. } if !namespaces.is_empty() => Outside::NonResource,
        _ => Outside::Rules,
    })
}

/// RBAC's `RuleAllows`, for one rule.
pub fn rule_allows(rule: &ScopeRule, attrs: &Attributes<'_>) -> bool {
    if !any_or(&rule.verbs, attrs.verb()) {
        return false;
    }
    match attrs {
        Attributes::Resource { res, .. } => {
            any_or(&rule.api_groups, res.group)
                && resource_matches(&rule.resources, res.resource, res.subresource)
                && (rule.resource_names.is_empty()
                    || rule.resource_names.iter().any(|n| n == res.name))
        }
        Attributes::NonResource { path, .. } => rule.non_resource_urls.iter().any(|u| {
            u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
        }),
    }
}

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

fn resource_matches(rule_resources: &[String], resource: &str, subresource: &str) -> bool {
    rule_resources.iter().any(|r| {
        if r == "*" {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        // `pods/log`, or `*/log` for that subresource of any resource.
        match r.split_once('/') {
            Some((res, sub)) => sub == subresource && (res == resource || res == "*"),
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> ScopeRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        ScopeRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            ..ScopeRule::default()
        }
    }

    fn res(
        verb: &'static str,
        ns: &'static str,
        group: &'static str,
        resource: &'static str,
    ) -> Attributes<'static> {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let (resource, name) = resource.split_once(':').unwrap_or((resource, ""));
        Attributes::Resource {
            verb,
            res: ResourceRequest {
                namespace: ns,
                group,
                version: "v1",
                resource,
                subresource: sub,
                name,
            },
        }
    }

    fn url(verb: &'static str, path: &'static str) -> Attributes<'static> {
        Attributes::NonResource { verb, path }
    }

    #[test]
    fn rules_match_as_rbac_does() {
        let pods_read = rule(&["get", "list"], &[""], &["pods"]);
        let mut named = rule(&["get"], &["apps"], &["deployments"]);
        named.resource_names = vec!["web".into()];
        let any_status = rule(&["*"], &["*"], &["*/status"]);
        let logs = rule(&["get"], &[""], &["pods/log"]);
        let all = rule(&["*"], &["*"], &["*"]);
        let mut metrics = rule(&["get"], &[], &[]);
        metrics.non_resource_urls = vec!["/metrics".into(), "/logs/*".into()];
        let mut any_url = rule(&["*"], &[], &[]);
        any_url.non_resource_urls = vec!["*".into()];
        // (rule, request, allowed)
        let table = [
            (&pods_read, res("get", "a", "", "pods"), true),
            (&pods_read, res("list", "", "", "pods"), true),
            (&pods_read, res("create", "a", "", "pods"), false),
            (&pods_read, res("get", "a", "apps", "pods"), false),
            (&pods_read, res("get", "a", "", "pods/log"), false),
            (&pods_read, res("get", "a", "", "configmaps"), false),
            (&pods_read, url("get", "/metrics"), false),
            (&named, res("get", "a", "apps", "deployments:web"), true),
            (&named, res("get", "a", "apps", "deployments:db"), false),
            (&named, res("get", "a", "apps", "deployments"), false),
            (
                &any_status,
                res("update", "a", "apps", "deployments/status"),
                true,
            ),
            (
                &any_status,
                res("update", "a", "apps", "deployments"),
                false,
            ),
            (&any_status, res("update", "a", "", "pods/log"), false),
            (&logs, res("get", "a", "", "pods/log"), true),
            (&logs, res("get", "a", "", "pods"), false),
            (&logs, res("get", "a", "", "nodes/log"), false),
            (&all, res("delete", "", "x.io", "things/scale"), true),
            (&all, url("get", "/healthz"), false),
            (&metrics, url("get", "/metrics"), true),
            (&metrics, url("get", "/metrics/cadvisor"), false),
            (&metrics, url("get", "/logs/kube.log"), true),
            (&metrics, url("get", "/logs"), false),
            (&metrics, url("post", "/metrics"), false),
            (&metrics, res("get", "a", "", "pods"), false),
            (&any_url, url("put", "/anything/at/all"), true),
        ];
        for (i, (r, a, want)) in table.iter().enumerate() {
            assert_eq!(rule_allows(r, a), *want, "case {i}: {r:?} {a:?}");
        }
    }

    #[test]
    fn namespaces_and_rules_each_reduce() {
        let ns = vec!["apps".to_string(), "web".to_string()];
        let pods = vec![rule(&["get", "list"], &[""], &["pods"])];
        let mut urls = pods.clone();
        urls.push({
            let mut r = rule(&["get"], &[], &[]);
            r.non_resource_urls = vec!["/version".into()];
            r
        });
        let none: Vec<ScopeRule> = vec![];
        let nons: Vec<String> = vec![];
        type Case<'a> = (
            &'a [String],
            &'a [ScopeRule],
            Attributes<'static>,
            Result<(), Outside>,
        );
        let table: [Case; 13] = [
            (&nons, &none, res("delete", "", "", "nodes"), Ok(())),
            (&nons, &none, url("get", "/metrics"), Ok(())),
            (
                &ns,
                &none,
                res("delete", "web", "apps", "deployments"),
                Ok(()),
            ),
            (
                &ns,
                &none,
                res("get", "other", "", "pods"),
                Err(Outside::Namespace),
            ),
            (
                &ns,
                &none,
                res("list", "", "", "pods"),
                Err(Outside::ClusterWide),
            ),
            (
                &ns,
                &none,
                res("get", "", "", "nodes"),
                Err(Outside::ClusterWide),
            ),
            (
                &ns,
                &none,
                url("get", "/version"),
                Err(Outside::NonResource),
            ),
            (&ns, &pods, res("list", "apps", "", "pods"), Ok(())),
            (
                &ns,
                &pods,
                res("create", "apps", "", "configmaps"),
                Err(Outside::Rules),
            ),
            (
                &ns,
                &pods,
                res("get", "other", "", "pods"),
                Err(Outside::Namespace),
            ),
            (&ns, &urls, url("get", "/version"), Ok(())),
            (
                &ns,
                &urls,
                url("get", "/metrics"),
                Err(Outside::NonResource),
            ),
            (&nons, &pods, res("list", "", "", "pods"), Ok(())),
        ];
        for (i, (n, r, a, want)) in table.iter().enumerate() {
            assert_eq!(check(n, r, a), *want, "case {i}: {a:?}");
        }
        assert_eq!(
            check(&nons, &pods, &url("get", "/version")),
            Err(Outside::Rules)
        );
    }
}
