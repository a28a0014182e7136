//! What the client reports: JSON lines on stdout with `--json`, short
//! human-readable lines otherwise. Display names and chat (learned from
//! encrypted profiles and messages) go only to this output, the user's own
//! terminal or tooling, never to logs.

use std::io::Write;
use std::path::PathBuf;

use plenary_proto::{MediaKind, ParticipantId};
use serde::Serialize;

/// Frames and bytes received on one remote track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackStats {
    /// Who publishes the track.
    pub participant_id: ParticipantId,
    /// Audio or video.
    pub kind: MediaKind,
    /// MID of our receiving transceiver.
    pub mid: String,
    /// Frames received (a video frame or an Opus packet).
    pub frames: u64,
    /// Payload bytes received (depacketized frames).
    pub bytes: u64,
    /// File the track was recorded to, if recording and any frame was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<PathBuf>,
    /// Longest wait between two usable frames (decrypted, in end-to-end
    /// encrypted meetings) on this track so far, milliseconds; 0 before
    /// the second. What a listener hears as a dropout.
    pub max_gap_ms: u64,
    /// Longest step in media time between two consecutive usable frames,
    /// by their RTP timestamps (RFC 3550 §5.1), milliseconds; 0 before the
    /// second. 20 for complete 20 ms Opus audio: anything above is media
    /// that never arrived or did not decrypt (what a listener hears as a
    /// dropout whatever its jitter buffer), while frames that are only late
    /// (a loaded machine) leave it alone, unlike `max_gap_ms`.
    pub max_media_gap_ms: u64,
    /// Video: RID of the simulcast layer the server forwards now (`q`, `h`,
    /// `f`), from its `layer` messages; absent until one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// End-to-end encrypted meetings only: frames decrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrypted: Option<u64>,
    /// End-to-end encrypted meetings only: frames that could not be
    /// decrypted (no keys yet, unknown key, tampered), dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrypt_failures: Option<u64>,
    /// End-to-end encrypted meetings only: copies of frames already
    /// decrypted (same SFrame KID and CTR, RFC 9605 §9.3), dropped silently:
    /// not failures, nothing was missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decrypt_replays: Option<u64>,
}

/// Frames and bytes sent on one of our own tracks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentStats {
    /// Audio or video.
    pub kind: MediaKind,
    /// MID of our sending transceiver.
    pub mid: String,
    /// Frames handed to the RTP packetizer.
    pub frames: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
}

/// The result of a session: what was received and sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Our participant id.
    pub participant_id: ParticipantId,
    /// The room.
    pub room: String,
    /// Seconds from joining to leaving.
    pub duration_s: f64,
    /// Seconds the media connection (ICE + DTLS) took to come up after
    /// our offer; `None` if it never did.
    pub connect_s: Option<f64>,
    /// Every remote track received during the session, in order of arrival
    /// (a track that went and came back appears twice).
    pub tracks: Vec<TrackStats>,
    /// Our published tracks.
    pub sent: Vec<SentStats>,
}

impl Summary {
    /// Total frames received from `participant` of `kind`.
    pub fn frames_from(&self, participant: ParticipantId, kind: MediaKind) -> u64 {
        self.tracks.iter().filter(|t| t.participant_id == participant && t.kind == kind).map(|t| t.frames).sum()
    }
}

