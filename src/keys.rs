//! `unmark keys`: API keys in the job database (the gateways read the same database, so a
//! change takes effect on every gateway at once).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use unmark_jobs::JobStore;

use crate::config::Config;

/// What `unmark keys` does.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Makes a key and prints it once: only its hash is stored.
    Create {
        /// Who the key is for.
        #[arg(long)]
        name: String,
        /// Its plan (see `[plans]`; shipped: free, basic, pro, enterprise).
        #[arg(long, default_value = "free")]
        plan: String,
        /// May read every key's usage.
        #[arg(long)]
        admin: bool,
    },
    /// Lists the keys (ids, names, plans; never secrets).
    List,
    /// Revokes a key, at once on every gateway.
    Revoke {
        /// The key's id (the 8 hex digits after `um_`).
        id: String,
    },
    /// Moves a key to another plan.
    SetPlan {
        /// The key's id.
        id: String,
        /// The new plan.
        plan: String,
    },
}

fn check_plan(config: &Config, plan: &str) -> Result<()> {
    let plans = config.all_plans();
    if !plans.contains_key(plan) {
        let known: Vec<_> = plans.keys().cloned().collect();
        bail!("no plan {plan:?}; plans are {}", known.join(", "));
    }
    Ok(())
}

/// Runs one `unmark keys` command.
pub(crate) async fn run(config: &Config, command: KeysCommand) -> Result<ExitCode> {
    let store = JobStore::open(&config.database_url(), 2)
        .await
        .context("cannot open the job database")?;
    let now = unmark_broker::now_ms() as i64;
    match command {
        KeysCommand::Create { name, plan, admin } => {
            check_plan(config, &plan)?;
            let made = store.create_key(&name, &plan, admin, now).await?;
            println!("{}", made.key);
            eprintln!(
                "key {} for {name:?} on plan {plan}{}: shown once, store it now",
                made.record.id,
                if admin { " (admin)" } else { "" }
            );
            eprintln!("webhook secret: {}", made.record.webhook_secret);
        }
        KeysCommand::List => {
            println!(
                "{:<10} {:<12} {:<6} {:<13} {:<8} name",
                "id", "plan", "admin", "created_ms", "revoked"
            );
            for key in store.list_keys().await? {
                println!(
                    "{:<10} {:<12} {:<6} {:<13} {:<8} {}",
                    key.id,
                    key.plan,
                    if key.admin { "yes" } else { "no" },
                    key.created_ms,
                    if key.revoked_ms.is_some() {
                        "yes"
                    } else {
                        "no"
                    },
                    key.name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(&id, now).await? {
                bail!("no live key {id:?}");
            }
            eprintln!("key {id} revoked");
        }
        KeysCommand::SetPlan { id, plan } => {
            check_plan(config, &plan)?;
            if !store.set_plan(&id, &plan).await? {
                bail!("no key {id:?}");
            }
            eprintln!("key {id} is on plan {plan}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
