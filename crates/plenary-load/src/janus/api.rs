//! Janus's HTTP API (the "Janus protocol" over REST,
//! <https://janus.conf.meetecho.com/docs/rest.html>) and the VideoRoom
//! requests the harness needs: a session with keepalives and one long-poll
//! task that routes asynchronous events to the handle they are for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::JanusError;
use super::http::Http;

/// How long a synchronous request may take (Janus answers in ms on loopback;
/// generous for a loaded 2-core machine).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for an asynchronous plugin event (a JSEP answer or offer).
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Janus closes sessions idle for 60 s (`session_timeout`); keepalive well
/// inside that.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// The shortest time between two long polls that brought nothing.
const IDLE_POLL_PAUSE: Duration = Duration::from_millis(200);
/// Events fetched per long poll (`maxev`).
const MAX_EVENTS_PER_POLL: u32 = 50;

type Routes = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>>;

/// One Janus session: create, keepalives every 15 s, and a long-poll task
/// (`GET /janus/<session>?maxev=50`) routing events by their `sender`
/// handle. Dropping it stops both tasks (Janus then times the session out).
#[derive(Debug)]
pub struct JanusSession {
    http: Http,
    id: u64,
    routes: Routes,
    transaction: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

/// An attached `janus.plugin.videoroom` handle and the events Janus sends
/// it (in order).
#[derive(Debug)]
pub struct VideoRoomHandle {
    /// Janus's handle id.
    pub id: u64,
    events: mpsc::UnboundedReceiver<Value>,
}

/// A publisher that joined a room and got Janus's SDP answer.
#[derive(Debug)]
pub struct Published {
    /// Its feed id in the room (what subscribers name).
    pub feed: u64,
    /// Janus's SDP answer to the publisher's offer.
    pub answer_sdp: String,
}

impl JanusSession {
    /// `POST /janus {"janus":"create"}`, then starts the keepalive and
    /// long-poll tasks. Errors: [`JanusError`] for transport failures,
    /// Janus errors and answers of an unexpected shape.
    pub(crate) async fn create(http: Http) -> Result<Self, JanusError> {
        let transaction = AtomicU64::new(1);
        let answer = http.post("/janus", &json!({"janus": "create", "transaction": "t0"}), REQUEST_TIMEOUT).await?;
        let id = success_data_id(&answer)?;
        let routes: Routes = Arc::default();
        let poll = tokio::spawn(long_poll(http.clone(), id, routes.clone()));
        let keepalive = tokio::spawn(keepalive(http.clone(), id));
        transaction.fetch_add(1, Ordering::Relaxed);
        Ok(Self { http, id, routes, transaction, tasks: vec![poll, keepalive] })
    }

    /// Janus's session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn transaction(&self) -> String {
        format!("t{}", self.transaction.fetch_add(1, Ordering::Relaxed))
    }

