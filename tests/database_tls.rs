//! The shared database over TLS: with `sslmode=require` callrec verifies the server's
//! certificate (against the web PKI's roots and `database_ca_file`), and a server that takes
//! TLS connections only is reached. Runs a TLS-only PostgreSQL cluster of its own
//! (`PG_SSL_DIR=… scripts/pg-start`) with a CA and server certificate made by openssl.
//!
//! Skipped (with a note) outside `scripts/test`, like the other PostgreSQL tests.

use std::path::Path;
use std::process::Command;

use callrec::store::documents::Expect;
use callrec::store::{Kind, Store};
use serde_json::json;

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cluster `scripts/pg-start` started, stopped when dropped.
struct Cluster {
    url: String,
    dir: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-stop"))
            .arg(&self.dir)
            .status();
    }
}

#[tokio::test]
async fn tls_to_the_database_is_verified_and_taken_when_the_server_requires_it() {
    if std::env::var_os("STORE_TEST_DATABASE_URL").is_none() {
        assert!(
            std::env::var_os("REQUIRE_POSTGRES").is_none(),
            "REQUIRE_POSTGRES is set but STORE_TEST_DATABASE_URL is not"
        );
        eprintln!("STORE_TEST_DATABASE_URL not set: PostgreSQL TLS test skipped");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    sh(
        certs.path(),
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
           -subj /CN=callrec-test-ca 2>/dev/null && \
         openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
           -subj /CN=127.0.0.1 2>/dev/null && \
         printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext && \
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
           -out server.crt -days 2 -extfile ext 2>/dev/null && \
         openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 \
           -subj /CN=someone-else 2>/dev/null",
    );
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-start"))
        .env("PG_SSL_DIR", certs.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let cluster = Cluster {
        url: lines.next().unwrap().to_string(),
        dir: lines.next().unwrap().to_string(),
    };
    let ca = certs.path().join("ca.crt");
    let require = format!("{}?sslmode=require", cluster.url);
    // Verified against the given CA: connected over TLS (the server takes nothing else).
    let s = Store::connect_tls(&require, Some(&ca)).await.unwrap();
    s.put(Kind::Account, "a", "a", json!({"name": "A"}), Expect::Any)
        .await
        .unwrap();
    assert_eq!(
        s.get(Kind::Account, "a", "a").await.unwrap().unwrap().body["name"],
        "A"
    );
    drop(s);
    // A certificate no trusted CA signed is refused.
    let e = Store::connect_tls(&require, None)
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("certificate"), "{e}");
    let e = Store::connect_tls(&require, Some(&certs.path().join("other.crt")))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("certificate"), "{e}");
    // Without TLS this server turns callrec away.
    let plain = format!("{}?sslmode=disable", cluster.url);
    let e = Store::connect(&plain).await.err().expect("refused");
    assert!(e.to_string().contains("pg_hba.conf"), "{e}");
}
