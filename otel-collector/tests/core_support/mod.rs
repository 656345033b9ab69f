//! Helpers of the `core_*` integration tests: run the real `otel-collector` binary on free
//! loopback ports with a generated config, wait for it, stop it with SIGTERM (synchronously:
//! these tests do not run a Tokio runtime around the process).

#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running collector process, killed on drop if still running.
pub struct Collector {
    pub child: Child,
    pub log: PathBuf,
}

impl Collector {
    /// Writes `config` into `dir` and starts the binary with it; waits until `ports` accept.
    pub fn start(dir: &Path, name: &str, config: &str, ports: &[u16]) -> Collector {
        Self::start_with(dir, name, config, ports, |_| {})
    }

    /// [`Collector::start`], letting `configure` adjust the command first (e.g. `pre_exec`).
    pub fn start_with(
        dir: &Path,
        name: &str,
        config: &str,
        ports: &[u16],
        configure: impl FnOnce(&mut Command),
    ) -> Collector {
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, config).expect("write config");
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otel-collector"));
        cmd.arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        configure(&mut cmd);
        let child = cmd.spawn().expect("spawn otel-collector");
        let mut c = Collector { child, log };
        for p in ports {
            c.wait_port(*p);
        }
        c
    }

    fn wait_port(&mut self, port: u16) {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("collector exited early ({status}):\n{}", self.logs());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "collector did not listen on {port} in time:\n{}",
            self.logs()
        );
    }

    /// The collector's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!(
            "collector did not stop within 30s of SIGTERM:\n{}",
            self.logs()
        );
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
