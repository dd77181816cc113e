//! Binds the registry's commands to the bus: run the domain function, publish what
//! changed, reply.

use std::future::Future;
use std::sync::Arc;

use cubeos_contract::Command;
use cubeos_contract::api::Deleted;
use cubeos_contract::api::registry::*;
use cubeos_contract::envelope::Caller;

use crate::error::Result;
use crate::settings::Table;
use crate::{Registry, apps, fqdns, ports, profiles, settings, tokens, users, vault};

/// Binds the command type `C`.
fn bind<C, F, Fut>(registry: &Arc<Registry>, f: F)
where
    C: Command,
    F: Fn(Arc<Registry>, C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C::Reply>> + Send + 'static,
{
    registry.bus.bind(registry, move |r, _caller, args: C| f(r, args));
}

/// Binds `C` for a handler that needs the caller.
fn bind_as<C, F, Fut>(registry: &Arc<Registry>, f: F)
where
    C: Command,
    F: Fn(Arc<Registry>, Caller, C) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C::Reply>> + Send + 'static,
{
    registry.bus.bind(registry, f);
}

pub fn register(r: &Arc<Registry>) {
    register_auth(r);
    register_vault(r);
    register_settings(r);
    bind(r, |r, new: AppCreate| async move {
        let _w = r.writing().await;
        let record = apps::create(&r.store, &r.data_dir, new).await?;
        r.publish_app(&record.app.name).await?;
        Ok(record)
    });
    bind(r, |r, a: AppGet| async move { apps::get(&r.store, &a.name).await });
    bind(r, |r, f: AppList| async move { apps::list(&r.store, &f).await });
    bind(r, |r, changes: AppUpdate| async move {
        let _w = r.writing().await;
        let record = apps::update(&r.store, changes).await?;
        r.publish_app(&record.app.name).await?;
        Ok(record)
    });
    bind(r, |r, a: AppDelete| async move {
        let _w = r.writing().await;
        let profiles = apps::delete(&r.store, &a.name).await?;
        r.clear_app(&a.name).await;
        for profile in &profiles {
            r.publish_profile_named(profile).await?;
        }
        Ok(Deleted { deleted: a.name })
    });

    bind(r, |r, res: PortReserve| async move {
        let _w = r.writing().await;
        let app = res.app.clone();
        let row = ports::reserve(&r.store, res).await?;
        r.publish_app(&app).await?;
        Ok(row)
    });
    bind(r, |r, rel: PortRelease| async move {
        let _w = r.writing().await;
        let app = rel.app.clone();
        let released = ports::release(&r.store, rel).await?;
        r.publish_app(&app).await?;
        Ok(Released { released })
    });
    bind(r, |r, f: PortList| async move { ports::list(&r.store, &f).await });

    bind(r, |r, new: FqdnAdd| async move {
        let _w = r.writing().await;
        let app = new.app.clone();
        let row = fqdns::add(&r.store, new).await?;
        r.publish_app(&app).await?;
        Ok(row)
    });
    bind(r, |r, set: FqdnSetProxyId| async move {
        let _w = r.writing().await;
        let (row, app) = fqdns::set_proxy_id(&r.store, set).await?;
        r.publish_app(&app).await?;
        Ok(row)
    });
    bind(r, |r, f: FqdnRemove| async move {
        let _w = r.writing().await;
        let (row, app) = fqdns::remove(&r.store, &f.fqdn).await?;
        r.publish_app(&app).await?;
        Ok(row)
    });

    bind(r, |r, _: ProfileList| async move { profiles::list(&r.store).await });
    bind(
        r,
        |r, p: ProfileGet| async move { profiles::get(&r.store, &p.name).await },
    );
    bind(r, |r, new: ProfileCreate| async move {
        let _w = r.writing().await;
        let record = profiles::create(&r.store, new).await?;
        r.publish_profile(&record).await;
        Ok(record)
    });
    bind(r, |r, changes: ProfileUpdate| async move {
        let _w = r.writing().await;
        let mut records = profiles::update(&r.store, changes).await?;
        for record in &records {
            r.publish_profile(record).await;
        }
        Ok(records.swap_remove(0))
    });
    bind(r, |r, p: ProfileDelete| async move {
        let _w = r.writing().await;
        profiles::delete(&r.store, &p.name).await?;
        if let Err(e) = r
            .bus
            .clear_state(&cubeos_contract::topics::profile_state(&p.name))
            .await
        {
            tracing::warn!(error = %e, "state clear not sent");
        }
        Ok(Deleted { deleted: p.name })
    });
    bind(r, |r, set: ProfileSetApps| async move {
        let _w = r.writing().await;
        let record = profiles::set_apps(&r.store, set).await?;
        r.publish_profile(&record).await;
        Ok(record)
    });
}

/// One key, or the whole table.
async fn read_settings(r: &Registry, table: Table, key: Option<String>) -> Result<Settings> {
    Ok(match key {
        Some(key) => Settings::One(settings::get(&r.store, table, &key).await?),
        None => Settings::All(settings::all(&r.store, table).await?),
    })
}

/// System state (published as one object) and preferences (not state).
fn register_settings(r: &Arc<Registry>) {
    bind(r, |r, g: StateGet| async move {
        read_settings(&r, Table::SystemState, g.key).await
    });
    bind(r, |r, s: StateSet| async move {
        let _w = r.writing().await;
        let row = settings::set(&r.store, Table::SystemState, &s.key, &s.value).await?;
        r.publish_system().await?;
        Ok(row)
    });
    bind(r, |r, g: PrefGet| async move {
        read_settings(&r, Table::Preferences, g.key).await
    });
    bind(r, |r, s: PrefSet| async move {
        let _w = r.writing().await;
        settings::set(&r.store, Table::Preferences, &s.key, &s.value).await
    });
    bind(r, |r, d: PrefDelete| async move {
        let _w = r.writing().await;
        settings::delete(&r.store, Table::Preferences, &d.key).await
    });
}

/// Sign-in, users, and device / node credentials.
fn register_auth(r: &Arc<Registry>) {
    bind(r, |r, a: AuthConnect| async move { r.auth_connect(a).await });
    // Sign-in, setup and password handlers hash or verify with argon2 (100+ ms):
    // they publish no state, so they do not hold the write lock (setup takes it
    // only around its commit and publish).
    bind_as(
        r,
        |r, caller, a: AuthLogin| async move { r.auth_login(&caller, a).await },
    );
    bind_as(r, |r, caller, _: AuthRefresh| async move {
        let _w = r.writing().await;
        r.auth_refresh(&caller).await
    });
    bind_as(r, |r, caller, a: AuthLogout| async move {
        let _w = r.writing().await;
        r.auth_logout(&caller, a).await
    });
    bind(r, |r, a: Setup| async move { r.setup(a).await });
    bind(r, |r, _: SetupStatus| async move { r.setup_status().await });
    bind(r, |r, new: UserAdd| async move { r.user_add(new).await });
    bind(r, |r, _: UserList| async move { users::list(&r.store).await });
    bind(r, |r, u: UserDelete| async move {
        let _w = r.writing().await;
        r.user_delete(&u.username).await
    });
    bind_as(
        r,
        |r, caller, a: UserPasswd| async move { r.user_passwd(&caller, a).await },
    );
    bind(r, |r, c: UserRole| async move {
        let _w = r.writing().await;
        r.user_role(&c.username, c.role).await
    });
    bind(r, |r, a: TokenIssue| async move {
        let _w = r.writing().await;
        r.token_issue(a).await
    });
    bind(
        r,
        |r, _: TokenList| async move { tokens::list_credentials(&r.store).await },
    );
    bind(r, |r, t: TokenRevoke| async move {
        let _w = r.writing().await;
        r.token_revoke(&t.id).await
    });
}

/// The rows that hold secrets: network configuration, mounts, VPNs.
fn register_vault(r: &Arc<Registry>) {
    bind(r, |r, _: NetworkGet| async move {
        Ok(vault::network_view(vault::network(&r.store).await?))
    });
    bind(r, |r, c: NetworkSet| async move {
        let _w = r.writing().await;
        Ok(vault::network_view(vault::set_network(&r.store, &r.secrets, c).await?))
    });
    bind(r, |r, m: MountAdd| async move {
        let _w = r.writing().await;
        vault::add_mount(&r.store, &r.secrets, &r.data_dir.join("mounts"), m).await
    });
    bind(r, |r, _: MountList| async move { vault::mounts(&r.store).await });
    bind(r, |r, n: MountRemove| async move {
        let _w = r.writing().await;
        vault::remove(&r.store, vault::Table::Mounts, &n.name).await?;
        Ok(Deleted { deleted: n.name })
    });
    bind(r, |r, v: VpnAdd| async move {
        let _w = r.writing().await;
        vault::add_vpn(&r.store, &r.secrets, &r.data_dir.join("vpn"), v).await
    });
    bind(r, |r, _: VpnList| async move { vault::vpns(&r.store).await });
    bind(r, |r, n: VpnRemove| async move {
        let _w = r.writing().await;
        vault::remove(&r.store, vault::Table::Vpns, &n.name).await?;
        Ok(Deleted { deleted: n.name })
    });
}
