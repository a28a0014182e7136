//! IVF, the simple container libvpx and ffmpeg use for raw VP8/VP9/AV1 frames.
//!
//! Layout (little-endian): a 32-byte file header — `DKIF`, version `0`,
//! header length `32`, FourCC (`VP80`), width, height (u16, pixels), time
//! base denominator and numerator (u32: a frame's `pts` is in units of
//! `numerator / denominator` seconds), frame count (u32), 4 unused bytes —
//! then per frame a 12-byte header (payload size u32, `pts` u64) and the
//! payload (one compressed frame).

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Length of the IVF file header, bytes.
pub const FILE_HEADER_LEN: usize = 32;
/// Length of an IVF frame header, bytes.
pub const FRAME_HEADER_LEN: usize = 12;
/// Largest frame payload the reader accepts, bytes (far above any real VP8
/// frame; guards against allocating gigabytes for a corrupt size field).
pub const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// What is wrong with an IVF stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IvfError {
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The file ends inside the 32-byte file header.
    #[error("file is shorter than the 32-byte IVF header")]
    TruncatedHeader,
    /// The file does not start with `DKIF`.
    #[error("not an IVF file (no DKIF signature)")]
    BadSignature,
    /// A version other than 0.
    #[error("unsupported IVF version {0}")]
    UnsupportedVersion(u16),
    /// A header length below 32.
    #[error("bad IVF header length {0}")]
    BadHeaderLength(u16),
    /// A time base with a zero numerator or denominator.
    #[error("IVF time base {numerator}/{denominator} is invalid")]
    BadTimebase {
        /// Numerator from the header.
        numerator: u32,
        /// Denominator from the header.
        denominator: u32,
    },
    /// The file ends inside a 12-byte frame header.
    #[error("file ends inside the header of frame {index}")]
    TruncatedFrameHeader {
        /// Zero-based index of the frame.
        index: u64,
    },
    /// The file ends inside a frame's payload.
    #[error("frame {index} declares {declared} bytes but only {available} follow")]
    TruncatedFrame {
        /// Zero-based index of the frame.
        index: u64,
        /// Size in the frame header, bytes.
        declared: u32,
        /// Bytes actually present.
        available: usize,
    },
    /// A frame larger than [`MAX_FRAME_BYTES`].
    #[error("frame {index} declares {declared} bytes, more than the limit")]
    FrameTooLarge {
        /// Zero-based index of the frame.
        index: u64,
        /// Size in the frame header, bytes.
        declared: u32,
    },
    /// A frame to write is larger than an IVF size field can describe.
    #[error("frame of {0} bytes is too large for IVF")]
    WriteTooLarge(usize),
}

/// The IVF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    /// Codec FourCC, e.g. `*b"VP80"`.
    pub fourcc: [u8; 4],
    /// Width, pixels.
    pub width: u16,
    /// Height, pixels.
    pub height: u16,
    /// Time base denominator (ticks per `timebase_numerator` seconds).
    pub timebase_denominator: u32,
    /// Time base numerator.
    pub timebase_numerator: u32,
    /// Number of frames the header claims (writers may leave it 0).
    pub frame_count: u32,
}

