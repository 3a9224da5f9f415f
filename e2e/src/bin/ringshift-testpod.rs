//! A small pod program for the harness's own tests. It serves HTTP on $POD_IP (on 0.0.0.0 with
//! --listen-all) and answers questions about what the pod sees: its address, files under its
//! mounts, its environment, what the API server allows its service account (in-cluster config),
//! and what it reaches over the pod network (Services, cluster DNS).
//!
//!   GET  /healthz /readyz              (readyz fails with --unready, healthz after
//!                                      --unhealthy-after-ms)
//!   GET  /whoami                       {"ip","name","namespace"}
//!   GET  /env?name=X                   value of X or 404
//!   GET  /files?path=DIR               JSON list of entry names or 404
//!   GET  /file?path=F                  content or 404
//!   PUT  /file?path=F  (body)          writes F (creating parent dirs)
//!   GET  /kube?path=/api/...           {"status": <HTTP status of the API server's answer>}
//!   GET  /fetch?host=H&port=P&path=/x  {"status","body"} of GET http://H:P/x from inside the pod
//!                                      (H may be a cluster DNS name, resolved by the pod's
//!                                      resolv.conf); 502 with the error when it fails
//!   POST /exit?code=N                  exits with code N

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Fail the readiness endpoint.
    #[arg(long)]
    unready: bool,
    /// Exit with --exit-code after this many milliseconds (for crash-restart tests).
    #[arg(long)]
    exit_after_ms: Option<u64>,
    #[arg(long, default_value_t = 1)]
    exit_code: u8,
    /// /healthz starts failing after this many milliseconds (for liveness tests).
    #[arg(long)]
    unhealthy_after_ms: Option<u64>,
    /// Keep running on SIGTERM (for grace-period tests).
    #[arg(long)]
    ignore_sigterm: bool,
    /// Bind 0.0.0.0 (every interface of the pod's network) instead of $POD_IP.
    #[arg(long)]
    listen_all: bool,
}

type Q = Query<HashMap<String, String>>;

fn not_found(msg: String) -> Response {
    (StatusCode::NOT_FOUND, msg).into_response()
}

fn param(q: &Q, k: &str) -> Result<String, (StatusCode, String)> {
    q.get(k)
        .cloned()
        .ok_or_else(|| (StatusCode::BAD_REQUEST, format!("missing ?{k}=")))
}

async fn files(q: Q) -> Response {
    let path = match param(&q, "path") {
        Ok(p) => PathBuf::from(p),
        Err(r) => return r.into_response(),
    };
    match std::fs::read_dir(&path) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            Json(json!(names)).into_response()
        }
        Err(e) => not_found(format!("{}: {e}", path.display())),
    }
}

async fn read_file(q: Q) -> Response {
    match param(&q, "path") {
        Ok(p) => match std::fs::read(&p) {
            Ok(b) => b.into_response(),
            Err(e) => not_found(format!("{p}: {e}")),
        },
        Err(r) => r.into_response(),
    }
}

async fn write_file(q: Q, body: axum::body::Bytes) -> Response {
    let p = match param(&q, "path") {
        Ok(p) => PathBuf::from(p),
        Err(r) => return r.into_response(),
    };
    let res = p
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|_| std::fs::write(&p, &body));
    match res {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", p.display()),
        )
            .into_response(),
    }
}

/// GET http://host:port/path from inside the pod; the host name goes through the system
/// resolver (the pod's /etc/resolv.conf), as any program in a pod would.
async fn fetch(q: Q) -> Response {
    let (host, port, path) = match (param(&q, "host"), param(&q, "port"), param(&q, "path")) {
        (Ok(h), Ok(p), Ok(path)) => (h, p, path),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r.into_response(),
    };
    let result = async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("client: {e}"))?;
        let resp = client
            .get(format!("http://{host}:{port}{path}"))
            .send()
            .await
            .map_err(|e| format!("GET http://{host}:{port}{path}: {e:?}"))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>(json!({"status": status, "body": body}))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

/// Asks the API server with this pod's in-cluster configuration and reports the status code.
async fn kube_get(q: Q) -> Response {
    let path = match param(&q, "path") {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let result = async {
        let cfg = kube::Config::incluster().map_err(|e| format!("in-cluster config: {e}"))?;
        let client = kube::Client::try_from(cfg).map_err(|e| format!("client: {e}"))?;
        let req = http::Request::get(&path)
            .body(kube::client::Body::empty())
            .map_err(|e| e.to_string())?;
        let resp = client
            .send(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        Ok::<u16, String>(resp.status().as_u16())
    }
    .await;
    match result {
        Ok(code) => Json(json!({"status": code})).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let Some(ip) = std::env::var("POD_IP")
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
    else {
        eprintln!("testpod: POD_IP must be set to the pod's address (downward API status.podIP)");
        return ExitCode::from(2);
    };
    let unready = args.unready;
    let started = std::time::Instant::now();
    let unhealthy_after = args.unhealthy_after_ms.map(Duration::from_millis);
    let app = Router::new()
        .route("/healthz", get(move || async move {
            let sick = unhealthy_after.is_some_and(|d| started.elapsed() >= d);
            if sick { (StatusCode::INTERNAL_SERVER_ERROR, "unhealthy").into_response() } else { "ok".into_response() }
        }))
        .route("/readyz", get(move || async move {
            if unready { (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response() } else { "ok".into_response() }
        }))
        .route("/whoami", get(|| async {
            let var = |k: &str| std::env::var(k).unwrap_or_default();
            Json(json!({"ip": var("POD_IP"), "name": var("POD_NAME"), "namespace": var("POD_NAMESPACE")}))
        }))
        .route("/env", get(|q: Q| async move {
            match param(&q, "name") {
                Ok(n) => match std::env::var(&n) {
                    Ok(v) => v.into_response(),
                    Err(_) => not_found(format!("{n} is not set")),
                },
                Err(r) => r.into_response(),
            }
        }))
        .route("/files", get(files))
        .route("/file", get(read_file).put(write_file))
        .route("/kube", get(kube_get))
        .route("/fetch", get(fetch))
        .route("/exit", axum::routing::post(|q: Q| async move {
            let code = q.get("code").and_then(|c| c.parse::<i32>().ok()).unwrap_or(1);
            println!("testpod: exiting with {code} on request");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                std::process::exit(code)
            });
            "bye"
        }));
    let ip = if args.listen_all {
        IpAddr::from([0, 0, 0, 0])
    } else {
        ip
    };
    let listener = match tokio::net::TcpListener::bind((ip, args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testpod: binding {ip}:{}: {e}", args.port);
            return ExitCode::from(3);
        }
    };
    println!("testpod listening on {ip}:{}", args.port);
    if let Some(ms) = args.exit_after_ms {
        let code = args.exit_code;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            println!("testpod: exiting with {code} after {ms}ms");
            std::process::exit(i32::from(code));
        });
    }
    let ignore_sigterm = args.ignore_sigterm;
    let shutdown = async move {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            if ignore_sigterm {
                loop {
                    println!("testpod: got SIGTERM, ignoring it");
                    s.recv().await;
                }
            }
            println!("testpod: got SIGTERM, shutting down");
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("testpod: server: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