    /// Attaches `janus.plugin.videoroom`; its events are routed to the
    /// returned handle.
    pub async fn attach_videoroom(&self) -> Result<VideoRoomHandle, JanusError> {
        let body = json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": self.transaction()});
        let answer = self.http.post(&format!("/janus/{}", self.id), &body, REQUEST_TIMEOUT).await?;
        let id = success_data_id(&answer)?;
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.routes).insert(id, tx);
        Ok(VideoRoomHandle { id, events: rx })
    }

    /// Sends a plugin message (with an optional JSEP) on `handle` and
    /// returns Janus's immediate answer: `success` with `plugindata` for
    /// synchronous requests, `ack` for asynchronous ones.
    async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value, JanusError> {
        let mut msg = json!({"janus": "message", "body": body, "transaction": self.transaction()});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let answer = self.http.post(&format!("/janus/{}/{}", self.id, handle), &msg, REQUEST_TIMEOUT).await?;
        check_janus_error(&answer)?;
        if let Some(data) = answer.pointer("/plugindata/data") {
            check_plugin_error(data)?;
        }
        Ok(answer)
    }

    /// Tells Janus the peer has no more ICE candidates than those in its SDP
    /// (half-trickle, RFC 8838 end-of-candidates).
    async fn end_of_candidates(&self, handle: u64) -> Result<(), JanusError> {
        let msg = json!({"janus": "trickle", "candidate": {"completed": true}, "transaction": self.transaction()});
        let answer = self.http.post(&format!("/janus/{}/{}", self.id, handle), &msg, REQUEST_TIMEOUT).await?;
        check_janus_error(&answer)
    }

    /// VideoRoom `create`: a room for `publishers` publishers, each capped
    /// at `bitrate_bps` bits per second, Opus and VP8, no recording, no FIR
    /// timer. Returns the room id Janus picked.
    pub async fn create_room(
        &self,
        handle: &VideoRoomHandle,
        publishers: u32,
        bitrate_bps: u64,
    ) -> Result<u64, JanusError> {
        let body = json!({
            "request": "create",
            "publishers": publishers,
            "bitrate": bitrate_bps,
            "fir_freq": 0,
            "audiocodec": "opus",
            "videocodec": "vp8",
            "record": false,
            "permanent": false,
        });
        let answer = self.message(handle.id, body, None).await?;
        answer
            .pointer("/plugindata/data/room")
            .and_then(Value::as_u64)
            .ok_or_else(|| JanusError::Protocol(format!("no room id in {answer}")))
    }

    /// Joins `room` as a publisher with `offer_sdp` (`joinandconfigure`) on
    /// `handle`; waits for the `joined` event carrying Janus's answer.
    pub async fn publish(
        &self,
        handle: &mut VideoRoomHandle,
        room: u64,
        offer_sdp: &str,
    ) -> Result<Published, JanusError> {
        let body = json!({"request": "joinandconfigure", "ptype": "publisher", "room": room});
        self.message(handle.id, body, Some(json!({"type": "offer", "sdp": offer_sdp}))).await?;
        self.end_of_candidates(handle.id).await?;
        let event = handle.wait_for("joined").await?;
        let feed = event
            .pointer("/plugindata/data/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| JanusError::Protocol("joined event without a feed id".into()))?;
        let answer_sdp = jsep_sdp(&event, "answer")?;
        Ok(Published { feed, answer_sdp })
    }

    /// Joins `room` as a subscriber to `feeds` (every stream of each) on
    /// `handle` and returns Janus's SDP offer. A feed whose PeerConnection
    /// is not up yet is [`JanusError::Plugin`] code 428 ("no such feed").
    pub async fn subscribe(
        &self,
        handle: &mut VideoRoomHandle,
        room: u64,
        feeds: &[u64],
    ) -> Result<String, JanusError> {
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let body = json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams});
        self.message(handle.id, body, None).await?;
        let event = handle.wait_for("attached").await?;
        jsep_sdp(&event, "offer")
    }

    /// Adds `feeds` to a subscription (`subscribe`); Janus's new offer
    /// comes as an event with a JSEP offer ([`VideoRoomHandle::next_offer`]).
    pub async fn add_feeds(&self, handle: &VideoRoomHandle, feeds: &[u64]) -> Result<(), JanusError> {
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        self.message(handle.id, json!({"request": "subscribe", "streams": streams}), None).await?;
        Ok(())
    }

    /// Answers a subscription's first offer (`start` with the JSEP answer)
    /// and waits for Janus's `started`.
    pub async fn start(&self, handle: &mut VideoRoomHandle, answer_sdp: &str) -> Result<(), JanusError> {
        self.answer(handle, answer_sdp).await?;
        self.end_of_candidates(handle.id).await?;
        handle.wait_for_event_key("started").await?;
        Ok(())
    }

    /// Answers a renegotiation offer of a running subscription (`start`
    /// with the JSEP answer) without waiting for Janus's confirmation.
    pub async fn answer(&self, handle: &VideoRoomHandle, answer_sdp: &str) -> Result<(), JanusError> {
        let body = json!({"request": "start"});
        self.message(handle.id, body, Some(json!({"type": "answer", "sdp": answer_sdp}))).await?;
        Ok(())
    }

    /// Detaches `handle` (Janus hangs its PeerConnection up).
    pub async fn detach(&self, handle: VideoRoomHandle) -> Result<(), JanusError> {
        lock(&self.routes).remove(&handle.id);
        let msg = json!({"janus": "detach", "transaction": self.transaction()});
        let answer = self.http.post(&format!("/janus/{}/{}", self.id, handle.id), &msg, REQUEST_TIMEOUT).await?;
        check_janus_error(&answer)
    }
}

