//! Ogg (RFC 3533) carrying Opus (RFC 7845): reading packets from a file and
//! writing received Opus packets as a file that ffmpeg and other players
//! decode.
//!
//! An Ogg page is `OggS`, version 0, header type flags (0x01 continued
//! packet, 0x02 first page, 0x04 last page), granule position (i64),
//! stream serial number, page sequence number, CRC-32 (polynomial
//! 0x04c11db7, computed over the page with the CRC field zeroed), the
//! number of segments and the segment (lacing) table, then the data.
//! A packet is a run of segments ending in one shorter than 255 bytes.
//!
//! An Ogg Opus stream starts with an `OpusHead` packet alone on the first
//! page, then `OpusTags` on the next page(s); every later packet is one
//! Opus packet, and a page's granule position is the 48 kHz sample count
//! (pre-skip included) at the end of the last packet that ends on it.

use std::io::{self, Read, Write};

/// Largest packet this module writes or reads, bytes. One Ogg page holds
/// at most 255 segments of 255 bytes; an Opus packet is far smaller
/// (at most 6 × 1275 bytes + framing).
pub const MAX_PACKET_BYTES: usize = 255 * 255 - 1;

/// Largest Ogg page, bytes.
pub const MAX_PAGE_BYTES: usize = 27 + 255 + 255 * 255;

