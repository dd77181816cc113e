//! The smallest service built on the kit, as the README's "How to add a service"
//! describes it, run against a real broker and registry.
//!
//! `example` counts the apps the registry holds and how many of their ports are
//! reserved. It shows each part a real service has:
//! - its contract: a command type ([`Count`]) with its service, action, role and
//!   reply type, and the payload of its retained state ([`Counted`]). A real
//!   service puts these in `cubeos_contract::api::<service>` (and lists the
//!   command in `api::all()`, which gives the gate its role table);
//! - its state and domain logic in plain functions ([`count`]);
//! - a `kit::runner::Service`: commands bound by type, the registry's app states
//!   followed through a `kit::mirror::AppMirror`, a reaction that publishes its
//!   state once a burst of changes settles;
//! - its entry point, `run(ctx)`, which a real service lists in
//!   `cubeos_services::ALL`.

use std::sync::Arc;
use std::time::Duration;

use cubeos_contract::api::Command;
use cubeos_contract::api::registry::{AppCreate, PortSpec};
use cubeos_contract::models::AppRecord;
use cubeos_contract::roles::Need;
use cubeos_kit::mirror::AppMirror;
use cubeos_kit::runner::{self, Schedule, Service};
use cubeos_kit::service::{Entry, ServiceContext};
use cubeos_kit::{Bus, BusError};
use cubeos_tests::System;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The service's name: its client id and `cubeos/cmd/example/+`.
const EXAMPLE: &str = "example";

/// Its retained state topic.
fn counted_state() -> String {
    "cubeos/state/example".into()
}

/// `count`: what the service counts now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Count {}

impl Command for Count {
    const SERVICE: &'static str = EXAMPLE;
    const ACTION: &'static str = "count";
    const NEED: Need = Need::Readonly;
    type Reply = Counted;
}

/// The reply to `count`, and the retained state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
struct Counted {
    apps: usize,
    ports: usize,
}

/// The domain logic, a plain function: what the mirrored apps add up to.
fn count<'a>(apps: impl Iterator<Item = &'a AppRecord>) -> Counted {
    apps.fold(Counted::default(), |c, app| Counted {
        apps: c.apps + 1,
        ports: c.ports + app.ports.len(),
    })
}

/// The service: its bus and its mirror of the registry's apps.
struct Example {
    bus: Bus,
    apps: AppMirror,
}

impl Example {
    fn counted(&self) -> Counted {
        self.apps.read(|apps| count(apps.values()))
    }
}

impl Service for Example {
    const NAME: &'static str = EXAMPLE;

    fn bind(self: &Arc<Self>, bus: &Bus) {
        bus.bind(
            self,
            |s, _caller, _: Count| async move { Ok::<_, BusError>(s.counted()) },
        );
    }

    fn follows(&self) -> Vec<String> {
        vec![AppMirror::<AppRecord>::filter()]
    }

    fn observe(&self, topic: &str, payload: &[u8]) -> bool {
        self.apps.observe(topic, payload).is_some()
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            interval: Duration::from_secs(60),
            settle: Duration::from_millis(50),
            max_backoff: Duration::from_secs(60),
        }
    }

    async fn react(self: &Arc<Self>) -> Result<(), String> {
        self.bus
            .publish_state(&counted_state(), &self.counted())
            .await
            .map_err(|e| e.to_string())
    }
}

/// The entry point, as `cubeos_services::ALL` lists it.
async fn run(ctx: ServiceContext) -> anyhow::Result<()> {
    let service = Example {
        bus: ctx.bus.clone(),
        apps: AppMirror::records(),
    };
    runner::run(ctx, Arc::new(service)).await
}

#[test]
fn the_count_adds_up_every_app_and_its_ports() {
    assert_eq!(count(std::iter::empty()), Counted::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_follows_the_registry_and_answers_by_type() {
    let mut system = System::start().await;
    system
        .start_entry(Entry {
            name: EXAMPLE,
            run: |ctx| Box::pin(run(ctx)),
        })
        .await;
    let client = system.client("example-test").await;
    let mut state = client
        .subscribe(&counted_state(), rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let app = AppCreate {
        name: "counted".into(),
        ports: vec![PortSpec {
            port: 6150,
            protocol: None,
            description: None,
            is_primary: None,
        }],
        ..AppCreate::default()
    };
    client.call(&app).await.unwrap();
    // The retained state follows the registry once the burst settles.
    let want = Counted { apps: 1, ports: 1 };
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = state.recv().await {
            if serde_json::from_slice::<Counted>(&msg.payload).ok() == Some(want.clone()) {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "the state never said {want:?}");
    // Called by type: the reply is the contract's type, not JSON to pick apart.
    assert_eq!(client.call(&Count {}).await.unwrap(), want);
    // A command with arguments it does not take is refused, typed.
    let refused = client
        .request(EXAMPLE, "count", &serde_json::json!({ "extra": 1 }))
        .await
        .unwrap_err();
    assert_eq!(refused.code, cubeos_kit::ErrorCode::BadRequest);
}
