//! The operator process: HTTP endpoints, leader election, and the
//! controllers that only the leader runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::cache;
use crate::cluster;
use crate::http::{self, Health};
use crate::k8s::Context;
use crate::leader::{self, LeaseConfig, Role};
use crate::log_format::LogFormat;
use crate::metrics::Metrics;

/// Settings of a running operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace (all when None).
    pub namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    pub http_listen: SocketAddr,
    /// Lease settings; None disables leader election (a single replica).
    pub lease: Option<LeaseConfig>,
    /// Identity in Events and the lease.
    pub identity: String,
    /// The operator's log format, passed on to the nodes it renders.
    pub log_format: LogFormat,
}

/// Failures that stop the process.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable Kubernetes configuration.
    #[error("connecting to Kubernetes: {0}")]
    Client(#[source] kube::Error),
    /// The HTTP endpoints could not be served.
    #[error("serving HTTP on {addr}: {source}")]
    Http {
        /// Listen address.
        addr: SocketAddr,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn wait_until(rx: &mut watch::Receiver<Role>, f: impl FnMut(&Role) -> bool) -> bool {
    rx.wait_for(f).await.is_ok()
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let http_addr = settings.http_listen;
    let http_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| RunError::Http {
            addr: http_addr,
            source,
        })?;
    let http_task = tokio::spawn(http::serve(
        listener,
        health.clone(),
        metrics.clone(),
        http_stop,
    ));

    let client = Client::try_default().await.map_err(RunError::Client)?;
    tracing::info!(namespace = ?settings.namespace, "connected to the API server");

    let (leader_tx, mut leader_rx) = watch::channel(if settings.lease.is_none() {
        Role::Leading { generation: None }
    } else {
        Role::Standby
    });
    let elector = match settings.lease.clone() {
        Some(cfg) => {
            let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
            let h = health.clone();
            Some(tokio::spawn(leader::run(
                api,
                cfg,
                leader_tx,
                stop_rx.clone(),
                move || h.ready.store(true, Ordering::Relaxed),
            )))
        }
        None => {
            health.ready.store(true, Ordering::Relaxed);
            None
        }
    };

    let signal = tokio::spawn(termination());
    tokio::pin!(signal);
    loop {
        // Stand by until elected (or until asked to stop).
        tokio::select! {
            elected = wait_until(&mut leader_rx, |r| r.is_leading()) => if !elected { break },
            _ = &mut signal => break,
        }
        let role = *leader_rx.borrow();
        tracing::info!(identity = %settings.identity, ?role, "leading: filling the caches");
        metrics.leader.set(1);
        // One watch per kind for this term, shared by both controllers; they start once every
        // cache holds a complete list (a reconcile on a half-filled cache would see objects
        // missing).
        let (stores, cluster_feeds, driver_feeds, reflectors) =
            cache::start(&client, settings.namespace.as_deref());
        let filled = tokio::select! {
            r = stores.ready() => r.map(|()| true),
            _ = wait_until(&mut leader_rx, |r| *r != role) => Ok(false),
            _ = &mut signal => {
                drop(reflectors);
                metrics.leader.set(0);
                break;
            }
        };
        match filled {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(identity = %settings.identity, "lost leadership while filling the caches");
                drop(reflectors);
                metrics.leader.set(0);
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "caches could not be filled; standing by for a new term");
                drop(reflectors);
                metrics.leader.set(0);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        tracing::info!(identity = %settings.identity, ?role, "leading: starting controllers");
        let ctx = Arc::new(
            Context::new(client.clone(), &settings.identity, metrics.clone(), stores)
                .with_node_log_format(settings.log_format),
        );
        let (ctl_stop_tx, ctl_stop_rx) = watch::channel(false);
        let ctl_stop = {
            let mut rx = ctl_stop_rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        let driver_stop = {
            let mut rx = ctl_stop_rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        let controller = futures::future::join(
            cluster::run(ctx.clone(), cluster_feeds, ctl_stop),
            crate::migration::run(
                ctx.clone(),
                driver_feeds,
                crate::migration::Leadership::new(leader_rx.clone()),
                driver_stop,
            ),
        );
        tokio::pin!(controller);
        let stopping = tokio::select! {
            _ = &mut controller => false,
            // Any change (standby, or a new generation) ends this term; the driver's rounds
            // in flight are already cancelled by then (they watch the same channel).
            lost = wait_until(&mut leader_rx, |r| *r != role) => {
                let _ = lost;
                tracing::warn!(identity = %settings.identity, "lost leadership: stopping controllers");
                false
            }
            _ = &mut signal => true,
        };
        // On leadership loss the driver's rounds in flight were cancelled already; on shutdown
        // (still leading) reconciles in flight may finish (bounded). Then stand by or exit.
        ctl_stop_tx.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut controller).await;
        drop(reflectors);
        metrics.leader.set(0);
        metrics.forget_clusters();
        if stopping {
            break;
        }
    }
    tracing::info!("shutting down");
    stop_tx.send_replace(true);
    if let Some(e) = elector {
        // Releases the lease so another replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), e).await;
    }
    match http_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(RunError::Http {
            addr: http_addr,
            source,
        }),
        Err(_) => Ok(()),
    }
}