impl Drop for JanusSession {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl VideoRoomHandle {
    /// Waits for the next VideoRoom event whose `videoroom` field is `kind`
    /// (`joined`, `attached`, ...); a VideoRoom error event is returned as
    /// [`JanusError::Plugin`], other events are skipped.
    async fn wait_for(&mut self, kind: &str) -> Result<Value, JanusError> {
        self.wait_until(kind, |data| data.get("videoroom").and_then(Value::as_str) == Some(kind)).await
    }

    /// Waits for a VideoRoom `event` holding `key` (e.g. `started`).
    async fn wait_for_event_key(&mut self, key: &str) -> Result<Value, JanusError> {
        self.wait_until(key, |data| data.get(key).is_some()).await
    }

    /// Waits for the next event carrying a JSEP offer (Janus renegotiating
    /// a subscription: feeds added or gone) and returns its SDP; `None`
    /// when the session ended.
    pub async fn next_offer(&mut self) -> Option<Result<String, JanusError>> {
        loop {
            let event = self.events.recv().await?;
            if event.get("janus").and_then(Value::as_str) == Some("hangup") {
                let reason = event.get("reason").and_then(Value::as_str).unwrap_or("").to_string();
                return Some(Err(JanusError::Hangup(reason)));
            }
            if event.pointer("/jsep/type").and_then(Value::as_str) == Some("offer") {
                return Some(jsep_sdp(&event, "offer"));
            }
        }
    }

    async fn wait_until(&mut self, what: &str, found: impl Fn(&Value) -> bool) -> Result<Value, JanusError> {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| JanusError::Timeout(format!("VideoRoom event {what}")))?
                .ok_or(JanusError::SessionClosed)?;
            if event.get("janus").and_then(Value::as_str) == Some("hangup") {
                let reason = event.get("reason").and_then(Value::as_str).unwrap_or("").to_string();
                return Err(JanusError::Hangup(reason));
            }
            if let Some(data) = event.pointer("/plugindata/data") {
                check_plugin_error(data)?;
                if found(data) {
                    return Ok(event);
                }
            }
        }
    }
}

/// Long-polls the session's events and routes each to its handle's channel
/// until the task is aborted or Janus forgets the session.
async fn long_poll(http: Http, session: u64, routes: Routes) {
    let path = format!("/janus/{session}?maxev={MAX_EVENTS_PER_POLL}");
    loop {
        let polled = tokio::time::Instant::now();
        // Janus answers an idle long poll after 30 s with a keepalive.
        let routed = match http.get(&path, Duration::from_secs(45)).await {
            Ok(Value::Array(events)) => events.into_iter().filter(|e| route(&routes, e.clone())).count(),
            Ok(event) => {
                if event.get("janus").and_then(Value::as_str) == Some("error") {
                    tracing::warn!("Janus long poll: {event}");
                    return;
                }
                usize::from(route(&routes, event))
            }
            Err(JanusError::Timeout(_)) => 1,
            Err(e) => {
                tracing::debug!("Janus long poll: {e}");
                0
            }
        };
        // A server answering at once with nothing for us (broken, or not
        // Janus) must not turn this loop into a busy one on the generator's core.
        if routed == 0 && polled.elapsed() < IDLE_POLL_PAUSE {
            tokio::time::sleep(IDLE_POLL_PAUSE).await;
        }
    }
}

/// Hands `event` to the handle it names (`sender`); whether one took it.
fn route(routes: &Routes, event: Value) -> bool {
    let Some(sender) = event.get("sender").and_then(Value::as_u64) else { return false };
    let mut routes = lock(routes);
    let Some(tx) = routes.get(&sender) else { return false };
    if tx.send(event).is_err() {
        routes.remove(&sender);
        return false;
    }
    true
}

