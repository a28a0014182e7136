//! Media to publish: a file's frames, played in real time and looped with
//! RTP time that keeps increasing across loops.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audio_level::opus_levels;
use crate::ivf::{IvfError, IvfReader, vp8_frame_info};
use crate::ogg::{OggError, OpusFile};

/// RTP clock rate of VP8 video, Hz (RFC 7741 §4.1).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// RTP clock rate of Opus, Hz (RFC 7587 §4.1).
pub const AUDIO_CLOCK_RATE: u32 = 48_000;

/// Largest Opus packet a file may hold, bytes. An audio frame travels in
/// one RTP packet (receivers do not reassemble Opus, RFC 7587 §4.2), whose
/// payload str0m keeps within 1120 bytes (its 1150-byte datagram target
/// less the SRTP tag, rounded down to the SRTP block size); the SFrame
/// header (at most 17 bytes, RFC 9605 §4.3) and tag
/// ([`plenary_e2ee::media::TAG_LEN`]) come on top of the packet. A larger
/// packet would be split over several RTP packets, each of which no
/// receiver could decrypt.
pub const MAX_OPUS_PACKET_BYTES: usize = (1150 - 16) / 16 * 16 - 17 - plenary_e2ee::media::TAG_LEN;

/// Why a media file cannot be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The IVF file is invalid.
    #[error("{path}: {source}")]
    Ivf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: IvfError,
    },
    /// The Ogg file is invalid.
    #[error("{path}: {source}")]
    Ogg {
        /// The file.
        path: PathBuf,
        /// Why.
        source: OggError,
    },
    /// The IVF file holds a codec other than VP8.
    #[error("{path}: codec {fourcc:?} is not VP8")]
    NotVp8 {
        /// The file.
        path: PathBuf,
        /// Its FourCC.
        fourcc: String,
    },
    /// An Opus packet too large to travel in one RTP packet
    /// ([`MAX_OPUS_PACKET_BYTES`]): a file encoded at a very high bitrate.
    #[error("{path}: Opus packet {index} has {bytes} bytes, more than the {max} that fit in one RTP packet (re-encode at a lower bitrate or with shorter frames)", max = MAX_OPUS_PACKET_BYTES)]
    OpusPacketTooLarge {
        /// The file.
        path: PathBuf,
        /// The packet's index among the file's audio packets, from 0.
        index: usize,
        /// Its size, bytes.
        bytes: usize,
    },
    /// No frames, or no key frame to start from.
    #[error("{path}: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

/// One frame of a looped source.
#[derive(Debug, Clone)]
struct SourceFrame {
    /// Time from the start of the file, in clock ticks.
    offset: u64,
    /// Decodable on its own (always true for audio).
    key: bool,
    data: Arc<[u8]>,
    /// Audio level, -dBov (RFC 6464), when measured.
    level: Option<u8>,
}

/// A file's frames, played in real time and looped. RTP time keeps
/// increasing across loops: each loop starts one period after the last.
#[derive(Debug, Clone)]
pub struct LoopedSource {
    frames: Vec<SourceFrame>,
    /// Length of one loop, clock ticks (always more than the last offset).
    period: u64,
    clock_rate: u32,
    index: usize,
    /// Media time of `frames[index]`, clock ticks from the start.
    next_time: u64,
}

/// A frame to send now.
#[derive(Debug, Clone)]
pub struct DueFrame {
    /// Media time, clock ticks from the start of publishing.
    pub time: u64,
    /// The encoded frame.
    pub data: Arc<[u8]>,
    /// Audio level of the frame in -dBov (RFC 6464 §3: 0 loudest, 127
    /// silence), when known: for the clear header extension.
    pub level: Option<u8>,
}

