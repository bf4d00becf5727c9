//! An axum app that serves its page and a JSON API on one port and mounts the hub's
//! WebSocket at `/ws` on that same port: the app answers the upgrade itself and hands the
//! connection to the hub (`Hub::adopt`), which serves it from then on as one of its own.
//!
//! ```text
//! cargo run --features websocket,stream --example axum_app -- [ADDR]
//! # open the page it prints, http://127.0.0.1:3000/, in two tabs, and chat
//! curl -d 'hello from curl' http://127.0.0.1:3000/api/announce   # to every tab
//! curl http://127.0.0.1:3000/api/stats
//! ```
//!
//! Default address `127.0.0.1:3000` (port 0 lets the OS choose). Prints `open
//! http://ADDR/` once it serves, and exits cleanly on Ctrl-C or SIGTERM.
//!
//! - `GET /`: a small chat page; what a tab says reaches the other tabs (`Relay::Others`).
//! - `GET /ws`: the hub's WebSocket. The handler checks the upgrade with
//!   `Hub::websocket_answer` (the checks and header values the hub's own listener uses:
//!   the accept key, the `Origin` policy, the subprotocol), answers `101` with its headers,
//!   then takes the connection back from hyper (`hyper::upgrade::on`, downcast to the
//!   tokio `TcpStream`, with the bytes hyper read past the request) and adopts it.
//! - `GET /api/stats`: a few of `Hub::stats` as JSON.
//! - `POST /api/announce`: its body goes to every client (`Hub::broadcast_async`).
//!
//! An async task logs the hub's events (the `Subscription` as a `Stream`, feature `stream`). The app is served with hyper's HTTP/1 connection
//! builder, as axum's `serve-with-hyper` example does, rather than `axum::serve`: that one
//! reads the first bytes of a connection to tell HTTP/1 from HTTP/2 and wraps the socket
//! in a private type, so an upgraded connection no longer downcasts to the `TcpStream` the
//! hub needs.
//!
//! The hub itself also listens (every hub binds an address): here on a loopback port the
//! OS picks, which the app does not publish.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use hubcast::{Adopted, Event, Hub, Relay};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

mod common;

/// The usage, for `--help` and for a bad command line.
const USAGE: &str = "usage: axum_app [ADDR]
  ADDR  the app: its page, API and the hub's WebSocket at /ws, HOST:PORT (default 127.0.0.1:3000)
  (port 0 lets the system choose)";

/// The chat page, served at `/`.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>hubcast in an axum app</title>
<style>body{font:16px sans-serif;max-width:40em;margin:2em auto}#log{white-space:pre-wrap}</style>
<h1>hubcast in an axum app</h1>
<p id="status">connecting…</p>
<div id="log"></div>
<form id="say"><input id="text" autocomplete="off" autofocus placeholder="say something"><button>Send</button></form>
<script>
"use strict";
const log = document.getElementById("log");
const status = document.getElementById("status");
const show = (line) => { log.textContent += line + "\n"; };
let socket = null;
function connect() {
  socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  socket.onopen = () => { status.textContent = "connected"; };
  socket.onmessage = (e) => show(e.data);
  socket.onclose = () => { status.textContent = "disconnected, reconnecting…"; setTimeout(connect, 1000); };
}
document.getElementById("say").onsubmit = (e) => {
  e.preventDefault();
  const text = document.getElementById("text");
  if (text.value && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(text.value);
    show("me: " + text.value);
    text.value = "";
  }
};
connect();
</script>
"#;

/// Runs the example; see `common` for how it answers `--help`, a bad command line and a
/// failure.
fn main() -> ExitCode {
    let args = common::Args::parse(USAGE, 1, &[]);
    let addr = args.addr(0, "127.0.0.1:3000");
    common::init_logging("info");
    common::exit(run(&addr))
}

fn run(addr: &str) -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(addr))
}

