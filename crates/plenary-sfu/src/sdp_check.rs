//! Cheap bounds on a client's SDP offer or answer (RFC 8829 JSEP), checked on
//! the raw text before str0m parses and applies it. Parsing and applying SDP
//! runs on the media loop, so its cost must not grow with what a client
//! chooses to send. Before these bounds, an offer of 2,000 `recvonly` m-lines
//! (0.74 MB, under the signaling size limit) took about 0.2 s to apply, and
//! ten of them a second from one client held every meeting on the server for
//! seconds; one m-line with 20,000 `a=ssrc` lines (0.4 MB) took over a second,
//! and a few seconds of them at the signaling rate limit queued minutes of
//! work in front of everyone else's signaling and media.
//!
//! A client only ever adds the m-lines it publishes; the m-lines it receives
//! on are added by the server's own offers, so a renegotiating client repeats
//! those with MIDs the session already has, and an answer adds only the
//! m-lines of the server's pending offer.

use std::collections::HashSet;

use str0m::media::Mid;

use crate::error::SfuError;

/// Most tracks one participant may publish (camera, microphone, screen
/// share and its audio, with room to spare).
pub(crate) const MAX_PUBLISHED_TRACKS: usize = 8;

/// Most m-lines (RFC 8866 §5.14) a client's offer may add to a session,
/// whatever their direction: the tracks it publishes.
pub(crate) const MAX_NEW_MEDIA_SECTIONS: usize = MAX_PUBLISHED_TRACKS;

/// Most lines in one m-line's section, or before the first m-line. A
/// browser's video section offering every codec it has is about 130 lines.
pub(crate) const MAX_LINES_PER_SECTION: usize = 512;

/// Most `a=candidate` lines (RFC 8839 §5.1) in one offer or answer. A host with many
/// interfaces offers a few dozen; str0m pairs at most 100 anyway.
pub(crate) const MAX_OFFER_CANDIDATES: usize = 256;