impl LoopedSource {
    /// Loads a VP8 IVF file.
    ///
    /// # Errors
    /// [`SourceError`] when the file cannot be read, is not VP8, or has no
    /// frames or does not start with a key frame.
    pub fn from_ivf(path: &Path) -> Result<LoopedSource, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Open { path: path.into(), source })?;
        let ivf_err = |source| SourceError::Ivf { path: path.into(), source };
        let mut reader = IvfReader::new(BufReader::new(file)).map_err(ivf_err)?;
        let header = *reader.header();
        if &header.fourcc != b"VP80" {
            return Err(SourceError::NotVp8 {
                path: path.into(),
                fourcc: String::from_utf8_lossy(&header.fourcc).into_owned(),
            });
        }
        let mut frames = Vec::new();
        let mut first_pts = None;
        while let Some(f) = reader.next_frame().map_err(ivf_err)? {
            let first = *first_pts.get_or_insert(f.pts);
            let offset = header.pts_to_clock(f.pts.saturating_sub(first), VIDEO_CLOCK_RATE);
            let key = vp8_frame_info(&f.data).is_some_and(|i| i.key_frame);
            frames.push(SourceFrame { offset, key, data: f.data.into(), level: None });
        }
        if !frames.first().is_some_and(|f| f.key) {
            return Err(SourceError::Unusable { path: path.into(), reason: "does not start with a VP8 key frame" });
        }
        Self::new(frames, VIDEO_CLOCK_RATE, path)
    }

    /// Loads an Ogg Opus file.
    ///
    /// # Errors
    /// [`SourceError`] when the file cannot be read or is not Ogg Opus;
    /// [`SourceError::OpusPacketTooLarge`] when a packet would not fit in
    /// one RTP packet.
    pub fn from_ogg(path: &Path) -> Result<LoopedSource, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Open { path: path.into(), source })?;
        let opus =
            OpusFile::read(BufReader::new(file)).map_err(|source| SourceError::Ogg { path: path.into(), source })?;
        if let Some((index, p)) = opus.packets.iter().enumerate().find(|(_, p)| p.data.len() > MAX_OPUS_PACKET_BYTES) {
            return Err(SourceError::OpusPacketTooLarge { path: path.into(), index, bytes: p.data.len() });
        }
        let levels = opus_levels(opus.packets.iter().map(|p| p.data.as_slice()));
        let frames = opus
            .packets
            .into_iter()
            .zip(levels)
            .map(|(p, level)| SourceFrame { offset: p.start, key: true, data: p.data.into(), level })
            .collect();
        Self::new(frames, AUDIO_CLOCK_RATE, path)
    }

    fn new(mut frames: Vec<SourceFrame>, clock_rate: u32, path: &Path) -> Result<LoopedSource, SourceError> {
        if frames.is_empty() {
            return Err(SourceError::Unusable { path: path.into(), reason: "no frames" });
        }
        // Offsets must not decrease (a file with pts going backwards is
        // played in file order at the last good time).
        let mut last = 0;
        for f in &mut frames {
            f.offset = f.offset.max(last);
            last = f.offset;
        }
        // One loop lasts until the last frame ends: its start plus the
        // average frame interval (at least one tick).
        let n = frames.len() as u64;
        let avg = if n > 1 { (last / (n - 1)).max(1) } else { u64::from(clock_rate) / 30 };
        let period = last + avg;
        let next_time = frames[0].offset;
        Ok(LoopedSource { frames, period, clock_rate, index: 0, next_time })
    }

    /// Builds a source from in-memory frames `(offset in clock ticks, key
    /// frame, data)`; for tests and generated media.
    ///
    /// # Errors
    /// [`SourceError::Unusable`] when `frames` is empty.
    pub fn from_frames(frames: Vec<(u64, bool, Vec<u8>)>, clock_rate: u32) -> Result<LoopedSource, SourceError> {
        let frames = frames
            .into_iter()
            .map(|(offset, key, data)| SourceFrame { offset, key, data: data.into(), level: None })
            .collect();
        Self::new(frames, clock_rate, Path::new("<memory>"))
    }

    /// Clock rate of the media time, Hz.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Length of one pass through the file.
    pub fn period(&self) -> Duration {
        ticks_to_duration(self.period, self.clock_rate)
    }

    /// Frames in one pass through the file.
    pub fn frames_per_loop(&self) -> usize {
        self.frames.len()
    }

    /// When the next frame is due, given when publishing started.
    pub fn next_due(&self, start: Instant) -> Instant {
        start + ticks_to_duration(self.next_time, self.clock_rate)
    }

    /// Takes the next frame and advances (wrapping to the start of the file).
    pub fn advance(&mut self) -> DueFrame {
        let n = self.frames.len();
        let cur = &self.frames[self.index];
        let due = DueFrame { time: self.next_time, data: cur.data.clone(), level: cur.level };
        let next = (self.index + 1) % n;
        let delta = if next == 0 {
            self.period - cur.offset + self.frames[0].offset
        } else {
            self.frames[next].offset - cur.offset
        };
        self.next_time += delta;
        self.index = next;
        due
    }

    /// Makes the next frame a key frame by going back to the last key frame
    /// at or before it (its media time stays where it was, so time never
    /// goes backwards). Used to answer a PLI/FIR from a file.
    pub fn rewind_to_key_frame(&mut self) {
        if let Some(i) = self.frames[..=self.index].iter().rposition(|f| f.key) {
            self.index = i;
        }
    }
}

