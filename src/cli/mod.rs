//! The command line: `run`, `check`, `demo`, `keys …` (contract §10) and
//! `completions`.
//!
//! Exit status: 0 done, 1 failed (one clear line on stderr), 2 usage error
//! (clap's own). Key commands act on the store named in the config and call
//! the same [`KeyService`] as the admin API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::keys::{Actor, AuditPage, KeyRecord, KeyUsage, Timestamp};
use crate::manage::{self, Changes, KeyOpError, KeyService, NewKey};
use crate::store::Store;

/// osir-gateway: the API-key gateway in front of the OSIR API.
#[derive(Parser, Debug)]
#[command(name = "osir-gateway", version = crate::version::LONG, about)]
pub struct Cli {
    /// Config file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        default_value = "./gateway.toml"
    )]
    pub config: PathBuf,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve (what a bare `osir-gateway` does).
    Run,
    /// Validate the config file; exit 0 if valid, 1 with each problem.
    Check,
    /// Serve a self-contained demo: in-memory keys, sample upstreams.
    Demo(DemoArgs),
    /// Manage API keys in the configured store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    ///
    /// For example: `osir-gateway completions bash > /etc/bash_completion.d/osir-gateway`.
    Completions {
        /// The shell to complete in.
        shell: CompletionShell,
    },
}

/// Shells `completions` writes scripts for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionShell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

impl CompletionShell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script for `shell`, naming every command and flag.
pub fn completions(shell: CompletionShell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(
        shell.generator(),
        &mut <Cli as clap::CommandFactory>::command(),
        "osir-gateway",
        &mut out,
    );
    out
}

/// Flags of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// API listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: std::net::SocketAddr,
}

/// `keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a key and print it once.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// live or test.
        #[arg(long, default_value = "test")]
        env: String,
        /// A scope such as domains:read (repeat for more).
        #[arg(long = "scope", required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// An allowed IP or CIDR (repeat for more).
        #[arg(long = "allow-ip", num_args = 1..)]
        allow_ips: Vec<String>,
        /// Customer account.
        #[arg(long)]
        account: Option<String>,
        /// Lifetime, e.g. 90d.
        #[arg(long = "expires-in")]
        expires_in: Option<String>,
        /// Accept a scope whose resource no route names (normally refused,
        /// as a likely typo).
        #[arg(long = "allow-unknown-scope")]
        allow_unknown_scope: bool,
        /// Make this many keys with the same grants, named NAME-1 … NAME-N,
        /// one line each (`ID KEY`, or one compact JSON object with --json).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never secrets), filtered and paged.
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
        /// Only live or only test keys.
        #[arg(long)]
        env: Option<String>,
        /// Only keys that are active, revoked or expired.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1–1000); the next page starts at --cursor.
        #[arg(long)]
        limit: Option<String>,
        /// Start after this record (the previous page's next cursor).
        #[arg(long)]
        cursor: Option<String>,
        /// Print JSON: an array of records, or with --limit/--cursor
        /// `{"keys": […], "next_cursor": …}`.
        #[arg(long)]
        json: bool,
    },
    /// Show one key with its usage.
    Show {
        /// Key id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change name, scopes, allowed IPs, expiry or account.
    Update {
        /// Key id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New scopes (replace all).
        #[arg(long = "scope", num_args = 1..)]
        scopes: Vec<String>,
        /// New allowed IPs (replace all).
        #[arg(long = "allow-ip", num_args = 1.., conflicts_with = "clear_ips")]
        allow_ips: Vec<String>,
        /// Remove every IP restriction.
        #[arg(long = "clear-ips")]
        clear_ips: bool,
        /// New lifetime from now, e.g. 90d.
        #[arg(long = "expires-in", conflicts_with = "no_expiry")]
        expires_in: Option<String>,
        /// Remove the expiry: the key never expires.
        #[arg(long = "no-expiry")]
        no_expiry: bool,
        /// New customer account.
        #[arg(long)]
        account: Option<String>,
        /// Accept a scope whose resource no route names.
        #[arg(long = "allow-unknown-scope")]
        allow_unknown_scope: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail: key changes, newest first, paged.
    Audit {
        /// Only changes to this key id.
        id: Option<String>,
        /// Only changes since then: an RFC 3339 time or a duration back
        /// from now (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Entries per page (1–1000).
        #[arg(long, default_value_t = manage::AUDIT_DEFAULT_LIMIT)]
        limit: usize,
        /// Start after this entry (the previous page's next cursor).
        #[arg(long)]
        cursor: Option<String>,
        /// Print JSON: `{"entries": […], "next_cursor": …}`.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: String,
    },
    /// New key with the same grants; the old one expires after the grace.
    Rotate {
        /// Key id.
        id: String,
        /// How long the old key keeps working.
        #[arg(long, default_value = "24h")]
        grace: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => crate::app::run::run(&cli.config),
        Command::Check => check(&cli.config),
        Command::Demo(args) => crate::app::demo::run(args.listen, args.admin),
        Command::Keys(k) => keys_command(&cli.config, k),
        Command::Completions { shell } => {
            use std::io::Write;
            match std::io::stdout().write_all(&completions(shell)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("cannot write the completion script: {e}")),
            }
        }
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} routes, {} upstreams)",
                path.display(),
                cfg.routes.len(),
                cfg.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for p in &errs.0 {
                eprintln!("{p}");
            }
            ExitCode::FAILURE
        }
    }
}

