//! The CubeOS orchestrator: apps as Docker Swarm stacks.
//!
//! [`compose`] turns a compose file (hand-written or from the CasaOS app store) into
//! an app record plus the Swarm service, network and volume specs that
//! `docker stack deploy` would create, with a report of what Swarm cannot honour.
//! It is pure code; deploying what it produces is the orchestrator service's job.

pub mod compose;
