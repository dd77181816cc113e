//! Every command of the bus as a type.
//!
//! A command type carries its service, its action, the least role that may call
//! it and the type of its reply ([`Command`]). Handlers bind by type and callers
//! call by type (the kit's `Bus::bind` and `Bus::call`), so an action string or a
//! reply shape is written once, here. The role table ([`crate::roles`]) is derived
//! from the command lists of the modules below ([`all`]).
//!
//! One module per service; each also holds the payloads of the state topics and
//! events that service owns.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::roles::Need;

pub mod broker;
pub mod job;
pub mod orchestrator;
pub mod port_allocator;
pub mod proxy;
pub mod registry;
pub mod store;

/// A command: its arguments are the type's fields.
pub trait Command: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The service that answers it.
    const SERVICE: &'static str;
    /// Its action, the last level of `cubeos/cmd/<service>/<action>`.
    const ACTION: &'static str;
    /// The least a caller needs to call it.
    const NEED: Need;
    /// What a successful reply's `data` holds.
    type Reply: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
}

/// A command as the gate and the role table see it, without its type.
#[derive(Clone, Copy)]
pub struct Spec {
    pub service: &'static str,
    pub action: &'static str,
    pub need: Need,
    /// Parses a command's arguments as its type and writes them back: run under a
    /// sealer, every secret in them comes out sealed (see [`crate::secret`]).
    pub reencode: fn(Value) -> Result<Value, serde_json::Error>,
    /// The JSON Schema of its arguments and of its reply (for the contract file).
    pub args_schema: fn(&mut SchemaGenerator) -> Schema,
    pub reply_schema: fn(&mut SchemaGenerator) -> Schema,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({:?})", self.service, self.action, self.need)
    }
}

impl Spec {
    pub const fn of<C: Command>() -> Spec {
        Spec {
            service: C::SERVICE,
            action: C::ACTION,
            need: C::NEED,
            reencode: reencode::<C>,
            args_schema: |g| g.subschema_for::<C>(),
            reply_schema: |g| g.subschema_for::<C::Reply>(),
        }
    }
}

fn reencode<C: Command>(args: Value) -> Result<Value, serde_json::Error> {
    let args = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args
    };
    serde_json::to_value(serde_json::from_value::<C>(args)?)
}

/// Every command of every service.
pub fn all() -> impl Iterator<Item = &'static Spec> {
    [
        registry::COMMANDS,
        orchestrator::COMMANDS,
        store::COMMANDS,
        port_allocator::COMMANDS,
        proxy::COMMANDS,
    ]
    .into_iter()
    .flatten()
}

/// The command `action` of `service`, if the contract has it.
pub fn find(service: &str, action: &str) -> Option<&'static Spec> {
    all().find(|s| s.service == service && s.action == action)
}

/// Declares command types: `Type = "action", Need => Reply;`, and the module's
/// `COMMANDS` list.
macro_rules! commands {
    ($service:expr; $($ty:ty = $action:literal, $need:ident => $reply:ty;)*) => {
        $(
            impl $crate::api::Command for $ty {
                const SERVICE: &'static str = $service;
                const ACTION: &'static str = $action;
                const NEED: $crate::roles::Need = $crate::roles::Need::$need;
                type Reply = $reply;
            }
        )*
        /// This service's commands, for the role table and the gate.
        pub const COMMANDS: &[$crate::api::Spec] = &[$($crate::api::Spec::of::<$ty>()),*];
    };
}
pub(crate) use commands;

/// Declares command types that take no arguments (an empty object, or none).
macro_rules! no_args {
    ($($ty:ident),* $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($ty), "`: no arguments.")]
            #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
            #[serde(deny_unknown_fields)]
            pub struct $ty {}
        )*
    };
}
pub(crate) use no_args;

/// The reply to a deletion: what was deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Deleted {
    pub deleted: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_declared_once() {
        let mut seen = std::collections::BTreeSet::new();
        for spec in all() {
            assert!(seen.insert((spec.service, spec.action)), "{spec:?} twice");
        }
        assert!(seen.len() > 50, "{}", seen.len());
    }
}
