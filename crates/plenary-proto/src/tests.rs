use super::*;

#[test]
fn join_roundtrip() {
    let m = ClientMsg::Join {
        room: "r1".into(),
        profile: "{}".into(),
        version: 1,
        room_tag: "aS4mntnm_rIOjgEerx05EQ".into(),
    };
    assert_eq!(decode_client_msg(&encode(&m)).unwrap(), m);
}

#[test]
fn room_tags() {
    let t = RoomTag::parse("aS4mntnm_rIOjgEerx05EQ").unwrap();
    assert_eq!(t.as_str(), "aS4mntnm_rIOjgEerx05EQ");
    assert_eq!(format!("{t:?}"), "RoomTag(..)");
    for bad in
        ["", "aS4mntnm_rIOjgEerx05E", "aS4mntnm_rIOjgEerx05EQQ", "aS4mntnm+rIOjgEerx05EQ", "aS4mntnm_rIOjgEerx05E="]
    {
        assert_eq!(RoomTag::parse(bad), Err(RoomTagError::Malformed), "{bad}");
    }
}

#[test]
fn unknown_type_is_typed() {
    let e = decode_client_msg(r#"{"type":"launch_missiles"}"#).unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnknownType);
}

#[test]
fn malformed_is_typed() {
    for bad in ["", "null", "[]", "{", r#"{"type":"offer"}"#, r#"{"type":"offer","sdp":1}"#] {
        assert_eq!(decode_client_msg(bad).unwrap_err().code(), ErrorCode::Malformed, "{bad}");
    }
}

#[test]
fn error_text_never_quotes_the_input() {
    for bad in [
        r#"{"type":"launch_missiles_Participant-secret"}"#,
        r#"{"type":"set_muted","kind":"Participant-secret","muted":true}"#,
        r#"{"type":"offer","sdp":["Participant-secret"]}"#,
        r#"{"type":"join","Participant-secret"#,
    ] {
        let text = decode_client_msg(bad).unwrap_err().to_string();
        assert!(!text.contains("Participant-secret"), "{bad} gave {text}");
        assert!(!text.contains("launch"), "{bad} gave {text}");
    }
}

#[test]
fn oversized_is_typed() {
    let big = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "a".repeat(MAX_CLIENT_MESSAGE_BYTES));
    assert_eq!(decode_client_msg(&big).unwrap_err().code(), ErrorCode::TooLarge);
}

#[test]
fn room_ids() {
    assert!(RoomId::parse("abc-DEF_123").is_ok());
    assert_eq!(RoomId::parse(""), Err(RoomIdError::Empty));
    assert_eq!(RoomId::parse(&"a".repeat(65)), Err(RoomIdError::TooLong));
    assert_eq!(RoomId::parse("../etc"), Err(RoomIdError::BadCharacter));
    assert_eq!(RoomId::parse("a b"), Err(RoomIdError::BadCharacter));
}

#[test]
fn server_msgs_decode() {
    let m = ServerMsg::Offer {
        sdp: "v=0".into(),
        track_map: vec![TrackInfo { mid: "3".into(), participant_id: ParticipantId(7), kind: MediaKind::Video }],
    };
    assert_eq!(decode_server_msg(&encode(&m)).unwrap(), m);
}

#[test]
fn adaptive_quality_msgs_roundtrip() {
    let q = ServerMsg::Quality {
        estimate_bps: Some(300_000),
        tracks: vec![TrackQuality {
            mid: "2".into(),
            participant_id: ParticipantId(3),
            rid: Some("q".into()),
            height: Some(90),
            bitrate_bps: 150_000,
            limited: true,
        }],
    };
    let text = encode(&q);
    assert!(text.contains(r#""type":"quality""#) && text.contains(r#""estimate_bps":300000"#), "{text}");
    assert_eq!(decode_server_msg(&text).unwrap(), q);
    let p = ServerMsg::LayersPaused { mid: "0".into(), paused: vec!["f".into()] };
    assert_eq!(encode(&p), r#"{"type":"layers_paused","mid":"0","paused":["f"]}"#);
    let c = ServerMsg::ConnectionQuality { participant_id: ParticipantId(4), poor: true };
    assert_eq!(decode_server_msg(&encode(&c)).unwrap(), c);
}
