//! `kubectl-ringshift` (`kubectl ringshift ...` once on PATH): status, watch, plan, approve,
//! drain, undrain, reweight, history, pause, resume and cancel for ringshift clusters.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ringshift_operator::plugin::members::Edit;
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
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// Kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    context: Option<String>,
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
    Yaml,
}

#[derive(Subcommand)]
enum Cmd {
    /// Members with their share of the ring, epoch, conditions and migrations.
    Status { cluster: String },
    /// The status view, refreshed every second until the cluster is Balanced.
    Watch { cluster: String },
    /// Dry run: the moves a change of replicas, weights or drains would cause, with estimated
    /// bytes and time per move. Writes nothing.
    Plan {
        cluster: String,
        #[arg(long)]
        replicas: Option<i32>,
        /// member=weight (member name or ordinal), repeatable.
        #[arg(long = "weight", value_parser = parse_weight)]
        weights: Vec<(String, i32)>,
        /// Member to drain (name or ordinal), repeatable.
        #[arg(long = "drain")]
        drain: Vec<String>,
    },
    /// Approve the plan awaiting approval (Manual approval mode).
    Approve {
        cluster: String,
        /// The plan hash you reviewed (`plan` prints it): refused if the plan awaiting
        /// approval is another one.
        #[arg(long = "plan")]
        plan: Option<String>,
    },
    /// Move every range off a member, keeping its pod (spec.members[].drain).
    Drain { cluster: String, member: String },
    /// Give a drained member its ranges back.
    Undrain { cluster: String, member: String },
    /// Set a member's weight (its relative share of the ring; default 100, 0 empties it).
    Reweight {
        cluster: String,
        member: String,
        #[arg(allow_negative_numbers = true)]
        weight: i32,
    },
    /// The cluster's moves, oldest first, with duration, bytes and cutover pause.
    History { cluster: String },
    /// A PNG of the cluster's recent run from Prometheus: ops/s, latency, moves in flight,
    /// cutover pauses and bytes copied on one time axis.
    Report {
        cluster: String,
        /// Where to write the PNG.
        #[arg(long)]
        png: std::path::PathBuf,
        /// Prometheus that scrapes the cluster (the chart's PodMonitor/ServiceMonitor), e.g.
        /// via `kubectl port-forward svc/prometheus 9090`.
        #[arg(long, env = "PROMETHEUS_URL", default_value = "http://127.0.0.1:9090")]
        prometheus: String,
        /// How far back to look, e.g. 30m, 2h.
        #[arg(long, default_value = "30m")]
        since: String,
    },
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

/// Prints `v` as JSON or YAML; false for text output (the caller renders it).
fn print_data<T: serde::Serialize>(output: Output, v: &T) -> Result<bool, PluginError> {
    let text = match output {
        Output::Text => return Ok(false),
        Output::Json => {
            serde_json::to_string_pretty(v).map_err(|e| PluginError::Invalid(e.to_string()))?
        }
        Output::Yaml => {
            serde_saphyr::to_string(v).map_err(|e| PluginError::Invalid(e.to_string()))?
        }
    };
    println!("{}", text.trim_end());
    Ok(true)
}

/// The client of `--kubeconfig` / `--context`, else the usual inference (in-cluster or
/// $KUBECONFIG), and the namespace its context names.
async fn connect(cli: &Cli) -> Result<(kube::Client, String), PluginError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let fail = |e: String| PluginError::Invalid(format!("kubeconfig: {e}"));
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| fail(e.to_string()))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| fail(e.to_string()))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| fail(format!("{e} (set KUBECONFIG or --kubeconfig)")))?,
    };
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(|e| PluginError::Kube {
        action: "connect to the cluster".into(),
        source: e,
    })?;
    Ok((client, namespace))
}

fn edit_message(cluster: &str, o: &plugin::EditOutcome, done: &str) -> String {
    if o.changed {
        format!(
            "{cluster}: {} {done}; follow it with `kubectl ringshift watch {cluster}`",
            o.member
        )
    } else {
        format!("{cluster}: {} already {done}; nothing changed", o.member)
    }
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let (client, default_ns) = connect(&cli).await?;
    let namespace = cli.namespace.clone().unwrap_or(default_ns);
    let ctx = Ctx { client, namespace };
    let out = cli.output;
    match cli.command {
        Cmd::Status { cluster } => {
            let v = plugin::status(&ctx, &cluster).await?;
            if !print_data(out, &v)? {
                print!("{}", view::render_status(&v));
            }
        }
        Cmd::Watch { cluster } => loop {
            let v = plugin::status(&ctx, &cluster).await?;
            if !print_data(out, &v)? {
                print!("\x1b[2J\x1b[H{}", view::render_status(&v));
            }
            if plugin::is_balanced(&v) {
                if out == Output::Text {
                    println!("{cluster} is Balanced");
                }
                break;
            }
            tokio::time::sleep(plugin::WATCH_EVERY).await;
        },
        Cmd::Plan {
            cluster,
            replicas,
            weights,
            drain,
        } => {
            let what = WhatIf {
                replicas,
                weights,
                drain,
            };
            let v = plugin::plan(&ctx, &cluster, &what).await?;
            if !print_data(out, &v)? {
                print!("{}", view::render_plan(&v));
            }
        }
        Cmd::Approve { cluster, plan } => {
            let hash = plugin::approve(&ctx, &cluster, plan.as_deref()).await?;
            if !print_data(
                out,
                &serde_json::json!({"cluster": cluster, "approvedPlan": hash}),
            )? {
                println!("approved plan {hash} of {cluster}");
            }
        }
        Cmd::Drain { cluster, member } => {
            let o = plugin::edit_member(&ctx, &cluster, &member, Edit::Drain).await?;
            if !print_data(out, &o)? {
                println!("{}", edit_message(&cluster, &o, "draining"));
            }
        }
        Cmd::Undrain { cluster, member } => {
            let o = plugin::edit_member(&ctx, &cluster, &member, Edit::Undrain).await?;
            if !print_data(out, &o)? {
                println!("{}", edit_message(&cluster, &o, "not draining"));
            }
        }
        Cmd::Reweight {
            cluster,
            member,
            weight,
        } => {
            let o = plugin::edit_member(&ctx, &cluster, &member, Edit::Reweight(weight)).await?;
            if !print_data(out, &o)? {
                println!(
                    "{}",
                    edit_message(&cluster, &o, &format!("at weight {weight}"))
                );
            }
        }
        Cmd::History { cluster } => {
            let rows = plugin::history(&ctx, &cluster).await?;
            if !print_data(out, &rows)? {
                print!("{}", view::render_history(&cluster, &rows));
            }
        }
        Cmd::Report {
            cluster,
            png,
            prometheus,
            since,
        } => {
            let back = ringshift_operator::duration::parse_duration(&since)
                .map_err(|e| PluginError::Invalid(format!("--since {since}: {e}")))?;
            let end = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let start = end - back.as_secs_f64();
            let report =
                plugin::report::fetch(&prometheus, &ctx.namespace, &cluster, start, end).await?;
            plugin::report::write_png(&report, &png)?;
            let empty = report.empty_panels();
            println!(
                "{}: report of the last {since} written to {}",
                cluster,
                png.display()
            );
            if !empty.is_empty() {
                println!(
                    "no data for: {} (is Prometheus scraping the cluster?)",
                    empty.join("; ")
                );
            }
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
