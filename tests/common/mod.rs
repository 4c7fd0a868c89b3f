//! Helpers the process tests share: scratch directories, free ports, servers that are
//! killed with the test.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NODE: &str = env!("CARGO_BIN_EXE_node");

/// A fresh directory under the system temp dir, unique per test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("node-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A TCP port nobody listens on now (the kernel's pick of an ephemeral one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `n` consecutive ports, all free now, below the kernel's ephemeral range (32768 and up
/// here), so that no outgoing connection of another process takes one of them before the
/// server that is meant to bind it starts. Returns the first.
pub fn free_port_block(n: u16) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for attempt in 0..1000u64 {
        let base = 20_000 + ((seed.wrapping_mul(6364136223846793005).wrapping_add(attempt * 7919)) % 12_000) as u16;
        let free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// Waits (10 s at most) until something accepts connections on `addr`.
pub fn wait_listening(addr: &str, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} does not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program script port` run in a fresh directory (its stderr in `stderr.log` there),
/// once it listens on 127.0.0.1:port.
pub struct Server {
    pub process: KillOnDrop,
    pub port: u16,
    pub dir: PathBuf,
}

impl Server {
    pub fn start(program: &str, name: &str, script: &Path) -> Server {
        let dir = temp_dir(name);
        let port = free_port();
        let child = Command::new(program)
            .arg(script)
            .arg(port.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts (scripts/setup.sh installs tarantool): {e}"));
        let process = KillOnDrop(child);
        wait_listening(&format!("127.0.0.1:{port}"), program);
        Server { process, port, dir }
    }
}
