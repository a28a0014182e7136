//! Server processes under test: started pinned to a CPU, logged to a file,
//! killed on drop; and free loopback ports for them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LoadError;

/// A child process killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Spawns `program args…` with stdout/stderr to `log`, under
    /// `taskset -c <cpu>` when `cpu` is given (so the measured process and
    /// all its threads stay on that core), and under `setpriv --pdeathsig
    /// KILL` when `setpriv` is installed, so that it is killed when the
    /// harness's thread that spawned it dies.
    ///
    /// # Errors
    /// [`LoadError::Io`] if the log cannot be created or the program not run.
    pub fn spawn(
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        cpu: Option<usize>,
        log: PathBuf,
    ) -> Result<ServerProcess, LoadError> {
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        // The server dies with the harness, even when the harness is killed
        // (SIGKILL, the OOM killer, `timeout`): no orphan left holding the
        // benchmark core. `setpriv` (util-linux) sets PR_SET_PDEATHSIG and
        // execs, as `taskset` does, so the pid stays the server's.
        let mut prefix: Vec<String> = Vec::new();
        if check_executable(Path::new("setpriv"), "").is_ok() {
            prefix.extend(["setpriv", "--pdeathsig", "KILL"].map(String::from));
        }
        if let Some(c) = cpu {
            prefix.extend(["taskset".into(), "-c".into(), c.to_string()]);
        }
        let mut cmd = match prefix.first() {
            Some(first) => {
                let mut cmd = Command::new(first);
                cmd.args(&prefix[1..]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| LoadError::Start {
            target: "server",
            reason: format!("cannot run {}: {e}", program.display()),
        })?;
        Ok(ServerProcess { child, log })
    }

    /// The process id (taskset execs the program, so it is the server's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `max` bytes of the log, for error messages.
    pub fn log_tail(&self, max: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(max);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks that `program` (a path, or a name looked up in `PATH`) is an
/// executable file, before a run starts it under `taskset` (whose own
/// failure would only show in the server's log).
///
/// # Errors
/// [`LoadError::Usage`] naming the program, followed by `hint`.
pub fn check_executable(program: &Path, hint: &str) -> Result<(), LoadError> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let found = if program.components().count() > 1 {
        runnable(program)
    } else {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| runnable(&d.join(program))))
    };
    if found {
        Ok(())
    } else {
        Err(LoadError::Usage(format!(
            "{} is not an executable file (missing, or not on PATH){hint}",
            program.display()
        )))
    }
}

/// A loopback port free for both TCP and UDP right now.
///
/// # Errors
/// [`LoadError::Io`] if no port can be bound.
pub fn free_port() -> Result<u16, LoadError> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(LoadError::Io(std::io::Error::other("no free loopback port")))
}

/// Whether `GET path` on `addr` answers HTTP 200.
pub fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

/// Polls `ready` every 50 ms until it holds, the process exits, or
/// `timeout` passes.
///
/// # Errors
/// [`LoadError::Start`] with the log's tail.
pub async fn wait_ready(
    target: &'static str,
    proc: &mut ServerProcess,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), LoadError> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if proc.exited() || Instant::now() >= deadline {
            return Err(LoadError::Start { target, reason: format!("not ready; log:\n{}", proc.log_tail(2000)) });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