async fn serve(addr: &str) -> Result<(), Box<dyn Error>> {
    // What one tab says reaches the others; the host's announcements reach every tab.
    let hub = Arc::new(Hub::builder().relay(Relay::Others).bind("127.0.0.1:0")?);
    let listener = TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", get(websocket))
        .route("/api/stats", get(stats))
        .route("/api/announce", post(announce))
        .with_state(Arc::clone(&hub));

    // The hub's events, logged by a task of their own: the subscription is a `Stream`
    // (feature `stream`), no thread blocked; it ends once the hub has shut down, and so
    // does the app.
    let mut events = hub.subscribe();
    let (stopped, mut stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Event::Connected { client, addr, .. } => {
                    log::info!("{client} connected from {addr}");
                }
                Event::Disconnected { client, reason, .. } => {
                    log::info!("{client} left: {reason}");
                }
                Event::Message {
                    client, payload, ..
                } => log::info!("{client}: {}", String::from_utf8_lossy(&payload)),
                _ => {}
            }
        }
        let _ = stopped.send(());
    });

    let signalled = Arc::clone(&hub);
    ctrlc::set_handler(move || {
        // Tabs get close code 1001 (going away); the events end, and the app with them.
        match signalled.shutdown(Duration::from_secs(2)) {
            Ok(_) | Err(hubcast::Error::Closed) => {}
            Err(err) => log::error!("shutdown failed: {err}"),
        }
    })?;
    // Only now, with the signal handler in place, tell the world we are ready.
    println!("open http://{}/", listener.local_addr()?);

    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut stop => break,
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(err) = connection.await {
                log::debug!("HTTP connection ended: {err}");
            }
        });
    }
    log::info!(
        "stopped after serving {}",
        common::count(hub.stats().accepted, "client", "clients")
    );
    Ok(())
}

/// `GET /ws`: checked and answered as the hub's own listener would, then adopted.
async fn websocket(State(hub): State<Arc<Hub>>, mut request: Request) -> Response {
    let answer = match hub.websocket_answer(request.method().as_str(), request.headers()) {
        Ok(answer) => answer,
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = (status, refusal.reason()).into_response();
            for (name, value) in refusal.headers() {
                response
                    .headers_mut()
                    .insert(name, HeaderValue::from_static(value));
            }
            return response;
        }
    };
    // What the authenticator (if the hub had one) would be shown.
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str())
        .to_owned();
    let headers: Vec<(String, Vec<u8>)> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        // Resolves once the 101 below is written.
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return log::warn!("upgrade failed: {err}"),
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            return log::warn!("not a plain TCP connection: it cannot be adopted");
        };
        let stream = match parts.io.into_inner().into_std() {
            Ok(stream) => stream,
            Err(err) => return log::warn!("could not take the socket from tokio: {err}"),
        };
        // From here on the hub owns the socket: it reads `read_buf` first, then frames.
        let adopted = Adopted::websocket(stream)
            .read(&parts.read_buf)
            .request(&target, headers);
        if let Err(err) = hub.adopt(adopted) {
            log::warn!("could not hand the connection to the hub: {err}");
        }
    });
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    response.body(Body::empty()).unwrap_or_default()
}

/// `GET /api/stats`: a few of the hub's counters, as JSON.
async fn stats(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let s = hub.stats();
    let json = format!(
        "{{\"connected\":{},\"adopted\":{},\"accepted\":{},\"frames_in\":{},\"frames_out\":{}}}",
        s.connected, s.adopted, s.accepted, s.frames_in, s.frames_out
    );
    ([(header::CONTENT_TYPE, "application/json")], json)
}

/// `POST /api/announce`: the body goes to every client.
async fn announce(State(hub): State<Arc<Hub>>, body: String) -> impl IntoResponse {
    // Waits (without blocking a thread) only if the dispatcher is behind.
    match hub.broadcast_async(format!("announcement: {body}")).await {
        Ok(()) => (StatusCode::ACCEPTED, "sent\n".to_owned()),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n")),
    }
}
