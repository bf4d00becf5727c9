//! What a WebSocket listener answers besides upgrades (feature `websocket`): event streams
//! (server-sent events) opened as receive-only clients, and plain answers — the host's
//! pages, the metrics text, health, 404 and 405 — written, then closed. Which request asks
//! for what is `wire::http`'s; framing events is `wire::sse`'s.
//!
//! ```text
//! GET <sse_path>[/<topic>] ─► name ─► authenticator ─► user ─► topic allowed ─► 200 ─► Live
//!                             │ 404    │ 403            │ 403/429 │ 403
//!                             ▼        ▼                ▼         ▼
//!                          Closing (refused: the answer is written, then closed)
//! Live: Last-Event-ID ─► resume (replay with ids, or a `reset` event) ; none ─► its position
//! GET|HEAD page, metrics, health; 404; 405 ─► answer ─► Closing
//! ```

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;

use super::Dispatcher;
use crate::topics::check_name;
use crate::wire::control::StreamName;
use crate::wire::{self, http, Events, Serve, Served, Wire};
use crate::TopicAction;

impl Dispatcher {
    /// Answers a plain request and closes the connection once the answer is out.
    pub(super) fn serve(&mut self, slot: usize, serve: Serve) {
        let Serve { what, head_only } = serve;
        let (head, body) = match what {
            Served::Page(i) => {
                let Some(page) = self.config.websocket.http.pages.get(i) else {
                    return self.close_answered(slot);
                };
                let head = http::response_head_of(200, "", &page.content_type, page.body.len());
                (head, page.body.clone())
            }
            Served::Metrics => {
                let text = self.metrics_text();
                let kind = "text/plain; version=0.0.4; charset=utf-8";
                (
                    http::response_head_of(200, "", kind, text.len()),
                    text.into(),
                )
            }
            Served::Live | Served::Ready => {
                let (status, text) = self.health_text(what == Served::Ready);
                let kind = "text/plain; charset=utf-8";
                (
                    http::response_head_of(status, "", kind, text.len()),
                    text.into(),
                )
            }
            Served::NotFound => {
                let text = "not found\n";
                let kind = "text/plain; charset=utf-8";
                let head = http::response_head_of(404, "", kind, text.len());
                (head, Bytes::from_static(text.as_bytes()))
            }
            Served::Method(allow) => {
                let text = "method not allowed\n";
                let kind = "text/plain; charset=utf-8";
                let extra = format!("Allow: {allow}\r\n");
                let head = http::response_head_of(405, &extra, kind, text.len());
                (head, Bytes::from_static(text.as_bytes()))
            }
        };
        self.shared.counters.http_requests.fetch_add(1, Relaxed);
        if let Some(client) = self.slots.get(slot) {
            log::debug!(target: "hubcast::http", "{}: answered {what}", client.addr);
        }
        self.send_raw(slot, Bytes::from(head));
        if !head_only && !body.is_empty() {
            self.send_raw(slot, body);
        }
        self.close_answered(slot);
    }

    /// Opens an event stream: checked as an upgrade is (the authenticator sees the request,
    /// the user its cap), its topic allowed as a `#join` is, answered `200`, then a live
    /// client of its wire; under the protocol it is resumed from `Last-Event-ID` or told
    /// its position. Returns whether it went live.
    pub(super) fn open_events(&mut self, slot: usize, events: Events) -> bool {
        let Events {
            request,
            topic,
            last_event,
        } = events;
        let Some(client) = self.slots.get(slot) else {
            return false;
        };
        let id = client.id;
        if let Some(topic) = &topic {
            if check_name(topic, self.config.topic_limits.max_name).is_err() {
                self.refuse_upgrade(slot, wire::refusal(404, "not a topic name"), false);
                return false;
            }
        }
        let Some(mut admit) = self.admit_request(slot, &request) else {
            return false;
        };
        if let Some(topic) = &topic {
            if !admit.topics.contains(topic) {
                if !self.may_join(slot, id, admit.user.as_deref(), topic) {
                    let refused = wire::refusal(403, "not allowed in this topic");
                    self.refuse_upgrade(slot, refused, true);
                    return false;
                }
                admit.topics.push(topic.clone());
            }
        }
        // The answer goes first: every event queued from now on follows it.
        self.send_raw(slot, Bytes::from(request.response()));
        let wire = if topic.is_some() {
            Wire::SseTopic
        } else {
            Wire::Sse
        };
        if let Some(client) = self.slots.get_mut(slot) {
            client.wire = wire;
            client.session = None;
        }
        self.shared.counters.sse_opened.fetch_add(1, Relaxed);
        self.go_live(slot, admit);
        if !self.config.sequenced || !self.slots.get(slot).is_some_and(|c| c.is_live()) {
            return self.slots.get(slot).is_some_and(|c| c.is_live());
        }
        let stream = topic.as_deref().map_or(StreamName::Hub, StreamName::Topic);
        match last_event {
            // Not an id the hub gave: answered as a resume of another epoch (`reset`).
            Some(position) => {
                let (epoch, seq) = position.unwrap_or((0, 0));
                self.resume(slot, id, stream, epoch, (seq, None));
            }
            None => self.tell_position(slot, topic.as_deref()),
        }
        self.slots.get(slot).is_some_and(|c| c.is_live())
    }

    /// Whether the host lets client `id` (not live yet, of `user`) into `topic` as a
    /// `#join`: asked of the `client_topics` closure; without one, clients choose no topic.
    fn may_join(
        &mut self,
        slot: usize,
        id: crate::ClientId,
        user: Option<&str>,
        topic: &str,
    ) -> bool {
        let Some(allow) = self.config.client_topics.clone() else {
            return false;
        };
        // The closure is shown the user the connection will have.
        if let Some(client) = self.slots.get_mut(slot) {
            client.user = user.map(Arc::from);
        }
        let allowed = self.ask_topic(
            &allow,
            slot,
            id,
            StreamName::Topic(topic),
            TopicAction::Join,
        );
        if let Some(client) = self.slots.get_mut(slot) {
            client.user = None;
        }
        allowed
    }

    /// Sends a new event stream the position its live messages start after, as an id
    /// without an event, so that a reconnect resumes from there.
    fn tell_position(&mut self, slot: usize, topic: Option<&str>) {
        let Some(client) = self.slots.get(slot) else {
            return;
        };
        let position = match topic {
            None => Some((self.streams.hub.epoch, client.hub_start)),
            Some(name) => client.topics.iter().find_map(|&(t, start)| {
                (self.streams.topics.name_of(t) == Some(name))
                    .then(|| Some((self.streams.topics.stream(t)?.epoch, start)))
                    .flatten()
            }),
        };
        if let Some((epoch, seq)) = position {
            self.send_raw(slot, wire::sse_position(epoch, seq));
        }
    }

    /// The metrics text served at `metrics_path`.
    fn metrics_text(&self) -> String {
        crate::metrics::text(&self.shared)
    }

    /// The status and text served at the liveness or readiness path.
    fn health_text(&self, ready: bool) -> (u16, String) {
        crate::health::response(&crate::health::check(&self.shared), ready)
    }
}
