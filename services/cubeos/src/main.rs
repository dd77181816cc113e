//! `cubeos`: runs the CubeOS control plane and is its command-line client.
//!
//! - `cubeos up` runs the broker and every service in one process, with no
//!   configuration at all (data under `./cubeos-data`).
//! - `cubeos run <service>` runs one service against a running broker.
//! - Everything else is a client command against a running system: it connects to
//!   the broker with the data dir's service credentials when it can read them, or
//!   through the gate with the session `cubeos login` saved, sends one command and
//!   prints the reply (a table, or JSON with `--json`).

mod cli;
mod output;
mod services;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cubeos_shared::Config;

#[derive(Parser)]
#[command(name = "cubeos", version, about = "CubeOS control plane: run it, and talk to it")]
struct Args {
    /// TOML configuration file (default: /etc/cubeos/cubeos.toml when it exists).
    #[arg(long, global = true, env = "CUBEOS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`; default ./cubeos-data).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker and every service in this process until Ctrl-C / SIGTERM.
    Up,
    /// Run one service against a running broker.
    Run {
        /// One of: registry, port-allocator, orchestrator, proxy.
        service: String,
    },
    /// Apps: list and inspect.
    #[command(subcommand)]
    App(cli::app::AppCommand),
    /// System state: get and set keys.
    #[command(subcommand)]
    State(cli::state::StateCommand),
    /// Ports: ranges, checks, allocations.
    #[command(subcommand)]
    Port(cli::port::PortCommand),
    /// Create the first admin (first boot only; locally unless `--gate` is given).
    Setup(cli::auth::SignIn),
    /// Sign in at the gate and keep the session (in ~/.config/cubeos, mode 0600).
    Login(cli::auth::SignIn),
    /// End the saved session.
    Logout,
    /// Users: add, list, remove, passwords, roles.
    #[command(subcommand)]
    User(cli::user::UserCommand),
    /// Device and node credentials.
    #[command(subcommand)]
    Token(cli::token::TokenCommand),
    /// DNS records: desired against what the DNS backend has.
    #[command(subcommand)]
    Dns(NamesCommand),
    /// Reverse-proxy hosts: desired against what the proxy backend has.
    #[command(subcommand)]
    Proxy(NamesCommand),
}

#[derive(Subcommand)]
enum NamesCommand {
    /// Every name with its desired and actual value.
    Ls {
        #[arg(long)]
        json: bool,
    },
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = &args.data {
        config.data_dir = dir.clone();
    }
    // Paths stored in the database must not depend on the directory a command ran in.
    config.data_dir = std::path::absolute(&config.data_dir)?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Up => up::up(config).await,
            Command::Run { service } => up::run_one(config, &service).await,
            Command::App(cmd) => cli::app::run(&config, cmd).await,
            Command::State(cmd) => cli::state::run(&config, cmd).await,
            Command::Port(cmd) => cli::port::run(&config, cmd).await,
            Command::Setup(who) => cli::auth::setup(&config, who).await,
            Command::Login(who) => cli::auth::login(&config, who).await,
            Command::Logout => cli::auth::logout(&config).await,
            Command::User(cmd) => cli::user::run(&config, cmd).await,
            Command::Token(cmd) => cli::token::run(&config, cmd).await,
            Command::Dns(NamesCommand::Ls { json }) => cli::names::list(&config, true, json).await,
            Command::Proxy(NamesCommand::Ls { json }) => cli::names::list(&config, false, json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
