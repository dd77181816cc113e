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
mod memory;
mod output;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cubeos_kit::Config;

#[derive(Parser)]
#[command(name = "cubeos", version, about = "CubeOS control plane: run it, and talk to it")]
struct Args {
    /// TOML configuration file (default: /etc/cubeos/cubeos.toml when it exists).
    #[arg(long, global = true, env = "CUBEOS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`; default ./cubeos-data).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// How long a client command waits for CubeOS: services still starting, or a
    /// restart in the middle of a long command (e.g. `30s`, `2m`).
    #[arg(long, global = true, default_value = "60s", value_parser = humantime::parse_duration)]
    wait: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker and every service in this process until Ctrl-C / SIGTERM.
    Up,
    /// Run one service against a running broker.
    Run {
        /// The service's name.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(cubeos_services::names()))]
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
    /// Images: which the apps use and whether the box has them; load one from a file.
    #[command(subcommand)]
    Image(cli::image::ImageCommand),
    /// The offline app store: import a CasaOS store copy, list and search it.
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
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
    memory::tune();
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: bad_request: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: internal: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = cli::Cli {
        config,
        wait: args.wait,
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Up => up::up(cli.config).await,
            Command::Run { service } => up::run_one(cli.config, &service).await,
            Command::App(cmd) => cli::app::run(&cli, cmd).await,
            Command::State(cmd) => cli::state::run(&cli, cmd).await,
            Command::Port(cmd) => cli::port::run(&cli, cmd).await,
            Command::Setup(who) => cli::auth::setup(&cli, who).await,
            Command::Login(who) => cli::auth::login(&cli, who).await,
            Command::Logout => cli::auth::logout(&cli).await,
            Command::User(cmd) => cli::user::run(&cli, cmd).await,
            Command::Token(cmd) => cli::token::run(&cli, cmd).await,
            Command::Image(cmd) => cli::image::run(&cli, cmd).await,
            Command::Store(cmd) => cli::store::run(&cli, cmd).await,
            Command::Dns(NamesCommand::Ls { json }) => cli::names::list(&cli, true, json).await,
            Command::Proxy(NamesCommand::Ls { json }) => cli::names::list(&cli, false, json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", wire_form(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error as `<code>: <message>`, the form every failure prints: the wire code
/// when it came from (or stands for) a reply, `bad_request` for input this side
/// refused, `internal` for the rest.
fn wire_form(e: &anyhow::Error) -> String {
    if let Some(bus) = e.downcast_ref::<cubeos_kit::BusError>() {
        return bus.to_string();
    }
    if e.downcast_ref::<cubeos_contract::validate::FieldError>().is_some()
        || e.downcast_ref::<cubeos_kit::config::ConfigError>().is_some()
    {
        return format!("bad_request: {e:#}");
    }
    format!("internal: {e:#}")
}