/// What is wrong with an Ogg or Ogg Opus stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OggError {
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Bytes where a page should start that are not `OggS`.
    #[error("no Ogg page at byte {offset} (missing OggS capture pattern)")]
    BadCapture {
        /// Byte offset in the stream.
        offset: u64,
    },
    /// A stream structure version other than 0.
    #[error("unsupported Ogg version {0}")]
    UnsupportedVersion(u8),
    /// The stream ends inside a page.
    #[error("stream ends inside the page at byte {offset}")]
    TruncatedPage {
        /// Byte offset of the page.
        offset: u64,
    },
    /// A page whose CRC does not match its contents.
    #[error("CRC mismatch in the page at byte {offset}")]
    BadCrc {
        /// Byte offset of the page.
        offset: u64,
    },
    /// A continued packet without its beginning, or a packet that never ends.
    #[error("packet continuation is inconsistent at page {sequence}")]
    BadContinuation {
        /// Page sequence number.
        sequence: u32,
    },
    /// A packet larger than [`MAX_PACKET_BYTES`] (reading: spread over pages).
    #[error("packet of {0} bytes is too large")]
    PacketTooLarge(usize),
    /// The first packet is not a valid `OpusHead`.
    #[error("not an Ogg Opus stream: {0}")]
    BadOpusHead(&'static str),
    /// The second packet is not `OpusTags`.
    #[error("missing OpusTags packet")]
    MissingOpusTags,
    /// An Opus packet whose table-of-contents byte describes no valid length.
    #[error("invalid Opus packet {index}: {reason}")]
    BadOpusPacket {
        /// Zero-based index among the audio packets.
        index: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The stream holds no audio packets.
    #[error("Ogg Opus stream has no audio packets")]
    Empty,
}

/// CRC-32 as Ogg uses it: polynomial 0x04c11db7, no reflection, initial 0.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04c1_1db7 } else { r << 1 };
            }
            *e = r;
        }
        t
    });
    let mut crc = 0u32;
    for &b in data {
        crc = (crc << 8) ^ table[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// Header type flag: this page continues a packet from the previous page.
pub const FLAG_CONTINUED: u8 = 0x01;
/// Header type flag: first page of a logical stream.
pub const FLAG_BOS: u8 = 0x02;
/// Header type flag: last page of a logical stream.
pub const FLAG_EOS: u8 = 0x04;

/// One parsed Ogg page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggPage {
    /// Header type flags ([`FLAG_CONTINUED`], [`FLAG_BOS`], [`FLAG_EOS`]).
    pub flags: u8,
    /// Granule position (codec-defined; samples at 48 kHz for Opus), -1 if
    /// no packet ends on this page.
    pub granule: i64,
    /// Logical stream serial number.
    pub serial: u32,
    /// Page sequence number.
    pub sequence: u32,
    /// Segment sizes (lacing values).
    pub segments: Vec<u8>,
    /// Page body.
    pub data: Vec<u8>,
}

impl OggPage {
    /// Serialises the page with a freshly computed CRC.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(27 + self.segments.len() + self.data.len());
        b.extend_from_slice(b"OggS");
        b.push(0);
        b.push(self.flags);
        b.extend_from_slice(&self.granule.to_le_bytes());
        b.extend_from_slice(&self.serial.to_le_bytes());
        b.extend_from_slice(&self.sequence.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.push(self.segments.len() as u8);
        b.extend_from_slice(&self.segments);
        b.extend_from_slice(&self.data);
        let crc = crc32(&b);
        b[22..26].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Reads pages and packets of the first logical stream of an Ogg file
/// (pages of other streams are skipped).
#[derive(Debug)]
pub struct OggReader<R> {
    inner: R,
    offset: u64,
    serial: Option<u32>,
    partial: Vec<u8>,
    /// The last segment read was 255 bytes: a packet continues.
    open: bool,
    /// Packets completed on the current page, with the page's granule.
    ready: std::collections::VecDeque<(Vec<u8>, i64)>,
    done: bool,
}

impl<R: Read> OggReader<R> {
    /// Wraps a stream positioned at the first page.
    pub fn new(inner: R) -> Self {
        OggReader {
            inner,
            offset: 0,
            serial: None,
            partial: Vec::new(),
            open: false,
            ready: Default::default(),
            done: false,
        }
    }

    /// The next page, or `None` at the end of the stream.
    ///
    /// # Errors
    /// [`OggError::BadCapture`], [`OggError::UnsupportedVersion`],
    /// [`OggError::TruncatedPage`], [`OggError::BadCrc`], [`OggError::Io`].
    pub fn next_page(&mut self) -> Result<Option<OggPage>, OggError> {
        let offset = self.offset;
        let mut h = [0u8; 27];
        let n = read_full(&mut self.inner, &mut h)?;
        if n == 0 {
            return Ok(None);
        }
        if n < h.len() {
            if h[..n.min(4)] != b"OggS"[..n.min(4)] {
                return Err(OggError::BadCapture { offset });
            }
            return Err(OggError::TruncatedPage { offset });
        }
        if &h[0..4] != b"OggS" {
            return Err(OggError::BadCapture { offset });
        }
        if h[4] != 0 {
            return Err(OggError::UnsupportedVersion(h[4]));
        }
        let nseg = usize::from(h[26]);
        let mut segments = vec![0u8; nseg];
        if read_full(&mut self.inner, &mut segments)? < nseg {
            return Err(OggError::TruncatedPage { offset });
        }
        let body_len: usize = segments.iter().map(|&s| usize::from(s)).sum();
        let mut data = vec![0u8; body_len];
        if read_full(&mut self.inner, &mut data)? < body_len {
            return Err(OggError::TruncatedPage { offset });
        }
        self.offset += (27 + nseg + body_len) as u64;
        let page = OggPage {
            flags: h[5],
            granule: i64::from_le_bytes([h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13]]),
            serial: u32::from_le_bytes([h[14], h[15], h[16], h[17]]),
            sequence: u32::from_le_bytes([h[18], h[19], h[20], h[21]]),
            segments,
            data,
        };
        let crc = u32::from_le_bytes([h[22], h[23], h[24], h[25]]);
        if page.to_bytes()[22..26] != crc.to_le_bytes() {
            return Err(OggError::BadCrc { offset });
        }
        Ok(Some(page))
    }

    /// The next complete packet of the first logical stream with the
    /// granule position of the page it ends on, or `None` at the end.
    ///
    /// # Errors
    /// Those of [`OggReader::next_page`], [`OggError::BadContinuation`],
    /// [`OggError::PacketTooLarge`].
    pub fn next_packet(&mut self) -> Result<Option<(Vec<u8>, i64)>, OggError> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            if self.done {
                return Ok(None);
            }
            let Some(page) = self.next_page()? else {
                self.done = true;
                if self.open {
                    return Err(OggError::BadContinuation { sequence: u32::MAX });
                }
                return Ok(None);
            };
            let serial = *self.serial.get_or_insert(page.serial);
            if page.serial != serial {
                continue;
            }
            // A continued page needs a packet in progress, and a page that
            // is not continued must not follow an unfinished packet.
            let continued = page.flags & FLAG_CONTINUED != 0;
            if continued != self.open {
                return Err(OggError::BadContinuation { sequence: page.sequence });
            }
            let mut pos = 0usize;
            for &seg in &page.segments {
                let end = pos + usize::from(seg);
                self.partial.extend_from_slice(&page.data[pos..end]);
                pos = end;
                if self.partial.len() > MAX_PACKET_BYTES {
                    return Err(OggError::PacketTooLarge(self.partial.len()));
                }
                self.open = seg == 255;
                if !self.open {
                    self.ready.push_back((std::mem::take(&mut self.partial), page.granule));
                }
            }
            if page.flags & FLAG_EOS != 0 {
                self.done = true;
                if self.open {
                    return Err(OggError::BadContinuation { sequence: page.sequence });
                }
            }
        }
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

/// The identification header of an Ogg Opus stream (RFC 7845 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channel count (1 or 2 for mapping family 0).
    pub channels: u8,
    /// Samples at 48 kHz to drop from the decoder output at the start.
    pub pre_skip: u16,
    /// Sample rate of the original input, Hz (informational).
    pub input_sample_rate: u32,
    /// Output gain, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family.
    pub mapping_family: u8,
    /// Mapping table for families other than 0, as stored.
    pub mapping_table: Vec<u8>,
}

impl OpusHead {
    /// Parses an `OpusHead` packet.
    ///
    /// # Errors
    /// [`OggError::BadOpusHead`].
    pub fn parse(p: &[u8]) -> Result<OpusHead, OggError> {
        if p.len() < 19 || &p[0..8] != b"OpusHead" {
            return Err(OggError::BadOpusHead("first packet is not OpusHead"));
        }
        if p[8] >> 4 != 0 {
            return Err(OggError::BadOpusHead("unsupported major version"));
        }
        let channels = p[9];
        if channels == 0 {
            return Err(OggError::BadOpusHead("zero channels"));
        }
        let mapping_family = p[18];
        if mapping_family == 0 && channels > 2 {
            return Err(OggError::BadOpusHead("mapping family 0 with more than 2 channels"));
        }
        let mapping_table = p[19..].to_vec();
        if mapping_family != 0 && mapping_table.len() < 2 + usize::from(channels) {
            return Err(OggError::BadOpusHead("truncated channel mapping table"));
        }
        Ok(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([p[10], p[11]]),
            input_sample_rate: u32::from_le_bytes([p[12], p[13], p[14], p[15]]),
            output_gain: i16::from_le_bytes([p[16], p[17]]),
            mapping_family,
            mapping_table,
        })
    }

    /// Serialises the header as an `OpusHead` packet.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(19 + self.mapping_table.len());
        b.extend_from_slice(b"OpusHead");
        b.push(1);
        b.push(self.channels);
        b.extend_from_slice(&self.pre_skip.to_le_bytes());
        b.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        b.extend_from_slice(&self.output_gain.to_le_bytes());
        b.push(self.mapping_family);
        if self.mapping_family != 0 {
            b.extend_from_slice(&self.mapping_table);
        }
        b
    }
}

