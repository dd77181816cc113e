//! Binds the registry's actions to the bus: parse arguments, run the domain
//! function, publish what changed, reply.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use cubeos_shared::envelope::Caller;
use cubeos_shared::roles::Role;

use crate::error::Result;
use crate::settings::Table;
use crate::{Registry, apps, auth, fqdns, ports, profiles, settings, tokens, users, vault};

/// Arguments naming one object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FqdnName {
    fqdn: String,
}

fn to_json<T: Serialize>(value: T) -> Result<Value> {
    Ok(serde_json::to_value(value)?)
}

/// Registers `action` with arguments of type `A`.
fn bind<A, F, Fut>(registry: &Arc<Registry>, action: &str, f: F)
where
    A: DeserializeOwned + Send + 'static,
    F: Fn(Arc<Registry>, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    registry.bus.route(registry, action, f);
}

/// Registers `action` for a handler that needs the caller.
fn bind_as<A, F, Fut>(registry: &Arc<Registry>, action: &str, f: F)
where
    A: DeserializeOwned + Send + 'static,
    F: Fn(Arc<Registry>, Caller, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    registry.bus.route_as(registry, action, f);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Username {
    username: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    username: String,
    role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenId {
    id: String,
}

pub fn register(r: &Arc<Registry>) {
    register_auth(r);
    register_vault(r);
    bind(r, "app.create", |r, new: apps::NewApp| async move {
        let _w = r.writing().await;
        let record = apps::create(&r.store, &r.data_dir, new).await?;
        r.publish_app(&record.app.name).await?;
        to_json(record)
    });
    bind(r, "app.get", |r, a: Named| async move {
        to_json(apps::get(&r.store, &a.name).await?)
    });
    bind(r, "app.list", |r, f: apps::AppFilter| async move {
        to_json(apps::list(&r.store, &f).await?)
    });
    bind(r, "app.update", |r, changes: apps::AppChanges| async move {
        let _w = r.writing().await;
        let record = apps::update(&r.store, changes).await?;
        r.publish_app(&record.app.name).await?;
        to_json(record)
    });
    bind(r, "app.delete", |r, a: Named| async move {
        let _w = r.writing().await;
        let profiles = apps::delete(&r.store, &a.name).await?;
        r.clear_app(&a.name).await;
        for profile in &profiles {
            r.publish_profile_named(profile).await?;
        }
        Ok(json!({ "deleted": a.name }))
    });

    bind(r, "port.reserve", |r, res: ports::Reservation| async move {
        let _w = r.writing().await;
        let app = res.app.clone();
        let row = ports::reserve(&r.store, res).await?;
        r.publish_app(&app).await?;
        to_json(row)
    });
    bind(r, "port.release", |r, rel: ports::Release| async move {
        let _w = r.writing().await;
        let app = rel.app.clone();
        let released = ports::release(&r.store, rel).await?;
        r.publish_app(&app).await?;
        Ok(json!({ "released": released }))
    });
    bind(r, "port.list", |r, f: ports::PortFilter| async move {
        to_json(ports::list(&r.store, &f).await?)
    });

    bind(r, "fqdn.add", |r, new: fqdns::NewFqdn| async move {
        let _w = r.writing().await;
        let app = new.app.clone();
        let row = fqdns::add(&r.store, new).await?;
        r.publish_app(&app).await?;
        to_json(row)
    });
    bind(r, "fqdn.set_proxy_id", |r, set: fqdns::ProxyId| async move {
        let _w = r.writing().await;
        let (row, app) = fqdns::set_proxy_id(&r.store, set).await?;
        r.publish_app(&app).await?;
        to_json(row)
    });
    bind(r, "fqdn.remove", |r, f: FqdnName| async move {
        let _w = r.writing().await;
        let (row, app) = fqdns::remove(&r.store, &f.fqdn).await?;
        r.publish_app(&app).await?;
        to_json(row)
    });

    for (prefix, table) in [("state", Table::SystemState), ("pref", Table::Preferences)] {
        bind_settings(r, prefix, table);
    }

    bind(r, "profile.list", |r, _: Empty| async move {
        to_json(profiles::list(&r.store).await?)
    });
    bind(r, "profile.get", |r, p: Named| async move {
        to_json(profiles::get(&r.store, &p.name).await?)
    });
    bind(r, "profile.create", |r, new: profiles::NewProfile| async move {
        let _w = r.writing().await;
        let record = profiles::create(&r.store, new).await?;
        r.publish_profile(&record).await;
        to_json(record)
    });
    bind(r, "profile.update", |r, changes: profiles::ProfileChanges| async move {
        let _w = r.writing().await;
        let mut records = profiles::update(&r.store, changes).await?;
        for record in &records {
            r.publish_profile(record).await;
        }
        to_json(records.swap_remove(0))
    });
    bind(r, "profile.delete", |r, p: Named| async move {
        let _w = r.writing().await;
        profiles::delete(&r.store, &p.name).await?;
        if let Err(e) = r.bus.clear_state(&cubeos_shared::topics::profile_state(&p.name)).await {
            tracing::warn!(error = %e, "state clear not sent");
        }
        Ok(json!({ "deleted": p.name }))
    });
    bind(r, "profile.set_apps", |r, set: profiles::ProfileApps| async move {
        let _w = r.writing().await;
        let record = profiles::set_apps(&r.store, set).await?;
        r.publish_profile(&record).await;
        to_json(record)
    });
}

/// No arguments (an empty object or none at all).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `<prefix>.get`, `<prefix>.set` and `<prefix>.delete` over one settings table.
/// System state is published as one object; preferences are not state.
fn bind_settings(r: &Arc<Registry>, prefix: &'static str, table: Table) {
    let action = |verb: &str| format!("{prefix}.{verb}");
    bind(r, &action("get"), move |r, g: settings::Get| async move {
        match g.key {
            Some(key) => to_json(settings::get(&r.store, table, &key).await?),
            None => to_json(settings::all(&r.store, table).await?),
        }
    });
    bind(r, &action("set"), move |r, s: settings::Set| async move {
        let _w = r.writing().await;
        let row = settings::set(&r.store, table, s).await?;
        if table == Table::SystemState {
            r.publish_system().await?;
        }
        to_json(row)
    });
    if table == Table::Preferences {
        bind(r, &action("delete"), move |r, d: settings::Delete| async move {
            let _w = r.writing().await;
            to_json(settings::delete(&r.store, table, &d.key).await?)
        });
    }
}

/// Sign-in, users, and device / node credentials.
fn register_auth(r: &Arc<Registry>) {
    bind(r, "auth.connect", |r, a: auth::ConnectArgs| async move {
        to_json(r.auth_connect(a).await?)
    });
    // Sign-in, setup and password handlers hash or verify with argon2 (100+ ms):
    // they publish no state, so they do not hold the write lock (setup takes it
    // only around its commit and publish).
    bind_as(r, "auth.login", |r, caller, a: auth::Credentials| async move {
        r.auth_login(&caller, a).await
    });
    bind_as(r, "auth.refresh", |r, caller, _: Empty| async move {
        let _w = r.writing().await;
        r.auth_refresh(&caller).await
    });
    bind_as(r, "auth.logout", |r, caller, a: auth::LogoutArgs| async move {
        let _w = r.writing().await;
        r.auth_logout(&caller, a).await
    });
    bind(r, "setup", |r, a: auth::Credentials| async move { r.setup(a).await });
    bind(r, "setup.status", |r, _: Empty| async move { r.setup_status().await });
    bind(r, "user.add", |r, new: users::NewUser| async move {
        to_json(r.user_add(new).await?)
    });
    bind(r, "user.list", |r, _: Empty| async move {
        to_json(users::list(&r.store).await?)
    });
    bind(r, "user.delete", |r, u: Username| async move {
        let _w = r.writing().await;
        r.user_delete(&u.username).await
    });
    bind_as(r, "user.passwd", |r, caller, a: auth::PasswdArgs| async move {
        r.user_passwd(&caller, a).await
    });
    bind(r, "user.role", |r, c: RoleChange| async move {
        let _w = r.writing().await;
        to_json(r.user_role(&c.username, c.role).await?)
    });
    bind(r, "token.issue", |r, a: auth::IssueArgs| async move {
        let _w = r.writing().await;
        r.token_issue(a).await
    });
    bind(r, "token.list", |r, _: Empty| async move {
        to_json(tokens::list_credentials(&r.store).await?)
    });
    bind(r, "token.revoke", |r, t: TokenId| async move {
        let _w = r.writing().await;
        r.token_revoke(&t.id).await
    });
}

/// The rows that hold secrets: network configuration, mounts, VPNs.
fn register_vault(r: &Arc<Registry>) {
    bind(r, "network.get", |r, _: Empty| async move {
        Ok(vault::network_view(&vault::network(&r.store).await?))
    });
    bind(r, "network.set", |r, c: vault::NetworkChanges| async move {
        let _w = r.writing().await;
        Ok(vault::network_view(&vault::set_network(&r.store, &r.secrets, c).await?))
    });
    bind(r, "mount.add", |r, m: vault::NewMount| async move {
        let _w = r.writing().await;
        to_json(vault::add_mount(&r.store, &r.secrets, &r.data_dir.join("mounts"), m).await?)
    });
    bind(r, "mount.list", |r, _: Empty| async move {
        to_json(vault::mounts(&r.store).await?)
    });
    bind(r, "mount.remove", |r, n: Named| async move {
        let _w = r.writing().await;
        vault::remove(&r.store, vault::Table::Mounts, &n.name).await?;
        Ok(json!({ "deleted": n.name }))
    });
    bind(r, "vpn.add", |r, v: vault::NewVpn| async move {
        let _w = r.writing().await;
        to_json(vault::add_vpn(&r.store, &r.secrets, &r.data_dir.join("vpn"), v).await?)
    });
    bind(r, "vpn.list", |r, _: Empty| async move {
        to_json(vault::vpns(&r.store).await?)
    });
    bind(r, "vpn.remove", |r, n: Named| async move {
        let _w = r.writing().await;
        vault::remove(&r.store, vault::Table::Vpns, &n.name).await?;
        Ok(json!({ "deleted": n.name }))
    });
}
