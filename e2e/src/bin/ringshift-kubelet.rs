//! The process kubelet (see `ringshift_e2e::kubelet`). `e2e/cluster/up` starts it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringshift_e2e::kubelet;

#[derive(Parser, Debug)]
#[command(
    name = "ringshift-kubelet",
    about = "Runs pods as local processes for the local control plane"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Kubeconfig with rights to bind pods, write pod status and register the node.
    #[arg(
        long,
        env = "KUBECONFIG",
        default_value = "/tmp/ringshift-k8s/kubeconfig"
    )]
    kubeconfig: PathBuf,
    /// Harness state dir: pod logs, volumes, pid files.
    #[arg(long, env = "RINGSHIFT_STATE", default_value = "/tmp/ringshift-k8s")]
    state_dir: PathBuf,
    #[arg(long, default_value = "local")]
    node_name: String,
    /// Where image binaries are found (default: the directory of this executable).
    #[arg(long, env = "RINGSHIFT_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// The API server's port on 127.0.0.1 (pods reach it through the kubernetes Service).
    #[arg(long, default_value_t = 6443)]
    api_port: u16,
    /// Address block 127.(16N).0.0/12 of this cluster: pod network, bridge rsbrN, Services
    /// (one per cluster on the machine; see net_plan).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
    ip_block: u8,
    /// The kubelet API server program (e2e/kubelet-api); with it the kubelet serves `kubectl
    /// logs`, `exec`, `attach` and `port-forward` on 127.0.0.1:--kubelet-port.
    #[arg(long, requires_all = ["kubelet_port", "tls_cert", "tls_key", "client_ca"])]
    api_server_bin: Option<PathBuf>,
    #[arg(long)]
    kubelet_port: Option<u16>,
    /// Serving certificate and key of the kubelet API.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA that signed the apiserver's kubelet client certificate.
    #[arg(long)]
    client_ca: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Internal: set up a container's mounts inside its mount namespace, then exec it.
    #[command(hide = true)]
    Shim { plan: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::Shim { plan }) = &cli.cmd {
        let Err(e) = kubelet::shim::run(plan);
        eprintln!("ringshift-kubelet shim: {e}");
        return ExitCode::from(127);
    }
    tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let bin_dir = cli.bin_dir.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    });
    let Some(bin_dir) = bin_dir else {
        eprintln!("ringshift-kubelet: cannot tell the bin dir; pass --bin-dir");
        return ExitCode::FAILURE;
    };
    let api_server = match (
        cli.api_server_bin,
        cli.kubelet_port,
        cli.tls_cert,
        cli.tls_key,
        cli.client_ca,
    ) {
        (Some(bin), Some(port), Some(cert), Some(key), Some(client_ca)) => {
            Some(kubelet::api_server::ApiServerConfig {
                bin,
                port,
                cert,
                key,
                client_ca,
            })
        }
        _ => None,
    };
    let cfg = kubelet::Config {
        kubeconfig: cli.kubeconfig,
        state_dir: cli.state_dir,
        node_name: cli.node_name,
        bin_dir,
        api_port: cli.api_port,
        ip_block: cli.ip_block,
        api_server,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringshift-kubelet: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(kubelet::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "kubelet failed");
            ExitCode::FAILURE
        }
    }
}
