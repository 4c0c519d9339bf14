//! The `docker` testbed's view of a compose stack, through the Docker Engine
//! API (bollard): the containers that carry `org.kaspec.service`, their
//! network namespaces (by the main process's pid), addresses, images and
//! versions, and the bridge of their network.
//!
//! The path itself is the netns testbed's: a client namespace and a router
//! namespace of ours, the router's server-side link plugged into the compose
//! network's bridge (see [`super::Testbed::docker`] and [`super::docker`]). Faults are
//! applied on the router's forward path, between the client and the
//! container, never on the container's own stack.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::{Error, Result};

/// The label every kaspec service of docker-compose.yml carries (its name).
pub const SERVICE_LABEL: &str = "org.kaspec.service";
/// The port the service listens on.
pub const PORT_LABEL: &str = "org.kaspec.port";
/// The label of the compose network kaspec joins.
pub const NETWORK_LABEL: &str = "org.kaspec.network";
/// Docker Compose's project label.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// One adopted container.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    /// `/kaspec-mosquitto-1` without the slash.
    pub name: String,
    /// Its `org.kaspec.service` label.
    pub service: String,
    /// Its `org.kaspec.port` label.
    pub port: u16,
    /// The main process, in the host's pid namespace.
    pub pid: u32,
    /// Its address on the kaspec network.
    pub ip: Ipv4Addr,
    /// The image as the container names it (`eclipse-mosquitto:2.0.11`).
    pub image: String,
    /// The server's version as the image states it (a label of
    /// build-images.sh, or the official images' VERSION / RABBITMQ_VERSION /
    /// PG_VERSION / REDIS_VERSION / NATS_SERVER / MARIADB_VERSION), if it does.
    pub version: Option<String>,
    /// The command it runs (entrypoint path and arguments).
    pub command: Vec<String>,
    /// Docker's json-file log of the container, if it has one.
    pub log: Option<std::path::PathBuf>,
}

/// The compose network the containers share: a Linux bridge on this host.
#[derive(Debug, Clone)]
pub struct BridgeNet {
    pub id: String,
    pub name: String,
    /// The bridge device in this host's root namespace (`br-0123456789ab`).
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// Addresses taken on it (gateway and every container).
    pub used: Vec<Ipv4Addr>,
}

/// A compose stack of kaspec services, as found when the run started.
#[derive(Debug, Clone)]
pub struct Stack {
    pub project: String,
    pub network: BridgeNet,
    pub containers: BTreeMap<String, Container>,
    /// `docker version`: the engine's version and API version.
    pub engine: String,
}

impl Stack {
    /// The running container of `service`, inspected again now (its pid
    /// changes when it restarts).
    pub fn container(&self, service: &str) -> Result<Container> {
        if !self.containers.contains_key(service) {
            return Err(Error::Other(format!(
                "the compose project {} has no service labelled {SERVICE_LABEL}={service} (it has: {})",
                self.project,
                self.containers.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let project = self.project.clone();
        let service = service.to_string();
        let net = self.network.id.clone();
        block_on(async move {
            let d = connect().await?;
            let found = list(&d, Some(&project)).await?;
            let id = found
                .iter()
                .find(|(_, s, _)| *s == service)
                .map(|(id, _, _)| id.clone())
                .ok_or_else(|| Error::Other(format!("the container of service {service} (project {project}) is gone")))?;
            inspect(&d, &id, &net).await
        })?
    }

    /// One line for the report: project, engine, network, images.
    pub fn describe(&self) -> String {
        let images: Vec<String> = self.containers.values().map(|c| format!("{}={}", c.service, c.image)).collect();
        format!(
            "compose project {}, network {} (bridge {}, {}/{}), {}; {}",
            self.project,
            self.network.name,
            self.network.bridge,
            self.network.subnet,
            self.network.prefix,
            self.engine,
            images.join(", ")
        )
    }
}

/// Runs `f` to completion on a fresh thread with its own runtime (callers
/// may be inside another runtime, or on a thread in some namespace).
fn block_on<F, T>(f: F) -> Result<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting a runtime for the Docker API", e))
            .map(|rt| rt.block_on(f))
    })
    .join()
    .map_err(|_| Error::Other("the Docker API thread panicked".into()))?
}

fn api(what: &str, e: bollard::errors::Error) -> Error {
    Error::Other(format!("Docker API: {what}: {e}"))
}

async fn connect() -> Result<Docker> {
    // Both a missing socket (connect) and a socket nobody answers on
    // (negotiate) mean the same thing to the user: no daemon.
    let no_daemon = |e: bollard::errors::Error| {
        Error::Other(format!(
            "the docker testbed: no Docker daemon answers ({e}); start one (fixtures/docker/stack.sh up starts dockerd and the stack)"
        ))
    };
    let d = Docker::connect_with_local_defaults().map_err(no_daemon)?;
    d.negotiate_version().await.map_err(no_daemon)
}

/// (id, service, project) of every container with [`SERVICE_LABEL`] (of
/// `project` if given), running or not.
async fn list(d: &Docker, project: Option<&str>) -> Result<Vec<(String, String, String)>> {
    let mut labels = vec![SERVICE_LABEL.to_string()];
    if let Some(p) = project {
        labels.push(format!("{PROJECT_LABEL}={p}"));
    }
    let filters: HashMap<&str, Vec<String>> = HashMap::from([("label", labels)]);
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let found = d.list_containers(Some(opts)).await.map_err(|e| api("listing containers", e))?;
    Ok(found
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            Some((c.id?, labels.get(SERVICE_LABEL)?.clone(), labels.get(PROJECT_LABEL).cloned().unwrap_or_default()))
        })
        .collect())
}

