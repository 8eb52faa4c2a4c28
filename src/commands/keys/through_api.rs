//! `keygate keys ...` through the AccessKey API, with the caller's own credentials: keygate
//! checks what the caller may mint, records them as the creator and makes the RoleBindings.
//! The output is the same as with the record Secrets. A consumer Secret is written by the CLI,
//! with the caller's credentials, once the key exists (the API never holds a token after its
//! answer); the key remembers where it is in an annotation so `keys delete` removes it too.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{anyhow, bail};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::{Ctx, check_create, consumer, flagged, report_created};
use crate::api::client::{AccessKeys, ClientError};
use crate::api::types::{AccessKey, AccessKeySpec, Scope};
use crate::cli::{CreateArgs, EditArgs, KeysCommand, ListOutput, Output, RegenerateArgs};
use crate::commands::view::KeyView;
use crate::keystore::KeyStore;
use crate::keystore::provision::{self, ANNOTATION_CONSUMER, Consumer};
use crate::token::{IdKey, KeyId};

/// `what` failed at the API: the server's message (it names a missing right), and its code.
fn failed(what: &str) -> impl FnOnce(ClientError) -> anyhow::Error + '_ {
    move |e| match e.code() {
        Some(code) => anyhow!("{what} through the AccessKey API: {e} (HTTP {code})"),
        None => anyhow!("{what}: {e}"),
    }
}

fn view(k: &AccessKey) -> KeyView {
    KeyView::from_access_key(k, Timestamp::now())
}

/// The key's name in the API: its ID lowercased (any case is accepted, as everywhere).
fn name_of(id: &str) -> anyhow::Result<String> {
    Ok(IdKey::parse(id)?.to_string())
}

pub(super) async fn execute(
    ctx: &mut Ctx,
    keys: &AccessKeys,
    cmd: KeysCommand,
) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create(a) => create(ctx, keys, a).await,
        KeysCommand::List(a) => list(ctx, keys, a.output).await,
        KeysCommand::Get(a) => {
            let what = format!("cannot get key {}", a.id);
            let k = keys.get(&name_of(&a.id)?).await.map_err(failed(&what))?;
            ctx.emit(&view(&k), a.output)
        }
        KeysCommand::Edit(a) => edit(ctx, keys, a).await,
        KeysCommand::Regenerate(a) => regenerate(ctx, keys, a).await,
        KeysCommand::Disable(a) => set_disabled(ctx, keys, &a.id, true).await,
        KeysCommand::Enable(a) => set_disabled(ctx, keys, &a.id, false).await,
        KeysCommand::Delete(a) => delete(ctx, keys, &a.id).await,
        // The one-time migration seals the records themselves, with the signing key, before the
        // record guard is installed: it writes Secrets whether or not the API is served.
        KeysCommand::Seal(a) => crate::commands::seal::seal_records(ctx, &a).await,
    }
}

/// The AccessKey `keys create` asks for.
fn requested(a: &CreateArgs, consumer: Option<&Consumer>) -> anyhow::Result<AccessKey> {
    let mut namespaces = a.namespace_scope.clone();
    namespaces.sort();
    namespaces.dedup();
    let spec = AccessKeySpec {
        display_name: a.name.trim().to_owned(),
        description: a.description.clone(),
        role: a.role.map(|r| crate::record::Role::from(r).to_string()),
        inherit_creator: a.inherit,
        scope: Scope {
            namespaces,
            rules: a.rules.iter().map(|r| r.0.clone()).collect(),
        },
        groups: a.groups.clone(),
        expiration: a
            .expires
            .map(|e| {
                e.at(Timestamp::now())
                    .map(|t| t.to_string())
                    .map_err(flagged)
            })
            .transpose()?,
        disabled: false,
    };
    let annotations = consumer.map(|c| {
        BTreeMap::from([(
            ANNOTATION_CONSUMER.to_owned(),
            format!("{}/{}", c.namespace, c.name),
        )])
    });
    Ok(AccessKey {
        metadata: ObjectMeta {
            generate_name: Some("keygate-".to_owned()),
            annotations,
            ..ObjectMeta::default()
        },
        spec,
        ..AccessKey::default()
    })
}