fn keys_command(path: &std::path::Path, cmd: KeysCommand) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(errs) => {
            let first = errs.0.first().map(ToString::to_string).unwrap_or_default();
            return fail(format!("invalid config {}: {first}", path.display()));
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start runtime: {e}")),
    };
    crate::diag::init_audit_only(cfg.log.format);
    rt.block_on(async move {
        let store = match cfg.store.open().await {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        match keys_op(&store, &cfg, cmd).await {
            Err(KeyOpError::Unreadable { listed, .. }) => {
                // The readable records were listed; each bad one was named.
                print!("{listed}");
                ExitCode::FAILURE
            }
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            // A usage error, like clap's own: exit 2.
            Err(e @ KeyOpError::NothingToChange(_)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Err(e) => fail(e),
        }
    })
}

/// Parses `args` (without the program name) as the command line would and,
/// when they name a `keys` command, runs it against `store`: what the CLI
/// would print, or its error line. For tests that drive the CLI's inputs
/// without a process per case.
pub async fn run_keys_args(store: &Store, cfg: &Config, args: &[String]) -> Result<String, String> {
    let argv = std::iter::once("osir-gateway".to_owned()).chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    match cli.command {
        Some(Command::Keys(k)) => keys_op(store, cfg, k).await.map_err(|e| e.to_string()),
        _ => Ok(String::new()),
    }
}

fn or_dash(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

fn status(r: &KeyRecord) -> &'static str {
    manage::Status::of(r, Timestamp::now()).as_str()
}

fn describe(r: &KeyRecord, usage: Option<&KeyUsage>) -> String {
    let scopes: Vec<String> = r.scopes.iter().map(ToString::to_string).collect();
    let ips: Vec<String> = r.allowed_ips.iter().map(ToString::to_string).collect();
    let mut s = format!(
        "id:          {}\nname:        {}\nenv:         {}\naccount:     {}\nscopes:      {}\nallowed_ips: {}\nhint:        {}\nstatus:      {}\ncreated_at:  {}\nexpires_at:  {}\nrevoked_at:  {}\n",
        r.id,
        r.name,
        r.env,
        or_dash(r.account.as_ref()),
        scopes.join(" "),
        if ips.is_empty() { "any".to_owned() } else { ips.join(" ") },
        r.hint,
        status(r),
        r.created_at,
        or_dash(r.expires_at),
        or_dash(r.revoked_at),
    );
    if let Some(old) = &r.replaces {
        s.push_str(&format!("replaces:    {old}\n"));
    }
    if let Some(new) = &r.replaced_by {
        s.push_str(&format!("replaced_by: {new}\n"));
    }
    if let Some(u) = usage {
        s.push_str(&format!(
            "last_used_at: {}\nlast_ip:     {}\nrequests:    {}\n",
            or_dash(u.last_used_at),
            or_dash(u.last_ip),
            u.total
        ));
        for (day, n) in u.daily.iter().rev().take(7) {
            s.push_str(&format!("  {day}: {n}\n"));
        }
    }
    s
}

/// The audit page as a table, one change a line, and the next page's
/// command when there is one.
fn describe_audit(page: &AuditPage) -> String {
    let mut out = format!(
        "{:<24}  {:<7}  {:<24}  {:<28}  {}\n",
        "TIME", "ACTION", "KEY", "ACTOR", "CHANGES"
    );
    for e in &page.entries {
        let actor = match &e.actor {
            Actor::Cli { user, host } => format!("cli:{user}@{host}"),
            Actor::Api { token, ip } => format!("api:{token}@{ip}"),
            Actor::Local { user, host } => format!("local:{user}@{host}"),
        };
        let action = serde_json::to_value(e.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let changes: Vec<String> = e.changes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{:<24}  {:<7}  {:<24}  {:<28}  {}\n",
            e.time.to_string(),
            action,
            e.key_id,
            actor,
            changes.join(" ")
        ));
    }
    if let Some(c) = page.next_cursor {
        out.push_str(&format!("more: --cursor {c}\n"));
    }
    out
}

