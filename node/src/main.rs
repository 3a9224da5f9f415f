use std::process::ExitCode;

use clap::Parser;
use ringshift_node::config::{Cli, Durability, LogFormat, read_secret};
use ringshift_node::engine::{self, EngineConfig};
use ringshift_node::node::{Node, NodeConfig};
use ringshift_node::{admin, command, placement, pull, server};
use tokio::net::TcpListener;

// Requests are parsed on the runtime's threads and their buffers freed on the writer's (and
// the other way round); glibc's allocator spent about a fifth of the node's CPU on such
// cross-thread frees under SET load, mimalloc a fraction of that.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Some(spec) = cli.failpoints.as_deref()
        && let Err(e) = ringshift_node::failpoints::arm(spec)
    {
        tracing::error!(error = %e, "bad --failpoints");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ringshift-node stopped");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG`; JSON has the operator's shape (its `init_logging`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // fjall and lsm-tree log every flush at info; keep them to warnings.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // No colour codes inside JSON strings, even on a terminal.
        LogFormat::Json => builder.with_ansi(false).json().init(),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let secret = |path: Option<&std::path::Path>| {
        path.map(read_secret).transpose().map_err(|e| e.to_string())
    };
    let admin_token = secret(cli.admin_token_file.as_deref())?;
    let password = secret(cli.password_file.as_deref())?;
    let config = EngineConfig {
        member: cli.member_name.clone(),
        durable: cli.durability == Durability::Durable,
        retention_bytes: cli.log_retention_bytes,
        retention_age_ms: cli.log_retention_secs.saturating_mul(1000),
        pin_cap_bytes: cli.log_pin_cap_bytes,
        cache_bytes: cli.cache_bytes,
        memtable_bytes: cli.memtable_bytes,
    };
    let (engine, fresh) = engine::open(&cli.data_dir, config, placement::decode_persisted)
        .map_err(|e| format!("cannot open {}: {e}", cli.data_dir.display()))?;
    tracing::info!(
        member = %cli.member_name,
        incarnation = %engine.incarnation,
        fresh,
        head = engine.head(),
        "data directory open"
    );
    let data = TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let admin_listener = TcpListener::bind(cli.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.admin_listen))?;
    let node = Node::new(
        engine.clone(),
        NodeConfig {
            member: cli.member_name,
            data_addr: cli.listen,
            admin_addr: cli.admin_listen,
            password,
            admin_token,
            max_frame: cli.max_frame_bytes,
            cluster_uid: cli.cluster_uid,
        },
    );
    // (At most 1,024 sweep batches wait for their `expired` events to be published.)
    let (expired, feed) = tokio::sync::mpsc::channel(1024);
    let _ = engine.expired_feed.set(expired);
    tokio::spawn(command::pubsub::publish_expired(node.clone(), feed));
    engine::spawn_maintenance(engine.clone());
    pull::resume_all(&node);
    tracing::info!(data = %cli.listen, admin = %cli.admin_listen, "serving");
    let app = admin::router(node.clone());
    let admin_task = tokio::spawn(async move { axum::serve(admin_listener, app).await });
    tokio::select! {
        _ = server::serve(node, data) => Err("data port stopped".into()),
        r = admin_task => Err(format!("admin API stopped: {r:?}")),
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            engine.shutdown().map_err(|e| format!("cannot persist on shutdown: {e}"))
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
