//! Writing received tracks to files ffmpeg plays: VP8 to IVF, Opus to
//! Ogg Opus.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::ivf::{IvfError, IvfHeader, IvfWriter, vp8_frame_info};
use crate::ogg::{OggError, OggOpusWriter, OpusHead};
use crate::source::VIDEO_CLOCK_RATE;

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The file cannot be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing IVF failed.
    #[error("{path}: {source}")]
    Ivf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: IvfError,
    },
    /// Writing Ogg failed.
    #[error("{path}: {source}")]
    Ogg {
        /// The file.
        path: PathBuf,
        /// Why.
        source: OggError,
    },
}

/// Codec of a recorded track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCodec {
    /// VP8, written as IVF.
    Vp8,
    /// Opus, written as Ogg Opus.
    Opus,
}

impl RecordCodec {
    /// File name extension.
    pub fn extension(self) -> &'static str {
        match self {
            RecordCodec::Vp8 => "ivf",
            RecordCodec::Opus => "ogg",
        }
    }
}

/// What a [`Recorder::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written.
    Written,
    /// Dropped while waiting for a key frame (the caller may request one).
    NeedKeyFrame,
    /// Dropped: not a frame of this codec (e.g. an empty or invalid packet).
    Skipped,
}

/// Writes one received track to a file. Video starts at the first key
/// frame and, after a gap in the stream, resumes at the next one, so the
/// file decodes cleanly.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    state: State,
}

#[derive(Debug)]
enum State {
    Vp8 { writer: Option<IvfWriter<BufWriter<File>>>, first: u64, need_key: bool },
    Opus { writer: Option<OggOpusWriter<BufWriter<File>>>, serial: u32 },
    Closed,
}

impl Recorder {
    /// Prepares a recording at `path` (created on the first usable frame).
    pub fn new(path: PathBuf, codec: RecordCodec) -> Recorder {
        let state = match codec {
            RecordCodec::Vp8 => State::Vp8 { writer: None, first: 0, need_key: true },
            RecordCodec::Opus => State::Opus { writer: None, serial: rand::random() },
        };
        Recorder { path, state }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one frame. `time` is its RTP time in the codec's clock (90 kHz
    /// for VP8, 48 kHz for Opus), extended to 64 bits; `contiguous` is false
    /// after packets were lost.
    ///
    /// # Errors
    /// [`RecordError`] when the file cannot be created or written.
    pub fn push(&mut self, time: u64, contiguous: bool, frame: &[u8]) -> Result<Pushed, RecordError> {
        let path = &self.path;
        match &mut self.state {
            State::Vp8 { writer, first, need_key } => {
                let Some(info) = vp8_frame_info(frame) else {
                    return Ok(Pushed::Skipped);
                };
                if !contiguous {
                    *need_key = true;
                }
                if *need_key && !info.key_frame {
                    return Ok(Pushed::NeedKeyFrame);
                }
                *need_key = false;
                let ivf_err = |source| RecordError::Ivf { path: path.clone(), source };
                if writer.is_none() {
                    let (width, height) = info.size.unwrap_or((0, 0));
                    let header = IvfHeader {
                        fourcc: *b"VP80",
                        width,
                        height,
                        timebase_denominator: VIDEO_CLOCK_RATE,
                        timebase_numerator: 1,
                        frame_count: 0,
                    };
                    let file = create(path)?;
                    *writer = Some(IvfWriter::new(BufWriter::new(file), header).map_err(ivf_err)?);
                    *first = time;
                }
                if let Some(w) = writer {
                    w.write_frame(time.saturating_sub(*first), frame).map_err(ivf_err)?;
                }
                Ok(Pushed::Written)
            }
            State::Opus { writer, serial } => {
                let Some(&toc) = frame.first() else {
                    return Ok(Pushed::Skipped);
                };
                if crate::ogg::opus_packet_samples(frame).is_err() {
                    return Ok(Pushed::Skipped);
                }
                let ogg_err = |source| RecordError::Ogg { path: path.clone(), source };
                if writer.is_none() {
                    let head = OpusHead {
                        channels: if toc & 0x04 != 0 { 2 } else { 1 },
                        // libopus's encoder delay at 48 kHz.
                        pre_skip: 312,
                        input_sample_rate: 48_000,
                        output_gain: 0,
                        mapping_family: 0,
                        mapping_table: Vec::new(),
                    };
                    let file = create(path)?;
                    *writer =
                        Some(OggOpusWriter::new(BufWriter::new(file), *serial, &head, "plenary").map_err(ogg_err)?);
                }
                if let Some(w) = writer {
                    w.write_packet(frame).map_err(ogg_err)?;
                }
                Ok(Pushed::Written)
            }
            State::Closed => Ok(Pushed::Skipped),
        }
    }

    /// Finishes the file (header frame count, end-of-stream page). Returns
    /// the number of frames written, 0 if no file was created.
    ///
    /// # Errors
    /// [`RecordError`] when the final write fails.
    pub fn finish(&mut self) -> Result<u64, RecordError> {
        let path = self.path.clone();
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Vp8 { writer: Some(w), .. } => {
                let n = u64::from(w.frames());
                w.finish().map_err(|source| RecordError::Ivf { path, source })?;
                Ok(n)
            }
            State::Opus { writer: Some(w), .. } => {
                let n = w.packets();
                w.finish().map_err(|source| RecordError::Ogg { path, source })?;
                Ok(n)
            }
            _ => Ok(0),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!("finishing recording failed: {e}");
        }
    }
}