async fn inspect_raw(d: &Docker, id: &str) -> Result<bollard::models::ContainerInspectResponse> {
    d.inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>).await.map_err(|e| api("inspecting a container", e))
}

async fn inspect(d: &Docker, id: &str, network_id: &str) -> Result<Container> {
    let c = inspect_raw(d, id).await?;
    let name = c.name.clone().unwrap_or_default().trim_start_matches('/').to_string();
    let config = c.config.clone().unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let service = labels.get(SERVICE_LABEL).cloned().unwrap_or_default();
    let port_label = labels.get(PORT_LABEL).cloned().unwrap_or_default();
    let port: u16 = port_label
        .parse()
        .map_err(|_| Error::Other(format!("container {name}: label {PORT_LABEL}=`{port_label}` is not a port (1-65535)")))?;
    let state = c.state.clone().unwrap_or_default();
    let pid = state.pid.unwrap_or(0);
    if state.running != Some(true) || pid <= 0 {
        return Err(Error::Other(format!("container {name} (service {service}) is not running")));
    }
    let ip = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.values().find(|e| e.network_id.as_deref() == Some(network_id)))
        .and_then(|e| e.ip_address.as_deref())
        .and_then(|a| a.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| Error::Other(format!("container {name} has no IPv4 address on the kaspec network")))?;
    let image = config.image.clone().unwrap_or_default();
    let version = match c.image.as_deref() {
        Some(image_id) => d.inspect_image(image_id).await.ok().and_then(|i| image_version(&i)),
        None => None,
    };
    let mut command = vec![c.path.clone().unwrap_or_default()];
    command.extend(c.args.clone().unwrap_or_default());
    Ok(Container {
        id: c.id.clone().unwrap_or_default(),
        name,
        service,
        port,
        pid: pid as u32,
        ip,
        image,
        version,
        command,
        log: c.log_path.clone().filter(|p| !p.is_empty()).map(Into::into),
    })
}

/// The server version an image states: build-images.sh's label, else the
/// official images' environment.
fn image_version(i: &bollard::models::ImageInspect) -> Option<String> {
    let config = i.config.as_ref()?;
    if let Some(v) = config.labels.as_ref().and_then(|l| l.get("org.kaspec.package-version")) {
        return Some(v.clone());
    }
    let env = config.env.clone().unwrap_or_default();
    ["VERSION=", "RABBITMQ_VERSION=", "PG_VERSION=", "REDIS_VERSION=", "NATS_SERVER=", "MARIADB_VERSION="]
        .iter()
        .find_map(|k| env.iter().find_map(|e| e.strip_prefix(k)).map(str::to_string))
}

/// Finds the compose stack: the containers labelled [`SERVICE_LABEL`] (of
/// `project`, or of the only project that has any), starts those that are
/// stopped, waits until every one is healthy (or has no healthcheck) for
/// at most `wait`, and reads their network. Errors are one line, naming
/// what is missing and how to get it.
pub fn discover(project: Option<&str>, wait: Duration) -> Result<Stack> {
    let project = project.map(str::to_string);
    block_on(async move { discover_async(project, wait).await })?
}

