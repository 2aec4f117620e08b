//! The allow-list layer organisation admins edit, as requests see it: the live per-organisation
//! lists every request consults beside the policy files' (one atomic pointer, no lock), and how
//! they are built from SQL. Saving one is the control plane's (`certgate-control`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use certgate_db::{AdminAllowList, Database, DbError};
use certgate_policies::{parse_ip_or_cidr, AllowEntry, EntrySource, IpAllowList};

/// Every organisation's admin layer at one moment; what `decide` reads.
#[derive(Debug, Default, Clone)]
pub struct AdminAllowLayers {
    orgs: HashMap<String, AdminLayer>,
}

#[derive(Debug, Clone)]
struct AdminLayer {
    version: i64,
    list: Arc<IpAllowList>,
}

impl AdminAllowLayers {
    /// Layers from SQL's lists. A stored network that no longer parses (written by hand, say) is
    /// left out and logged rather than stopping the gateway.
    pub fn from_lists(lists: &[AdminAllowList]) -> Self {
        let orgs = lists
            .iter()
            .map(|list| {
                let layer = AdminLayer {
                    version: list.version,
                    list: Arc::new(list_of(list)),
                };
                (list.org.clone(), layer)
            })
            .collect();
        AdminAllowLayers { orgs }
    }

    /// The most specific admin entry of `org` containing `ip`.
    pub fn lookup(&self, org: &str, ip: IpAddr) -> Option<&AllowEntry> {
        self.orgs.get(org)?.list.lookup(ip)
    }

    /// `org`'s version (0 when it never saved a list).
    pub fn version(&self, org: &str) -> i64 {
        self.orgs.get(org).map_or(0, |layer| layer.version)
    }
}

fn list_of(list: &AdminAllowList) -> IpAllowList {
    list.entries
        .iter()
        .filter_map(|record| match parse_ip_or_cidr(&record.network) {
            Some(net) => Some(AllowEntry {
                net,
                source: EntrySource::Admin {
                    note: record.note.clone(),
                },
            }),
            None => {
                tracing::error!(org = %list.org, network = %record.network, "a stored admin allow-list entry is not a network; ignoring it");
                None
            }
        })
        .collect()
}

/// The live layers, shared by the proxy, the admin API and the feed. Writers copy the map (its
/// lists are shared) and swap it in; a layer is replaced only by the same or a newer version, so
/// reloads finishing out of order never bring an older list back.
#[derive(Debug, Default)]
pub struct AdminAllowLists {
    current: ArcSwap<AdminAllowLayers>,
}

impl AdminAllowLists {
    pub fn new(layers: AdminAllowLayers) -> Self {
        AdminAllowLists {
            current: ArcSwap::from_pointee(layers),
        }
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<AdminAllowLayers>> {
        self.current.load()
    }

    /// Installs one organisation's list at `version`.
    pub fn install(&self, org: &str, version: i64, list: IpAllowList) {
        let list = Arc::new(list);
        self.current.rcu(|layers| {
            let mut next = AdminAllowLayers::clone(layers);
            if next.version(org) <= version {
                next.orgs.insert(
                    org.to_owned(),
                    AdminLayer {
                        version,
                        list: Arc::clone(&list),
                    },
                );
            }
            next
        });
    }

    /// Installs every list of a full reload that is not older than the one in force.
    pub fn install_all(&self, fresh: AdminAllowLayers) {
        self.current.rcu(|layers| {
            let mut next = AdminAllowLayers::clone(layers);
            for (org, layer) in &fresh.orgs {
                if next.version(org) <= layer.version {
                    next.orgs.insert(org.clone(), layer.clone());
                }
            }
            next
        });
    }
}

/// Every organisation's layer from SQL.
pub async fn load_layers(database: &Database) -> Result<AdminAllowLayers, DbError> {
    Ok(AdminAllowLayers::from_lists(
        &database.admin_allow_lists().await?,
    ))
}

/// Reloads one organisation's layer from SQL (a change announced on the feed).
pub async fn reload_one(database: &Database, live: &AdminAllowLists, org: &str) {
    match database.admin_allow_list(org).await {
        Ok(list) => live.install(org, list.version, list_of(&list)),
        Err(error) => {
            tracing::error!(%org, %error, "cannot reload an admin allow list; the next resync retries")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use certgate_db::AdminAllowRecord;

    fn stored(org: &str, version: i64, networks: &[&str]) -> AdminAllowList {
        AdminAllowList {
            org: org.into(),
            version,
            entries: networks
                .iter()
                .map(|n| AdminAllowRecord {
                    network: (*n).into(),
                    note: format!("v{version}"),
                    added_by: "anna".into(),
                    added_at: 1,
                })
                .collect(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn layers_are_per_organisation_and_skip_unreadable_rows() {
        let layers = AdminAllowLayers::from_lists(&[
            stored("noord", 3, &["192.0.2.0/24", "not a network"]),
            stored("zuid", 1, &["198.51.100.7"]),
        ]);
        assert_eq!(
            layers.lookup("noord", ip("192.0.2.9")).unwrap().to_string(),
            "admin allow list (v3) 192.0.2.0/24"
        );
        assert!(layers.lookup("zuid", ip("192.0.2.9")).is_none());
        assert!(layers.lookup("oost", ip("192.0.2.9")).is_none());
        assert_eq!(
            layers.orgs["noord"].list.len(),
            1,
            "the unreadable row is left out"
        );
        assert_eq!((layers.version("noord"), layers.version("oost")), (3, 0));
    }

    #[test]
    fn an_older_list_never_replaces_a_newer_one() {
        let live = AdminAllowLists::new(AdminAllowLayers::from_lists(&[stored(
            "noord",
            2,
            &["192.0.2.0/24"],
        )]));
        // A reload that read SQL before the last save finishes after it.
        live.install_all(AdminAllowLayers::from_lists(&[
            stored("noord", 1, &["10.0.0.0/16"]),
            stored("zuid", 1, &["10.9.0.0/16"]),
        ]));
        let layers = live.load();
        assert_eq!(layers.version("noord"), 2);
        assert!(layers.lookup("noord", ip("192.0.2.1")).is_some());
        assert!(layers.lookup("zuid", ip("10.9.1.1")).is_some());

        live.install("noord", 1, IpAllowList::default());
        assert!(live.load().lookup("noord", ip("192.0.2.1")).is_some());
        live.install("noord", 3, IpAllowList::default());
        assert!(live.load().lookup("noord", ip("192.0.2.1")).is_none());
        assert_eq!(live.load().version("noord"), 3);
    }
}
