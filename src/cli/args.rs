//! The command line's shape: every command, flag and its help text (clap),
//! and the shell completions generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::manage;

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
