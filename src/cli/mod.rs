//! The command line: `run`, `check`, `demo`, `keys …` (contract §10) and
//! `completions`.
//!
//! Exit status: 0 done, 1 failed (one clear line on stderr), 2 usage error
//! (clap's own). Key commands act on the store named in the config and call
//! the same [`KeyService`] as the admin API.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::config::Config;
use crate::keys::Actor;
use crate::manage::{self, Changes, KeyOpError, KeyService, NewKey};
use crate::store::Store;

mod args;
mod output;

pub use args::{completions, Cli, Command, CompletionShell, DemoArgs, KeysCommand};
use output::{describe, describe_audit, or_dash, status, to_json};

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
