//! Helpers shared by the server's integration tests.

#![allow(dead_code)]

pub mod native;
pub mod report;

use std::ffi::OsStr;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh random meeting secret (16 bytes) as it appears after `#` in a
/// meeting link.
pub fn new_secret() -> String {
    plenary_e2ee::secret::MeetingSecret::random().expect("random secret").to_base64url()
}

/// A free loopback TCP port number (also used for UDP: the OS rarely reuses it at once).
pub fn free_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// A file made by `scripts/test-media.sh`, in `$PLENARY_MEDIA_DIR` or the
/// workspace's `.media/`, if it exists.
pub fn media(name: &str) -> Option<PathBuf> {
    let p = media_dir().join(name);
    p.is_file().then_some(p)
}

pub fn media_dir() -> PathBuf {
    std::env::var_os("PLENARY_MEDIA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.media"))
}

/// The server process, killed on drop; its output goes to a log file that
/// is printed if the test fails.
pub struct Server {
    /// The process.
    pub child: Child,
    /// HTTP address.
    pub http: SocketAddr,
    /// Media port (UDP and ICE-TCP).
    pub rtc: u16,
    /// Log file.
    pub log: PathBuf,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&OsStr]) -> Server {
        Server::start_at(dir, extra, None)
    }

    /// Stops the server (SIGKILL, as a crash) and starts a new one on the
    /// same ports, logging to a new file.
    pub fn restart(&mut self, dir: &Path, extra: &[&OsStr]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let new = Server::start_at(dir, extra, Some((self.http, self.rtc)));
        // The old one is already dead: dropping it kills nothing.
        drop(std::mem::replace(self, new));
    }

    fn start_at(dir: &Path, extra: &[&OsStr], ports: Option<(SocketAddr, u16)>) -> Server {
        let mut last_log = String::new();
        for _ in 0..5 {
            let (http, rtc) = ports.unwrap_or_else(|| (free_tcp_port(), free_udp_and_tcp_port()));
            let log = unique_path(dir, "server", "log");
            let out = std::fs::File::create(&log).expect("server log");
            let err = out.try_clone().expect("server log");
            let child = Command::new(env!("CARGO_BIN_EXE_plenary"))
                .args(["serve", "--listen", &http.to_string(), "--rtc-port", &rtc.to_string()])
                .args(extra)
                .env("PLENARY_LOG", "info,str0m=warn")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("starting the plenary binary");
            let mut server = Server { child, http, rtc, log };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // Exited: most likely a port taken meanwhile; retry.
                }
                if healthz(http) {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = server.log_text();
        }
        panic!("the server did not start; last log:\n{last_log}");
    }

    /// The server log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dir/<stem>-<n>.<ext>` for the first `n` not taken yet.
fn unique_path(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    (0..).map(|n| dir.join(format!("{stem}-{n}.{ext}"))).find(|p| !p.exists()).unwrap_or_else(|| dir.join(stem))
}

pub fn free_tcp_port() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr")
}

/// A port free for both UDP and TCP (the server uses both for media).
pub fn free_udp_and_tcp_port() -> u16 {
    loop {
        let u = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = u.local_addr().expect("addr").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

pub fn healthz(addr: SocketAddr) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

/// Decodes a file with ffmpeg; returns the decoded frame count, or `None`
/// when ffmpeg is not installed. Fails on any decoder complaint.
pub fn ffmpeg_decode(path: &Path) -> Option<usize> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "framemd5", "-"])
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffmpeg on {}: {stderr}", path.display());
    Some(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).count())
}

/// Waits for a child, killing it after `limit`; returns its output (empty
/// for a stream that was not piped).
pub fn wait_with_timeout(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    // Drain the pipes on threads so a chatty child cannot block on them.
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    }
    let t_out = drain(child.stdout.take());
    let t_err = drain(child.stderr.take());
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() }
}