/// One JSON line of `--json` output.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JsonEvent<'a> {
    /// We are in the room.
    Joined {
        /// Our participant id.
        participant_id: ParticipantId,
        /// The room.
        room: &'a str,
        /// Who was already there.
        participants: Vec<ParticipantId>,
    },
    /// ICE and DTLS are up; publishing starts.
    Connected {
        /// Seconds since our offer.
        connect_s: f64,
    },
    /// The first remote video frame of this connection was decrypted: the
    /// moment a user would see the first picture of someone else.
    FirstFrame {
        /// Whose frame.
        participant_id: ParticipantId,
        /// Seconds since the process started joining (pressing Join).
        since_start_s: f64,
        /// Seconds since the server's `joined`.
        since_joined_s: f64,
    },
    /// Someone entered.
    ParticipantJoined {
        /// Who.
        participant_id: ParticipantId,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        participant_id: ParticipantId,
    },
    /// A remote track is now received on `mid`.
    TrackAdded {
        /// Publisher.
        participant_id: ParticipantId,
        /// Audio or video.
        kind: MediaKind,
        /// Our receiving MID.
        mid: &'a str,
    },
    /// A remote track stopped.
    TrackRemoved {
        /// Publisher.
        participant_id: ParticipantId,
        /// Audio or video.
        kind: MediaKind,
        /// Our receiving MID.
        mid: &'a str,
    },
    /// Once a second: frames so far on every current remote track and on ours.
    Frames {
        /// Seconds since joining.
        t: f64,
        /// Current remote tracks.
        tracks: Vec<TrackStats>,
        /// Our tracks.
        sent: Vec<SentStats>,
    },
    /// End-to-end encrypted meetings: the group moved to a new epoch and
    /// its media keys are installed.
    Epoch {
        /// MLS epoch.
        epoch: u64,
        /// The security code participants compare aloud.
        security_code: &'a str,
        /// Present when this client's keys were set up anew, not for a join
        /// or leave, after it had keys before: `"reconnect"` (a new
        /// connection re-formed or rejoined the group) or `"rejoin"` (the
        /// membership lost its group state): the code must be compared again.
        /// It goes with the first code of a group this client shares with
        /// others (a one-person group's code is nobody's to compare).
        #[serde(skip_serializing_if = "Option::is_none")]
        keys_set_up_again: Option<&'a str>,
        /// Members of the group, this client included.
        members: usize,
    },
    /// End-to-end encrypted meetings: a member's display name from its
    /// encrypted profile (only in `--json` output, never logged).
    Profile {
        /// The member's participant id, if its leaf is known.
        participant_id: Option<ParticipantId>,
        /// The member's MLS leaf index.
        leaf: u32,
        /// Display name.
        display_name: &'a str,
    },
    /// End-to-end encrypted meetings: a chat line (human output:
    /// `<name>: <text>`, incoming lines only).
    Chat {
        /// The sender's MLS leaf index.
        leaf: u32,
        /// The sender's display name, if its profile came.
        name: Option<&'a str>,
        /// Text.
        text: &'a str,
        /// We sent it (from `--chat-stdin`).
        own: bool,
    },
    /// A chat line from stdin was not sent (`reason`: not a member of the
    /// encrypted group yet, e.g. while joining or reconnecting).
    ChatNotSent {
        /// Why.
        reason: &'a str,
    },
    /// End-to-end encrypted meetings: a member raised or lowered its hand
    /// (human output: `<name>: raised a hand`).
    Hand {
        /// The member's MLS leaf index.
        leaf: u32,
        /// Its display name, if its profile came.
        name: Option<&'a str>,
        /// Raised.
        raised: bool,
    },
    /// The connection was lost (network drop, server restart, ICE or
    /// WebSocket failure); a fresh session is tried after `delay_s`.
    Reconnecting {
        /// Attempt number since the loss, from 1.
        attempt: u32,
        /// Why the connection (or the last attempt) failed; no names.
        reason: &'a str,
        /// Seconds until the attempt.
        delay_s: f64,
    },
    /// A fresh session's media connected after a loss; a new `joined`
    /// came before it. Recording goes on in new files.
    Reconnected {
        /// Our new participant id.
        participant_id: ParticipantId,
        /// Attempts it took.
        attempts: u32,
        /// Seconds from the loss to the new media connection.
        outage_s: f64,
    },
    /// The server's report on our downlink (every 2 s): its bandwidth
    /// estimate, bits per second, and the simulcast layer it forwards of
    /// each remote video.
    Quality {
        /// Estimated bandwidth server → us, bits per second.
        estimate_bps: Option<u64>,
        /// Per remote video: MID, publisher, RID, height, bitrate, whether
        /// bandwidth limits it.
        tracks: &'a [plenary_proto::TrackQuality],
    },
    /// At the end.
    Summary(&'a Summary),
}

/// Where events go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reporter {
    pub json: bool,
}

