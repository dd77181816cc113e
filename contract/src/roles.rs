//! Roles and the action policy: who may call which command.
//!
//! One table, applied twice: the gate refuses a command from an outside client whose
//! role may not call it, and every service refuses it again on receipt (`forbidden`),
//! so the rule holds even for a client that reaches the loopback broker with a
//! caller stamped on its command.
//!
//! - `readonly`: read-only actions, and its own session (login, refresh, logout,
//!   its own password);
//! - `user`: also start / stop / restart apps, run a backup, set the network mode;
//! - `admin`: every action;
//! - `device` / `node`: no commands (they publish under their own topics);
//! - `anonymous` (no credentials): only signing in (`auth.login`, `setup.status`)
//!   and first-boot `setup`, which the registry refuses once setup is complete;
//! - `system`: the services themselves and the CLI on the box.

use serde::{Deserialize, Serialize};

use crate::topics::service::{BACKUP_SCHEDULER, NETWORK_MODE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
pub enum Role {
    Anonymous,
    Device,
    Node,
    Readonly,
    User,
    Admin,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Anonymous => "anonymous",
            Role::Device => "device",
            Role::Node => "node",
            Role::Readonly => "readonly",
            Role::User => "user",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }

    /// Roles a person's account can have.
    pub fn is_person(self) -> bool {
        matches!(self, Role::Readonly | Role::User | Role::Admin)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The least a caller needs to call an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// First-boot setup: anonymous clients (the registry refuses it after setup).
    Setup,
    /// Signing in: anyone, with or without an account.
    SignIn,
    /// Any signed-in person.
    Readonly,
    User,
    Admin,
    /// Services only (e.g. checking a login for the gate).
    System,
}

impl Need {
    /// Its name, as the contract file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Setup => "setup",
            Need::SignIn => "sign_in",
            Need::Readonly => "readonly",
            Need::User => "user",
            Need::Admin => "admin",
            Need::System => "system",
        }
    }
}

/// Commands of services the contract does not type yet (they are planned: the
/// backup scheduler and network mode), so that the gate's policy for them is
/// fixed before they exist.
const PLANNED: &[(&str, &str, Need)] = &[
    (BACKUP_SCHEDULER, "list", Need::Readonly),
    (BACKUP_SCHEDULER, "status", Need::Readonly),
    (BACKUP_SCHEDULER, "run", Need::User),
    (NETWORK_MODE, "status", Need::Readonly),
    (NETWORK_MODE, "mode.set", Need::User),
];

/// What `action` of `svc` needs: from its command type ([`crate::api`]); an
/// action the contract does not know needs an admin.
pub fn need(svc: &str, action: &str) -> Need {
    if let Some(spec) = crate::api::find(svc, action) {
        return spec.need;
    }
    PLANNED
        .iter()
        .find(|(s, a, _)| *s == svc && *a == action)
        .map_or(Need::Admin, |(_, _, need)| *need)
}

/// [`may_call`] as the `forbidden` error both the gate and every dispatcher reply.
pub fn check_call(role: Role, svc: &str, action: &str) -> Result<(), crate::BusError> {
    if may_call(role, svc, action) {
        Ok(())
    } else {
        Err(crate::BusError::forbidden(format!(
            "role '{role}' may not call {}",
            crate::validate::truncate(action, 64)
        )))
    }
}

/// Whether `role` may call `action` on `svc`.
pub fn may_call(role: Role, svc: &str, action: &str) -> bool {
    match (role, need(svc, action)) {
        (Role::System, _) => true,
        (Role::Anonymous, need) => matches!(need, Need::Setup | Need::SignIn),
        (Role::Device | Role::Node, _) => false,
        (_, Need::Setup | Need::System) => false,
        (Role::Admin, _) => true,
        (Role::User, need) => matches!(need, Need::SignIn | Need::Readonly | Need::User),
        (Role::Readonly, need) => matches!(need, Need::SignIn | Need::Readonly),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::service;

    #[test]
    fn the_policy_table() {
        use Role::*;
        let reg = service::REGISTRY;
        let orch = service::ORCHESTRATOR;
        assert!(may_call(Readonly, reg, "app.list"));
        assert!(!may_call(Readonly, reg, "app.create"));
        assert!(!may_call(Readonly, orch, "start"));
        assert!(may_call(User, orch, "restart"));
        assert!(may_call(User, NETWORK_MODE, "mode.set"));
        assert!(may_call(User, BACKUP_SCHEDULER, "run"));
        assert!(!may_call(User, orch, "install"));
        assert!(!may_call(User, reg, "user.add"));
        assert!(may_call(Admin, reg, "user.add"));
        assert!(may_call(Admin, "anything-new", "whatever"));
        assert!(!may_call(Admin, reg, "auth.connect"), "only services check logins");
        assert!(!may_call(Admin, reg, "setup"));
        assert!(may_call(Anonymous, reg, "setup"));
        assert!(may_call(Anonymous, reg, "auth.login"));
        assert!(may_call(Anonymous, reg, "setup.status"));
        assert!(may_call(Readonly, reg, "auth.login"));
        assert!(!may_call(Anonymous, reg, "auth.refresh"));
        assert!(!may_call(Anonymous, reg, "app.list"));
        assert!(may_call(Readonly, orch, "image.list"));
        assert!(!may_call(User, orch, "image.load"));
        assert!(!may_call(Device, reg, "app.list"));
        assert!(!may_call(Node, orch, "status"));
        assert!(may_call(System, reg, "auth.connect"));
    }
}