/// Duration of an Opus packet in 48 kHz samples, from its TOC byte and
/// frame count (RFC 6716 §3.1, §3.2.5).
///
/// # Errors
/// A reason when the packet is empty, a code-3 packet lacks its frame
/// count byte, or the packet would last longer than 120 ms.
pub fn opus_packet_samples(packet: &[u8]) -> Result<u32, &'static str> {
    let toc = *packet.first().ok_or("empty packet")?;
    let config = toc >> 3;
    let frame_samples: u32 = match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1).ok_or("code 3 packet without frame count")? & 0x3f),
    };
    if frames == 0 {
        return Err("zero frames");
    }
    let total = frame_samples * frames;
    if total > 5760 {
        return Err("longer than 120 ms");
    }
    Ok(total)
}

/// One Opus packet of a file with its start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// Start, 48 kHz samples from the beginning of the stream (before
    /// pre-skip is applied).
    pub start: u64,
    /// Duration, 48 kHz samples.
    pub samples: u32,
    /// The packet.
    pub data: Vec<u8>,
}

/// An Ogg Opus file read into memory.
#[derive(Debug, Clone)]
pub struct OpusFile {
    /// Identification header.
    pub head: OpusHead,
    /// Audio packets in order.
    pub packets: Vec<OpusPacket>,
}