async fn discover_async(project: Option<String>, wait: Duration) -> Result<Stack> {
    let d = connect().await?;
    let v = d.version().await.map_err(|e| api("reading the version", e))?;
    let engine = format!("Docker Engine {} (API {})", v.version.unwrap_or_default(), v.api_version.unwrap_or_default());
    let found = list(&d, project.as_deref()).await?;
    let mut projects: Vec<String> = found.iter().map(|(_, _, p)| p.clone()).collect();
    projects.sort();
    projects.dedup();
    let project = match (project, projects.as_slice()) {
        (Some(p), _) if found.is_empty() => {
            return Err(Error::Other(format!(
                "the docker testbed: compose project `{p}` has no container labelled {SERVICE_LABEL} (docker compose -p {p} up -d, or fixtures/docker/stack.sh up {p})"
            )))
        }
        (Some(p), _) => p,
        (None, []) => {
            return Err(Error::Other(format!(
                "the docker testbed: no container labelled {SERVICE_LABEL} (run `docker compose up -d` in kaspec's folder, or fixtures/docker/stack.sh up)"
            )))
        }
        (None, [one]) => one.clone(),
        (None, many) => {
            return Err(Error::Other(format!(
                "the docker testbed: several compose projects have kaspec services ({}); choose one with --compose-project",
                many.join(", ")
            )))
        }
    };
    let ids: Vec<(String, String)> = found.into_iter().filter(|(_, _, p)| *p == project).map(|(id, s, _)| (id, s)).collect();
    // Start what is stopped (adopt, never create: compose owns the containers).
    for (id, service) in &ids {
        let c = inspect_raw(&d, id).await?;
        if c.state.and_then(|s| s.running) != Some(true) {
            d.start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
                .await
                .map_err(|e| api(&format!("starting the stopped container of {service}"), e))?;
        }
    }
    let deadline = Instant::now() + wait;
    loop {
        let mut waiting = Vec::new();
        for (id, service) in &ids {
            let c = inspect_raw(&d, id).await?;
            let state = c.state.unwrap_or_default();
            let health = state.health.and_then(|h| h.status).map(|s| s.to_string()).unwrap_or_else(|| "none".into());
            match (state.running, health.as_str()) {
                (Some(true), "healthy" | "none" | "") => {}
                (Some(true), "unhealthy") => {
                    return Err(Error::Other(format!("the docker testbed: service {service} is unhealthy (docker logs {})", &id[..12.min(id.len())])))
                }
                (Some(true), h) => waiting.push(format!("{service} ({h})")),
                _ => return Err(Error::Other(format!("the docker testbed: service {service} is not running after a start (docker logs {})", &id[..12.min(id.len())]))),
            }
        }
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::Other(format!("the docker testbed: not healthy within {} s: {}", wait.as_secs(), waiting.join(", "))));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let network = find_network(&d, &ids).await?;
    let mut containers = BTreeMap::new();
    for (id, service) in &ids {
        if containers.contains_key(service) {
            return Err(Error::Other(format!("the docker testbed: project {project} has more than one container of service {service} (scaled?); kaspec needs one")));
        }
        containers.insert(service.clone(), inspect(&d, id, &network.id).await?);
    }
    Ok(Stack { project, network, containers, engine })
}

