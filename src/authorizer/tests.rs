use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::fixtures::{SeenLog, fake_kube, hung_kube};
use crate::identity::IdentityPolicy;
use crate::record::{Creator, KeyRecord, ScopeRule};
use crate::token::{KeyId, SecretHash};

/// A SubjectAccessReview body as kube-apiserver sends it (v1).
fn body(user: &str, key_id: Option<&str>, ns: &str, verb: &str, resource: &str) -> Vec<u8> {
    let extra = match key_id {
        Some(id) => json!({"keygate.dev/key-id": [id], "keygate.dev/key-name": ["ci"]}),
        None => json!({}),
    };
    serde_json::to_vec(&json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "version": "v1",
                 "resource": resource},
                 "user": user, "groups": ["keygate:keys", "system:authenticated"], "extra": extra}
    }))
    .unwrap()
}

fn username(id: &KeyId) -> String {
    IdentityPolicy::default().username(&id.key())
}

/// The body for key `id` doing `verb` on `resource` in `ns`.
fn as_key(id: &KeyId, ns: &str, verb: &str, resource: &str) -> Vec<u8> {
    body(&username(id), Some(id.as_str()), ns, verb, resource)
}

fn inheriting(id: &KeyId, creator: &str, namespaces: &[&str]) -> KeyRecord {
    let mut r = KeyRecord::new(id.clone(), SecretHash::of(b"s"), "ci");
    r.inherit_creator = true;
    r.creator = Some(Creator {
        username: creator.into(),
        groups: vec!["dev".into(), "system:authenticated".into()],
        ..Creator::default()
    });
    r.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
    r
}

struct Setup {
    index: Index,
    authz: Authorizer,
    api: FakeApi,
}

/// The faked kube-apiserver the authorizer asks, and what it was sent.
struct FakeApi {
    client: kube::Client,
    log: SeenLog,
}

impl FakeApi {
    /// A kube-apiserver answering every request with `respond(body)`.
    fn answering(respond: impl Fn(&Value) -> (u16, Value) + Send + 'static) -> Self {
        let (client, log) = fake_kube(move |seen| respond(&seen.body));
        FakeApi { client, log }
    }

    fn hung() -> Self {
        let (client, log) = hung_kube();
        FakeApi { client, log }
    }

    /// Request bodies seen so far, in order.
    fn seen(&self) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.body.clone())
            .collect()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

/// An authorizer over a loaded index holding `records`, whose kube-apiserver allows every
/// SubjectAccessReview for users named in `allow`.
fn setup(records: Vec<KeyRecord>, allow: &'static [&'static str], deny_revoked: bool) -> Setup {
    let index = Index::new(IdentityPolicy::default());
    index.replace_all(records.into_iter().map(|r| (r.id.key(), Ok(r))));
    let api = FakeApi::answering(move |req: &Value| {
        let user = req["spec"]["user"].as_str().unwrap_or_default();
        let allowed = allow.contains(&user);
        let reason = if allowed {
            "RBAC: allowed"
        } else {
            "no RBAC rule"
        };
        (
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                   "spec": req["spec"], "status": {"allowed": allowed, "reason": reason}}),
        )
    });
    let settings = AuthorizerSettings {
        deny_revoked,
        sar_timeout: Duration::from_millis(500),
        ..AuthorizerSettings::default()
    };
    let metrics = Arc::new(AuthzMetrics::register(&mut Default::default()));
    let authz = Authorizer::new(index.clone(), Some(api.client.clone()), &settings, metrics);
    Setup { index, authz, api }
}

impl Setup {
    async fn ask(&self, body: &[u8]) -> Decision {
        self.authz.decide(&self.authz.read(body).unwrap()).await
    }
}