fn to_json(v: &serde_json::Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// `keys create --count N`: N keys with the same grants, one line each. A
/// failure part-way reports how many were made; their keys are not printed
/// (nothing is, on failure), so they are unusable: revoke them by name.
async fn create_many(
    svc: &KeyService<'_>,
    new: NewKey,
    count: u32,
    json: bool,
) -> Result<String, KeyOpError> {
    let mut out = String::new();
    for i in 1..=count {
        let one = NewKey {
            name: format!("{}-{i}", new.name),
            ..new.clone()
        };
        let issued = svc.create(one).await.map_err(|e| KeyOpError::Partial {
            made: i - 1,
            count,
            source: Box::new(e),
        })?;
        if json {
            let v = manage::record_json(&issued.record, None, Some(&issued.key));
            out.push_str(&serde_json::to_string(&v).unwrap_or_default());
        } else {
            out.push_str(&issued.record.id);
            out.push(' ');
            out.push_str(issued.key.expose_secret());
        }
        out.push('\n');
    }
    eprintln!("These {count} keys are shown once: copy them now. They cannot be shown again.");
    Ok(out)
}

/// Runs one key command and returns what to print on stdout.
pub async fn keys_op(store: &Store, cfg: &Config, cmd: KeysCommand) -> Result<String, KeyOpError> {
    let svc = KeyService::as_actor(store, Actor::cli());
    // New scopes must name a resource some route names, unless forced.
    let checked = |allow_unknown: bool| {
        KeyService::as_actor(store, Actor::cli())
            .known_resources((!allow_unknown).then(|| cfg.known_resources()))
    };
    let record_json = manage::record_json;
    match cmd {
        KeysCommand::Create {
            name,
            env,
            scopes,
            allow_ips,
            account,
            expires_in,
            allow_unknown_scope,
            count,
            json,
        } => {
            let svc = checked(allow_unknown_scope);
            let new = NewKey {
                name,
                env: manage::parse_env(&env)?,
                scopes: manage::parse_scopes(&scopes)?,
                allowed_ips: manage::parse_ips(&allow_ips)?,
                account,
                expires_in: expires_in
                    .map(|d| manage::parse_duration("expires-in", &d))
                    .transpose()?,
            };
            if count > 1 {
                return create_many(&svc, new, count, json).await;
            }
            let issued = svc.create(new).await?;
            eprintln!("This key is shown once: copy it now. It cannot be shown again.");
            if json {
                return Ok(to_json(&record_json(
                    &issued.record,
                    None,
                    Some(&issued.key),
                )));
            }
            Ok(format!(
                "{}key:         {}\n",
                describe(&issued.record, None),
                issued.key.expose_secret()
            ))
        }
        KeysCommand::List {
            account,
            env,
            status: status_filter,
            limit,
            cursor,
            json,
        } => {
            let (query, paged) = manage::list_query(
                account.as_deref(),
                env.as_deref(),
                status_filter.as_deref(),
                limit.as_deref(),
                cursor.as_deref(),
            )?;
            let page = svc.list_page(&query).await?;
            // One bad record hides no other: the readable ones are printed,
            // each bad one named on stderr, and the command fails (exit 1).
            for e in &page.corrupt {
                eprintln!("error: {e}");
            }
            let failed = !page.corrupt.is_empty();
            let all = page.records;
            let out = if json {
                let v: Vec<_> = all.iter().map(|r| record_json(r, None, None)).collect();
                if paged {
                    to_json(&serde_json::json!({
                        "keys": v,
                        "next_cursor": page.next_cursor.map(|c| c.to_string()),
                    }))
                } else {
                    to_json(&serde_json::Value::Array(v))
                }
            } else {
                let mut out = format!(
                    "{:<24}  {:<4}  {:<8}  {:<20}  {:<24}  {}\n",
                    "ID", "ENV", "STATUS", "HINT", "NAME", "SCOPES"
                );
                for r in &all {
                    let scopes: Vec<String> = r.scopes.iter().map(ToString::to_string).collect();
                    out.push_str(&format!(
                        "{:<24}  {:<4}  {:<8}  {:<20}  {:<24}  {}\n",
                        r.id,
                        r.env,
                        status(r),
                        r.hint,
                        r.name,
                        scopes.join(" ")
                    ));
                }
                out
            };
            if failed {
                return Err(KeyOpError::Unreadable {
                    listed: out,
                    count: page.corrupt.len(),
                });
            }
            Ok(out)
        }
        KeysCommand::Show { id, json } => {
            let (r, u) = svc.show(&id).await?;
            if json {
                return Ok(to_json(&record_json(&r, Some(&u), None)));
            }
            Ok(describe(&r, Some(&u)))
        }
        KeysCommand::Update {
            id,
            name,
            scopes,
            allow_ips,
            clear_ips,
            expires_in,
            no_expiry,
            account,
            allow_unknown_scope,
            json,
        } => {
            let svc = checked(allow_unknown_scope);
            let changes = Changes {
                expires_in: if no_expiry {
                    Some(None)
                } else {
                    expires_in
                        .map(|d| manage::parse_duration("expires-in", &d).map(Some))
                        .transpose()?
                },
                account: account.map(Some),
                name,
                scopes: if scopes.is_empty() {
                    None
                } else {
                    Some(manage::parse_scopes(&scopes)?)
                },
                allowed_ips: if clear_ips {
                    Some(Vec::new())
                } else if allow_ips.is_empty() {
                    None
                } else {
                    Some(manage::parse_ips(&allow_ips)?)
                },
            };
            if changes.is_empty() {
                return Err(KeyOpError::NothingToChange(
                    "--name, --scope, --allow-ip, --clear-ips, --expires-in, --no-expiry, --account",
                ));
            }
            let r = svc.update(&id, changes).await?;
            if json {
                return Ok(to_json(&record_json(&r, None, None)));
            }
            Ok(describe(&r, None))
        }
        KeysCommand::Audit {
            id,
            since,
            limit,
            cursor,
            json,
        } => {
            let query = manage::audit_query(
                id.as_deref(),
                since.as_deref(),
                Some(&limit.to_string()),
                cursor.as_deref(),
            )?;
            let page = svc.audit(&query).await?;
            if json {
                return Ok(to_json(&serde_json::to_value(&page).unwrap_or_default()));
            }
            Ok(describe_audit(&page))
        }
        KeysCommand::Revoke { id } => {
            let r = svc.revoke(&id).await?;
            Ok(format!("revoked {} at {}\n", r.id, or_dash(r.revoked_at)))
        }
        KeysCommand::Rotate { id, grace, json } => {
            let grace: Duration = manage::parse_duration("grace", &grace)?;
            let issued = svc.rotate(&id, grace).await?;
            eprintln!("This key is shown once: copy it now. It cannot be shown again.");
            if json {
                // The record carries `replaces` (and the old one `replaced_by`).
                return Ok(to_json(&record_json(
                    &issued.record,
                    None,
                    Some(&issued.key),
                )));
            }
            Ok(format!(
                "{}key:         {}\nold key {id} keeps working for {}\n",
                describe(&issued.record, None),
                issued.key.expose_secret(),
                humantime::format_duration(grace)
            ))
        }
    }
}
