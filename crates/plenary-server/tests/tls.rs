//! `--tls-cert/--tls-key`: the server speaks HTTPS and WSS with rustls, and
//! a native participant joins over it (trusting the test's own certificate).

mod common;

use common::{free_port, media, new_secret};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn https_and_wss_with_rustls() {
    let dir = std::env::temp_dir().join(format!("plenary-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) is installed");
    assert!(made.success());
    let (http, rtc) = (free_port(), free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_plenary"))
        .args(["serve", "--listen", &format!("127.0.0.1:{http}"), "--rtc-port", &rtc.to_string()])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut healthy = false;
    while Instant::now() < deadline {
        let out = Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(&cert)
            .arg(format!("https://127.0.0.1:{http}/healthz"))
            .output()
            .expect("curl (Debian package curl) is installed");
        if String::from_utf8_lossy(&out.stdout) == "ok" {
            healthy = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthy, "https /healthz answers, verified against the test certificate");
    let plain = Command::new("curl")
        .args(["-s", "-m", "3", &format!("http://127.0.0.1:{http}/healthz")])
        .output()
        .expect("curl");
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "ok", "no plain HTTP on the TLS port");

    if let Some(video) = media("carphone.ivf") {
        let out = Command::new(env!("CARGO_BIN_EXE_plenary"))
            .args([
                "join",
                &format!("https://127.0.0.1:{http}/m/tls-room#{}", new_secret()),
                "--name",
                "T",
                "--duration",
                "2",
                "--json",
            ])
            .arg("--video")
            .arg(video)
            .env("SSL_CERT_FILE", &cert)
            .output()
            .expect("join");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "join over wss failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("\"event\":\"joined\""), "{stdout}");
        assert!(stdout.contains("\"event\":\"summary\""), "{stdout}");
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(dir);
}