async fn keepalive(http: Http, session: u64) {
    let mut n = 0u64;
    loop {
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        n += 1;
        let msg = json!({"janus": "keepalive", "transaction": format!("k{n}")});
        if let Err(e) = http.post(&format!("/janus/{session}"), &msg, REQUEST_TIMEOUT).await {
            tracing::debug!("Janus keepalive: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `{"janus":"error","error":{"code":..,"reason":..}}` → [`JanusError::Api`].
fn check_janus_error(answer: &Value) -> Result<(), JanusError> {
    if answer.get("janus").and_then(Value::as_str) == Some("error") {
        let code = answer.pointer("/error/code").and_then(Value::as_u64).unwrap_or(0);
        let reason = answer.pointer("/error/reason").and_then(Value::as_str).unwrap_or("").to_string();
        return Err(JanusError::Api { code, reason });
    }
    Ok(())
}

/// VideoRoom's `{"error_code":..,"error":..}` → [`JanusError::Plugin`].
fn check_plugin_error(data: &Value) -> Result<(), JanusError> {
    if let Some(code) = data.get("error_code").and_then(Value::as_u64) {
        let reason = data.get("error").and_then(Value::as_str).unwrap_or("").to_string();
        return Err(JanusError::Plugin { code, reason });
    }
    Ok(())
}

/// `{"janus":"success","data":{"id":N}}` → N.
fn success_data_id(answer: &Value) -> Result<u64, JanusError> {
    check_janus_error(answer)?;
    answer
        .pointer("/data/id")
        .and_then(Value::as_u64)
        .ok_or_else(|| JanusError::Protocol(format!("expected success with data.id, got {answer}")))
}

/// The SDP of an event's JSEP of type `kind` (`offer`/`answer`).
fn jsep_sdp(event: &Value, kind: &str) -> Result<String, JanusError> {
    let jsep = event.get("jsep").ok_or_else(|| JanusError::Protocol(format!("event without the JSEP {kind}")))?;
    if jsep.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(JanusError::Protocol(format!("expected a JSEP {kind}, got {jsep}")));
    }
    jsep.get("sdp")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| JanusError::Protocol(format!("JSEP {kind} without SDP")))
}

/// Runs every reader of Janus answers and events on `data` (for the
/// `janus_answer` fuzz target): bytes that are not JSON are refused by
/// serde_json; JSON of any shape gives a value or a typed error, never a
/// panic, and what is read agrees with the JSON.
#[doc(hidden)]
pub fn fuzz_answer(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Value>(data) else { return };
    let janus_error = check_janus_error(&answer);
    if let Ok(id) = success_data_id(&answer) {
        assert!(janus_error.is_ok());
        assert_eq!(answer.pointer("/data/id").and_then(Value::as_u64), Some(id));
    }
    if let Some(data) = answer.pointer("/plugindata/data") {
        let _ = check_plugin_error(data);
    }
    for kind in ["offer", "answer"] {
        if let Ok(sdp) = jsep_sdp(&answer, kind) {
            assert_eq!(answer.pointer("/jsep/sdp").and_then(Value::as_str), Some(sdp.as_str()));
        }
    }
    assert!(super::http::check_transaction(&answer, &answer).is_ok());
    let _ = super::http::check_transaction(&json!({"transaction": "t1"}), &answer);
    // Routed to the handle it names, or dropped.
    let routes: Routes = Arc::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&routes).insert(7, tx);
    let sender = answer.get("sender").and_then(Value::as_u64);
    assert_eq!(route(&routes, answer), sender == Some(7));
    assert_eq!(rx.try_recv().is_ok(), sender == Some(7));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed() {
        let e = check_janus_error(&json!({"janus":"error","error":{"code":458,"reason":"No such session"}}));
        assert!(matches!(e, Err(JanusError::Api { code: 458, .. })));
        let e = check_plugin_error(&json!({"videoroom":"event","error_code":426,"error":"No such room"}));
        assert!(matches!(e, Err(JanusError::Plugin { code: 426, .. })));
        assert!(success_data_id(&json!({"janus":"success","data":{}})).is_err());
        assert_eq!(success_data_id(&json!({"janus":"success","data":{"id":7}})).ok(), Some(7));
        assert!(jsep_sdp(&json!({"jsep":{"type":"offer","sdp":"v=0"}}), "answer").is_err());
    }

    #[test]
    fn fuzz_answer_seeds() {
        for seed in [
            &b"{\"janus\":\"success\",\"transaction\":\"t1\",\"data\":{\"id\":7}}"[..],
            br#"{"janus":"event","sender":7,"plugindata":{"data":{"videoroom":"joined","id":1}},"jsep":{"type":"answer","sdp":"v=0"}}"#,
            br#"{"janus":"error","error":{"code":"x","reason":7},"data":{"id":-1}}"#,
            br#"{"sender":18446744073709551615,"jsep":[],"plugindata":{"data":{"error_code":1.5}}}"#,
            b"[1,2,{}]",
            b"{",
            b"",
        ] {
            fuzz_answer(seed);
        }
    }
}