#[tokio::test]
async fn users_who_are_not_keys_get_no_opinion_and_cause_no_review() {
    let s = setup(vec![], &["alice"], true);
    for user in ["alice", "system:serviceaccount:a:b", "service-account-bob"] {
        let d = s.ask(&body(user, None, "a", "get", "pods")).await;
        assert_eq!((d.verdict, d.reason), (Verdict::NoOpinion, Reason::NotAKey));
        assert!(d.message.is_empty());
    }
    // Before the index has loaded: no opinion for everyone, keys too, even when denying.
    let idx = Index::new(IdentityPolicy::default());
    let metrics = Arc::new(AuthzMetrics::register(&mut Default::default()));
    let settings = AuthorizerSettings {
        deny_revoked: true,
        ..Default::default()
    };
    let authz = Authorizer::new(idx, Some(s.api.client.clone()), &settings, metrics);
    let id = KeyId::generate();
    let d = authz
        .decide(&authz.read(&as_key(&id, "a", "get", "pods")).unwrap())
        .await;
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::NoOpinion, Reason::NotReady)
    );
    assert_eq!(s.api.count(), 0, "no SubjectAccessReview for anyone");
}

#[tokio::test]
async fn an_inheriting_key_is_allowed_what_its_creator_may_inside_its_scope() {
    let id = KeyId::generate();
    let s = setup(vec![inheriting(&id, "alice", &["apps"])], &["alice"], false);
    let d = s.ask(&as_key(&id, "apps", "get", "pods")).await;
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Allow, Reason::CreatorAllowed)
    );
    assert_eq!(s.api.count(), 1);
    let sent = &s.api.seen()[0];
    assert_eq!(sent["spec"]["user"], "alice");
    assert_eq!(
        sent["spec"]["groups"],
        json!(["dev", "system:authenticated"])
    );
    assert_eq!(sent["spec"]["resourceAttributes"]["namespace"], "apps");
    // The same request again: the cached answer, no second review.
    let d = s.ask(&as_key(&id, "apps", "get", "pods")).await;
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(s.api.count(), 1, "a cache hit sends nothing");
    // Another verb is another question.
    s.ask(&as_key(&id, "apps", "delete", "pods")).await;
    assert_eq!(s.api.count(), 2);
    // A change to the record drops what was cached for it.
    s.index
        .upsert(id.key(), Ok(inheriting(&id, "alice", &["apps"])));
    s.ask(&as_key(&id, "apps", "get", "pods")).await;
    assert_eq!(s.api.count(), 3, "a changed record asks again");
    // Outside the scope: no grant and no review, with a reason naming the part of the scope.
    let d = s.ask(&as_key(&id, "other", "get", "pods")).await;
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::NoOpinion, Reason::Outside(Outside::Namespace))
    );
    assert!(
        d.message.contains("does not include this namespace"),
        "{}",
        d.message
    );
    let d = s.ask(&as_key(&id, "", "list", "nodes")).await;
    assert_eq!(d.reason, Reason::Outside(Outside::ClusterWide));
    assert_eq!(s.api.count(), 3);
}

