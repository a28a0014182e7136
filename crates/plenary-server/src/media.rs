//! The media loop: one task owns the [`Sfu`], the UDP media socket and the
//! ICE-TCP listener on the same port number, and serves commands from the
//! WebSocket connections. Everything the SFU does happens here, in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use plenary_proto::{ClientMsg, ParticipantId, RoomTag, ServerMsg};
use plenary_sfu::{Output, Sfu, SfuError};
use str0m::net::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::client_queue::{ClientTx, QueueError, ToClient};
use crate::ds::{DeliveryService, Outbox};
use crate::meeting_key::meeting_key;
use crate::tap::Tap;
use crate::tcp::{TcpEvent, TcpMux};
use crate::udp_out::UdpOut;

/// Most datagrams read from the media socket in one round of the media
/// loop before the sessions they touched are driven (see [`run`]).
const RECEIVE_BATCH: usize = 64;

/// A request from a WebSocket connection to the media loop.
#[derive(Debug)]
pub enum Command {
    /// `join`; replies with the new participant id.
    Join {
        /// Room id as sent.
        room: String,
        /// Room tag; the meeting is (room, tag).
        room_tag: RoomTag,
        /// Opaque profile.
        profile: String,
        /// Protocol version.
        version: u32,
        /// Where the participant's messages go.
        to_client: ClientTx,
        /// Result.
        reply: oneshot::Sender<Result<ParticipantId, SfuError>>,
    },
    /// Any later message; errors are sent to the client as `error`.
    Message(ParticipantId, ClientMsg),
    /// The connection closed.
    Leave(ParticipantId),
}

/// The running media loop's handle.
#[derive(Clone)]
pub struct MediaHandle {
    /// Commands in.
    pub commands: mpsc::Sender<Command>,
}

/// Queues `msg` for `id`; a full queue marks the client for removal.
fn deliver(
    clients: &HashMap<ParticipantId, ClientTx>,
    overflowed: &mut Vec<ParticipantId>,
    id: ParticipantId,
    msg: ServerMsg,
) {
    if let Some(tx) = clients.get(&id)
        && let Err(QueueError::Full) = tx.try_send(ToClient::Msg(Box::new(msg)))
        && !overflowed.contains(&id)
    {
        overflowed.push(id);
    }
}

