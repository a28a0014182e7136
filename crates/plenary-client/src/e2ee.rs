//! End-to-end encryption of one native participant, as the browser does it
//! (web/e2ee.js, web/media-worker.js): the meeting secret from the link's
//! fragment, MLS membership through the server's Delivery Service
//! ([`plenary_e2ee::membership::Membership`], the state machine the browser
//! runs too) and SFrame on every frame sent and received.
//!
//! Glue only: server messages and the clock go in, [`Out::Send`] messages
//! come back for the session to send. Never logs the secret, keys, names
//! or chat.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use plenary_e2ee::app::ContinuityToken;
use plenary_e2ee::media::{Codec, Disposition, MediaCrypto};
use plenary_e2ee::membership::{Action, Input, Membership, Outgoing, RejoinReason};
use plenary_e2ee::secret::MeetingSecret;
use plenary_proto::{ClientMsg, ParticipantId};

/// How long the previous epoch's keys keep decrypting.
const GRACE: Duration = Duration::from_secs(2);
/// SFrame stream contexts, as the browser's defaults.
const CONTEXT_AUDIO: u64 = 0;
const CONTEXT_VIDEO: u64 = 1;

/// The meeting secret in a link's fragment. Every meeting is end-to-end
/// encrypted: `Err(())` for a link without a fragment, with an empty one,
/// or with one that is not a valid secret.
pub(crate) fn secret_from_link(link: &str) -> Result<MeetingSecret, ()> {
    let (_, fragment) = link.trim().split_once('#').ok_or(())?;
    // The browser's rules (secretFromHash) first, then the library's.
    let ok_chars = fragment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !(22..=128).contains(&fragment.len()) || !ok_chars || fragment.len() % 4 == 1 {
        return Err(());
    }
    MeetingSecret::from_base64url(fragment).map_err(|_| ())
}

/// What the session must do or report.
#[derive(Debug)]
pub(crate) enum Out {
    /// Send this to the server.
    Send(ClientMsg),
    /// A new epoch: keys are installed. `first_keys`: the first of a new
    /// identity, `"rejoin"` after the membership lost its group state, else
    /// `"new"`; `None` for a commit (a join or leave). `members`: the
    /// group's size, this client included (1: nobody to compare codes with).
    Epoch { epoch: u64, security_code: String, first_keys: Option<&'static str>, members: usize },
    /// A member's display name from its encrypted profile.
    Profile { leaf: u32, participant_id: Option<ParticipantId>, display_name: String },
    /// A chat line from another member, with its display name if known.
    Chat { leaf: u32, name: Option<String>, text: String },
    /// A member raised or lowered its hand, with its display name if known.
    Hand { leaf: u32, name: Option<String>, raised: bool },
}

pub(crate) struct E2ee {
    membership: Membership,
    media: MediaCrypto,
    /// Clock origin for the state machine and the media keys' grace window.
    origin: Instant,
    /// What [`E2ee::start`] asked for, sent by the next [`E2ee::poll`].
    queued: Vec<Out>,
    /// MLS operations that failed (reasons logged at debug, never content).
    pub errors: u64,
    /// The membership lost its group state; the next first keys are a rejoin.
    rejoining: bool,
}

impl E2ee {
    /// This connection's membership, sending `name` and `continuity` (the
    /// same token for every connection of the run) in our encrypted profile.
    pub(crate) fn new(
        room: &str,
        secret: MeetingSecret,
        name: &str,
        continuity: ContinuityToken,
        self_id: ParticipantId,
    ) -> Result<E2ee, String> {
        let mut membership = Membership::new(room, secret, name, self_id.0).map_err(|e| e.to_string())?;
        membership.set_continuity(continuity);
        Ok(E2ee {
            membership,
            media: MediaCrypto::new(GRACE),
            origin: Instant::now(),
            queued: Vec::new(),
            errors: 0,
            rejoining: false,
        })
    }

    fn at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// Feeds one input to the state machine and carries out its actions.
    fn handle(&mut self, input: Input<'_>, now: Instant) -> Vec<Out> {
        let now = self.at(now);
        let actions = self.membership.handle(input, now);
        let mut out = Vec::new();
        for action in actions {
            match action {
                Action::Send(Outgoing::Mls { envelope, welcome }) => out.push(Out::Send(ClientMsg::Mls {
                    envelope: URL_SAFE_NO_PAD.encode(envelope),
                    welcome: welcome.map(|w| URL_SAFE_NO_PAD.encode(w)),
                })),
                Action::Send(Outgoing::GroupMember { leaf }) => out.push(Out::Send(ClientMsg::GroupMember { leaf })),
                Action::NewEpoch { epoch, keys, reset, security_code } => {
                    if reset {
                        self.media = MediaCrypto::new(GRACE);
                    }
                    self.media.set_epoch_keys(keys, now);
                    let first_keys = reset.then(|| if std::mem::take(&mut self.rejoining) { "rejoin" } else { "new" });
                    let members = self.membership.participant().member_count().unwrap_or(0);
                    out.push(Out::Epoch { epoch, security_code: security_code.to_string(), first_keys, members });
                }
                Action::Profile { leaf, participant, display_name } => {
                    out.push(Out::Profile { leaf, participant_id: participant.map(ParticipantId), display_name });
                }
                Action::Rejoin(reason) => {
                    if !matches!(reason, RejoinReason::Removed) {
                        tracing::info!(?reason, "end-to-end encryption: lost the group state; rejoining the group");
                    }
                    // No keys until added again: frames wait, none leaves in clear.
                    self.media = MediaCrypto::new(GRACE);
                    self.rejoining = true;
                }
                Action::Failed(e) => {
                    self.errors += 1;
                    tracing::debug!("e2ee {e}");
                }
                Action::Chat { leaf, text } => out.push(Out::Chat { leaf, name: self.name_of(leaf), text }),
                Action::HandRaise { leaf, raised } => out.push(Out::Hand { leaf, name: self.name_of(leaf), raised }),
                _ => {}
            }
        }
        out
    }

