//! `ringshift-operator`: run the operator, or print its CRDs.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ringshift_operator::duration::parse_duration;
use ringshift_operator::leader::LeaseConfig;
use ringshift_operator::log_format::LogFormat;
use ringshift_operator::runtime::{self, Settings};

#[derive(Parser)]
#[command(
    name = "ringshift-operator",
    version,
    about = "The ringshift Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CRD as YAML (`--out-dir DIR` writes one file per CRD instead).
    Crd {
        /// Directory to write `<name>.yaml` files into.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Run the operator (in-cluster configuration or KUBECONFIG).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics (in a pod: `0.0.0.0:8080`).
    #[arg(
        long = "listen",
        alias = "http-listen",
        env = "HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    http_listen: SocketAddr,
    /// Identity in the lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Namespace of the leader lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader lease.
    #[arg(long, default_value = "ringshift-operator")]
    lease_name: String,
    /// How long a lease lasts without renewal (`15s`; a bare number is seconds).
    #[arg(long, alias = "lease-duration-seconds", default_value = "15s", value_parser = duration_arg)]
    lease_duration: Duration,
    /// A leader that could not renew for this long stops its controllers
    /// (default: two thirds of the lease duration).
    #[arg(long, value_parser = duration_arg)]
    renew_deadline: Option<Duration>,
    /// Time between lease attempts.
    #[arg(long, default_value = "2s", value_parser = duration_arg)]
    retry_period: Duration,
    /// Run without leader election (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Log format of the operator and of the shard nodes it renders (their
    /// `RINGSHIFT_LOG_FORMAT`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// A duration flag: `250ms`, `15s`, `1m`, or a bare number of seconds.
fn duration_arg(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    parse_duration(s).map_err(|e| e.to_string())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "ringshift-operator".into());
    format!("{host}-{}", std::process::id())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => match print_crds(out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    if let Err(e) = ringshift_operator::migration::failpoints::init() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let renew_deadline = args.renew_deadline.unwrap_or(args.lease_duration * 2 / 3);
    if renew_deadline >= args.lease_duration || args.retry_period >= renew_deadline {
        eprintln!(
            "error: need --retry-period < --renew-deadline < --lease-duration (got {:?} < {:?} < {:?})",
            args.retry_period, renew_deadline, args.lease_duration
        );
        return ExitCode::FAILURE;
    }
    let identity = args.identity.unwrap_or_else(default_identity);
    let lease = (!args.no_leader_election).then(|| LeaseConfig {
        name: args.lease_name,
        namespace: args.lease_namespace,
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_deadline,
        retry_period: args.retry_period,
    });
    let settings = Settings {
        namespace: args.namespace,
        http_listen: args.http_listen,
        lease,
        identity,
        log_format: args.log_format,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(runtime::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn print_crds(out_dir: Option<std::path::PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let docs = ringshift_operator::crd::crds_yaml()?;
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            for (name, yaml) in docs {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
        }
        None => {
            let all: Vec<String> = docs.into_iter().map(|(_, y)| y).collect();
            print!("{}", all.join("---\n"));
        }
    }
    Ok(())
}
