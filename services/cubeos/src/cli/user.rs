//! `cubeos user ...`: people's accounts.

use clap::Subcommand;
use cubeos_shared::models::User;
use cubeos_shared::topics::service::REGISTRY;
use serde_json::json;

use super::read_password;
use super::{Cli, Client};
use crate::output;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        username: String,
        /// admin, user or readonly.
        #[arg(long, default_value = "readonly")]
        role: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Delete a user (the last admin cannot be deleted).
    Rm { username: String },
    /// Change a password: your own (the current one is asked first when signed in
    /// through the gate), or, as an admin, anyone's.
    Passwd {
        username: Option<String>,
        /// Read the password(s) from stdin: the current one first, when asked.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role (the last admin cannot be demoted).
    Role { username: String, role: String },
}

pub async fn run(cli: &Cli, cmd: UserCommand) -> anyhow::Result<()> {
    let client = Client::connect(cli).await?;
    let result = async {
        match cmd {
            UserCommand::Add {
                username,
                role,
                password_stdin,
            } => {
                let password = read_password(&format!("Password for {username}: "), password_stdin)?;
                let args = json!({ "username": username, "password": client.secret(&password)?, "role": role });
                let user: User = serde_json::from_value(client.request(REGISTRY, "user.add", &args).await?)?;
                output::line(&format!("added {} ({})", user.username, user.role));
            }
            UserCommand::Ls { json } => {
                let reply = client.request(REGISTRY, "user.list", &json!({})).await?;
                if json {
                    return output::json(&reply);
                }
                let users: Vec<User> = serde_json::from_value(reply)?;
                let rows: Vec<Vec<String>> = users
                    .into_iter()
                    .map(|u| vec![u.username, u.role.to_string(), u.created_at])
                    .collect();
                output::table(&["USER", "ROLE", "CREATED"], &rows);
            }
            UserCommand::Rm { username } => {
                client
                    .request(REGISTRY, "user.delete", &json!({ "username": username }))
                    .await?;
                output::line(&format!("deleted {username}"));
            }
            UserCommand::Passwd {
                username,
                password_stdin,
            } => {
                let mut args = json!({ "username": username });
                // Through the gate a person proves the current password; locally
                // (as the system) and for admins it is not asked for.
                if username.is_none() {
                    let current = read_password("Current password: ", password_stdin)?;
                    args["current_password"] = json!(client.secret(&current)?);
                }
                let password = read_password("New password: ", password_stdin)?;
                args["password"] = json!(client.secret(&password)?);
                let reply = client.request(REGISTRY, "user.passwd", &args).await?;
                output::line(&format!(
                    "password changed for {}; {} other session(s) ended",
                    reply["user"].as_str().unwrap_or("?"),
                    reply["sessions_ended"]
                ));
            }
            UserCommand::Role { username, role } => {
                let args = json!({ "username": username, "role": role });
                let user: User = serde_json::from_value(client.request(REGISTRY, "user.role", &args).await?)?;
                output::line(&format!("{} is now {}", user.username, user.role));
            }
        }
        Ok(())
    }
    .await;
    client.shutdown().await;
    result
}
