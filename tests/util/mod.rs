//! The one helper module of every integration test, split by concern:
//!
//! - [`wait`]: how long any wait may take ([`TIMEOUT`]) and how often a polled condition is
//!   looked at again ([`PACE`]);
//! - [`numbered`]: the one numbered-payload format of ordered streams, and client framing;
//! - [`peer`]: a plain TCP client on 127.0.0.1 that reads frames before a deadline;
//! - [`healthy`]: well-behaved clients of any wire that read on a thread;
//! - [`events`]: a log of a subscription's events;
//! - [`held`]: a dispatcher held inside an accept filter until the test lets it go;
//! - [`stats`]: the checks that the hub's counters add up, or hold what a test expects;
//! - [`wire`]: one client abstraction over every wire (TCP lines, TCP length-prefixed,
//!   WebSocket), for scenarios written once and run for each ([`per_wire!`]);
//! - [`websocket`] (feature `websocket`): tungstenite clients, raw WebSocket frames and
//!   upgrade requests;
//! - [`sse`] (feature `websocket`): a server-sent events client, as `curl -N` is one;
//! - [`tls`] (feature `tls`): certificates made at run time and a rustls client;
//! - [`protocol`]: hubs of the numbered-stream protocol;
//! - [`panics`]: the ways a host's closure panics;
//! - [`python`]: the Python client run from the tests (`driver.py`);
//! - [`process`] and [`programs`]: child processes, threads, outside programs, temporary
//!   directories.
//!
//! Every wait is bounded by [`TIMEOUT`], which success never reaches: a blocking read, a
//! receive on a subscription or a channel, or (only where nothing raises an event) a
//! condition checked again each time a subscription receives or [`PACE`] passes. Nothing
//! here sleeps to let something happen.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub(crate) mod events;
pub(crate) mod healthy;
pub(crate) mod held;
pub(crate) mod numbered;
pub(crate) mod panics;
pub(crate) mod peer;
pub(crate) mod process;
pub(crate) mod programs;
pub(crate) mod protocol;
pub(crate) mod python;
#[cfg(feature = "websocket")]
pub(crate) mod sse;
pub(crate) mod stats;
#[cfg(feature = "tls")]
pub(crate) mod tls;
pub(crate) mod wait;
#[cfg(feature = "websocket")]
pub(crate) mod websocket;
pub(crate) mod wire;

// Each binary uses some of these.
#[cfg(feature = "tls")]
#[allow(unused_imports)]
pub(crate) use self::tls::*;
#[allow(unused_imports)]
pub(crate) use self::{
    events::*, healthy::*, held::*, numbered::*, panics::*, peer::*, process::*, programs::*,
    protocol::*, python::*, stats::*, wait::*, wire::*,
};
#[cfg(feature = "websocket")]
#[allow(unused_imports)]
pub(crate) use self::{sse::*, websocket::*};
