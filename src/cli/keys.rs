//! Arguments of `keygate keys ...`.

use super::HumanDuration;
use crate::record::ScopeRule;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Username prefix; a key's username is this followed by its ID lowercased. Must match
    /// `keygate serve --user-prefix` (scoped keys' RoleBindings name this user).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "KEYGATE_USER_PREFIX",
        default_value = crate::identity::DEFAULT_USER_PREFIX
    )]
    pub user_prefix: String,

    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Mint a key: prints its ID, username and token (the token is shown only once).
    Create(CreateArgs),
    /// List keys: ID, NAME, ROLE, SCOPE, AGE, EXPIRES, LAST USED, STATE.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one key (never its secret).
    Get(GetArgs),
    /// Change a key's name or description (never its secret).
    Edit(EditArgs),
    /// Issue a new secret for a key; the old one stops at once, or after --grace.
    #[command(visible_alias = "rotate")]
    Regenerate(RegenerateArgs),
    /// Stop a key from authenticating until it is enabled again.
    Disable(IdArg),
    /// Let a disabled key authenticate again.
    Enable(IdArg),
    /// Delete a key, with its RoleBindings and consumer Secret. It stops working at once.
    #[command(visible_alias = "rm")]
    Delete(IdArg),
    /// Seal every existing valid record with the signing key (kube store; once, by a cluster
    /// admin, before the record guard is installed). Reports what it sealed and refused.
    Seal(SealArgs),
}

#[derive(Debug, Args)]
pub struct SealArgs {
    /// The Ed25519 signing key (PEM), as `keygate seal-key` writes it.
    #[arg(long, env = "KEYGATE_RECORD_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: std::path::PathBuf,
}

/// The role a key gets: admin → cluster-admin, edit → edit, view → view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// cluster-admin (cluster-wide), or the admin ClusterRole in each --namespace-scope.
    Admin,
    /// The edit ClusterRole.
    Edit,
    /// The view ClusterRole (read-only).
    View,
}

impl From<RoleArg> for crate::record::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => crate::record::Role::Admin,
            RoleArg::Edit => crate::record::Role::Edit,
            RoleArg::View => crate::record::Role::View,
        }
    }
}

/// `--expires`: a duration from now (`90d`, `12h`) or an RFC 3339 time.
pub use crate::keystore::lifecycle::Expires;

/// `--rule`: one scope rule of an `--inherit` key, in the RBAC PolicyRule shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleArg(pub ScopeRule);

fn list(s: &str) -> Vec<String> {
    s.split(',').map(|p| p.trim().to_owned()).collect()
}

impl std::str::FromStr for RuleArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let syntax = || {
            format!(
                "--rule {s:?}: write VERBS:GROUPS:RESOURCES (e.g. get,list::pods for the core \
                 group, *:apps:deployments) or VERBS:/PATH (e.g. get:/healthz)"
            )
        };
        let (verbs, rest) = s.split_once(':').ok_or_else(syntax)?;
        let verbs = list(verbs);
        if verbs.iter().any(String::is_empty) {
            return Err(syntax());
        }
        let mut rule = ScopeRule {
            verbs,
            ..ScopeRule::default()
        };
        if rest.starts_with('/') {
            rule.non_resource_urls = list(rest);
            if rule.non_resource_urls.iter().any(|u| !u.starts_with('/')) {
                return Err(syntax());
            }
        } else {
            let (groups, resources) = rest.split_once(':').ok_or_else(syntax)?;
            // An empty GROUPS is the core group, as "" in a PolicyRule.
            rule.api_groups = list(groups);
            rule.resources = list(resources);
            if rule
                .resources
                .iter()
                .any(|r| r.is_empty() || r.contains(':'))
            {
                return Err(syntax());
            }
        }
        Ok(RuleArg(rule))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable.
    Text,
    /// One JSON document (for scripts: `jq -r .token`).
    Json,
    /// One YAML document.
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    /// ID, NAME, ROLE, SCOPE, AGE, EXPIRES, LAST USED, STATE.
    Table,
    /// The table plus USERNAME, GROUPS, CREATED BY and DESCRIPTION.
    Wide,
    /// A JSON array of keys.
    Json,
    /// A YAML list of keys.
    Yaml,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    keygate keys create --name ops --role admin --expires 90d\n  \
    keygate keys create --name ci --role view --namespace-scope apps -o json\n  \
    keygate --store kube keys create --name job --role edit --namespace-scope batch \\\n      \
    --consumer-secret job-key --consumer-namespace batch\n  \
    keygate --store kube keys create --name ci --inherit --namespace-scope apps \\\n      \
    --rule get,list,watch::pods --rule '*:apps:deployments'")]
