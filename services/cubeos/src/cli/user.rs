//! `cubeos user ...`: people's accounts.

use clap::Subcommand;
use cubeos_contract::api::registry::{UserAdd, UserDelete, UserList, UserPasswd, UserRole};
use cubeos_contract::models::Role;
use cubeos_contract::secret::Secret;

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
                let role = super::parse_word::<Role>("role", &role)?;
                let password = read_password(&format!("Password for {username}: "), password_stdin)?;
                let args = UserAdd {
                    username,
                    password: Secret::new(password),
                    role,
                };
                let user = client.call(&args).await?;
                output::line(&format!("added {} ({})", user.username, user.role));
            }
            UserCommand::Ls { json } => {
                let users = client.call(&UserList {}).await?;
                if json {
                    return output::json(&users);
                }
                let rows: Vec<Vec<String>> = users
                    .into_iter()
                    .map(|u| vec![u.username, u.role.to_string(), u.created_at])
                    .collect();
                output::table(&["USER", "ROLE", "CREATED"], &rows);
            }
            UserCommand::Rm { username } => {
                client
                    .call(&UserDelete {
                        username: username.clone(),
                    })
                    .await?;
                output::line(&format!("deleted {username}"));
            }
            UserCommand::Passwd {
                username,
                password_stdin,
            } => {
                // Through the gate a person proves the current password; locally
                // (as the system) and for admins it is not asked for.
                let current_password = match username {
                    None => Some(Secret::new(read_password("Current password: ", password_stdin)?)),
                    Some(_) => None,
                };
                let password = Secret::new(read_password("New password: ", password_stdin)?);
                let args = UserPasswd {
                    username,
                    password,
                    current_password,
                };
                let reply = client.call(&args).await?;
                output::line(&format!(
                    "password changed for {}; {} other session(s) ended",
                    reply.user, reply.sessions_ended
                ));
            }
            UserCommand::Role { username, role } => {
                let role = super::parse_word::<Role>("role", &role)?;
                let user = client.call(&UserRole { username, role }).await?;
                output::line(&format!("{} is now {}", user.username, user.role));
            }
        }
        Ok(())
    }
    .await;
    client.shutdown().await;
    result
}