#[tokio::test]
async fn a_creator_who_may_not_or_cannot_be_asked_grants_nothing() {
    let id = KeyId::generate();
    let s = setup(vec![inheriting(&id, "mallory", &[])], &["alice"], false);
    let d = s.ask(&as_key(&id, "a", "get", "secrets")).await;
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::NoOpinion, Reason::CreatorNotAllowed)
    );
    assert!(d.message.contains("\"mallory\" may not"), "{}", d.message);
    assert!(d.message.contains("no RBAC rule"), "{}", d.message);

    // A failing kube-apiserver: no grant, not cached; denied in the instant-revocation mode.
    for deny in [false, true] {
        let index = Index::new(IdentityPolicy::default());
        index.replace_all([(id.key(), Ok(inheriting(&id, "alice", &[])))]);
        let api = FakeApi::answering(|_: &Value| (500, json!({"kind": "Status", "code": 500})));
        let settings = AuthorizerSettings {
            deny_revoked: deny,
            ..Default::default()
        };
        let m = Arc::new(AuthzMetrics::register(&mut Default::default()));
        let authz = Authorizer::new(index, Some(api.client.clone()), &settings, m);
        for n in 1..=2 {
            let d = authz
                .decide(&authz.read(&as_key(&id, "a", "get", "pods")).unwrap())
                .await;
            let want = if deny {
                Verdict::Deny
            } else {
                Verdict::NoOpinion
            };
            assert_eq!((d.verdict, d.reason), (want, Reason::CreatorReviewFailed));
            assert!(api.count() >= n, "an error is not cached");
        }
    }

    // No cluster (dir store): no opinion, saying why.
    let index = Index::new(IdentityPolicy::default());
    index.replace_all([(id.key(), Ok(inheriting(&id, "alice", &[])))]);
    let m = Arc::new(AuthzMetrics::register(&mut Default::default()));
    let authz = Authorizer::new(index, None, &AuthorizerSettings::default(), m);
    let d = authz
        .decide(&authz.read(&as_key(&id, "a", "get", "pods")).unwrap())
        .await;
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::NoOpinion, Reason::NoCluster)
    );
    assert!(d.message.contains("kube store"), "{}", d.message);
}

