//! A `plenary join --json` process whose events the test reads while it runs.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running native participant, killed on drop.
pub struct Native {
    child: Child,
    events: Arc<Mutex<Vec<(Instant, Value)>>>,
    stderr: Arc<Mutex<String>>,
}

impl Native {
    /// Starts `plenary join URL --name NAME --json ARGS...` (through
    /// `wrapper`, e.g. `ip netns exec NS`, if given).
    pub fn spawn(wrapper: &[&OsStr], url: &str, name: &str, args: &[&OsStr]) -> Native {
        let bin = OsStr::new(env!("CARGO_BIN_EXE_plenary"));
        let mut argv: Vec<&OsStr> = wrapper.to_vec();
        argv.push(bin);
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .args(["join", url, "--name", name, "--json"])
            .args(args)
            .env("PLENARY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting plenary join");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let ev = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    ev.lock().expect("events").push((Instant::now(), v));
                }
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let se = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                se.lock().expect("stderr").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Native { child, events, stderr }
    }

    /// Every event so far, with the time it was read.
    pub fn events(&self) -> Vec<(Instant, Value)> {
        self.events.lock().expect("events").clone()
    }

    /// The last lines of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().expect("stderr");
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits up to `limit` for an event (read after `after`) that `pred`
    /// accepts.
    pub fn wait_for(&self, after: Instant, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.events().into_iter().find(|(t, v)| *t >= after && pred(v)) {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for the process to exit (killing it after that).
    pub fn finish(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `summary` event, once the process has ended.
    pub fn summary(&self) -> Option<Value> {
        self.events().into_iter().rev().find(|(_, v)| v["event"] == "summary").map(|(_, v)| v)
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decrypted frames of `kind` from participant `from` in a `frames` event.
pub fn decrypted_in(frames: &Value, from: u64, kind: &str) -> u64 {
    frames["tracks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["participant_id"].as_u64() == Some(from) && t["kind"] == kind)
        .filter_map(|t| t["decrypted"].as_u64())
        .sum()
}