    /// The display name of the member at `leaf`, from its encrypted profile.
    fn name_of(&self, leaf: u32) -> Option<String> {
        let roster = self.membership.participant().roster().ok()?;
        roster.into_iter().find(|e| e.leaf == leaf).and_then(|e| e.display_name)
    }

    /// Sends an encrypted chat line: our leaf index and what to send;
    /// `None` (nothing sent) while not a member of the group yet.
    pub(crate) fn chat(&mut self, text: &str, now: Instant) -> Option<(u32, Vec<Out>)> {
        let leaf = self.membership.participant().own_leaf()?;
        let outs = self.handle(Input::Chat { text }, now);
        outs.iter().any(|o| matches!(o, Out::Send(_))).then_some((leaf, outs))
    }

    /// After `joined`: ask to be added (sent by the next [`E2ee::poll`]),
    /// or (alone) wait a little for `create_group`.
    pub(crate) fn start(&mut self, others_present: bool, now: Instant) {
        let outs = self.handle(Input::Start { others_present }, now);
        self.queued.extend(outs);
    }

    /// The earliest time [`E2ee::poll`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if !self.queued.is_empty() {
            return Some(self.origin);
        }
        self.membership.next_deadline().map(|d| self.origin + d)
    }

    /// Runs the timers due by `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Out> {
        let mut out = std::mem::take(&mut self.queued);
        if self.membership.next_deadline().is_some_and(|d| self.origin + d <= now) {
            out.extend(self.handle(Input::Timeout, now));
        }
        out
    }

    pub(crate) fn on_create_group(&mut self, now: Instant) -> Vec<Out> {
        self.handle(Input::CreateGroup, now)
    }

    pub(crate) fn on_mls(&mut self, from: ParticipantId, envelope: &str, now: Instant) -> Vec<Out> {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(envelope) else {
            self.errors += 1;
            return Vec::new();
        };
        self.handle(Input::Mls { from: from.0, envelope: &bytes }, now)
    }

    /// A participant's leaf from `joined`, `participant_joined` or `participant_updated`.
    pub(crate) fn participant_leaf(&mut self, id: ParticipantId, leaf: Option<u32>, now: Instant) -> Vec<Out> {
        match leaf {
            Some(leaf) => self.handle(Input::ParticipantLeaf { id: id.0, leaf }, now),
            None => Vec::new(),
        }
    }

    /// A participant left the room.
    pub(crate) fn participant_left(&mut self, id: ParticipantId, now: Instant) -> Vec<Out> {
        self.handle(Input::ParticipantLeft { id: id.0 }, now)
    }

    pub(crate) fn on_commit_accepted(&mut self, now: Instant) -> Vec<Out> {
        self.handle(Input::CommitAccepted, now)
    }

    /// The server refused our commit; the room is at `current_epoch`.
    pub(crate) fn on_commit_rejected(&mut self, current_epoch: u64, now: Instant) -> Vec<Out> {
        self.handle(Input::CommitRejected { current_epoch }, now)
    }

    /// Encrypts one of our frames; `None` while there are no keys (the
    /// frame is dropped: nothing leaves in clear).
    pub(crate) fn encrypt(&mut self, video: bool, frame: &[u8]) -> Option<Vec<u8>> {
        let (context, codec) = if video { (CONTEXT_VIDEO, Codec::Vp8) } else { (CONTEXT_AUDIO, Codec::Opus) };
        self.media.encrypt(context, codec, frame).ok()
    }

    /// Decrypts one received frame; if it cannot be, what to do with it
    /// (a replay is dropped silently, see [`Disposition`]).
    pub(crate) fn decrypt(&mut self, video: bool, frame: &[u8]) -> Result<Vec<u8>, Disposition> {
        let codec = if video { Codec::Vp8 } else { Codec::Opus };
        self.media.decrypt(codec, frame, self.origin.elapsed()).map(|d| d.frame).map_err(|e| {
            // KIDs travel in clear; the reason says which keys were missing.
            tracing::debug!(video, epoch = ?self.media.epoch(), error = %e, "frame not decrypted");
            self.media.disposition(&e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_links() {
        assert!(secret_from_link("http://h/m/r").is_err());
        assert!(secret_from_link("http://h/m/r#").is_err());
        assert!(secret_from_link("http://h/m/r#AAECAwQFBgcICQoLDA0ODw").is_ok());
        assert!(secret_from_link("http://h/m/r#short").is_err());
        assert!(secret_from_link("http://h/m/r#AAECAwQFBgcICQoLDA0OD!").is_err());
    }
}
