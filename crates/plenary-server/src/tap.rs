//! `--tap FILE.pcap`: writes every RTP packet the SFU forwards, after SRTP
//! decryption, exactly as the operator of this server could read it, into a
//! pcap file (LINKTYPE_IPV4) with IPv4/UDP framing so tshark, Wireshark and
//! ffmpeg's RTP tools open it. It exists to prove that what the operator
//! sees is ciphertext; it is off by default and loudly logged when on.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// An open tap file.
pub struct Tap {
    writer: PcapWriter<File>,
    packets: u64,
}

impl Tap {
    /// Creates (truncates) `path`.
    ///
    /// # Errors
    /// The file cannot be created or the header written.
    pub fn create(path: &Path) -> std::io::Result<Tap> {
        // Unbuffered: each packet reaches the file at once, even if the
        // server is killed.
        let file = File::create(path)?;
        let header = PcapHeader { datalink: DataLink::IPV4, ..PcapHeader::default() };
        let writer = PcapWriter::with_header(file, header).map_err(std::io::Error::other)?;
        Ok(Tap { writer, packets: 0 })
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Appends one RTP packet from `source` to `destination` (IPv4 only;
    /// other addresses are written as 0.0.0.0).
    pub fn write(&mut self, source: SocketAddr, destination: Option<SocketAddr>, rtp: &[u8]) {
        let dst = destination.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let frame = ipv4_udp(source, dst, rtp);
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if self.writer.write_packet(&PcapPacket::new(ts, len, &frame)).is_ok() {
            self.packets += 1;
        }
    }
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// An IPv4 header (RFC 791) and a UDP header (RFC 768, checksum 0 = none)
/// around `payload`.
fn ipv4_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&v4(src.ip()).octets());
    p.extend_from_slice(&v4(dst.ip()).octets());
    let mut sum: u32 = p.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_readable_ipv4_udp_records() {
        let path = std::env::temp_dir().join(format!("plenary-tap-{}.pcap", std::process::id()));
        let mut tap = Tap::create(&path).unwrap();
        let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 9, 0, 0, 0, 7, 0xde, 0xad];
        tap.write("127.0.0.1:5000".parse().unwrap(), Some("127.0.0.1:6000".parse().unwrap()), &rtp);
        drop(tap);
        let data = std::fs::read(&path).unwrap();
        let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
        assert_eq!(reader.header().datalink, DataLink::IPV4);
        let pkt = reader.next_packet().unwrap().unwrap();
        assert_eq!(pkt.data.len(), 20 + 8 + rtp.len());
        assert_eq!(&pkt.data[28..], &rtp);
        assert_eq!(u16::from_be_bytes([pkt.data[22], pkt.data[23]]), 6000, "UDP destination port");
        // The IPv4 header checksum verifies (sums to 0xffff).
        let mut sum: u32 = pkt.data[..20].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        let _ = std::fs::remove_file(path);
    }
}