#[tokio::test]
async fn a_hung_kube_apiserver_times_out_into_no_grant() {
    let id = KeyId::generate();
    let index = Index::new(IdentityPolicy::default());
    index.replace_all([(id.key(), Ok(inheriting(&id, "alice", &[])))]);
    let api = FakeApi::hung();
    let settings = AuthorizerSettings {
        sar_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let m = Arc::new(AuthzMetrics::register(&mut Default::default()));
    let authz = Authorizer::new(index, Some(api.client.clone()), &settings, m);
    let d = authz
        .decide(&authz.read(&as_key(&id, "a", "get", "pods")).unwrap())
        .await;
    assert_eq!(d.reason, Reason::CreatorReviewFailed);
    assert!(
        d.message.contains("--authorize-sar-timeout"),
        "{}",
        d.message
    );
}

#[tokio::test]
async fn revoked_keys_are_denied_only_in_the_instant_revocation_mode() {
    let (live, off, plain) = (KeyId::generate(), KeyId::generate(), KeyId::generate());
    let mut disabled = inheriting(&off, "alice", &[]);
    disabled.disabled = true;
    let records = vec![
        inheriting(&live, "alice", &[]),
        disabled,
        KeyRecord::new(plain.clone(), SecretHash::of(b"s"), "plain"),
    ];
    for deny in [false, true] {
        let s = setup(records.clone(), &["alice"], deny);
        let revoked = if deny {
            Verdict::Deny
        } else {
            Verdict::NoOpinion
        };
        let gone = KeyId::generate();
        let cases = [
            (as_key(&off, "a", "get", "pods"), revoked, Reason::Disabled),
            (
                as_key(&gone, "a", "get", "pods"),
                revoked,
                Reason::UnknownKey,
            ),
            // The username of a key that does not exist, without the extra.
            (
                body(&username(&gone), None, "a", "get", "pods"),
                revoked,
                Reason::UnknownKey,
            ),
            // The ID of one key with the username of another.
            (
                body(&username(&plain), Some(live.as_str()), "a", "get", "pods"),
                revoked,
                Reason::IdentityMismatch,
            ),
            // A live key that does not inherit: RBAC decides.
            (
                as_key(&plain, "a", "get", "pods"),
                Verdict::NoOpinion,
                Reason::NotInheriting,
            ),
            // A live key's username without the extra: nothing granted, nothing denied.
            (
                body(&username(&live), None, "a", "get", "pods"),
                Verdict::NoOpinion,
                Reason::KeyIdMissing,
            ),
        ];
        for (i, (b, verdict, reason)) in cases.into_iter().enumerate() {
            let d = s.ask(&b).await;
            assert_eq!(
                (d.verdict, d.reason),
                (verdict, reason),
                "deny {deny}, case {i}"
            );
        }
        assert_eq!(s.api.count(), 0);
    }
}

#[tokio::test]
async fn a_key_minted_by_a_key_is_bounded_by_every_key_above_it() {
    let (root, child) = (KeyId::generate(), KeyId::generate());
    let mut parent = inheriting(&root, "alice", &["apps", "web"]);
    parent.rules = vec![ScopeRule {
        verbs: vec!["get".into(), "list".into()],
        api_groups: vec!["".into()],
        resources: vec!["pods".into(), "configmaps".into()],
        ..ScopeRule::default()
    }];
    let mut minted = inheriting(&child, &username(&root), &["apps"]);
    minted.parent = Some(root.clone());
    let s = setup(vec![parent.clone(), minted.clone()], &["alice"], false);

    // Inside both scopes: the child's creator (the parent key) and the parent's creator are
    // asked. The fake allows alice only, so the answer for the parent key decides.
    let d = s.ask(&as_key(&child, "apps", "get", "pods")).await;
    assert_eq!(d.reason, Reason::CreatorNotAllowed);
    let users: Vec<Value> = s
        .api
        .seen()
        .iter()
        .map(|r| r["spec"]["user"].clone())
        .collect();
    assert_eq!(users, [json!(username(&root))]);

    // Allow both creators.
    let s = setup_allowing_all(vec![parent.clone(), minted.clone()]);
    let d = s.ask(&as_key(&child, "apps", "get", "pods")).await;
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Allow, Reason::CreatorAllowed)
    );
    assert_eq!(s.api.count(), 2, "both creators were asked");
    // The parent's rules bound the child, whose own scope has none.
    let d = s.ask(&as_key(&child, "apps", "create", "configmaps")).await;
    assert_eq!(d.reason, Reason::Outside(Outside::Rules));
    assert!(
        d.message.contains(&format!("key {root} above")),
        "{}",
        d.message
    );
    // The child's namespaces bound it, though the parent's include more.
    let d = s.ask(&as_key(&child, "web", "get", "pods")).await;
    assert_eq!(d.reason, Reason::Outside(Outside::Namespace));
    assert_eq!(s.api.count(), 2);

    // The parent disabled: the child is refused (denied when revoking instantly).
    let mut off = parent.clone();
    off.disabled = true;
    s.index.upsert(root.key(), Ok(off));
    let d = s.ask(&as_key(&child, "apps", "get", "pods")).await;
    assert_eq!(d.reason, Reason::Chain(ChainBreak::AncestorDisabled));
    s.index.remove(&root.key());
    let d = s.ask(&as_key(&child, "apps", "get", "pods")).await;
    assert_eq!(d.reason, Reason::Chain(ChainBreak::AncestorUnknown));
    assert_eq!(s.api.count(), 2);
}

#[tokio::test]
async fn answers_in_the_cache_are_used_for_every_key_of_a_chain_and_counted_once() {
    let (root, child) = (KeyId::generate(), KeyId::generate());
    let parent = inheriting(&root, "alice", &["apps"]);
    let mut minted = inheriting(&child, &username(&root), &["apps"]);
    minted.parent = Some(root.clone());
    let s = setup_allowing_all(vec![parent, minted.clone()]);
    let ask = as_key(&child, "apps", "get", "pods");
    let m = s.authz.metrics();

    assert_eq!(s.ask(&ask).await.verdict, Verdict::Allow);
    assert_eq!((s.api.count(), m.cache_counts()), (2, (0, 2)));
    // Both answers cached: nothing sent, two hits.
    assert_eq!(s.ask(&ask).await.verdict, Verdict::Allow);
    assert_eq!((s.api.count(), m.cache_counts()), (2, (2, 2)));
    // Another request is another cache entry.
    let other = as_key(&child, "apps", "list", "pods");
    assert_eq!(s.ask(&other).await.verdict, Verdict::Allow);
    assert_eq!((s.api.count(), m.cache_counts()), (4, (2, 4)));
    // The child's record reloaded (a new generation): only its creator is asked again; the
    // parent's answer still comes from the cache.
    s.index.upsert(child.key(), Ok(minted));
    assert_eq!(s.ask(&ask).await.verdict, Verdict::Allow);
    assert_eq!((s.api.count(), m.cache_counts()), (5, (3, 5)));
    let sent = s.api.seen();
    assert_eq!(sent[4]["spec"]["user"], json!(username(&root)));
    assert_eq!(sent[4]["spec"]["resourceAttributes"]["verb"], "get");
}