fn create(path: &Path) -> Result<File, RecordError> {
    File::create(path).map_err(|source| RecordError::Create { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivf::IvfReader;
    use crate::ogg::OpusFile;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("plenary-record-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Decodes a file with ffmpeg, if ffmpeg is installed, and returns the
    /// number of decoded frames.
    fn ffmpeg_frames(path: &Path) -> Option<usize> {
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args(["-f", "framemd5", "-"])
            .output()
            .ok()?;
        assert!(out.status.success(), "ffmpeg failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.stderr.is_empty(),
            "ffmpeg complained about {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).count())
    }

    #[test]
    fn vp8_waits_for_key_frame_and_records_decodably() {
        let Some(src) = crate::test_media("bbb-360p.ivf") else {
            eprintln!("skipping: .media/bbb-360p.ivf missing (run scripts/test-media.sh)");
            return;
        };
        let frames: Vec<_> = IvfReader::new(std::io::BufReader::new(File::open(src).unwrap()))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let dir = tmpdir("vp8");
        let path = dir.join("t.ivf");
        let mut rec = Recorder::new(path.clone(), RecordCodec::Vp8);
        let mut written = 0;
        // Join mid-stream (frame 10), lose frames 60..63, stop at 120.
        for (i, f) in frames.iter().enumerate().take(120).skip(10) {
            if (60..63).contains(&i) {
                continue;
            }
            let t = 1_000_000 + i as u64 * 3600;
            match rec.push(t, i != 63, &f.data).unwrap() {
                Pushed::Written => written += 1,
                Pushed::NeedKeyFrame => assert!(i < 25 || (63..75).contains(&i), "frame {i}"),
                Pushed::Skipped => panic!("skipped {i}"),
            }
        }
        assert_eq!(rec.finish().unwrap(), written);
        // Key frames every 25: 25..60 and 75..120.
        assert_eq!(written, 35 + 45);
        let mut r = IvfReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!((r.header().width, r.header().height), (640, 360));
        assert_eq!(r.header().frame_count as u64, written);
        assert_eq!(r.next_frame().unwrap().unwrap().pts, 0);
        if let Some(n) = ffmpeg_frames(&path) {
            assert_eq!(n as u64, written);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn opus_records_decodably() {
        let Some(src) = crate::test_media("speech.ogg") else {
            eprintln!("skipping: .media/speech.ogg missing (run scripts/test-media.sh)");
            return;
        };
        let f = OpusFile::read(std::io::BufReader::new(File::open(src).unwrap())).unwrap();
        let dir = tmpdir("opus");
        let path = dir.join("t.ogg");
        let mut rec = Recorder::new(path.clone(), RecordCodec::Opus);
        assert_eq!(rec.push(0, true, &[]).unwrap(), Pushed::Skipped);
        for p in f.packets.iter().take(200) {
            assert_eq!(rec.push(p.start, true, &p.data).unwrap(), Pushed::Written);
        }
        assert_eq!(rec.finish().unwrap(), 200);
        let g = OpusFile::read(File::open(&path).unwrap()).unwrap();
        assert_eq!(g.head.channels, 1);
        assert_eq!(g.packets.len(), 200);
        if let Some(n) = ffmpeg_frames(&path) {
            assert!(n > 0);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn nothing_received_means_no_file() {
        let dir = tmpdir("none");
        let path = dir.join("t.ivf");
        let mut rec = Recorder::new(path.clone(), RecordCodec::Vp8);
        assert_eq!(rec.push(0, true, &[1, 2, 3, 4]).unwrap(), Pushed::NeedKeyFrame);
        assert_eq!(rec.push(0, true, &[]).unwrap(), Pushed::Skipped);
        assert_eq!(rec.finish().unwrap(), 0);
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
