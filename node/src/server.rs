//! The RESP data port: accepts connections, parses pipelined requests, answers in order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::command::{self, ConnState, Flow, Pipeline};
use crate::node::Node;
use crate::resp::{parse, reply};

pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    // The kernel turns receive stamping on for the whole host a moment after the first socket
    // asks (until then packets carry none): ask now, before clients connect.
    crate::arrival::enable(&listener);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let node = node.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(node, stream).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(node: Arc<Node>, stream: TcpStream) -> std::io::Result<()> {
    let id = node.next_conn.fetch_add(1, Ordering::Relaxed);
    let addr =
        |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let client = node.clients.register(
        id,
        addr(stream.peer_addr()),
        addr(stream.local_addr()),
        crate::keys::now_ms(),
    );
    let r = serve_connection(&node, stream, client).await;
    node.clients.remove(id);
    r
}

async fn serve_connection(
    node: &Arc<Node>,
    mut stream: TcpStream,
    client: Arc<command::clients::ClientShared>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    crate::arrival::enable(&stream);
    let mut conn = ConnState {
        authed: false,
        proto: 2,
        client,
        answering: Vec::new(),
        tx: Default::default(),
        subs: None,
        reply: Default::default(),
        arrival: None,
        wrote: false,
    };
    let max_frame = node.cfg.max_frame;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(16 * 1024);
    let mut pending = Pipeline::default();
    let mut parser = parse::RequestParser::default();
    // CLIENT KILL from another connection (one waiter, registered once).
    let client = conn.client.clone();
    let killed = client.kill.notified();
    tokio::pin!(killed);
    // Pub/Sub messages wake the connection too (a mailbox that never fills for a connection
    // without subscriptions).
    let idle_mailbox = Arc::new(crate::pubsub::Mailbox::default());
    loop {
        let mailbox = conn
            .subs
            .as_ref()
            .map_or_else(|| idle_mailbox.clone(), |s| s.mailbox.clone());
        let n = tokio::select! {
            // The socket first: the kill is rare, and a fixed order spares the random pick.
            biased;
            r = crate::arrival::read(&stream, &mut chunk) => {
                let (n, stamp) = r?;
                conn.arrival = stamp;
                n
            }
            _ = &mut killed => return Ok(()),
            _ = mailbox.wake.notified() => {
                loop {
                    if command::pubsub::deliver(&conn, &mut out) {
                        return Ok(());
                    }
                    if out.is_empty() {
                        break;
                    }
                    if write_or_cut(&mut stream, &out, &mailbox).await? {
                        return Ok(());
                    }
                    out.clear();
                }
                continue;
            }
        };
        if n == 0 {
            return Ok(());
        }
        let read_at = std::time::Instant::now();
        // Blocked clients woken by this read's writes are served before its replies go out.
        let settle_from = node.engine.ready.generation();
        conn.wrote = false;
        // (One clock read for both.)
        let now = crate::arrival::now_ns();
        if let Some(stamp) = conn.arrival {
            crate::arrival::note_handled(stamp, now);
        }
        conn.client.active(now / 1_000_000);
        buf.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        let mut close = false;
        loop {
            match parser.parse(&buf[consumed..], max_frame) {
                Ok(Some((args, used))) => {
                    consumed += used;
                    let flow = if command::blocking::may_block(&args) {
                        // A blocking command may wait long: keep reading, so a client that
                        // goes away (or is killed) ends the wait instead of leaving it behind.
                        let handled =
                            command::handle(node, &mut conn, args, &mut pending, &mut out);
                        tokio::pin!(handled);
                        let mut eof = false;
                        loop {
                            tokio::select! {
                                flow = &mut handled => break flow,
                                // (Up to one more frame: what waits here is not parsed yet.)
                                n = stream.read(&mut chunk),
                                    if !eof && buf.len() - consumed <= max_frame + 1024 => match n {
                                    Ok(0) | Err(_) => eof = true,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                },
                                _ = &mut killed => return Ok(()),
                            }
                            if eof {
                                return Ok(());
                            }
                        }
                    } else {
                        command::handle(node, &mut conn, args, &mut pending, &mut out).await
                    };
                    if let Flow::Close = flow {
                        close = true;
                        break;
                    }
                    // Messages published meanwhile go before the next reply, as in Redis.
                    if conn.subs.is_some() {
                        command::flush_for(node, &conn, &mut pending, &mut out).await;
                        if command::pubsub::deliver(&conn, &mut out) {
                            close = true;
                            break;
                        }
                    }
                }
                Ok(None) => {
                    if buf.len() - consumed > max_frame + 1024 {
                        command::flush_for(node, &conn, &mut pending, &mut out).await;
                        reply::error(
                            &mut out,
                            &format!(
                                "ERR Protocol error: request frame larger than the maximum of {max_frame} bytes"
                            ),
                        );
                        close = true;
                    }
                    break;
                }
                Err(e) => {
                    node.metrics.error("protocol");
                    command::flush_for(node, &conn, &mut pending, &mut out).await;
                    reply::error(&mut out, &e.to_string());
                    close = true;
                    break;
                }
            }
        }
        buf.drain(..consumed);
        command::flush_for(node, &conn, &mut pending, &mut out).await;
        if conn.wrote {
            node.engine.ready.settle(settle_from).await;
        }
        if !out.is_empty() {
            if write_or_cut(&mut stream, &out, &mailbox).await? {
                return Ok(());
            }
            out.clear();
        }
        // Every command of this read was answered now (replies go out together).
        node.metrics
            .commands_answered(&conn.answering, read_at.elapsed());
        conn.answering.clear();
        if close || conn.client.killed() {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

/// Writes `out`; true if the connection's Pub/Sub mailbox overflowed meanwhile (a subscriber
/// that does not read: the write would never finish), so the connection must close.
async fn write_or_cut(
    stream: &mut TcpStream,
    out: &[u8],
    mailbox: &crate::pubsub::Mailbox,
) -> std::io::Result<bool> {
    let write = stream.write_all(out);
    tokio::pin!(write);
    loop {
        tokio::select! {
            r = &mut write => {
                r?;
                // Messages that arrived during the write were woken for: look again.
                if !mailbox.is_empty() {
                    mailbox.wake.notify_one();
                }
                return Ok(false);
            }
            _ = mailbox.wake.notified() => {
                if mailbox.overflowed() {
                    return Ok(true);
                }
            }
        }
    }
}