#[tokio::test]
async fn a_screened_review_is_decided_as_the_whole_review_is() {
    let (id, off) = (KeyId::generate(), KeyId::generate());
    let mut disabled = inheriting(&off, "alice", &["apps"]);
    disabled.disabled = true;
    let s = setup(
        vec![inheriting(&id, "alice", &["apps"]), disabled],
        &["alice"],
        true,
    );
    let escaped = String::from_utf8(as_key(&id, "apps", "get", "pods"))
        .unwrap()
        .replace("service-account-", "service\\u002daccount-");
    let bodies = [
        body("bob", None, "apps", "get", "pods"),
        body("bob", Some(id.as_str()), "apps", "get", "pods"),
        body(&username(&id), None, "apps", "get", "pods"),
        as_key(&id, "apps", "get", "pods"),
        as_key(&id, "kube-system", "get", "pods"),
        as_key(&off, "apps", "get", "pods"),
        escaped.into_bytes(),
    ];
    for b in &bodies {
        let screened = s.authz.decide(&s.authz.read(b).unwrap()).await;
        let whole = s.authz.decide(&wire::decode(b).unwrap()).await;
        assert_eq!(
            (screened.verdict, screened.reason),
            (whole.verdict, whole.reason),
            "{}",
            String::from_utf8_lossy(b)
        );
    }
    let escaped = s.authz.decide(&s.authz.read(&bodies[6]).unwrap()).await;
    assert_eq!(escaped.verdict, Verdict::Allow, "{escaped:?}");
    let revoked = s.authz.decide(&s.authz.read(&bodies[5]).unwrap()).await;
    assert_eq!(revoked.verdict, Verdict::Deny, "{revoked:?}");
}

/// [`setup`] with a kube-apiserver that allows everyone.
fn setup_allowing_all(records: Vec<KeyRecord>) -> Setup {
    let mut s = setup(records, &[], false);
    let api = FakeApi::answering(|req: &Value| {
        (
            201,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                   "spec": req["spec"], "status": {"allowed": true}}),
        )
    });
    let m = Arc::new(AuthzMetrics::register(&mut Default::default()));
    s.authz = Authorizer::new(
        s.index.clone(),
        Some(api.client.clone()),
        &AuthorizerSettings::default(),
        m,
    );
    s.api = api;
    s
}

#[tokio::test]
async fn every_decision_is_counted_and_keys_are_logged() {
    let id = KeyId::generate();
    let s = setup(vec![inheriting(&id, "alice", &["apps"])], &["alice"], false);
    s.ask(&body("bob", None, "a", "get", "pods")).await;
    s.ask(&as_key(&id, "apps", "get", "pods")).await;
    s.ask(&as_key(&id, "apps", "get", "pods")).await;
    let m = s.authz.metrics();
    assert_eq!(m.sars_sent(), 1);
    let mut registry = prometheus_client::registry::Registry::default();
    let m2 = AuthzMetrics::register(&mut registry);
    m2.decision("allowed", Reason::CreatorAllowed, 1e-6);
    m2.cache(true);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"authorize_decisions_total{result="allowed",reason="creator_allowed"} 1"#),
        "{text}"
    );
    assert!(text.contains("authorize_cache_hits_total 1"), "{text}");
}
