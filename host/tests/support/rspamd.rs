//! Debian's `rspamd` started by a test: Debian's stock configuration with our overrides in a
//! helper directory (`LOCAL_CONFDIR`, `DBDIR`, `RUNDIR`, `LOGDIR`): workers on free loopback ports,
//! DNS pointed at a closed loopback port (fails at once instead of timing out on a resolver we
//! cannot reach), no Redis, fixed action thresholds, and test rules keyed on the Subject so a test
//! picks the action Rspamd takes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::helper_dir::{HELPER_USER, helper_dir, running_as_root};

/// Rules of the test configuration: a Subject containing the word picks the action.
/// - "mailwit-spammy": +8 (add header, threshold 6)
/// - "mailwit-very-spammy": +12 (rewrite subject, threshold 11)
/// - "mailwit-later": soft reject with the message "mailwit test: try later"
const TEST_RULES: &str = r#"
local function subject_has(task, word)
  local subject = task:get_subject() or ''
  return subject:find(word, 1, true) ~= nil
end
rspamd_config:register_symbol({
  name = 'MAILWIT_TEST_SPAMMY', score = 8.0, group = 'mailwit',
  callback = function(task)
    return subject_has(task, 'mailwit-spammy')
  end,
})
rspamd_config:register_symbol({
  name = 'MAILWIT_TEST_VERY_SPAMMY', score = 12.0, group = 'mailwit',
  callback = function(task)
    return subject_has(task, 'mailwit-very-spammy')
  end,
})
rspamd_config:register_symbol({
  name = 'MAILWIT_TEST_LATER', score = 0.0, group = 'mailwit',
  callback = function(task)
    if subject_has(task, 'mailwit-later') then
      task:set_pre_result('soft reject', 'mailwit test: try later')
      return true
    end
    return false
  end,
})
"#;

pub struct Rspamd {
    child: Option<Child>,
    /// The normal worker (the one MTAs post /checkv2 to).
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

/// Whether Debian's rspamd is installed.
pub fn have_rspamd() -> bool {
    Path::new("/usr/bin/rspamd").exists()
}

impl Rspamd {
    pub fn start() -> Rspamd {
        let dir = helper_dir();
        let root = dir.path();
        let local = root.join("local");
        for sub in ["local/local.d", "local/override.d", "db", "run", "log"] {
            super::helper_dir::helper_subdir(&root.join(sub));
        }
        let (normal, controller, proxy) = (
            free_port("127.0.0.1"),
            free_port("127.0.0.1"),
            free_port("127.0.0.1"),
        );
        let write = |path: PathBuf, text: String| std::fs::write(path, text).unwrap();
        write(
            local.join("override.d/worker-normal.inc"),
            format!("bind_socket = \"127.0.0.1:{normal}\";\ncount = 1;\n"),
        );
        write(
            local.join("override.d/worker-controller.inc"),
            format!("bind_socket = \"127.0.0.1:{controller}\";\ncount = 1;\n"),
        );
        write(
            local.join("override.d/worker-proxy.inc"),
            format!("bind_socket = \"127.0.0.1:{proxy}\";\ncount = 1;\n"),
        );
        write(
            local.join("override.d/logging.inc"),
            format!(
                "type = \"file\";\nfilename = \"{}\";\nlevel = \"info\";\n",
                root.join("log/rspamd.log").display()
            ),
        );
        write(
            local.join("local.d/options.inc"),
            "dns {\n  nameserver = [\"127.0.0.1:1\"];\n  timeout = 0.1s;\n  retransmits = 1;\n}\n\
             disable_hyperscan = true;\n"
                .into(),
        );
        write(
            local.join("override.d/actions.conf"),
            "reject = 15;\nrewrite_subject = 11;\nadd_header = 6;\ngreylist = null;\n\
             subject = \"***SPAM*** %s\";\n"
                .into(),
        );
        write(local.join("rspamd.local.lua"), TEST_RULES.into());

        let mut command = Command::new("rspamd");
        command.arg("-f");
        if running_as_root() {
            // rspamd refuses to run workers as root; the helper user owns the directory.
            command.args(["-u", HELPER_USER, "-g", "nogroup"]);
        }
        for (var, sub) in [
            ("LOCAL_CONFDIR", "local"),
            ("DBDIR", "db"),
            ("RUNDIR", "run"),
            ("LOGDIR", "log"),
        ] {
            command
                .arg("--var")
                .arg(format!("{var}={}", root.join(sub).display()));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(root.join("stderr.txt")).unwrap(),
            ))
            .spawn()
            .expect("start rspamd (Debian package rspamd)");
        let rspamd = Rspamd {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], normal)),
            dir,
        };
        rspamd.wait_ready();
        rspamd
    }

    /// Until the normal worker answers `/ping` (loading the stock rules takes a while).
    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(180) {
            if ping(self.addr) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "rspamd did not answer /ping on {} within 180 s; log:\n{}\n{}",
            self.addr,
            self.log(),
            std::fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default()
        );
    }

    /// The main process's pid (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/rspamd.log")).unwrap_or_default()
    }

    /// Stops rspamd (SIGTERM to the main process, which stops its workers) and waits for the
    /// worker port to close.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child process by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let started = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(15) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(self.addr).is_ok()
            && started.elapsed() < Duration::from_secs(15)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether Rspamd answers `GET /ping` with "pong".
fn ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(stream, "GET /ping HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.") && response.contains("pong")
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        self.stop();
    }
}
