//! `switchboard relay --config FILE`: one app's relay as its own process; and `switchboard setup`,
//! which writes the certificates and configuration files of a federation.

use std::path::PathBuf;

use anyhow::Context;
use switchboard_relay::config::{ConnectionString, MAX_PEER_ADDRESSES, RelayConfig, StorageConfig, node_file, ports_per_app, write_federation};
use switchboard_relay::server::{start, start_front};
use switchboard_relay::storage::{Leadership, Opened, open_postgres, open_redb};
use switchboard_wire::address::check_app;
use tokio::net::TcpListener;

#[derive(clap::Args)]
pub struct RelayArgs {
    /// The relay's configuration file (TOML; see `switchboard setup`).
    #[arg(long)]
    config: PathBuf,
}

#[derive(clap::Args)]
pub struct SetupArgs {
    /// Folder to write the CA, certificates, keys and one configuration per node of each app into.
    #[arg(long)]
    dir: PathBuf,
    /// The apps, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "green,blue,red")]
    apps: Vec<String>,
    /// Ports on 127.0.0.1, in the order of --apps: two per app (devices, then other relays):
    /// `--ports 7001,7002,7003,7004` for two apps; with --nodes N above 1, three per node, node
    /// by node (devices, other relays, other nodes); default from 7001 up.
    #[arg(long, value_delimiter = ',')]
    ports: Vec<u16>,
    /// Nodes per app (with --storage postgres): each app's nodes share its database, one
    /// active, the others front nodes that carry the connections they take to it (`<app>.toml`,
    /// `<app>-2.toml`, …, each with a `[cluster]` table).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_PEER_ADDRESSES as i64))]
    nodes: u16,
    /// Where each relay keeps its state: redb (a file in its data folder) or postgres (a
    /// PostgreSQL database, see --postgres-url).
    #[arg(long, value_enum, default_value_t = StorageKind::Redb)]
    storage: StorageKind,
    /// With --storage postgres: each app's database, as a libpq connection string in which
    /// `{app}` stands for the app (each app needs a database of its own), e.g.
    /// "host=127.0.0.1 user=switchboard dbname=relay_{app}". A subset of libpq's options
    /// (PGPASSWORD and .pgpass are not read, passfile= and service= are refused): a password
    /// would have to be in it, on this command line; prefer trust authentication on loopback or
    /// peer over a Unix socket (host=/run/postgresql).
    #[arg(long)]
    postgres_url: Option<String>,
}

/// The kinds of store `setup --storage` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    /// An embedded redb database.
    Redb,
    /// A PostgreSQL database.
    Postgres,
}

/// Apps one `setup` makes a federation of: every relay links to every other, and their default
/// ports (two each, from 7001 up) must stay below 65,536.
const MAX_SETUP_APPS: usize = 1_000;