/// The network every kaspec container is on: the one labelled
/// [`NETWORK_LABEL`], else the only one they share. It must be a bridge on
/// this host.
async fn find_network(d: &Docker, ids: &[(String, String)]) -> Result<BridgeNet> {
    let mut shared: Option<Vec<String>> = None;
    for (id, _) in ids {
        let c = inspect_raw(d, id).await?;
        let nets: Vec<String> = c
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.values().filter_map(|e| e.network_id.clone()).collect())
            .unwrap_or_default();
        shared = Some(match shared {
            None => nets,
            Some(prev) => prev.into_iter().filter(|n| nets.contains(n)).collect(),
        });
    }
    let candidates = shared.unwrap_or_default();
    let mut nets = Vec::new();
    for id in &candidates {
        nets.push(d.inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>).await.map_err(|e| api("inspecting a network", e))?);
    }
    let labelled: Vec<&bollard::models::Network> =
        nets.iter().filter(|n| n.labels.as_ref().is_some_and(|l| l.contains_key(NETWORK_LABEL))).collect();
    let net = match (labelled.as_slice(), nets.as_slice()) {
        ([one], _) => *one,
        (_, [one]) => one,
        _ => {
            return Err(Error::Other(format!(
                "the docker testbed: the kaspec containers share {} networks and none (or several) is labelled {NETWORK_LABEL}",
                nets.len()
            )))
        }
    };
    let name = net.name.clone().unwrap_or_default();
    let id = net.id.clone().unwrap_or_default();
    if net.driver.as_deref() != Some("bridge") {
        return Err(Error::Other(format!(
            "the docker testbed: network {name} uses driver {}; kaspec joins bridge networks only",
            net.driver.clone().unwrap_or_default()
        )));
    }
    let bridge = net
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
        .unwrap_or_else(|| format!("br-{}", &id[..12.min(id.len())]));
    if !std::path::Path::new("/sys/class/net").join(&bridge).exists() {
        return Err(Error::Other(format!(
            "the docker testbed: the bridge {bridge} of network {name} is not on this host (a remote daemon, or one in a VM?); kaspec must run on the daemon's host"
        )));
    }
    let (subnet, prefix) = net
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .and_then(|c| c.iter().find_map(|c| c.subnet.as_deref().and_then(parse_cidr)))
        .ok_or_else(|| Error::Other(format!("the docker testbed: network {name} has no IPv4 subnet")))?;
    if prefix > 29 {
        return Err(Error::Other(format!("the docker testbed: network {name}'s subnet {subnet}/{prefix} is too small (kaspec needs free addresses on it)")));
    }
    let mut used: Vec<Ipv4Addr> = net
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .map(|c| c.iter().filter_map(|c| c.gateway.as_deref().and_then(|g| g.parse().ok())).collect())
        .unwrap_or_default();
    for c in net.containers.as_ref().map(|m| m.values().collect::<Vec<_>>()).unwrap_or_default() {
        if let Some((a, _)) = c.ipv4_address.as_deref().and_then(parse_cidr) {
            used.push(a);
        }
    }
    Ok(BridgeNet { id, name, bridge, subnet, prefix, used })
}

/// `a.b.c.d/n`
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, n) = s.split_once('/')?;
    let n: u8 = n.parse().ok().filter(|n| *n <= 32)?;
    Some((a.parse().ok()?, n))
}

/// Addresses to try for a router on `net`, from the top of the subnet down
/// (Docker hands out addresses from the bottom), skipping used ones.
pub fn router_candidates(net: &BridgeNet) -> Vec<Ipv4Addr> {
    let base = u32::from(net.subnet);
    let size = 1u32 << (32 - net.prefix as u32);
    let last = base + size - 2; // below the broadcast address
    let lowest = base + size / 2; // the upper half only
    (lowest..=last).rev().map(Ipv4Addr::from).filter(|a| !net.used.contains(a)).take(1024).collect()
}

/// The host's pid of the process whose pid is `inner` inside the pid
/// namespace of the container whose main process is `main` (e.g. a
/// PostgreSQL backend's `pg_backend_pid()`), from /proc's NSpid lines.
pub fn host_pid(main: u32, inner: i32) -> Option<u32> {
    let ns = std::fs::read_link(format!("/proc/{main}/ns/pid")).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
        let last: i32 = nspid.split_whitespace().last()?.parse().ok()?;
        (last == inner && std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()? == ns).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_addresses_come_from_the_top_of_the_subnet_and_skip_used_ones() {
        let net = BridgeNet {
            id: "x".into(),
            name: "n".into(),
            bridge: "br-x".into(),
            subnet: Ipv4Addr::new(172, 18, 0, 0),
            prefix: 24,
            used: vec![Ipv4Addr::new(172, 18, 0, 1), Ipv4Addr::new(172, 18, 0, 254)],
        };
        let c = router_candidates(&net);
        assert_eq!(c[0], Ipv4Addr::new(172, 18, 0, 253));
        assert!(c.iter().all(|a| u32::from(*a) >= u32::from(Ipv4Addr::new(172, 18, 0, 128))));
        assert!(!c.contains(&Ipv4Addr::new(172, 18, 0, 255)), "never the broadcast address");
        assert_eq!(parse_cidr("10.1.2.0/23"), Some((Ipv4Addr::new(10, 1, 2, 0), 23)));
        assert_eq!(parse_cidr("10.1.2.0/33"), None);
    }
}