impl IvfHeader {
    /// Parses the 32-byte file header.
    ///
    /// # Errors
    /// [`IvfError::TruncatedHeader`], [`IvfError::BadSignature`],
    /// [`IvfError::UnsupportedVersion`], [`IvfError::BadHeaderLength`],
    /// [`IvfError::BadTimebase`].
    pub fn parse(b: &[u8]) -> Result<IvfHeader, IvfError> {
        let b: &[u8; FILE_HEADER_LEN] =
            b.get(..FILE_HEADER_LEN).and_then(|s| s.try_into().ok()).ok_or(IvfError::TruncatedHeader)?;
        if &b[0..4] != b"DKIF" {
            return Err(IvfError::BadSignature);
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let version = u16_at(4);
        if version != 0 {
            return Err(IvfError::UnsupportedVersion(version));
        }
        let header_len = u16_at(6);
        if usize::from(header_len) < FILE_HEADER_LEN {
            return Err(IvfError::BadHeaderLength(header_len));
        }
        let header = IvfHeader {
            fourcc: [b[8], b[9], b[10], b[11]],
            width: u16_at(12),
            height: u16_at(14),
            timebase_denominator: u32_at(16),
            timebase_numerator: u32_at(20),
            frame_count: u32_at(24),
        };
        if header.timebase_denominator == 0 || header.timebase_numerator == 0 {
            return Err(IvfError::BadTimebase {
                numerator: header.timebase_numerator,
                denominator: header.timebase_denominator,
            });
        }
        Ok(header)
    }

    /// The header as 32 bytes.
    pub fn to_bytes(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[0..4].copy_from_slice(b"DKIF");
        b[4..6].copy_from_slice(&0u16.to_le_bytes());
        b[6..8].copy_from_slice(&(FILE_HEADER_LEN as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.fourcc);
        b[12..14].copy_from_slice(&self.width.to_le_bytes());
        b[14..16].copy_from_slice(&self.height.to_le_bytes());
        b[16..20].copy_from_slice(&self.timebase_denominator.to_le_bytes());
        b[20..24].copy_from_slice(&self.timebase_numerator.to_le_bytes());
        b[24..28].copy_from_slice(&self.frame_count.to_le_bytes());
        b
    }

    /// Converts a `pts` in this file's time base to ticks of a `rate` Hz
    /// clock (e.g. 90 000 for RTP video), rounding down.
    pub fn pts_to_clock(&self, pts: u64, rate: u32) -> u64 {
        let v = u128::from(pts) * u128::from(self.timebase_numerator) * u128::from(rate)
            / u128::from(self.timebase_denominator);
        u64::try_from(v).unwrap_or(u64::MAX)
    }
}

/// One frame of an IVF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvfFrame {
    /// Presentation time stamp, in the file's time base.
    pub pts: u64,
    /// The compressed frame.
    pub data: Vec<u8>,
}

/// Reads frames from an IVF stream.
#[derive(Debug)]
pub struct IvfReader<R> {
    inner: R,
    header: IvfHeader,
    index: u64,
}

impl<R: Read> IvfReader<R> {
    /// Reads and checks the file header.
    ///
    /// # Errors
    /// See [`IvfHeader::parse`]; [`IvfError::Io`] when reading fails.
    pub fn new(mut inner: R) -> Result<Self, IvfError> {
        let mut b = [0u8; FILE_HEADER_LEN];
        let n = read_full(&mut inner, &mut b)?;
        if n < FILE_HEADER_LEN {
            return Err(IvfError::TruncatedHeader);
        }
        let header = IvfHeader::parse(&b)?;
        // Skip any extra header bytes a writer declared.
        let extra = u64::from(u16::from_le_bytes([b[6], b[7]])) - FILE_HEADER_LEN as u64;
        if extra > 0 {
            let skipped = io::copy(&mut (&mut inner).take(extra), &mut io::sink())?;
            if skipped < extra {
                return Err(IvfError::TruncatedHeader);
            }
        }
        Ok(IvfReader { inner, header, index: 0 })
    }

    /// The file header.
    pub fn header(&self) -> &IvfHeader {
        &self.header
    }

    /// The next frame, or `None` at the end of the file.
    ///
    /// # Errors
    /// [`IvfError::TruncatedFrameHeader`], [`IvfError::TruncatedFrame`],
    /// [`IvfError::FrameTooLarge`], [`IvfError::Io`].
    pub fn next_frame(&mut self) -> Result<Option<IvfFrame>, IvfError> {
        let mut h = [0u8; FRAME_HEADER_LEN];
        let n = read_full(&mut self.inner, &mut h)?;
        if n == 0 {
            return Ok(None);
        }
        let index = self.index;
        if n < FRAME_HEADER_LEN {
            return Err(IvfError::TruncatedFrameHeader { index });
        }
        let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let pts = u64::from_le_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
        if size > MAX_FRAME_BYTES {
            return Err(IvfError::FrameTooLarge { index, declared: size });
        }
        let mut data = vec![0u8; size as usize];
        let got = read_full(&mut self.inner, &mut data)?;
        if got < data.len() {
            return Err(IvfError::TruncatedFrame { index, declared: size, available: got });
        }
        self.index += 1;
        Ok(Some(IvfFrame { pts, data }))
    }
}

impl<R: Read> Iterator for IvfReader<R> {
    type Item = Result<IvfFrame, IvfError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes an IVF stream. The header's frame count is fixed up by
/// [`IvfWriter::finish`].
#[derive(Debug)]
pub struct IvfWriter<W: Write + Seek> {
    inner: W,
    header: IvfHeader,
    frames: u32,
}

impl<W: Write + Seek> IvfWriter<W> {
    /// Writes the file header (its `frame_count` is ignored and later set
    /// to the number of frames written).
    ///
    /// # Errors
    /// [`IvfError::Io`].
    pub fn new(mut inner: W, header: IvfHeader) -> Result<Self, IvfError> {
        inner.write_all(&IvfHeader { frame_count: 0, ..header }.to_bytes())?;
        Ok(IvfWriter { inner, header, frames: 0 })
    }

