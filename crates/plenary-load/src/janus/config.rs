//! The minimal Janus configuration the harness runs Janus with: the core
//! (`janus.jcfg`), the HTTP transport and the VideoRoom plugin, every other
//! plugin, transport, logger and event handler disabled. Key names are those
//! of the Debian package's `/etc/janus/*.jcfg` samples (Janus 1.1).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where the Debian package installs Janus's modules.
pub const DEBIAN_MODULES: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// The plugin the harness uses; every other one is disabled.
pub const VIDEOROOM_PLUGIN: &str = "libjanus_videoroom.so";
/// The transport the harness speaks; every other one is disabled.
pub const HTTP_TRANSPORT: &str = "libjanus_http.so";

/// What goes into the configuration.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    /// Folder holding `plugins/`, `transports/`, `loggers/`, `events/`
    /// (Debian: [`DEBIAN_MODULES`]).
    pub modules: PathBuf,
    /// Folder the `.jcfg` files are written to (a temp dir).
    pub dir: PathBuf,
    /// The HTTP API listens on `ip:http_port` (loopback).
    pub ip: Ipv4Addr,
    /// The only address ICE gathers host candidates on (no STUN, no mDNS).
    /// Janus skips loopback interfaces when gathering, so this is a local
    /// non-loopback address (see [`super::media_ipv4`]); the kernel still
    /// delivers traffic between local addresses through `lo`.
    pub media_ip: Ipv4Addr,
    /// TCP port of the HTTP API (`POST http://ip:port/janus`).
    pub http_port: u16,
    /// Static event loops (threads) that carry every handle's media; the
    /// core count, as the VideoRoom of Janus 1.1 has no helper threads of its
    /// own (`threads` per room came later).
    pub event_loops: usize,
    /// Janus log level, 0..=7 (4 = info, Janus's default).
    pub debug_level: u8,
}

impl JanusConfig {
    /// Path of the log file Janus writes ( `janus.log` in [`Self::dir`]).
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("janus.log")
    }

    /// Path of the core configuration, to pass as `janus -C`.
    pub fn core_file(&self) -> PathBuf {
        self.dir.join("janus.jcfg")
    }

    /// Writes `janus.jcfg`, `janus.transport.http.jcfg` and
    /// `janus.plugin.videoroom.jcfg` into [`Self::dir`]. Lists the module
    /// folders to disable every module but VideoRoom and HTTP.
    pub fn write(&self) -> std::io::Result<()> {
        std::fs::write(self.core_file(), self.core()?)?;
        std::fs::write(self.dir.join("janus.transport.http.jcfg"), self.http())?;
        // No static rooms: the harness creates its room through the API.
        std::fs::write(self.dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
        Ok(())
    }

    fn core(&self) -> std::io::Result<String> {
        let m = &self.modules;
        let disable = |folder: &str, keep: &str| -> std::io::Result<String> {
            Ok(modules_in(&m.join(folder))?.into_iter().filter(|n| n != keep).collect::<Vec<_>>().join(","))
        };
        let mut s = String::new();
        let q = |p: &Path| p.display().to_string().replace('"', "");
        let _ = write!(
            s,
            "general: {{\n\
             \tconfigs_folder = \"{dir}\"\n\
             \tplugins_folder = \"{m}/plugins\"\n\
             \ttransports_folder = \"{m}/transports\"\n\
             \tevents_folder = \"{m}/events\"\n\
             \tloggers_folder = \"{m}/loggers\"\n\
             \tdebug_level = {level}\n\
             \tlog_to_stdout = false\n\
             \tlog_to_file = \"{log}\"\n\
             \tinterface = \"{media_ip}\"\n\
             \tserver_name = \"plenary-load\"\n\
             \tsession_timeout = 60\n\
             \tevent_loops = {loops}\n\
             \thide_dependencies = true\n\
             }}\n\
             media: {{\n\
             }}\n\
             nat: {{\n\
             \tnice_debug = false\n\
             \tice_enforce_list = \"{media_ip}\"\n\
             \tignore_mdns = true\n\
             }}\n\
             plugins: {{\n\tdisable = \"{plugins}\"\n}}\n\
             transports: {{\n\tdisable = \"{transports}\"\n}}\n\
             loggers: {{\n\tdisable = \"{loggers}\"\n}}\n\
             events: {{\n\tbroadcast = false\n}}\n",
            dir = q(&self.dir),
            m = q(m),
            level = self.debug_level.min(7),
            log = q(&self.log_file()),
            media_ip = self.media_ip,
            loops = self.event_loops.max(1),
            plugins = disable("plugins", VIDEOROOM_PLUGIN)?,
            transports = disable("transports", HTTP_TRANSPORT)?,
            loggers = disable("loggers", "")?,
        );
        Ok(s)
    }

    fn http(&self) -> String {
        format!(
            "general: {{\n\
             \tjson = \"plain\"\n\
             \tbase_path = \"/janus\"\n\
             \thttp = true\n\
             \tport = {port}\n\
             \tip = \"{ip}\"\n\
             \thttps = false\n\
             }}\n\
             admin: {{\n\
             \tadmin_http = false\n\
             \tadmin_https = false\n\
             }}\n",
            port = self.http_port,
            ip = self.ip,
        )
    }
}

/// File names `*.so` in `folder`, sorted (empty when the folder is missing).
fn modules_in(folder: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".so") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disables_every_module_but_videoroom_and_http() {
        let modules = tempfile::tempdir().expect("tempdir");
        for (folder, names) in [
            ("plugins", &["libjanus_videoroom.so", "libjanus_echotest.so", "libjanus_sip.so.1"][..]),
            ("transports", &["libjanus_http.so", "libjanus_websockets.so"][..]),
            ("loggers", &["libjanus_jsonlog.so"][..]),
        ] {
            std::fs::create_dir(modules.path().join(folder)).expect("mkdir");
            for n in names {
                std::fs::write(modules.path().join(folder).join(n), "").expect("write");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = JanusConfig {
            modules: modules.path().into(),
            dir: dir.path().into(),
            ip: Ipv4Addr::LOCALHOST,
            media_ip: Ipv4Addr::new(192, 0, 2, 2),
            http_port: 4321,
            event_loops: 2,
            debug_level: 4,
        };
        cfg.write().expect("write config");
        let core = std::fs::read_to_string(cfg.core_file()).expect("read");
        assert!(core.contains("disable = \"libjanus_echotest.so\""), "{core}");
        assert!(core.contains("disable = \"libjanus_websockets.so\""), "{core}");
        assert!(core.contains("disable = \"libjanus_jsonlog.so\""), "{core}");
        assert!(core.contains("ice_enforce_list = \"192.0.2.2\""), "{core}");
        assert!(core.contains("event_loops = 2"), "{core}");
        assert!(!core.contains("stun_server"), "{core}");
        let http = std::fs::read_to_string(dir.path().join("janus.transport.http.jcfg")).expect("read");
        assert!(http.contains("port = 4321") && http.contains("ip = \"127.0.0.1\""), "{http}");
    }
}