impl Reporter {
    /// Prints a JSON line (in JSON mode) or the human line `human` (else).
    pub fn emit(&self, event: &JsonEvent<'_>, human: impl FnOnce() -> Option<String>) {
        let mut out = std::io::stdout().lock();
        let line = if self.json { serde_json::to_string(event).ok().map(|l| terminal_safe_json(&l)) } else { human() };
        if let Some(line) = line {
            // A closed stdout (e.g. `| head`) must not end the session.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// `json` with the characters that serde_json leaves as they are but a
/// terminal would act on (DEL, the C1 controls such as U+009B CSI, line
/// separators, bidi formatting: see [`chat_line`]) written as `\uXXXX`
/// escapes: the same JSON, safe to print. They occur only inside strings.
fn terminal_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || is_layout_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The human-readable form of a summary.
pub fn human_summary(s: &Summary) -> String {
    let mut out = format!("left after {:.1} s; received:", s.duration_s);
    if s.tracks.is_empty() {
        out.push_str(" nothing");
    }
    for t in &s.tracks {
        let kind = kind_str(t.kind);
        out.push_str(&format!(
            "\n  {} {kind} (mid {}): {} frames, {} bytes",
            t.participant_id, t.mid, t.frames, t.bytes
        ));
        if let (Some(ok), Some(failed)) = (t.decrypted, t.decrypt_failures) {
            out.push_str(&format!(" ({ok} decrypted, {failed} failed"));
            if let Some(replays) = t.decrypt_replays.filter(|n| *n > 0) {
                out.push_str(&format!(", {replays} replays dropped"));
            }
            out.push(')');
        }
        if let Some(p) = &t.recording {
            out.push_str(&format!(" -> {}", p.display()));
        }
    }
    for t in &s.sent {
        out.push_str(&format!("\nsent {} (mid {}): {} frames, {} bytes", kind_str(t.kind), t.mid, t.frames, t.bytes));
    }
    out
}

/// A chat line for a terminal: `<name>: <text>` ("Guest" without a name),
/// with control characters (escape sequences a sender could use to rewrite
/// the terminal), line breaks and bidirectional formatting characters (that
/// a terminal with bidi support would use to show the line reordered, e.g.
/// another name first) shown as spaces.
pub fn chat_line(name: Option<&str>, text: &str) -> String {
    format!("{}: {}", shown_name(name), terminal_text(text))
}

/// A member's display name as a terminal line shows it: `Guest` when
/// unknown or blank, controls and layout characters as spaces.
pub fn shown_name(name: Option<&str>) -> String {
    terminal_text(name.filter(|n| !n.trim().is_empty()).unwrap_or("Guest"))
}

/// `s` with controls and layout characters as spaces.
fn terminal_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || is_layout_char(c) { ' ' } else { c }).collect()
}

/// Unicode characters (not `Cc`) that move or break text rather than show
/// a glyph: line and paragraph separators, and the bidirectional marks,
/// embeddings, overrides and isolates of UAX #9 §2.
fn is_layout_char(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `audio` or `video`.
pub(crate) fn kind_str(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender cannot move the cursor or clear the terminal; a missing name reads "Guest".
    #[test]
    fn chat_lines_are_safe_for_a_terminal() {
        assert_eq!(chat_line(Some("Ada"), "hello"), "Ada: hello");
        assert_eq!(chat_line(None, "hi"), "Guest: hi");
        assert_eq!(chat_line(Some(" "), "hi"), "Guest: hi");
        assert_eq!(chat_line(Some("A\x1b[2Jb"), "x\ny\u{9b}z"), "A [2Jb: x y z");
        // A right-to-left override would show "Eve\u{202e}ecilA: hi" as "Eve" + "Alice: hi" reversed.
        assert_eq!(chat_line(Some("Eve\u{202e}ecilA"), "a\u{2066}b\u{2028}c"), "Eve ecilA: a b c");
        // --json printed on a terminal: the same strings, nothing a terminal acts on.
        let v = serde_json::to_string(&JsonEvent::Chat {
            leaf: 1,
            name: Some("E\u{9b}2J\u{202e}"),
            text: "\x1b\x7f",
            own: false,
        })
        .expect("JSON");
        let safe = terminal_safe_json(&v);
        assert!(safe.chars().all(|c| !c.is_control() && !is_layout_char(c)), "{safe:?}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).expect("still JSON"),
            serde_json::from_str::<serde_json::Value>(&v).expect("JSON")
        );
        assert!(safe.contains(r"E\u009b2J\u202e"), "{safe}");
    }

    /// The JSON shapes that scripts and the browser end-to-end test read.
    #[test]
    fn json_shapes() {
        let track = TrackStats {
            participant_id: ParticipantId(3),
            kind: MediaKind::Video,
            mid: "a1".into(),
            frames: 10,
            bytes: 2000,
            max_gap_ms: 40,
            max_media_gap_ms: 33,
            layer: None,
            recording: None,
            decrypted: None,
            decrypt_failures: None,
            decrypt_replays: None,
        };
        let sent = SentStats { kind: MediaKind::Audio, mid: "b2".into(), frames: 50, bytes: 900 };
        let summary = Summary {
            participant_id: ParticipantId(1),
            room: "r".into(),
            duration_s: 10.5,
            connect_s: Some(0.25),
            tracks: vec![track.clone()],
            sent: vec![sent.clone()],
        };
        let v = serde_json::to_value(JsonEvent::Summary(&summary)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "event": "summary", "participant_id": 1, "room": "r", "duration_s": 10.5, "connect_s": 0.25,
                "tracks": [{"participant_id": 3, "kind": "video", "mid": "a1", "frames": 10, "bytes": 2000, "max_gap_ms": 40, "max_media_gap_ms": 33}],
                "sent": [{"kind": "audio", "mid": "b2", "frames": 50, "bytes": 900}],
            })
        );
        let v = serde_json::to_value(JsonEvent::TrackAdded {
            participant_id: ParticipantId(3),
            kind: MediaKind::Audio,
            mid: "x",
        })
        .unwrap();
        assert_eq!(v, serde_json::json!({"event": "track_added", "participant_id": 3, "kind": "audio", "mid": "x"}));
        let v = serde_json::to_value(JsonEvent::Frames { t: 1.0, tracks: vec![track], sent: vec![sent] }).unwrap();
        assert_eq!(v["event"], "frames");
        assert_eq!(v["tracks"][0]["frames"], 10);
        assert_eq!(summary.frames_from(ParticipantId(3), MediaKind::Video), 10);
        assert_eq!(summary.frames_from(ParticipantId(3), MediaKind::Audio), 0);
        let v = serde_json::to_value(JsonEvent::Chat { leaf: 2, name: Some("Ada"), text: "hi", own: false }).unwrap();
        assert_eq!(v, serde_json::json!({"event": "chat", "leaf": 2, "name": "Ada", "text": "hi", "own": false}));
        let v = serde_json::to_value(JsonEvent::Hand { leaf: 2, name: None, raised: true }).unwrap();
        assert_eq!(v, serde_json::json!({"event": "hand", "leaf": 2, "name": null, "raised": true}));
        let v = serde_json::to_value(JsonEvent::Epoch {
            epoch: 2,
            security_code: "01234 56789",
            keys_set_up_again: None,
            members: 3,
        })
        .unwrap();
        assert_eq!(v, serde_json::json!({"event": "epoch", "epoch": 2, "security_code": "01234 56789", "members": 3}));
        let v = serde_json::to_value(JsonEvent::Epoch {
            epoch: 0,
            security_code: "1",
            keys_set_up_again: Some("reconnect"),
            members: 2,
        })
        .unwrap();
        assert_eq!(v["keys_set_up_again"], "reconnect");
        let v =
            serde_json::to_value(JsonEvent::Reconnecting { attempt: 2, reason: "media connection lost", delay_s: 1.0 })
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "reconnecting", "attempt": 2, "reason": "media connection lost", "delay_s": 1.0})
        );
        let v = serde_json::to_value(JsonEvent::Reconnected {
            participant_id: ParticipantId(9),
            attempts: 2,
            outage_s: 3.5,
        })
        .unwrap();
        assert_eq!(v, serde_json::json!({"event": "reconnected", "participant_id": 9, "attempts": 2, "outage_s": 3.5}));
        let e2ee_track = TrackStats {
            decrypted: Some(9),
            decrypt_failures: Some(1),
            decrypt_replays: Some(2),
            ..summary.tracks[0].clone()
        };
        let v = serde_json::to_value(&e2ee_track).unwrap();
        assert_eq!(
            (v["decrypted"].as_u64(), v["decrypt_failures"].as_u64(), v["decrypt_replays"].as_u64()),
            (Some(9), Some(1), Some(2))
        );
    }
}
