//! A new PostgreSQL database per test, on the throwaway cluster `scripts/test` starts
//! (`STORE_TEST_DATABASE_URL`, a database the tests may create databases beside).
//!
//! Without the variable the PostgreSQL half of a test is skipped with a note on stderr, unless
//! `REQUIRE_POSTGRES` is set (as `scripts/test` sets it): then its absence fails the test.

/// A database that exists until this is dropped.
pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

fn admin_url() -> Option<String> {
    match std::env::var("STORE_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("REQUIRE_POSTGRES").is_none(),
                "REQUIRE_POSTGRES is set but STORE_TEST_DATABASE_URL is not"
            );
            eprintln!("STORE_TEST_DATABASE_URL not set: PostgreSQL half skipped");
            None
        }
    }
}

/// A new empty database, or `None` when PostgreSQL is not available (see the module note).
pub fn new_db() -> Option<TestDb> {
    let admin = admin_url()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let url = callrec::store::scratch::create_database(&admin, &name)
        .expect("the test cluster creates a database");
    Some(TestDb { url, admin, name })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = callrec::store::scratch::drop_database(&self.admin, &self.name);
    }
}

impl TestDb {
    /// The database's address (`host:port`).
    pub fn addr(&self) -> std::net::SocketAddr {
        let rest = self
            .url
            .split_once('@')
            .map(|(_, r)| r)
            .unwrap_or(&self.url);
        let hostport = rest.split('/').next().unwrap_or(rest);
        hostport.parse().expect("the test URL names 127.0.0.1:port")
    }

    /// This database's URL through another port (a [`Cuttable`] in front of it).
    pub fn url_via(&self, port: u16) -> String {
        self.url
            .replace(&self.addr().port().to_string(), &port.to_string())
    }
}

/// A TCP relay in front of the database that a test can cut (every connection through it
/// closes, new ones are closed at once) and restore: the database becoming unreachable.
pub struct Cuttable {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<(bool, Vec<tokio::task::AbortHandle>)>>,
}

impl Cuttable {
    pub async fn start(target: std::net::SocketAddr) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new((true, Vec::new())));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut guard = st.lock().unwrap();
                if !guard.0 {
                    continue; // dropped: closed at once
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                guard.1.push(task.abort_handle());
            }
        });
        Cuttable { port, state }
    }

    pub fn cut(&self) {
        let mut guard = self.state.lock().unwrap();
        guard.0 = false;
        for t in guard.1.drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.state.lock().unwrap().0 = true;
    }
}
