//! `--max-key-lifetime`: the expiration a key gets without one, and every later one refused,
//! at create and at patch.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::*;

const DAY: i64 = 86_400;

fn in_days(days: i64) -> String {
    (Timestamp::now() + SignedDuration::from_secs(days * DAY)).to_string()
}

fn with_max(days: u64) -> (AccessKeyApi, crate::fixtures::FakeCluster) {
    api_with(Policy::default(), |s| {
        s.max_key_lifetime = Some(std::time::Duration::from_secs(days * 86_400));
    })
}

#[tokio::test]
async fn a_key_without_expiration_gets_now_plus_the_maximum() {
    let (api, _) = with_max(30);
    let before = Timestamp::now();
    let got = post(
        &api,
        &person("u", &[]),
        KEYS,
        key_body(json!({"displayName": "x"})),
    )
    .await;
    assert_eq!(got.code, 201, "{}", got.body);
    let t: Timestamp = got.body["spec"]["expiration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lived = t.as_second() - before.as_second();
    assert!((30 * DAY - 1..=30 * DAY + 5).contains(&lived), "{lived}");
}

#[tokio::test]
async fn a_later_expiration_is_422_naming_the_maximum_and_an_earlier_one_is_kept() {
    let (api, _) = with_max(30);
    let u = person("u", &[]);
    let got = post(
        &api,
        &u,
        KEYS,
        key_body(json!({"displayName": "x", "expiration": in_days(31)})),
    )
    .await;
    assert_eq!(got.code, 422, "{}", got.body);
    assert_eq!(got.body["details"]["causes"][0]["field"], "spec.expiration");
    let msg = got.body["message"].as_str().unwrap();
    assert!(msg.contains("--max-key-lifetime 30d"), "{msg}");
    let want = in_days(29);
    let got = post(
        &api,
        &u,
        KEYS,
        key_body(json!({"displayName": "x", "expiration": want})),
    )
    .await;
    assert_eq!(got.code, 201, "{}", got.body);
    let kept: Timestamp = got.body["spec"]["expiration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(kept, want.parse::<Timestamp>().unwrap());
}

#[tokio::test]
async fn a_patch_may_shorten_but_never_lengthen_past_the_maximum() {
    let (api, cluster) = with_max(30);
    let alice = person("alice", &[]);
    let got = post(&api, &alice, KEYS, key_body(json!({"displayName": "x"}))).await;
    let n = got.body["metadata"]["name"].as_str().unwrap().to_owned();
    let got = merge(
        &api,
        &alice,
        &n,
        json!({"spec": {"expiration": in_days(60)}}),
    )
    .await;
    assert_eq!(got.code, 422, "{}", got.body);
    assert_eq!(got.body["details"]["causes"][0]["field"], "spec.expiration");
    let got = merge(
        &api,
        &alice,
        &n,
        json!({"spec": {"expiration": in_days(1)}}),
    )
    .await;
    assert_eq!(got.code, 200, "{}", got.body);

    // A record from before the maximum, without expiration: it may get one, within the maximum.
    let old = stored_key(&cluster, "alice", None, |_| {});
    let got = merge(
        &api,
        &alice,
        &name(&old),
        json!({"spec": {"expiration": in_days(60)}}),
    )
    .await;
    assert_eq!(got.code, 422, "{}", got.body);
    assert!(
        got.body["message"]
            .as_str()
            .unwrap()
            .contains("--max-key-lifetime 30d"),
        "{}",
        got.body
    );
    let got = merge(
        &api,
        &alice,
        &name(&old),
        json!({"spec": {"expiration": in_days(10)}}),
    )
    .await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert!(
        record_of(&cluster, &name(&old))
            .unwrap()
            .expiration
            .is_some()
    );
}
