//! What the `keys` commands print for a person: records, usage and audit
//! entries as aligned text, and `--json` output (pretty, one document).

use crate::keys::{Actor, AuditPage, KeyRecord, KeyUsage, Timestamp};
use crate::manage;

pub(super) fn or_dash(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

pub(super) fn status(r: &KeyRecord) -> &'static str {
    manage::Status::of(r, Timestamp::now()).as_str()
}

pub(super) fn describe(r: &KeyRecord, usage: Option<&KeyUsage>) -> String {
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
pub(super) fn describe_audit(page: &AuditPage) -> String {
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

pub(super) fn to_json(v: &serde_json::Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}
