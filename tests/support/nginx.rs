//! Debian's nginx as the upload target: WebDAV PUT into `<root>/www`, one worker, no daemon.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{free_port, Killed};

pub fn wait_port(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listening on {port}");
}

/// Debian's nginx serving WebDAV PUT from `root/www` on a free loopback port.
pub fn start(root: &Path) -> (Killed, u16) {
    let port = free_port();
    (start_on(root, port), port)
}

/// [`start`] on a given port (a receiver that comes back where it was).
pub fn start_on(root: &Path, port: u16) -> Killed {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx is installed (scripts/test installs Debian's nginx)");
    let www = root.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let conf = root.join("nginx.conf");
    let d = root.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n  access_log off;\n  client_max_body_size 0;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {www};\n    location / {{\n      dav_methods PUT;\n      create_full_put_path on;\n      dav_access user:rw group:r all:r;\n    }}\n  }}\n}}\n",
            www = www.display()
        ),
    )
    .unwrap();
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(root)
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    wait_port(port);
    Killed(child)
}