impl OpusFile {
    /// Reads a whole Ogg Opus stream.
    ///
    /// # Errors
    /// Any [`OggError`]: bad pages, a missing `OpusHead`/`OpusTags`, an
    /// invalid Opus packet, or no audio at all ([`OggError::Empty`]).
    pub fn read<R: Read>(r: R) -> Result<OpusFile, OggError> {
        let mut reader = OggReader::new(r);
        let (head, _) = reader.next_packet()?.ok_or(OggError::BadOpusHead("empty stream"))?;
        let head = OpusHead::parse(&head)?;
        match reader.next_packet()? {
            Some((tags, _)) if tags.starts_with(b"OpusTags") => {}
            _ => return Err(OggError::MissingOpusTags),
        }
        let mut packets = Vec::new();
        let mut start = 0u64;
        while let Some((data, _granule)) = reader.next_packet()? {
            let index = packets.len() as u64;
            let samples = opus_packet_samples(&data).map_err(|reason| OggError::BadOpusPacket { index, reason })?;
            packets.push(OpusPacket { start, samples, data });
            start += u64::from(samples);
        }
        if packets.is_empty() {
            return Err(OggError::Empty);
        }
        Ok(OpusFile { head, packets })
    }
}

/// Writes Opus packets as an Ogg Opus stream: `OpusHead` and `OpusTags`
/// pages first, then one page per audio packet with its granule position.
/// The last packet is held back so that [`OggOpusWriter::finish`] can mark
/// its page end-of-stream.
#[derive(Debug)]
pub struct OggOpusWriter<W: Write> {
    inner: W,
    serial: u32,
    sequence: u32,
    granule: u64,
    pending: Option<Vec<u8>>,
    packets: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the two header pages. `vendor` goes into `OpusTags`.
    ///
    /// # Errors
    /// [`OggError::Io`].
    pub fn new(inner: W, serial: u32, head: &OpusHead, vendor: &str) -> Result<Self, OggError> {
        let mut w =
            OggOpusWriter { inner, serial, sequence: 0, granule: u64::from(head.pre_skip), pending: None, packets: 0 };
        w.write_page(FLAG_BOS, 0, &head.to_bytes())?;
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes());
        w.write_page(0, 0, &tags)?;
        Ok(w)
    }

    fn write_page(&mut self, flags: u8, granule: i64, packet: &[u8]) -> Result<(), OggError> {
        if packet.len() > MAX_PACKET_BYTES {
            return Err(OggError::PacketTooLarge(packet.len()));
        }
        let mut segments = vec![255u8; packet.len() / 255];
        segments.push((packet.len() % 255) as u8);
        let page =
            OggPage { flags, granule, serial: self.serial, sequence: self.sequence, segments, data: packet.to_vec() };
        self.inner.write_all(&page.to_bytes())?;
        self.sequence = self.sequence.wrapping_add(1);
        Ok(())
    }

    fn flush_pending(&mut self, flags: u8) -> Result<(), OggError> {
        if let Some(p) = self.pending.take() {
            // Packets were checked in write_packet.
            let samples = opus_packet_samples(&p).unwrap_or(0);
            self.granule += u64::from(samples);
            let granule = i64::try_from(self.granule).unwrap_or(i64::MAX);
            self.write_page(flags, granule, &p)?;
        }
        Ok(())
    }

    /// Appends one Opus packet.
    ///
    /// # Errors
    /// [`OggError::BadOpusPacket`] for a packet whose length cannot be
    /// known, [`OggError::PacketTooLarge`], [`OggError::Io`].
    pub fn write_packet(&mut self, packet: &[u8]) -> Result<(), OggError> {
        opus_packet_samples(packet).map_err(|reason| OggError::BadOpusPacket { index: self.packets, reason })?;
        if packet.len() > MAX_PACKET_BYTES {
            return Err(OggError::PacketTooLarge(packet.len()));
        }
        self.flush_pending(0)?;
        self.pending = Some(packet.to_vec());
        self.packets += 1;
        Ok(())
    }

    /// Audio packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Writes the last page, marked end-of-stream, flushes, and returns the
    /// inner writer.
    ///
    /// # Errors
    /// [`OggError::Io`].
    pub fn finish(mut self) -> Result<W, OggError> {
        if self.pending.is_some() {
            self.flush_pending(FLAG_EOS)?;
        } else {
            let page = OggPage {
                flags: FLAG_EOS,
                granule: i64::try_from(self.granule).unwrap_or(i64::MAX),
                serial: self.serial,
                sequence: self.sequence,
                segments: Vec::new(),
                data: Vec::new(),
            };
            self.inner.write_all(&page.to_bytes())?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn head(channels: u8) -> OpusHead {
        OpusHead {
            channels,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
            mapping_table: Vec::new(),
        }
    }

    /// Synthetic Opus-shaped packets: CELT 20 ms (config 31), code 0,
    /// of various lengths, one over 255 bytes to exercise lacing.
    fn packets() -> Vec<Vec<u8>> {
        (0..20usize)
            .map(|i| {
                let len = if i == 7 { 700 } else { 1 + i * 13 };
                let mut p: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
                p[0] = (31 << 3) | 0x04; // stereo flag, code 0
                p
            })
            .collect()
    }

    fn write(packets: &[Vec<u8>]) -> Vec<u8> {
        let mut w = OggOpusWriter::new(Cursor::new(Vec::new()), 0x1234, &head(2), "plenary").unwrap();
        for p in packets {
            w.write_packet(p).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn crc_known_value() {
        // The CRC of an Ogg page with its CRC field zeroed; a page built by
        // ffmpeg (.media/bbb.ogg's first page) carries 0x62f439a7.
        let page = hex_page();
        let mut zeroed = page.clone();
        zeroed[22..26].copy_from_slice(&[0; 4]);
        assert_eq!(crc32(&zeroed), u32::from_le_bytes([page[22], page[23], page[24], page[25]]));
    }

    fn hex_page() -> Vec<u8> {
        // First page of an ffmpeg-written Ogg Opus file (OpusHead, stereo,
        // pre-skip 312).
        let mut p = b"OggS\x00\x02".to_vec();
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0x40, 0x55, 0x5a, 0x36]);
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&[0xa7, 0x39, 0xf4, 0x62]);
        p.push(1);
        p.push(19);
        p.extend_from_slice(b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00");
        p
    }

    #[test]
    fn reads_ffmpeg_head_page() {
        let mut r = OggReader::new(Cursor::new(hex_page()));
        let (p, g) = r.next_packet().unwrap().unwrap();
        assert_eq!(g, 0);
        let h = OpusHead::parse(&p).unwrap();
        assert_eq!(h, head(2));
        assert_eq!(h.to_bytes(), p);
    }

    #[test]
    fn synthetic_round_trip() {
        let pk = packets();
        let bytes = write(&pk);
        let f = OpusFile::read(Cursor::new(&bytes)).unwrap();
        assert_eq!(f.head, head(2));
        assert_eq!(f.packets.len(), pk.len());
        for (i, (a, b)) in f.packets.iter().zip(&pk).enumerate() {
            assert_eq!(&a.data, b);
            assert_eq!(a.samples, 960);
            assert_eq!(a.start, i as u64 * 960);
        }
        // Granule positions: pre-skip + samples so far; last page is EOS.
        let mut r = OggReader::new(Cursor::new(&bytes));
        let mut last = None;
        while let Some(p) = r.next_page().unwrap() {
            last = Some(p);
        }
        let last = last.unwrap();
        assert_eq!(last.flags, FLAG_EOS);
        assert_eq!(last.granule, 312 + 20 * 960);
    }

    #[test]
    fn corruption_is_a_typed_error() {
        let bytes = write(&packets());
        for cut in 1..bytes.len() {
            match OpusFile::read(Cursor::new(&bytes[..cut])) {
                Err(OggError::TruncatedPage { .. })
                | Err(OggError::BadContinuation { .. })
                | Err(OggError::MissingOpusTags)
                | Err(OggError::BadOpusHead(_))
                | Err(OggError::Empty)
                | Ok(_) => {}
                Err(e) => panic!("cut {cut}: {e}"),
            }
        }
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            // Any typed error or (for bytes the CRC cannot see) success; never a panic.
            let _ = OpusFile::read(Cursor::new(&b));
        }
        let mut b = bytes.clone();
        b[40] ^= 1;
        assert!(matches!(OpusFile::read(Cursor::new(&b)), Err(OggError::BadCrc { offset: 0 })));
        assert!(matches!(
            OpusFile::read(Cursor::new(b"RIFF....WAVEfmt ".to_vec())),
            Err(OggError::BadCapture { offset: 0 })
        ));
    }

    #[test]
    fn toc_durations() {
        assert_eq!(opus_packet_samples(&[31 << 3]), Ok(960));
        assert_eq!(opus_packet_samples(&[(1 << 3) | 1]), Ok(1920));
        assert_eq!(opus_packet_samples(&[(3 << 3) | 3, 2]), Ok(5760));
        assert!(opus_packet_samples(&[(3 << 3) | 3, 3]).is_err());
        assert!(opus_packet_samples(&[(3 << 3) | 3]).is_err());
        assert!(opus_packet_samples(&[]).is_err());
        assert_eq!(opus_packet_samples(&[16 << 3]), Ok(120));
    }

    /// The real test media when present: parses, durations add up to the
    /// file's last granule position, and re-writing gives a file that reads
    /// back to the same packets.
    #[test]
    fn real_files_round_trip() {
        for name in ["bbb.ogg", "speech.ogg"] {
            let Some(path) = crate::test_media(name) else {
                eprintln!("skipping: .media/{name} missing (run scripts/test-media.sh)");
                continue;
            };
            let bytes = std::fs::read(&path).unwrap();
            let f = OpusFile::read(Cursor::new(&bytes)).unwrap();
            assert!(f.packets.len() > 100, "{name}: {} packets", f.packets.len());
            let total: u64 = f.packets.iter().map(|p| u64::from(p.samples)).sum();
            let mut r = OggReader::new(Cursor::new(&bytes));
            let mut last_granule = 0;
            while let Some(p) = r.next_page().unwrap() {
                last_granule = p.granule;
            }
            // The last page's granule may trim the final packet (end trim).
            let end = total + u64::from(f.head.pre_skip);
            assert!(last_granule as u64 <= end && last_granule as u64 + 960 * 2 >= end, "{name}");

            let mut w = OggOpusWriter::new(Cursor::new(Vec::new()), 7, &f.head, "plenary").unwrap();
            for p in &f.packets {
                w.write_packet(&p.data).unwrap();
            }
            let out = w.finish().unwrap().into_inner();
            let g = OpusFile::read(Cursor::new(&out)).unwrap();
            assert_eq!(g.head, f.head);
            assert_eq!(g.packets, f.packets);
        }
    }
}