/// Runs the media loop until the command channel closes.
pub async fn run(
    mut sfu: Sfu,
    udp: UdpSocket,
    udp_local: SocketAddr,
    mut tcp: Option<TcpMux>,
    mut tap: Option<Tap>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut tap_reported = Instant::now();
    let mut clients: HashMap<ParticipantId, ClientTx> = HashMap::new();
    let mut overflowed: Vec<ParticipantId> = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut udp_out = UdpOut::default();
    let mut next_timeout = Instant::now();
    let mut ds = DeliveryService::default();
    let mut ds_out: Outbox = Vec::new();
    // Room names of joiners whose `joined` has not gone out yet: the SFU
    // knows only the meeting key.
    let mut room_names: HashMap<ParticipantId, String> = HashMap::new();
    loop {
        let sleep = tokio::time::sleep_until(next_timeout.into());
        let tcp_event = async {
            match tcp.as_mut() {
                Some(t) => t.next_event().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok(first) => {
                    // Everything already queued on the socket, up to a batch:
                    // the frames it completes are written to the subscribers'
                    // sessions, and one timeout below packetizes them all.
                    let mut next = Some(first);
                    let mut taken = 0;
                    while let Some((n, source)) = next {
                        if let Err(e) = sfu.handle_receive(Instant::now(), Protocol::Udp, source, udp_local, &buf[..n]) {
                            debug!(error = %e, len = n, "dropped UDP datagram");
                        }
                        taken += 1;
                        next = if taken < RECEIVE_BATCH { udp.try_recv_from(&mut buf).ok() } else { None };
                    }
                    sfu.handle_timeout(Instant::now());
                }
                Err(e) => debug!(error = %e, "UDP receive error"),
            },
            ev = tcp_event => {
                if let Some(TcpEvent::Frame { source, local, data }) = ev
                    && let Err(e) = sfu.handle_receive(Instant::now(), Protocol::Tcp, source, local, &data) {
                        debug!(error = %e, len = data.len(), "dropped ICE-TCP frame");
                    }
            },
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                let now = Instant::now();
                match cmd {
                    Command::Join { room, room_tag, profile, version, to_client, reply } => {
                        let key = meeting_key(&room, &room_tag);
                        let result = sfu.join(now, &key, profile, version);
                        if let Ok(id) = &result {
                            clients.insert(*id, to_client);
                            ds_out.extend(ds.joined(now, &key, *id));
                            room_names.insert(*id, room);
                        }
                        let _ = reply.send(result);
                    }
                    Command::Message(id, ClientMsg::Mls { envelope, welcome }) => match ds.envelope(now, id, &envelope, welcome.as_deref()) {
                        Ok(out) => ds_out.extend(out),
                        Err(e) => {
                            debug!(participant = %id, error = %e, "envelope refused");
                            deliver(&clients, &mut overflowed, id, ServerMsg::Error {
                                code: e.code(),
                                message: e.to_string(),
                                fatal: false,
                            });
                        }
                    },
                    Command::Message(id, ClientMsg::GroupMember { leaf }) => match ds.group_member(id, leaf) {
                        Ok(out) => {
                            ds_out.extend(out);
                            sfu.set_leaf(id, leaf);
                        }
                        Err(e) => {
                            deliver(&clients, &mut overflowed, id, ServerMsg::Error {
                                code: e.code(),
                                message: e.to_string(),
                                fatal: false,
                            });
                        }
                    },
                    Command::Message(id, msg) => {
                        if let Err(e) = sfu.handle_message(now, id, msg) {
                            debug!(participant = %id, error = %e, "message rejected");
                            deliver(&clients, &mut overflowed, id, ServerMsg::Error {
                                code: e.code(),
                                message: e.to_string(),
                                fatal: false,
                            });
                        }
                    }
                    Command::Leave(id) => {
                        clients.remove(&id);
                        room_names.remove(&id);
                        sfu.leave(now, id);
                        ds_out.extend(ds.left(Instant::now(), id));
                    }
                }
            },
            _ = sleep => sfu.handle_timeout(Instant::now()),
        }
        // Drain everything the SFU wants done.
        loop {
            match sfu.poll_output(Instant::now()) {
                Output::Transmit(t) => match t.proto {
                    Protocol::Udp => udp_out.push(&udp, t),
                    Protocol::Tcp => {
                        if let Some(tcp) = tcp.as_mut() {
                            tcp.send(t.destination, &t.contents);
                        }
                    }
                    _ => {}
                },
                Output::Signal(id, ServerMsg::Joined { participant_id, room, participants, ice_servers }) => {
                    let room = room_names.remove(&id).unwrap_or(room);
                    let msg = ServerMsg::Joined { participant_id, room, participants, ice_servers };
                    deliver(&clients, &mut overflowed, id, msg);
                }
                Output::Signal(id, msg) => deliver(&clients, &mut overflowed, id, msg),
                Output::Disconnected(id) => {
                    info!(participant = %id, "media session ended");
                    if let Some(tx) = clients.remove(&id) {
                        let _ = tx.try_send(ToClient::Close);
                    }
                    ds_out.extend(ds.left(Instant::now(), id));
                }
                Output::Tap { source, destination, rtp } => {
                    if let Some(tap) = tap.as_mut() {
                        tap.write(source, destination, &rtp);
                    }
                }
                Output::Timeout(t) => {
                    next_timeout = t;
                    break;
                }
            }
        }
        udp_out.flush(&udp);
        if let Some(tap) = tap.as_mut()
            && tap_reported.elapsed() >= std::time::Duration::from_secs(10)
        {
            tap_reported = Instant::now();
            warn!(packets = tap.packets(), "OPERATOR TAP ON: forwarded RTP is being written to disk");
        }
        // Delivery Service messages go after the SFU's (`joined` before `create_group`).
        for (id, msg) in ds_out.drain(..) {
            deliver(&clients, &mut overflowed, id, msg);
        }
        // Connections that stopped reading are dropped; the others carry on.
        for id in std::mem::take(&mut overflowed) {
            if clients.remove(&id).is_some() {
                warn!(participant = %id, "client not reading its messages; disconnected");
                sfu.leave(Instant::now(), id);
                ds_out.extend(ds.left(Instant::now(), id));
            }
        }
    }
    warn!("media loop stopped");
}