async fn create(ctx: &mut Ctx, keys: &AccessKeys, a: CreateArgs) -> anyhow::Result<()> {
    check_create(&a)?;
    let consumer = consumer(ctx, &a)?;
    let KeyStore::Kube(store) = &ctx.store else {
        bail!("the AccessKey API is only used with --store kube");
    };
    let store = store.clone();
    if let Some(c) = &consumer {
        // Before minting: a missing namespace, a name in use or RBAC refusing the Secret stop
        // the command while nothing exists yet. The dry run carries no token.
        let probe = KeyId::generate().key();
        provision::write_consumer(&store, &probe, c, "")
            .await
            .map_err(|e| anyhow!("{}: {}", e.failed, e.cause))?;
    }
    let what = format!("cannot create key {:?}", a.name.trim());
    let key = keys
        .create_key(requested(&a, consumer.as_ref())?)
        .await
        .map_err(failed(&what))?;
    let view = view(&key);
    let Some(token) = view.token.clone() else {
        bail!(
            "the AccessKey API created key {} but its answer holds no token; delete it with \
             `keygate keys delete {}` and try again",
            view.id,
            view.id
        );
    };
    if let Some(c) = &consumer {
        let id = name_of(&view.id)?;
        if let Err(e) = provision::write_consumer(&store, &IdKey::parse(&id)?, c, &token).await {
            let undo = match keys.delete(&id).await {
                Ok(()) => format!("key {} was deleted again", view.id),
                Err(d) => format!(
                    "key {} could not be deleted again ({d}): delete it with `keygate keys \
                     delete {}`",
                    view.id, view.id
                ),
            };
            bail!("{}: {}\n{undo}", e.failed, e.cause);
        }
    }
    report_created(ctx, &view, consumer.as_ref(), a.output)
}

async fn list(ctx: &mut Ctx, keys: &AccessKeys, output: ListOutput) -> anyhow::Result<()> {
    let items = keys.list().await.map_err(failed("cannot list keys"))?;
    let mut views: Vec<KeyView> = items.iter().map(view).collect();
    views.sort_by(|a, b| (a.times.created, &a.id).cmp(&(b.times.created, &b.id)));
    ctx.emit_list(&views, output, Timestamp::now())
}

async fn edit(ctx: &mut Ctx, keys: &AccessKeys, a: EditArgs) -> anyhow::Result<()> {
    let name = name_of(&a.id)?;
    if a.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        bail!("--name must not be empty");
    }
    let mut spec = serde_json::Map::new();
    if let Some(n) = &a.name {
        spec.insert("displayName".into(), json!(n.trim()));
    }
    if let Some(d) = &a.description {
        spec.insert("description".into(), json!(d));
    }
    let what = format!("cannot edit key {}", a.id);
    let k = keys
        .patch(&name, &json!({ "spec": spec }))
        .await
        .map_err(failed(&what))?;
    writeln!(ctx.out, "key {} updated", view(&k).id)?;
    Ok(())
}

async fn regenerate(ctx: &mut Ctx, keys: &AccessKeys, a: RegenerateArgs) -> anyhow::Result<()> {
    let name = name_of(&a.id)?;
    // Whole seconds, rounded up: the grace asked for, at least.
    let grace = a
        .grace
        .map(|g| g.0.as_secs() + u64::from(g.0.subsec_nanos() > 0));
    let what = format!("cannot regenerate key {}", a.id);
    let k = keys.regenerate(&name, grace).await.map_err(failed(&what))?;
    let view = view(&k);
    let Some(token) = view.token.clone() else {
        bail!(
            "the AccessKey API regenerated key {} but its answer holds no token; regenerate it \
             again",
            view.id
        );
    };
    match a.output {
        Output::Text => {
            writeln!(ctx.out, "New secret for key {} ({})", view.id, view.name)?;
            match &view.previous_secret_expiration {
                Some(t) => writeln!(ctx.out, "The old secret keeps working until {t}.")?,
                None => writeln!(ctx.out, "The old secret no longer works.")?,
            }
            writeln!(ctx.out, "Token:     {token}")?;
        }
        other => ctx.emit(&view, other)?,
    }
    ctx.note("warning: the token is shown only this once and cannot be read back; store it now.");
    Ok(())
}

async fn set_disabled(
    ctx: &mut Ctx,
    keys: &AccessKeys,
    id: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let name = name_of(id)?;
    let verb = if disabled { "disable" } else { "enable" };
    let what = format!("cannot {verb} key {id}");
    let k = keys
        .patch(&name, &json!({"spec": {"disabled": disabled}}))
        .await
        .map_err(failed(&what))?;
    let what = if disabled {
        "disabled: it no longer authenticates (`keygate keys enable` undoes this)"
    } else {
        "enabled"
    };
    writeln!(ctx.out, "key {} {what}", view(&k).id)?;
    Ok(())
}

async fn delete(ctx: &mut Ctx, keys: &AccessKeys, id: &str) -> anyhow::Result<()> {
    let name = name_of(id)?;
    let what = format!("cannot delete key {id}");
    // Read first: the ID as it is written, and where its consumer Secret is.
    let k = keys.get(&name).await.map_err(failed(&what))?;
    keys.delete(&name).await.map_err(failed(&what))?;
    let shown = view(&k).id;
    writeln!(ctx.out, "key {shown} deleted")?;
    let consumer = k
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_CONSUMER))
        .and_then(|v| v.split_once('/'));
    let (Some((ns, secret)), KeyStore::Kube(store)) = (consumer, &ctx.store) else {
        return Ok(());
    };
    if let Some(left) = provision::delete_consumer(store, &IdKey::parse(&name)?, ns, secret).await {
        bail!(
            "key {shown} is deleted and no longer authenticates, but its consumer Secret could \
             not be removed: {left}; delete it with kubectl"
        );
    }
    Ok(())
}
