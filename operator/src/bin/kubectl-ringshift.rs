//! `kubectl-ringshift` (`kubectl ringshift ...` once on PATH): status, watch, plan, approve,
//! pause, resume and cancel for ringshift clusters.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ringshift_operator::plugin::{self, Ctx, PluginError, WhatIf, view};

#[derive(Parser)]
#[command(
    name = "kubectl-ringshift",
    version,
    about = "Inspect and steer ringshift clusters"
)]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value = "text")]
    output: Output,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Members with their share of the ring, epoch, conditions and migrations.
    Status { cluster: String },
    /// The status view, refreshed every second until the cluster is Balanced.
    Watch { cluster: String },
    /// Dry run: the moves a change of replicas or weights would cause. Writes nothing.
    Plan {
        cluster: String,
        #[arg(long)]
        replicas: Option<i32>,
        /// member=weight, repeatable.
        #[arg(long = "weight", value_parser = parse_weight)]
        weights: Vec<(String, i32)>,
    },
    /// Approve the plan awaiting approval (Manual approval mode).
    Approve { cluster: String },
    /// Start no new migration phases.
    Pause { cluster: String },
    /// Undo `pause`.
    Resume { cluster: String },
    /// Cancel a migration before its commit.
    Cancel { migration: String },
}

fn parse_weight(s: &str) -> Result<(String, i32), String> {
    let (m, w) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected member=weight"))?;
    let w: i32 = w
        .parse()
        .map_err(|_| format!("{s:?}: weight must be a number"))?;
    Ok((m.to_string(), w))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), PluginError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| PluginError::Invalid(e.to_string()))?;
    println!("{text}");
    Ok(())
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| PluginError::Kube {
            action: "connect to the cluster (check KUBECONFIG)".into(),
            source: e,
        })?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let ctx = Ctx { client, namespace };
    match cli.command {
        Cmd::Status { cluster } => {
            let v = plugin::status(&ctx, &cluster).await?;
            if cli.output == Output::Json {
                print_json(&v)?;
            } else {
                print!("{}", view::render_status(&v));
            }
        }
        Cmd::Watch { cluster } => loop {
            let v = plugin::status(&ctx, &cluster).await?;
            if cli.output == Output::Json {
                print_json(&v)?;
            } else {
                print!("\x1b[2J\x1b[H{}", view::render_status(&v));
            }
            if plugin::is_balanced(&v) {
                println!("{cluster} is Balanced");
                break;
            }
            tokio::time::sleep(plugin::WATCH_EVERY).await;
        },
        Cmd::Plan {
            cluster,
            replicas,
            weights,
        } => {
            let (hash, rows) = plugin::plan(&ctx, &cluster, &WhatIf { replicas, weights }).await?;
            if cli.output == Output::Json {
                print_json(&serde_json::json!({"planHash": hash, "moves": rows}))?;
            } else {
                print!("{}", view::render_plan(&cluster, hash.as_deref(), &rows));
            }
        }
        Cmd::Approve { cluster } => {
            let hash = plugin::approve(&ctx, &cluster).await?;
            println!("approved plan {hash} of {cluster}");
        }
        Cmd::Pause { cluster } => {
            plugin::set_paused(&ctx, &cluster, true).await?;
            println!("{cluster}: migrations paused (phases in flight finish their current step)");
        }
        Cmd::Resume { cluster } => {
            plugin::set_paused(&ctx, &cluster, false).await?;
            println!("{cluster}: migrations resumed");
        }
        Cmd::Cancel { migration } => {
            plugin::cancel(&ctx, &migration).await?;
            println!("{migration}: cancel requested (honoured only before its commit)");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
