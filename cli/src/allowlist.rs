//! `certgate allowlist …`: the organisation admins' allow-list layer on the running instance,
//! through its admin socket. `show` prints the list as text `set` reads back, so an operator can
//! save it to a file, edit it and set it again; a save based on an outdated version is refused.

use std::io::Read;
use std::path::{Path, PathBuf};

use certgate_control::allowlist::{AllowListView, SaveAllowList, SavedView};
use certgate_policies::config::Config;
use clap::Subcommand;

use crate::admin_client;

#[derive(Subcommand)]
pub enum AllowlistCommand {
    /// Print an organisation's admin allow list as editable text (with its version), then the
    /// policy files' entries as comments (those are edited in the policy files).
    Show {
        #[arg(long, short, default_value = "certgate.toml")]
        config: PathBuf,
        #[arg(long)]
        org: String,
        /// Print the API's JSON instead (who added each entry, and when).
        #[arg(long)]
        json: bool,
    },
    /// Replace an organisation's admin allow list with a file: one address or CIDR a line,
    /// `#` starts the entry's note. Every bad line is reported and then nothing is saved.
    Set {
        #[arg(long, short, default_value = "certgate.toml")]
        config: PathBuf,
        #[arg(long)]
        org: String,
        /// The list; `-` reads standard input.
        #[arg(long)]
        file: PathBuf,
        /// Save only if the list is still at this version (as `show` printed it); by default
        /// the version current just before the save.
        #[arg(long)]
        expect_version: Option<i64>,
    },
}

pub fn run(command: AllowlistCommand) -> Result<(), String> {
    match command {
        AllowlistCommand::Show { config, org, json } => {
            let config = crate::load_config(&config)?;
            let answer = admin_client::call(&config.server.admin_socket, "GET", &path(&org), None)?;
            if json {
                println!("{}", String::from_utf8_lossy(&answer));
                return Ok(());
            }
            print!("{}", as_text(&parse(&answer)?));
            Ok(())
        }
        AllowlistCommand::Set {
            config,
            org,
            file,
            expect_version,
        } => {
            let config = crate::load_config(&config)?;
            let text = read_list(&file)?;
            let version = match expect_version {
                Some(version) => version,
                None => current(&config, &org)?.version,
            };
            let request = SaveAllowList {
                version,
                text,
                actor: Some(actor()),
            };
            let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
            let answer =
                admin_client::call(&config.server.admin_socket, "PUT", &path(&org), Some(body))?;
            let saved: SavedView = serde_json::from_slice(&answer)
                .map_err(|e| format!("unexpected answer from the instance: {e}"))?;
            println!(
                "saved version {} of the admin allow list of {org}: {} added, {} removed \
                 (in force on every instance within a second)",
                saved.version,
                saved.added.len(),
                saved.removed.len()
            );
            Ok(())
        }
    }
}

fn path(org: &str) -> String {
    format!(
        "/api/v1/allowlist/{}",
        percent_encoding::utf8_percent_encode(org, percent_encoding::NON_ALPHANUMERIC)
    )
}

fn parse(answer: &[u8]) -> Result<AllowListView, String> {
    serde_json::from_slice(answer).map_err(|e| format!("unexpected answer from the instance: {e}"))
}

fn current(config: &Config, org: &str) -> Result<AllowListView, String> {
    parse(&admin_client::call(
        &config.server.admin_socket,
        "GET",
        &path(org),
        None,
    )?)
}

fn read_list(file: &Path) -> Result<String, String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))
}

/// Who saves, for the audit log: the local user running the CLI.
fn actor() -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |user| user.name);
    format!("operator {name} (certgate allowlist set)")
}

/// The list as `set` reads it: entries as lines, everything else as comments.
fn as_text(view: &AllowListView) -> String {
    let mut text = format!(
        "# admin allow list of {org}, version {version}\n\
         # edit and save with: certgate allowlist set --org {org} --file FILE --expect-version {version}\n",
        org = view.org,
        version = view.version
    );
    for entry in &view.entries {
        if entry.note.is_empty() {
            text.push_str(&format!("{}\n", entry.network));
        } else {
            text.push_str(&format!("{}  # {}\n", entry.network, entry.note));
        }
    }
    if !view.entries.is_empty() {
        text.push_str("#\n# added by:\n");
        for entry in &view.entries {
            text.push_str(&format!(
                "#   {}  {} at {}\n",
                entry.network,
                entry.added_by,
                when(entry.added_at)
            ));
        }
    }
    text.push_str("#\n# from the policy files (read-only here; the network admins edit them):\n");
    if view.files.is_empty() {
        text.push_str("#   none\n");
    }
    for entry in &view.files {
        text.push_str(&format!("#   {}  {}\n", entry.network, entry.source));
    }
    text
}

fn when(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use certgate_control::allowlist::{AdminEntryView, FileEntryView, LimitsView};
    use certgate_policies::{parse_admin_allow_list, AdminAllowListLimits};

    #[test]
    fn shown_text_reads_back_as_the_same_list() {
        let view = AllowListView {
            org: "noord".into(),
            version: 3,
            entries: vec![
                AdminEntryView {
                    network: "192.0.2.0/24".into(),
                    note: "front desk".into(),
                    added_by: "operator anna (certgate allowlist set)".into(),
                    added_at: 1_750_000_000,
                },
                AdminEntryView {
                    network: "2001:db8:1::/48".into(),
                    note: String::new(),
                    added_by: "anna@noord.example".into(),
                    added_at: 1_750_000_100,
                },
            ],
            files: vec![FileEntryView {
                network: "198.51.100.0/24".into(),
                source: "allow_ips_files noord.allowlist:3".into(),
            }],
            limits: LimitsView {
                min_prefix_v4: 16,
                min_prefix_v6: 48,
                max_entries: 10_000,
            },
        };
        let text = as_text(&view);
        assert_eq!(
            text,
            "# admin allow list of noord, version 3\n\
             # edit and save with: certgate allowlist set --org noord --file FILE --expect-version 3\n\
             192.0.2.0/24  # front desk\n\
             2001:db8:1::/48\n\
             #\n\
             # added by:\n\
             #   192.0.2.0/24  operator anna (certgate allowlist set) at 2025-06-15T15:06:40Z\n\
             #   2001:db8:1::/48  anna@noord.example at 2025-06-15T15:08:20Z\n\
             #\n\
             # from the policy files (read-only here; the network admins edit them):\n\
             #   198.51.100.0/24  allow_ips_files noord.allowlist:3\n"
        );
        let back = parse_admin_allow_list(&text, &AdminAllowListLimits::default()).unwrap();
        let networks: Vec<String> = back.iter().map(ToString::to_string).collect();
        assert_eq!(networks, ["192.0.2.0/24  # front desk", "2001:db8:1::/48"]);
    }
}
