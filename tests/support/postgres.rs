//! A real PostgreSQL server for the registry sink's tests, from `ENTRA_OPERATOR_TEST_DATABASE_URL`
//! (`scripts/with-postgres.sh` starts one and sets it; `.ci/run` uses that script), an isolated
//! schema per test, and a TCP proxy the test can cut to play a database outage.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const URL_VAR: &str = "ENTRA_OPERATOR_TEST_DATABASE_URL";
/// Set by `.ci/run`: a missing database is then a failure, not a skip.
pub const REQUIRE_VAR: &str = "ENTRA_OPERATOR_REQUIRE_TEST_DATABASE";

/// The test database URL, or `None` (with a loud message) when it is not configured locally.
pub fn database_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()) {
        Some(url) => Some(url),
        None if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") => {
            panic!("{REQUIRE_VAR}=1 but {URL_VAR} is not set: run through scripts/with-postgres.sh")
        }
        None => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: {URL_VAR} is not set. This test needs a real PostgreSQL \
                 server: run `scripts/with-postgres.sh cargo nextest run ...` (CI does). !!!!!!!!\n"
            );
            None
        }
    }
}

/// A direct connection for the test's own reads and hand edits.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh schema for one test (dropped by [`Schema::drop`]; leftovers die with the throwaway
/// server).
pub struct Schema {
    pub name: String,
    pub client: tokio_postgres::Client,
}

impl Schema {
    pub async fn create(url: &str, test: &str) -> Schema {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(20)
                .collect::<String>()
                .to_lowercase(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let client = connect(url).await;
        client
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .await
            .unwrap();
        Schema { name, client }
    }

    /// `schema.table`.
    pub fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.name)
    }

    pub async fn drop(self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.name))
            .await;
    }
}

/// A TCP proxy in front of the database. `cut()` closes every connection through it and refuses
/// new ones (as a database that went away); `restore()` lets connections through again.
pub struct Proxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let down = down.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            })
        };
        Proxy {
            addr,
            down,
            connections,
            accept,
        }
    }

    /// The database URL with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("test database URL");
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }

    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// The database's address from its URL (for the proxy).
pub async fn upstream(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).expect("test database URL");
    let host = u.host_str().expect("host").to_string();
    let port = u.port().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .expect("address")
}