    /// Appends one frame.
    ///
    /// # Errors
    /// [`IvfError::WriteTooLarge`], [`IvfError::Io`].
    pub fn write_frame(&mut self, pts: u64, data: &[u8]) -> Result<(), IvfError> {
        let size = u32::try_from(data.len()).map_err(|_| IvfError::WriteTooLarge(data.len()))?;
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&size.to_le_bytes());
        h[4..12].copy_from_slice(&pts.to_le_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(data)?;
        self.frames = self.frames.saturating_add(1);
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Writes the final frame count into the header, flushes, and returns
    /// the inner writer.
    ///
    /// # Errors
    /// [`IvfError::Io`].
    pub fn finish(mut self) -> Result<W, IvfError> {
        let end = self.inner.stream_position()?;
        self.inner.seek(SeekFrom::Start(0))?;
        self.inner.write_all(&IvfHeader { frame_count: self.frames, ..self.header }.to_bytes())?;
        self.inner.seek(SeekFrom::Start(end))?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Facts about a VP8 frame from its uncompressed header (RFC 6386 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8FrameInfo {
    /// A key frame (decodable on its own).
    pub key_frame: bool,
    /// Width and height in pixels, present on key frames only.
    pub size: Option<(u16, u16)>,
}

/// Reads the VP8 frame tag (and, for key frames, the start code and size).
/// Returns `None` for data too short to be a VP8 frame or a key frame
/// without the start code `9d 01 2a`.
pub fn vp8_frame_info(frame: &[u8]) -> Option<Vp8FrameInfo> {
    let tag = *frame.first()?;
    if frame.len() < 3 {
        return None;
    }
    let key_frame = tag & 0x01 == 0;
    if !key_frame {
        return Some(Vp8FrameInfo { key_frame, size: None });
    }
    let k = frame.get(3..10)?;
    if k[0..3] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([k[3], k[4]]) & 0x3fff;
    let height = u16::from_le_bytes([k[5], k[6]]) & 0x3fff;
    Some(Vp8FrameInfo { key_frame, size: Some((width, height)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header() -> IvfHeader {
        IvfHeader {
            fourcc: *b"VP80",
            width: 64,
            height: 48,
            timebase_denominator: 90_000,
            timebase_numerator: 1,
            frame_count: 0,
        }
    }

    fn synthetic() -> Vec<u8> {
        let mut w = IvfWriter::new(Cursor::new(Vec::new()), header()).unwrap();
        for i in 0..5u64 {
            let len = 10 + i as usize * 7;
            let data: Vec<u8> = (0..len).map(|k| (k as u8).wrapping_mul(i as u8 + 1)).collect();
            w.write_frame(i * 3000, &data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn synthetic_round_trip() {
        let bytes = synthetic();
        let mut r = IvfReader::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(r.header().frame_count, 5);
        assert_eq!(r.header().width, 64);
        let frames: Vec<IvfFrame> = r.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), 5);
        assert_eq!(frames[4].pts, 12_000);
        assert_eq!(frames[4].data.len(), 38);
        assert_eq!(frames[2].data[3], 9);
    }

    #[test]
    fn truncation_anywhere_is_a_typed_error() {
        let bytes = synthetic();
        for cut in 0..bytes.len() {
            let res = IvfReader::new(Cursor::new(&bytes[..cut])).and_then(|r| r.collect::<Result<Vec<_>, _>>());
            match res {
                Err(IvfError::TruncatedHeader)
                | Err(IvfError::TruncatedFrameHeader { .. })
                | Err(IvfError::TruncatedFrame { .. }) => {}
                Ok(frames) => {
                    // A cut exactly on a frame boundary is a shorter valid file.
                    let mut len = FILE_HEADER_LEN;
                    for f in &frames {
                        len += FRAME_HEADER_LEN + f.data.len();
                    }
                    assert_eq!(len, cut, "cut at {cut} parsed as {} frames", frames.len());
                }
                Err(e) => panic!("unexpected error at cut {cut}: {e}"),
            }
        }
    }

    #[test]
    fn bad_headers() {
        let mut bytes = synthetic();
        bytes[0] = b'X';
        assert!(matches!(IvfReader::new(Cursor::new(&bytes)), Err(IvfError::BadSignature)));
        let mut bytes = synthetic();
        bytes[4] = 1;
        assert!(matches!(IvfReader::new(Cursor::new(&bytes)), Err(IvfError::UnsupportedVersion(1))));
        let mut bytes = synthetic();
        bytes[16..20].copy_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(IvfReader::new(Cursor::new(&bytes)), Err(IvfError::BadTimebase { .. })));
        let mut bytes = synthetic();
        bytes[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = IvfReader::new(Cursor::new(&bytes)).unwrap();
        assert!(matches!(r.next_frame(), Err(IvfError::FrameTooLarge { index: 0, .. })));
    }

    #[test]
    fn pts_conversion() {
        let h = IvfHeader { timebase_denominator: 30_000, timebase_numerator: 1001, ..header() };
        assert_eq!(h.pts_to_clock(30, 90_000), 90_090);
        assert_eq!(h.pts_to_clock(u64::MAX, 90_000), u64::MAX);
    }

    #[test]
    fn vp8_info() {
        assert_eq!(vp8_frame_info(&[]), None);
        assert_eq!(vp8_frame_info(&[1, 0, 0]), Some(Vp8FrameInfo { key_frame: false, size: None }));
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        assert_eq!(vp8_frame_info(&key), Some(Vp8FrameInfo { key_frame: true, size: Some((640, 360)) }));
        assert_eq!(vp8_frame_info(&key[..6]), None);
    }

    /// The real test media from `scripts/test-media.sh`, when present:
    /// parses, has key frames where ffmpeg put them, and survives a
    /// write/read round trip byte for byte.
    #[test]
    fn real_files_round_trip() {
        for name in ["carphone.ivf", "bbb-360p.ivf"] {
            let Some(path) = crate::test_media(name) else {
                eprintln!("skipping: .media/{name} missing (run scripts/test-media.sh)");
                continue;
            };
            let bytes = std::fs::read(&path).unwrap();
            let mut r = IvfReader::new(Cursor::new(&bytes)).unwrap();
            let h = *r.header();
            assert_eq!(&h.fourcc, b"VP80");
            let frames: Vec<IvfFrame> = r.by_ref().collect::<Result<_, _>>().unwrap();
            assert!(frames.len() > 100, "{name}: {} frames", frames.len());
            let info = vp8_frame_info(&frames[0].data).unwrap();
            assert!(info.key_frame);
            assert_eq!(info.size, Some((h.width, h.height)));
            let keys = frames.iter().filter(|f| vp8_frame_info(&f.data).is_some_and(|i| i.key_frame)).count();
            assert!(keys >= 3, "{name}: {keys} key frames");

            let mut w = IvfWriter::new(Cursor::new(Vec::new()), h).unwrap();
            for f in &frames {
                w.write_frame(f.pts, &f.data).unwrap();
            }
            let out = w.finish().unwrap().into_inner();
            assert_eq!(out.len(), bytes.len());
            assert_eq!(&out[32..], &bytes[32..]);
            assert_eq!(IvfHeader::parse(&out).unwrap().frame_count as usize, frames.len());
        }
    }
}