pub fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let apps: Vec<&str> = args.apps.iter().map(String::as_str).collect();
    anyhow::ensure!(apps.len() <= MAX_SETUP_APPS, "--apps: at most {MAX_SETUP_APPS} apps, not {}", apps.len());
    for (i, app) in apps.iter().enumerate() {
        // The name goes into the app's certificate, which devices and other relays check, and
        // into addresses (name@app).
        let certificate_name = !app.is_empty() && app.len() <= 63 && app.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        anyhow::ensure!(certificate_name, "--apps: app {app:?}: an app name is 1 to 63 letters, digits or '-'");
        check_app(app).with_context(|| format!("--apps: app {app:?}"))?;
        anyhow::ensure!(!apps[..i].contains(app), "--apps: app {app:?} is named twice");
    }
    let nodes = usize::from(args.nodes);
    anyhow::ensure!(nodes == 1 || args.storage == StorageKind::Postgres, "--nodes: an app's nodes share a PostgreSQL database: give --storage postgres");
    let per_app = ports_per_app(nodes);
    let ports = if args.ports.is_empty() {
        let count = apps.len() * per_app;
        anyhow::ensure!(7001 + count <= 65_536, "--ports: {count} ports from 7001 up pass 65,535: give them");
        (0..count).map(|i| 7001 + i as u16).collect()
    } else {
        args.ports
    };
    let what = if nodes == 1 { "two ports per app, in the order of --apps (devices, then other relays)" } else { "three ports per node, app by app (devices, other relays, other nodes)" };
    anyhow::ensure!(ports.len() == apps.len() * per_app, "--ports: give {what}: {} for {} app(s), not {}", apps.len() * per_app, apps.len(), ports.len());
    for (i, port) in ports.iter().enumerate() {
        anyhow::ensure!(*port != 0, "--ports: 0 is no port a relay can be reached on");
        anyhow::ensure!(!ports[..i].contains(port), "--ports: {port} is given twice");
    }
    let storage = match (args.storage, args.postgres_url) {
        (StorageKind::Redb, None) => StorageConfig::Redb {},
        (StorageKind::Redb, Some(_)) => anyhow::bail!("--postgres-url: given without --storage postgres"),
        (StorageKind::Postgres, None) => anyhow::bail!("--storage postgres: give each app's database with --postgres-url"),
        (StorageKind::Postgres, Some(url)) => {
            // Two relays on one database would take each other's mail.
            anyhow::ensure!(apps.len() == 1 || url.contains("{app}"), "--postgres-url: put {{app}} in it (for instance dbname=relay_{{app}}): each app needs a database of its own");
            StorageConfig::Postgres { url: ConnectionString::new(url), shards: Vec::new() }
        }
    };
    // A new CA would make every relay of a working federation refuse the others; new files for
    // an app would part it from them.
    let ca = args.dir.join("ca.pem");
    anyhow::ensure!(!ca.exists(), "{} exists: a federation is set up in {} already (remove the folder to start over)", ca.display(), args.dir.display());
    for app in &apps {
        let node_files = (1..=nodes).map(|node| node_file(app, node));
        for file in [format!("{app}.pem"), format!("{app}.key")].into_iter().chain(node_files) {
            let path = args.dir.join(file);
            anyhow::ensure!(!path.exists(), "{} exists: it would be written over (remove it, or choose another --dir)", path.display());
        }
    }
    for path in write_federation(&args.dir, &apps, &ports, &storage, nodes)? {
        println!("{}", path.display());
    }
    println!("devices recognise their relay by {} (switchboard chat --ca)", args.dir.join("ca.pem").display());
    Ok(())
}