/// Checks the size of an offer or answer in m-lines, lines and candidates. `known_mid` says
/// whether the session already has a media section with that MID (always
/// false before the first offer is applied). Known MIDs count once each, as
/// str0m reads them (at most 16 characters), so repeating or varying one
/// does not buy new m-lines.
///
/// # Errors
/// [`SfuError::BadSdp`] when the offer publishes more than
/// [`MAX_PUBLISHED_TRACKS`] tracks (`a=sendonly`/`a=sendrecv`), adds more
/// than `max_new` m-lines (for an offer [`MAX_NEW_MEDIA_SECTIONS`]; for an
/// answer those of the pending offer), or carries more than
/// [`MAX_OFFER_CANDIDATES`] candidates, or a section has more than
/// [`MAX_LINES_PER_SECTION`] lines.
pub(crate) fn check_sdp(sdp: &str, known_mid: impl Fn(Mid) -> bool, max_new: usize) -> Result<(), SfuError> {
    let (mut sections, mut sending, mut candidates) = (0usize, 0usize, 0usize);
    let mut lines_in_section = 0usize;
    let mut known = HashSet::new();
    for line in sdp.lines().map(str::trim_end) {
        lines_in_section += 1;
        if line.starts_with("m=") {
            sections += 1;
            lines_in_section = 1;
        } else if lines_in_section > MAX_LINES_PER_SECTION {
            return Err(SfuError::BadSdp(format!("at most {MAX_LINES_PER_SECTION} lines per m-line")));
        } else if matches!(line, "a=sendonly" | "a=sendrecv") {
            sending += 1;
        } else if line.starts_with("a=candidate:") {
            candidates += 1;
        } else if let Some(mid) = line.strip_prefix("a=mid:").map(Mid::from)
            && known_mid(mid)
        {
            known.insert(mid);
        }
    }
    if sending > MAX_PUBLISHED_TRACKS {
        return Err(SfuError::BadSdp(format!("at most {MAX_PUBLISHED_TRACKS} published tracks")));
    }
    if sections.saturating_sub(known.len()) > max_new {
        return Err(SfuError::BadSdp(format!(
            "at most {max_new} new m-lines here (the tracks you publish, or those offered)"
        )));
    }
    if candidates > MAX_OFFER_CANDIDATES {
        return Err(SfuError::BadSdp(format!("at most {MAX_OFFER_CANDIDATES} ICE candidates per offer or answer")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(mid: &str, dir: &str) -> String {
        format!("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\na={dir}\r\n")
    }

    fn check_offer(sdp: &str, known_mid: impl Fn(Mid) -> bool) -> Result<(), SfuError> {
        check_sdp(sdp, known_mid, MAX_NEW_MEDIA_SECTIONS)
    }

    #[test]
    fn an_answer_adds_only_the_m_lines_offered() {
        let answer = offer((0..4).map(|i| section(&i.to_string(), "recvonly")));
        assert!(check_sdp(&answer, |m| *m == *"0" || *m == *"1", 2).is_ok());
        assert!(check_sdp(&answer, |m| *m == *"0", 2).is_err());
    }

    fn offer(sections: impl IntoIterator<Item = String>) -> String {
        format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{}", sections.into_iter().collect::<String>())
    }

    #[test]
    fn a_browser_offer_passes() {
        let sdp = offer([section("0", "sendonly"), section("1", "sendonly")]);
        assert!(check_offer(&sdp, |_| false).is_ok());
    }

    #[test]
    fn thousands_of_new_receive_only_m_lines_are_refused() {
        let sdp = offer((0..2000).map(|i| section(&i.to_string(), "recvonly")));
        let err = check_offer(&sdp, |_| false).unwrap_err();
        assert!(matches!(err, SfuError::BadSdp(ref m) if m.contains("m-lines")), "{err}");
    }

    #[test]
    fn a_renegotiation_may_repeat_the_m_lines_the_server_added() {
        // 2 published + 600 received (a big room), all known to the session.
        let sdp = offer((0..602).map(|i| section(&i.to_string(), if i < 2 { "sendonly" } else { "recvonly" })));
        assert!(check_offer(&sdp, |_| true).is_ok());
    }

    #[test]
    fn repeating_one_known_mid_does_not_buy_new_m_lines() {
        let sdp = offer((0..100).map(|_| section("0", "recvonly")));
        assert!(check_offer(&sdp, |m| *m == *"0").is_err());
    }

    #[test]
    fn mids_str0m_reads_as_one_known_mid_do_not_buy_new_m_lines() {
        let long = "a".repeat(16);
        let sdp = offer((0..100).map(|i| section(&format!("{long}{i}"), "recvonly")));
        assert!(check_offer(&sdp, |m| *m == *long).is_err());
    }

    #[test]
    fn an_m_line_with_thousands_of_attributes_is_refused() {
        let ssrcs = (0..20_000).map(|i| format!("a=ssrc:{i} cname:x\r\n")).collect::<String>();
        let sdp = offer([section("0", "sendonly") + &ssrcs]);
        let err = check_offer(&sdp, |_| false).unwrap_err();
        assert!(matches!(err, SfuError::BadSdp(ref m) if m.contains("lines per m-line")), "{err}");
        let session_level = "a=x\r\n".repeat(MAX_LINES_PER_SECTION + 1);
        assert!(check_offer(&(session_level + &section("0", "sendonly")), |_| false).is_err());
    }

    #[test]
    fn too_many_publishers_or_candidates_are_refused() {
        let sdp = offer((0..9).map(|i| section(&i.to_string(), "sendrecv")));
        assert!(check_offer(&sdp, |_| false).is_err());
        let many = (0..=MAX_OFFER_CANDIDATES)
            .map(|i| format!("a=candidate:{i} 1 udp 1 10.0.0.1 {} typ host\r\n", 1000 + i))
            .collect::<String>();
        let sdp = offer([section("0", "sendonly") + &many]);
        assert!(check_offer(&sdp, |_| false).is_err());
    }

    #[test]
    fn the_sfu_refuses_a_huge_offer_with_a_typed_error_and_keeps_the_participant() {
        use plenary_proto::{ClientMsg, ErrorCode};
        let now = std::time::Instant::now();
        let mut sfu = crate::Sfu::new(crate::SfuConfig::default());
        let id = sfu.join(now, "room", String::new(), 1).expect("join");
        let sdp = offer((0..2000).map(|i| section(&i.to_string(), "recvonly")));
        let err = sfu.handle_message(now, id, ClientMsg::Offer { sdp }).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadSdp);
        assert!(sfu.handle_message(now, id, ClientMsg::Ping { id: 1 }).is_ok(), "still in the room");
    }
}
