//! Child processes owned by a test: killed on drop, their logs shown when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::net::is_listening;

/// How long a server may take to come up (the machine may be busy compiling).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How many log lines a failing test prints per process.
const TAIL_LINES: usize = 40;

/// One child process with the file its stdout and stderr go to.
pub struct Proc {
    /// Short name for messages.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("create log file {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Waits until something accepts TCP connections on 127.0.0.1:`port`, failing early when
    /// the process exits and after [`START_TIMEOUT`].
    pub async fn wait_port(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !is_listening(port) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} does not listen on 127.0.0.1:{port} after {START_TIMEOUT:?}:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits (at most `within`) for the process; returns its exit status.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(sent, "kill -TERM {} failed", self.name);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?} of SIGTERM:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (if still running) and reaps it; prints the end of its log when the
    /// current thread is panicking.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            print_log_tail(&self.name, &self.log);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Owns every process a test starts; drops them (so kills them) last started first.
#[derive(Default)]
pub struct Procs(Vec<Proc>);

impl Procs {
    /// Spawns `cmd` with stdout and stderr to `log`, owned by this guard; returns its index.
    pub fn spawn(&mut self, name: &str, cmd: Command, log: PathBuf) -> usize {
        self.0.push(Proc::spawn(name, cmd, log));
        self.0.len() - 1
    }

    /// The process at `i`.
    pub fn get(&mut self, i: usize) -> &mut Proc {
        &mut self.0[i]
    }

    /// Panics with the log if the process at `i` has exited.
    pub fn assert_running(&mut self, i: usize) {
        self.0[i].assert_running();
    }

    /// Waits until 127.0.0.1:`port` accepts connections, failing early when process `i` exits.
    pub async fn wait_port(&mut self, i: usize, port: u16) {
        self.0[i].wait_port(port).await;
    }

    /// Sends SIGTERM to the process at `i` and waits (at most `within`); returns its status.
    pub async fn terminate(&mut self, i: usize, within: Duration) -> ExitStatus {
        self.0[i].terminate(within).await
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        while let Some(p) = self.0.pop() {
            drop(p);
        }
    }
}

/// Prints the last lines of `log` to stderr under the name of its process.
fn print_log_tail(name: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    eprintln!("---- last lines of {name} ({}):\n{tail}", log.display());
}