pub fn run(args: RelayArgs) -> anyhow::Result<()> {
    let config = RelayConfig::load(&args.config)?;
    let file = args.config.display();
    check_app(&config.app).with_context(|| format!("{file}: app {:?}", config.app))?;
    // Everything that can be checked before taking the ports and the database is: the files
    // named in the configuration first.
    let settings = config.settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let bind = |what: &'static str, address| {
            let file = &file;
            move |error: std::io::Error| {
                let hint = if error.kind() == std::io::ErrorKind::AddrInUse { " (is a relay already running on it?)" } else { "" };
                anyhow::Error::new(error).context(format!("{file}: {what} {address}{hint}"))
            }
        };
        // A node of a cluster serves from the start: a front node (carrying what its listeners
        // take to the active node) until it holds the lock. Its listeners are kept for when it
        // does.
        let mut front = None;
        if let Some(cluster) = config.cluster.as_ref().filter(|cluster| !cluster.other_nodes().is_empty()) {
            let clients = TcpListener::bind(config.client_listen).await.map_err(bind("client_listen", config.client_listen))?.into_std()?;
            let federation = TcpListener::bind(config.federation_listen).await.map_err(bind("federation_listen", config.federation_listen))?.into_std()?;
            let copy = |listener: &std::net::TcpListener| TcpListener::from_std(listener.try_clone()?);
            let node = start_front(settings.clone(), copy(&clients)?, copy(&federation)?, cluster.other_nodes()).await?;
            front = Some((node, clients, federation));
        }
        // On PostgreSQL, several nodes of one app may share the database, one active at a time:
        // this one serves once it holds the database's lock (and its app's lock of earlier
        // versions), and waits while another node holds either: a front node meanwhile, with
        // `[cluster]`; else a hot standby, not listening. A node of another app is refused, not
        // left waiting, once the database records that app. Taken on a thread of its own: it
        // blocks, maybe for long.
        let leadership = match &config.storage {
            StorageConfig::Redb {} => None,
            StorageConfig::Postgres { url, .. } => {
                let (url, app, as_front) = (url.clone(), config.app.clone(), front.is_some());
                let waiting = move |target: &str| {
                    // Which node is not known: one of this app (of this version or an earlier
                    // one), or one of an app the database does not record yet (refused once it
                    // does).
                    if as_front {
                        println!("relay {app} front: another relay node is active on {target}; carrying connections to it while waiting for its lock");
                    } else {
                        println!("relay {app} standby: another relay node is active on {target}; waiting for its lock");
                    }
                    tracing::info!(app = %app, database = %target, "waiting for the active node's lock");
                };
                let app = config.app.clone();
                let leadership = tokio::task::spawn_blocking(move || Leadership::acquire(url.expose(), &app, waiting))
                    .await
                    .context("the thread taking the database's lock")?
                    .with_context(|| format!("{file}: taking the lock of {}'s database", config.app))?;
                tracing::info!(app = %config.app, database = %leadership.target(), "holding the database's lock: this node is the active one");
                Some(leadership)
            }
        };
        let (store, contents, state) = open_store(&config, leadership.as_ref()).with_context(|| format!("{file}: opening the relay's storage"))?;
        // A standby binds its ports only now, once its state is loaded: until then a device that
        // dials it is refused at once and tries the next node.
        let (clients, federation) = match front {
            Some((node, clients, federation)) => {
                // What it carried went to the node that held the lock, which is gone.
                node.shutdown().await;
                (TcpListener::from_std(clients)?, TcpListener::from_std(federation)?)
            }
            None => (
                TcpListener::bind(config.client_listen).await.map_err(bind("client_listen", config.client_listen))?,
                TcpListener::bind(config.federation_listen).await.map_err(bind("federation_listen", config.federation_listen))?,
            ),
        };
        let mut relay = start(settings, clients, federation, store, contents, state).await?;
        if let Some(cluster) = &config.cluster {
            let listener = TcpListener::bind(cluster.node_listen).await.map_err(bind("[cluster] node_listen", cluster.node_listen))?;
            relay.accept_fronts(listener)?;
        }
        println!("relay {} ready: devices {} (TLS) federation {} (mutual TLS)", relay.app, relay.client_address, relay.federation_address);
        let lost = async {
            match &leadership {
                Some(leadership) => leadership.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted?,
            why = relay.stopped() => {
                // The store failed (a lost database connection, say): the relay takes nothing
                // more. Exit, ports and lock with it, so that a supervisor restarts it (or a
                // standby node takes over); 4, beside the lost lock's 3.
                eprintln!("error: {file}: the relay stopped (its storage failed, or its core ended): {why}");
                std::process::exit(STORAGE_FAILED_EXIT);
            }
            why = lost => {
                // Another node may be active already: not one more frame, not one more batch
                // (they would fail anyway: see Leadership). No graceful shutdown.
                tracing::error!(app = %config.app, "lost the database's lock, stopping at once: {why}");
                eprintln!("error: {file}: this node of {} lost the lock of its database and stops at once: {why}", config.app);
                std::process::exit(3);
            }
        }
        relay.shutdown().await;
        anyhow::Ok(())
    })
}

/// The exit status of `switchboard relay` when its store failed while it served (a commit or a
/// read: a lost database connection, a database that did not answer in time): 4. A node that
/// lost its database's lock exits with 3; an error before it served, with 1.
pub const STORAGE_FAILED_EXIT: i32 = 4;

/// The store `config` names, a reader of it and what it holds. PostgreSQL's is opened on threads
/// of its own, so this may run inside the runtime (it blocks while it connects and loads), and,
/// with the database's lock held (`leadership`), fenced by it.
fn open_store(config: &RelayConfig, leadership: Option<&Leadership>) -> anyhow::Result<Opened> {
    match &config.storage {
        StorageConfig::Redb {} => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
            Ok(open_redb(&config.data_dir.join("relay.redb"))?)
        }
        StorageConfig::Postgres { url, .. } => Ok(open_postgres(url.expose(), &config.storage.mailbox_shards(), leadership)?),
    }
}
