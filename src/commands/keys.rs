//! `keygate keys ...`: the key lifecycle against the dir or the kube store. With the kube
//! store, keys go through the AccessKey API when kube-apiserver serves it ([`through_api`]),
//! and straight to the record Secrets only when the API's group is not registered at all.

mod through_api;

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use jiff::Timestamp;

use super::view::{KeyView, table};
use crate::api::client::AccessKeys;
use crate::api::served::{Served, served};
use crate::cli::{
    CreateArgs, EditArgs, Global, KeysArgs, KeysCommand, ListOutput, Output, RegenerateArgs,
};
use crate::identity;
use crate::keystore::lifecycle::{self, Edit, Field, LifecycleError, NewKey};
use crate::keystore::provision::{self, Consumer};
use crate::keystore::{DirKeys, KeyStore, KubeKeys, StoreSpec};
use crate::record::KeyRecord;
use crate::token::IdKey;

/// What a key command runs against, and where its output goes (stdout text, and notes for
/// stderr), so tests can drive it with a faked API server.
pub struct Ctx {
    pub store: KeyStore,
    pub user_prefix: String,
    /// The caller, recorded as `created-by`.
    pub caller: String,
    /// The API server URL (kube store), for consumer Secrets.
    pub server: Option<String>,
    pub out: String,
    pub notes: Vec<String>,
    /// Set when kube-apiserver serves the AccessKey API: every command goes through it.
    pub api: Option<AccessKeys>,
}

impl Ctx {
    pub fn new(store: KeyStore, user_prefix: &str, caller: &str) -> Self {
        Ctx {
            store,
            user_prefix: user_prefix.to_owned(),
            caller: caller.to_owned(),
            server: None,
            out: String::new(),
            notes: Vec::new(),
            api: None,
        }
    }

    /// The kube store for `client`: the AccessKey API when kube-apiserver serves it, the record
    /// Secrets in `namespace` only when the API's group is not registered. An APIService that
    /// exists but does not answer is an error, never a reason to write Secrets.
    pub async fn for_cluster(
        client: kube::Client,
        namespace: &str,
        user_prefix: &str,
        server: Option<String>,
    ) -> anyhow::Result<Self> {
        let api = match served(&client).await? {
            Served::Api => Some(AccessKeys::new(client.clone())),
            Served::NotRegistered => None,
        };
        let keys = KubeKeys::new(client, namespace);
        let mut ctx = Ctx::new(KeyStore::Kube(keys), user_prefix, "");
        ctx.server = server;
        ctx.api = api;
        Ok(ctx)
    }

    pub async fn open(global: &Global, user_prefix: &str) -> anyhow::Result<Self> {
        match global.store() {
            StoreSpec::Dir(dir) => {
                let keys = DirKeys::new(dir, global.namespace.clone());
                Ok(Ctx::new(KeyStore::Dir(keys), user_prefix, &local_user()))
            }
            StoreSpec::Kube => {
                let (client, server) = global.client().client_and_server().await?;
                let server = Some(server.trim_end_matches('/').to_owned());
                Ctx::for_cluster(client, &global.namespace, user_prefix, server).await
            }
        }
    }

    fn view(&self, r: &KeyRecord) -> KeyView {
        KeyView::new(r, &self.user_prefix, Timestamp::now())
    }

    fn emit(&mut self, view: &KeyView, output: Output) -> anyhow::Result<()> {
        match output {
            Output::Text => self.out.push_str(&view.text()),
            Output::Json => {
                self.out.push_str(&serde_json::to_string_pretty(view)?);
                self.out.push('\n');
            }
            Output::Yaml => self.out.push_str(&serde_saphyr::to_string(view)?),
        }
        Ok(())
    }

    /// `keys list` output: the table, or every key as one JSON/YAML document.
    fn emit_list(
        &mut self,
        views: &[KeyView],
        output: ListOutput,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        match output {
            ListOutput::Table | ListOutput::Wide if views.is_empty() => {
                self.note("No keys yet; create one with `keygate keys create --name NAME`.");
            }
            ListOutput::Table | ListOutput::Wide => {
                let t = table(views, now, output == ListOutput::Wide);
                self.out.push_str(&t);
            }
            ListOutput::Json => {
                self.out.push_str(&serde_json::to_string_pretty(views)?);
                self.out.push('\n');
            }
            ListOutput::Yaml => self.out.push_str(&serde_saphyr::to_string(&views)?),
        }
        Ok(())
    }

    fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    /// The caller's username for `created-by`: SelfSubjectReview, else the kubeconfig user.
    async fn caller(&self, global: Option<&Global>) -> String {
        if !self.caller.is_empty() {
            return self.caller.clone();
        }
        if let KeyStore::Kube(k) = &self.store
            && let Some(u) = k.whoami().await
        {
            return u;
        }
        global
            .and_then(|g| g.client().kubeconfig_user())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The person at the keyboard, as the dir store records them (`$USER`, `$LOGNAME`).
pub fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

pub async fn run(global: &Global, args: KeysArgs) -> anyhow::Result<()> {
    // The same rule as `serve --user-prefix`: RoleBindings must never name a system: user.
    identity::check_user_prefix(&args.user_prefix)?;
    let mut ctx = Ctx::open(global, &args.user_prefix).await?;
    let result = execute(&mut ctx, args.command, Some(global)).await;
    print!("{}", ctx.out);
    for n in &ctx.notes {
        eprintln!("{n}");
    }
    result
}

/// Runs one key command against `ctx`.
pub async fn execute(
    ctx: &mut Ctx,
    cmd: KeysCommand,
    global: Option<&Global>,
) -> anyhow::Result<()> {
    if let Some(api) = ctx.api.clone() {
        return through_api::execute(ctx, &api, cmd).await;
    }
    match cmd {
        KeysCommand::Create(a) => create(ctx, a, global).await,
        KeysCommand::List(a) => list(ctx, a.output).await,
        KeysCommand::Get(a) => {
            let stored = ctx.store.get_shown(&IdKey::parse(&a.id)?).await?;
            let view = ctx.view(&stored.record);
            ctx.emit(&view, a.output)
        }
        KeysCommand::Edit(a) => edit(ctx, a).await,
        KeysCommand::Regenerate(a) => regenerate(ctx, a).await,
        KeysCommand::Disable(a) => set_disabled(ctx, &a.id, true).await,
        KeysCommand::Enable(a) => set_disabled(ctx, &a.id, false).await,
        KeysCommand::Delete(a) => delete(ctx, &a.id).await,
        KeysCommand::Seal(a) => super::seal::seal_records(ctx, &a).await,
    }
}

/// A lifecycle error as the command line says it: prefixed with the flag it is about.
fn flagged(e: LifecycleError) -> anyhow::Error {
    let flag = match e.field() {
        Some(Field::Name) => "--name",
        // The flag that is missing is the one to name.
        Some(Field::Namespaces) => return anyhow::anyhow!("--namespace-scope needs --role: {e}"),
        Some(Field::Groups) => "--group",
        Some(Field::Expiration) => "--expires",
        Some(Field::Grace) => "--grace",
        None => return e.into(),
    };
    anyhow::anyhow!("{flag}: {e}")
}

/// What `keys create` refuses before asking anyone, on every path.
fn check_create(a: &CreateArgs) -> anyhow::Result<()> {
    if !a.namespace_scope.is_empty() && a.role.is_none() && !a.inherit {
        bail!(
            "--namespace-scope needs --role (each namespace gets a RoleBinding to the ClusterRole \
             of that role, e.g. --role view --namespace-scope {ns}) or --inherit (your own \
             rights, only in those namespaces: --inherit --namespace-scope {ns})",
            ns = a.namespace_scope[0]
        );
    }
    if let Some(g) = a.groups.iter().find(|g| g.starts_with("system:")) {
        bail!("--group {g}: keygate never emits system: groups; pick a group outside system:");
    }
    if a.name.trim().is_empty() {
        bail!("--name must not be empty");
    }
    Ok(())
}

/// The consumer Secret `--consumer-secret` asks for, if any.
fn consumer(ctx: &Ctx, a: &CreateArgs) -> anyhow::Result<Option<Consumer>> {
    Ok(
        match (&a.consumer_secret, &a.consumer_namespace, &ctx.store) {
            (Some(_), _, KeyStore::Dir(_)) => bail!(
                "--consumer-secret needs the kube store (--store kube): the dir store has no cluster \
             to write the Secret to. Store the token yourself, e.g. `kubectl create secret generic \
             NAME --from-literal=token=...`"
            ),
            (Some(name), Some(ns), KeyStore::Kube(_)) => Some(Consumer {
                name: name.clone(),
                namespace: ns.clone(),
                server: a
                    .server
                    .clone()
                    .or_else(|| ctx.server.clone())
                    .context("no API server URL for the consumer Secret; pass --server URL")?,
            }),
            _ => None,
        },
    )
}

async fn create(ctx: &mut Ctx, a: CreateArgs, global: Option<&Global>) -> anyhow::Result<()> {
    let now = Timestamp::now();
    check_create(&a)?;
    if a.inherit {
        match ctx.store {
            KeyStore::Dir(_) => bail!(
                "--inherit needs the kube store and the AccessKey API: such a key acts with its \
                 creator's rights, which keygate's authorizer asks kube-apiserver about at each \
                 request; the dir store has no cluster to ask. Use --role (with \
                 --namespace-scope), or --store kube where `keygate serve --api` runs"
            ),
            KeyStore::Kube(_) => bail!(
                "--inherit needs the AccessKey API, and this cluster does not serve it (no \
                 APIService {}): only the API records the authenticated creator whose rights the \
                 key inherits. Install it (docs/install.md) or use --role",
                crate::api::served::APISERVICE
            ),
        }
    }
    let consumer = consumer(ctx, &a)?;
    let new = NewKey {
        name: a.name.clone(),
        description: a.description.clone(),
        role: a.role.map(Into::into),
        namespaces: a.namespace_scope.clone(),
        groups: a.groups.clone(),
        expiration: a.expires.map(|e| e.at(now)).transpose().map_err(flagged)?,
        created_by: String::new(),
    };
    let (mut record, token) = lifecycle::mint(&new, now).map_err(flagged)?;
    record.created_by = ctx.caller(global).await;
    let namespaces = record.namespaces.clone();
    let username = identity::username(&ctx.user_prefix, &token.id.key());

    let stored = match &ctx.store {
        KeyStore::Dir(_) => {
            let s = ctx.store.create(&record).await?;
            if !namespaces.is_empty() {
                let role = record.role.map(|r| r.to_string()).unwrap_or_default();
                ctx.note(format!(
                    "note: the dir store has no cluster, so no RoleBindings were created; the key \
                     records its scope ({}). In the cluster, run for each namespace: kubectl create \
                     rolebinding keygate-{} --clusterrole={role} --user={username} -n NAMESPACE",
                    namespaces.join(","),
                    token.id.key()
                ));
            }
            s
        }
        KeyStore::Kube(k) => {
            provision::create_key(k, &record, &username, &token.expose(), consumer.as_ref()).await?
        }
    };
    let mut view = ctx.view(&stored.record);
    view.token = Some(token.expose());
    report_created(ctx, &view, consumer.as_ref(), a.output)
}

/// What `keys create` prints: the key and its token (once), and the warnings that go with it.
fn report_created(
    ctx: &mut Ctx,
    view: &KeyView,
    consumer: Option<&Consumer>,
    output: Output,
) -> anyhow::Result<()> {
    let token = view.token.clone().unwrap_or_default();
    match output {
        Output::Text => {
            writeln!(ctx.out, "Created key {} ({})", view.id, view.name)?;
            writeln!(ctx.out, "Username:  {}", view.username)?;
            if let Some(c) = consumer {
                writeln!(ctx.out, "Consumer:  secret/{} -n {}", c.name, c.namespace)?;
            }
            writeln!(ctx.out, "Token:     {token}")?;
        }
        other => ctx.emit(view, other)?,
    }
    if let Some(c) = consumer {
        let within = view.namespaces.join(", ");
        let reach = match (&view.role, view.namespaces.is_empty()) {
            _ if view.inherit_creator => format!(
                "with its creator's rights{}{}",
                if within.is_empty() {
                    String::new()
                } else {
                    format!(" in {within}")
                },
                if view.rules.is_empty() {
                    ""
                } else {
                    ", within its rules"
                }
            ),
            (Some(role), true) => format!("with role {role} cluster-wide"),
            (Some(role), false) => format!("with role {role} in {within}"),
            (None, _) => "with whatever RBAC grants its user and groups".to_owned(),
        };
        ctx.note(format!(
            "warning: secret/{} -n {} holds this key's token in plain text: anyone who can read \
             Secrets in namespace {} can use the key, {reach}. Keep Secret readers there few, and \
             give each consumer a dedicated key with the smallest role it needs.",
            c.name, c.namespace, c.namespace
        ));
    }
    ctx.note("warning: the token is shown only this once and cannot be read back; store it now.");
    Ok(())
}

async fn list(ctx: &mut Ctx, output: ListOutput) -> anyhow::Result<()> {
    let (mut keys, bad) = ctx.store.list().await?;
    for (name, reason) in bad {
        ctx.note(format!("warning: skipping invalid record {name}: {reason}"));
    }
    keys.sort_by(|a, b| {
        (a.record.created, a.record.id.as_str()).cmp(&(b.record.created, b.record.id.as_str()))
    });
    let views: Vec<KeyView> = keys.iter().map(|s| ctx.view(&s.record)).collect();
    ctx.emit_list(&views, output, Timestamp::now())
}

async fn edit(ctx: &mut Ctx, a: EditArgs) -> anyhow::Result<()> {
    let id = IdKey::parse(&a.id)?;
    let change = Edit {
        name: a.name.as_deref(),
        description: a.description.as_deref(),
        disabled: None,
    };
    let stored = lifecycle::edit(&ctx.store, &id, change)
        .await
        .map_err(flagged)?;
    writeln!(ctx.out, "key {} updated", stored.record.id)?;
    Ok(())
}

async fn regenerate(ctx: &mut Ctx, a: RegenerateArgs) -> anyhow::Result<()> {
    let id = IdKey::parse(&a.id)?;
    let grace = a.grace.map(|g| g.0);
    let done = lifecycle::regenerate(&ctx.store, &id, grace, Timestamp::now())
        .await
        .map_err(flagged)?;
    let (token, until) = (done.token, done.old_until);
    let mut view = ctx.view(&done.stored.record);
    view.token = Some(token.expose());
    match a.output {
        Output::Text => {
            writeln!(ctx.out, "New secret for key {} ({})", view.id, view.name)?;
            match until {
                Some(t) => writeln!(ctx.out, "The old secret keeps working until {t}.")?,
                None => writeln!(ctx.out, "The old secret no longer works.")?,
            }
            writeln!(ctx.out, "Token:     {}", token.expose())?;
        }
        other => ctx.emit(&view, other)?,
    }
    ctx.note("warning: the token is shown only this once and cannot be read back; store it now.");
    Ok(())
}

async fn set_disabled(ctx: &mut Ctx, id: &str, disabled: bool) -> anyhow::Result<()> {
    let id = IdKey::parse(id)?;
    let change = Edit {
        disabled: Some(disabled),
        ..Edit::default()
    };
    let stored = lifecycle::edit(&ctx.store, &id, change).await?;
    let what = if disabled {
        "disabled: it no longer authenticates (`keygate keys enable` undoes this)"
    } else {
        "enabled"
    };
    writeln!(ctx.out, "key {} {what}", stored.record.id)?;
    Ok(())
}

async fn delete(ctx: &mut Ctx, id: &str) -> anyhow::Result<()> {
    let id = IdKey::parse(id)?;
    let stored = ctx.store.delete(&id).await?;
    let shown = stored
        .as_ref()
        .map(|s| s.record.id.to_string())
        .unwrap_or_else(|| id.to_string());
    writeln!(ctx.out, "key {shown} deleted")?;
    let (KeyStore::Kube(k), Some(stored)) = (&ctx.store, &stored) else {
        return Ok(());
    };
    let left = provision::delete_extras(k, stored).await;
    if !left.is_empty() {
        bail!(
            "key {shown} is deleted and no longer authenticates, but these could not be removed: \
             {}; delete them with kubectl",
            left.join("; ")
        );
    }
    Ok(())
}