pub struct CreateArgs {
    /// Display name (editable later with `keys edit`).
    #[arg(long)]
    pub name: String,

    /// Free text: what the key is for, who owns it.
    #[arg(long, default_value = "")]
    pub description: String,

    /// Role: cluster-wide through keygate's ClusterRoleBindings, or per namespace with
    /// --namespace-scope. Without a role the key gets only what RoleBindings to its username
    /// or to its --group grant.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,

    /// Limit the key to this namespace (repeatable). With --role: a RoleBinding keygate-<id>
    /// binds the role's ClusterRole to the key's user there, made with your credentials (or by
    /// the AccessKey API after checking that you may bind it), so you cannot grant more than you
    /// have. With --inherit: the key's inherited rights reach only these namespaces.
    #[arg(long = "namespace-scope", value_name = "NS")]
    pub namespace_scope: Vec<String>,

    /// Extra group for the key's user (repeatable). Groups starting with `system:` are refused.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,

    /// The key acts with your own rights as they are at each request (checked by keygate's
    /// authorizer), reduced by --namespace-scope and --rule; not with --role or --group. Needs
    /// the AccessKey API (`keygate serve --api`, APIService v1alpha1.keygate.dev).
    #[arg(long, conflicts_with_all = ["role", "groups"])]
    pub inherit: bool,

    /// With --inherit: what the key may do, as VERBS:GROUPS:RESOURCES (repeatable; each part a
    /// comma-separated list, `*` for any, an empty GROUPS for the core group) or VERBS:/PATH for
    /// non-resource URLs. Examples: `get,list,watch::pods`, `*:apps:deployments,replicasets`,
    /// `get,list:apps,batch:*`, `get:/healthz,/version`. Without --rule the key may do whatever
    /// you may within its namespaces.
    #[arg(
        long = "rule",
        value_name = "VERBS:GROUPS:RESOURCES",
        requires = "inherit"
    )]
    pub rules: Vec<RuleArg>,

    /// When the key stops working: a duration from now (90d, 12h) or an RFC 3339 time.
    #[arg(long, value_name = "90d|12h|RFC3339")]
    pub expires: Option<Expires>,

    /// Also write a Secret (type Opaque, keys `token` and `server`) with this name for
    /// workloads that use the key. Kube store only. Needs --consumer-namespace.
    #[arg(long, value_name = "NAME", requires = "consumer_namespace")]
    pub consumer_secret: Option<String>,

    /// Namespace of the consumer Secret.
    #[arg(long, value_name = "NS", requires = "consumer_secret")]
    pub consumer_namespace: Option<String>,

    /// API server URL written into the consumer Secret (default: the kubeconfig's server).
    #[arg(long, value_name = "URL", requires = "consumer_secret")]
    pub server: Option<String>,

    /// Output format; the token is in every format and shown only this once.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, short = 'o', value_enum, default_value_t = ListOutput::Table)]
    pub output: ListOutput,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Key ID, in any case (see `keygate keys list`).
    pub id: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Key ID, in any case (see `keygate keys list`).
    pub id: String,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["name", "description"])))]
pub struct EditArgs {
    /// Key ID, in any case (see `keygate keys list`).
    pub id: String,
    /// New display name.
    #[arg(long)]
    pub name: Option<String>,
    /// New description (empty to clear).
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegenerateArgs {
    /// Key ID, in any case (see `keygate keys list`).
    pub id: String,
    /// Keep the old secret working this long (e.g. 1h, 7d) while consumers switch over.
    /// Without it the old secret stops working at once.
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<HumanDuration>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}