/// Key frame requests (PLI/FIR, RFC 4585 §6.3.1 and RFC 5104 §4.3.1) for a
/// file-based sender, answered at most once per interval: answering rewinds
/// the file to a key frame, so answering every request of a burst would
/// replay the same frames. A request that comes sooner than the interval
/// after the last answer is remembered and answered once the interval has
/// passed, never dropped (its subscriber would wait for the file's next key
/// frame, up to a second for a key frame every 30 frames).
#[derive(Debug, Clone)]
pub struct KeyframeRequests {
    interval: Duration,
    last_answer: Option<Instant>,
    owed: bool,
}

impl KeyframeRequests {
    /// Answers at most once per `interval`.
    pub fn new(interval: Duration) -> KeyframeRequests {
        KeyframeRequests { interval, last_answer: None, owed: false }
    }

    /// A key frame was requested.
    pub fn request(&mut self) {
        self.owed = true;
    }

    /// Whether to send a key frame now: a request is owed and the last
    /// answer is at least the interval old. Records the answer.
    pub fn answer_now(&mut self, now: Instant) -> bool {
        if !self.owed || self.last_answer.is_some_and(|t| now.saturating_duration_since(t) < self.interval) {
            return false;
        }
        self.owed = false;
        self.last_answer = Some(now);
        true
    }
}

