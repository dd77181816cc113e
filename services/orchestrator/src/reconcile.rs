//! The reconciler's decision: what the registry wants against what Swarm runs, as
//! a list of actions. A plain function, so it is tested and measured without
//! Docker.

use std::collections::{HashMap, HashSet};
use std::fmt;

use bollard::models::ServiceSpec;

use crate::stack::StackSpec;

/// An app as the registry (and the orchestrator's own stops) want it.
#[derive(Debug, Clone)]
pub struct Desired {
    pub app: String,
    /// Enabled and not stopped by a person: its services should run.
    pub run: bool,
    /// What was deployed; `None` for an app CubeOS has no deployment of (a row
    /// without a stack, e.g. a core app whose deployment is off).
    pub stack: Option<StackSpec>,
}

/// A managed Swarm service as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub service: String,
    pub stack: String,
    /// `None` for a global service: one task per node, nothing to scale.
    pub replicas: Option<i64>,
}

#[derive(Clone, PartialEq)]
pub enum Action {
    /// A service of an app that should run is missing.
    Create { app: String, spec: Box<ServiceSpec> },
    /// A service runs the wrong number of replicas.
    Scale { service: String, replicas: i64 },
    /// A managed service whose app the registry no longer has, or a global
    /// service of a stopped app (it cannot be scaled to zero).
    Remove { service: String, stack: String },
}

/// Names only: a spec carries the app's environment, secrets included, and
/// actions are logged.
impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create { app, spec } => write!(f, "create {} of {app}", spec.name.as_deref().unwrap_or("?")),
            Action::Scale { service, replicas } => write!(f, "scale {service} to {replicas}"),
            Action::Remove { service, stack } => write!(f, "remove {service} of {stack}"),
        }
    }
}

/// Compares and decides. Stacks being installed are left alone (`busy`).
pub fn diff(desired: &[Desired], actual: &[Actual], busy: &HashSet<String>) -> Vec<Action> {
    let mut actions = Vec::new();
    let by_name: HashMap<&str, &Actual> = actual.iter().map(|a| (a.service.as_str(), a)).collect();
    let known: HashSet<&str> = desired.iter().map(|d| d.app.as_str()).collect();
    for d in desired.iter().filter(|d| !busy.contains(&d.app)) {
        let Some(stack) = &d.stack else { continue };
        for spec in &stack.services {
            let name = spec.name.as_deref().unwrap_or_default();
            let want = if d.run { StackSpec::replicas(spec) } else { 0 };
            match by_name.get(name) {
                None if d.run => actions.push(Action::Create {
                    app: d.app.clone(),
                    spec: Box::new(spec.clone()),
                }),
                None => {}
                Some(a) => match a.replicas {
                    None if !d.run => actions.push(Action::Remove {
                        service: name.to_owned(),
                        stack: d.app.clone(),
                    }),
                    Some(now) if now != want => actions.push(Action::Scale {
                        service: name.to_owned(),
                        replicas: want,
                    }),
                    _ => {}
                },
            }
        }
    }
    for a in actual {
        if !known.contains(a.stack.as_str()) && !busy.contains(&a.stack) {
            actions.push(Action::Remove {
                service: a.service.clone(),
                stack: a.stack.clone(),
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ServiceSpecMode, ServiceSpecModeReplicated};

    fn spec(name: &str, replicas: i64) -> ServiceSpec {
        ServiceSpec {
            name: Some(name.into()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(replicas),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn desired(app: &str, run: bool, services: &[(&str, i64)]) -> Desired {
        let services = services.iter().map(|(n, r)| spec(n, *r)).collect();
        Desired {
            app: app.into(),
            run,
            stack: Some(StackSpec {
                name: app.into(),
                services,
                ..Default::default()
            }),
        }
    }

    fn actual(service: &str, stack: &str, replicas: i64) -> Actual {
        Actual {
            service: service.into(),
            stack: stack.into(),
            replicas: Some(replicas),
        }
    }

    fn global(service: &str, stack: &str) -> Actual {
        Actual {
            service: service.into(),
            stack: stack.into(),
            replicas: None,
        }
    }

    #[test]
    fn global_services_are_left_running_or_removed_never_scaled() {
        let mut web = desired("web", true, &[("web_agent", 1)]);
        let mut off = desired("off", false, &[("off_agent", 1)]);
        for d in [&mut web, &mut off] {
            let stack = d.stack.as_mut().unwrap();
            stack.services[0].mode = Some(ServiceSpecMode {
                global: Some(Default::default()),
                ..Default::default()
            });
        }
        let a = [global("web_agent", "web"), global("off_agent", "off")];
        let actions = diff(&[web, off], &a, &HashSet::new());
        assert_eq!(
            actions,
            [Action::Remove {
                service: "off_agent".into(),
                stack: "off".into()
            }]
        );
    }

    #[test]
    fn a_logged_action_names_the_service_and_not_its_environment() {
        let mut d = desired("db", true, &[("db_main", 1)]);
        let stack = d.stack.as_mut().unwrap();
        stack.services[0].task_template = Some(bollard::models::TaskSpec {
            container_spec: Some(bollard::models::TaskSpecContainerSpec {
                env: Some(vec!["POSTGRES_PASSWORD=hunter2".into()]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let actions = diff(&[d], &[], &HashSet::new());
        let logged = format!("{actions:?}");
        assert_eq!(logged, "[create db_main of db]");
    }

    #[test]
    fn creates_missing_scales_wrong_removes_orphans() {
        let d = [
            desired("web", true, &[("web_app", 1), ("web_db", 1)]),
            desired("off", false, &[("off_app", 1)]),
        ];
        let a = [
            actual("web_app", "web", 0),
            actual("off_app", "off", 1),
            actual("gone_app", "gone", 1),
        ];
        let actions = diff(&d, &a, &HashSet::new());
        assert_eq!(actions.len(), 4, "{actions:?}");
        assert!(actions.contains(&Action::Scale {
            service: "web_app".into(),
            replicas: 1
        }));
        assert!(
            matches!(&actions[1], Action::Create { app, spec } if app == "web" && spec.name.as_deref() == Some("web_db"))
        );
        assert!(actions.contains(&Action::Scale {
            service: "off_app".into(),
            replicas: 0
        }));
        assert!(actions.contains(&Action::Remove {
            service: "gone_app".into(),
            stack: "gone".into()
        }));
    }

    #[test]
    fn converged_and_busy_stacks_need_nothing() {
        let d = [desired("web", true, &[("web_app", 2)])];
        let a = [actual("web_app", "web", 2), actual("new_app", "new", 1)];
        let busy: HashSet<String> = ["new".to_owned()].into();
        assert!(diff(&d, &a, &busy).is_empty());
    }
}
