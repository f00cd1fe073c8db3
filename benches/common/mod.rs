//! What the bench binaries that talk to a real receiver share: a process's RSS, a free port,
//! and Debian's nginx with WebDAV PUT (one worker, no daemon), stopped when dropped.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `VmRSS` of a process, in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running nginx; killed on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx accepting WebDAV PUT into `www` on a free loopback port; its configuration and
/// temporary files live in `root`.
pub fn nginx(root: &Path, www: &Path) -> Nginx {
    let port = free_port();
    std::fs::create_dir_all(www).unwrap();
    let d = root.display();
    std::fs::write(
        root.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  client_max_body_size 0;\n  client_body_temp_path {d}/body;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {};\n    location / {{\n      dav_methods PUT;\n      create_full_put_path on;\n    }}\n  }}\n}}\n",
            www.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .arg("-p")
        .arg(root)
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    Nginx { child, port }
}

/// `callrec serve --config <config>` (this package's binary), warnings only, stderr discarded.
pub fn serve(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_callrec"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("callrec serve starts")
}