/// Converts clock ticks at `rate` Hz to a duration.
pub fn ticks_to_duration(ticks: u64, rate: u32) -> Duration {
    let rate = u64::from(rate.max(1));
    Duration::from_secs(ticks / rate) + Duration::from_nanos((ticks % rate) * 1_000_000_000 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> LoopedSource {
        // 4 frames at 30 fps in 90 kHz, key frames at 0 and 2.
        let frames = vec![(0, true, vec![0]), (3000, false, vec![1]), (6000, true, vec![2]), (9000, false, vec![3])];
        LoopedSource::from_frames(frames, VIDEO_CLOCK_RATE).unwrap()
    }

    #[test]
    fn loops_with_increasing_time() {
        let mut s = source();
        assert_eq!(s.period(), ticks_to_duration(12_000, VIDEO_CLOCK_RATE));
        let times: Vec<(u64, u8)> = (0..10).map(|_| s.advance()).map(|f| (f.time, f.data[0])).collect();
        assert_eq!(
            times,
            vec![
                (0, 0),
                (3000, 1),
                (6000, 2),
                (9000, 3),
                (12000, 0),
                (15000, 1),
                (18000, 2),
                (21000, 3),
                (24000, 0),
                (27000, 1)
            ]
        );
        let start = Instant::now();
        assert_eq!(s.next_due(start) - start, ticks_to_duration(30_000, VIDEO_CLOCK_RATE));
    }

    #[test]
    fn rewind_gives_a_key_frame_at_the_same_time() {
        let mut s = source();
        s.advance();
        s.advance();
        s.advance(); // next: frame 3 at 9000
        s.rewind_to_key_frame();
        let f = s.advance();
        assert_eq!((f.time, f.data[0]), (9000, 2));
        let f = s.advance();
        assert_eq!((f.time, f.data[0]), (12000, 3));
        let f = s.advance();
        assert_eq!((f.time, f.data[0]), (15000, 0));
    }

    #[test]
    fn keyframe_requests_are_answered_once_per_interval_and_never_dropped() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = KeyframeRequests::new(ms(250));
        assert!(!k.answer_now(t0), "nothing requested");
        k.request();
        assert!(k.answer_now(t0));
        assert!(!k.answer_now(t0), "answered once");
        // A second request 100 ms later waits for the interval, then is answered.
        k.request();
        k.request();
        assert!(!k.answer_now(t0 + ms(100)));
        assert!(!k.answer_now(t0 + ms(249)));
        assert!(k.answer_now(t0 + ms(250)));
        assert!(!k.answer_now(t0 + ms(600)), "the burst was one request");
        k.request();
        assert!(k.answer_now(t0 + ms(600)), "a later request is answered at once");
    }

    #[test]
    fn ticks() {
        assert_eq!(ticks_to_duration(90_000, 90_000), Duration::from_secs(1));
        assert_eq!(ticks_to_duration(960, 48_000), Duration::from_millis(20));
    }

    #[test]
    fn real_files() {
        if let Some(p) = crate::test_media("carphone.ivf") {
            let s = LoopedSource::from_ivf(&p).unwrap();
            assert_eq!(s.frames_per_loop(), 120);
            // 120 frames at 29.97 fps.
            let ms = s.period().as_millis();
            assert!((4000..=4010).contains(&ms), "{ms}");
        }
        if let Some(p) = crate::test_media("bbb.ogg") {
            let s = LoopedSource::from_ogg(&p).unwrap();
            let ms = s.period().as_millis();
            assert!((5200..=5400).contains(&ms), "{ms}");
        }
        if let Some(p) = crate::test_media("speech.ogg") {
            // Speech has loud frames and pauses; every frame decodes.
            let mut s = LoopedSource::from_ogg(&p).unwrap();
            let levels: Vec<u8> = (0..s.frames_per_loop()).map(|_| s.advance().level.expect("a level")).collect();
            let voiced = levels.iter().filter(|l| **l <= crate::audio_level::VOICE_LEVEL).count();
            eprintln!("speech.ogg: {voiced} of {} frames voiced; levels {levels:?}", levels.len());
            assert!(voiced > levels.len() / 4 && voiced < levels.len(), "{voiced} of {} voiced", levels.len());
        }
        if let Some(p) = crate::test_media("bbb.ogg") {
            assert!(matches!(LoopedSource::from_ivf(&p), Err(SourceError::Ivf { .. })));
        }
        assert!(matches!(LoopedSource::from_ogg(Path::new("/nonexistent/x.ogg")), Err(SourceError::Open { .. })));
    }

    /// Writes an Ogg Opus file of `packets` (20 ms CELT frames of the given
    /// sizes) and loads it.
    fn load_opus(name: &str, sizes: &[usize]) -> Result<LoopedSource, SourceError> {
        use crate::ogg::{OggOpusWriter, OpusHead};
        let path = std::env::temp_dir().join(format!("plenary-source-{name}-{}.ogg", std::process::id()));
        let head = OpusHead {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
            mapping_table: Vec::new(),
        };
        let mut w = OggOpusWriter::new(File::create(&path).unwrap(), 1, &head, "test").unwrap();
        for (i, n) in sizes.iter().enumerate() {
            // TOC: config 31 (CELT fullband 20 ms), stereo, one frame;
            // the rest is noise the decoder must survive.
            let p: Vec<u8> = std::iter::once(31 << 3 | 4).chain((1..*n).map(|k| (k * 131 + i * 7) as u8)).collect();
            w.write_packet(&p).unwrap();
        }
        w.finish().unwrap();
        let r = LoopedSource::from_ogg(&path);
        std::fs::remove_file(&path).unwrap();
        r
    }

    #[test]
    fn opus_packets_that_would_not_fit_one_rtp_packet_are_refused() {
        // Garbage of every size up to the limit publishes (its level may
        // be unknown).
        let ok = load_opus("fits", &[1, 2, 300, MAX_OPUS_PACKET_BYTES]).unwrap();
        assert_eq!(ok.frames.len(), 4);
        // One packet too many bytes, as a 510 kbit/s encoding makes them
        // (1275 bytes per 20 ms): split over two RTP packets, neither
        // half would decrypt for anyone, so the file is refused, saying why.
        let big = [20, MAX_OPUS_PACKET_BYTES + 1, 1275];
        match load_opus("big", &big) {
            Err(e @ SourceError::OpusPacketTooLarge { index: 1, bytes, .. }) if bytes == MAX_OPUS_PACKET_BYTES + 1 => {
                assert!(e.to_string().contains("one RTP packet"), "{e}");
            }
            other => panic!("{:?}", other.map(|s| s.frames.len())),
        }
    }
}
