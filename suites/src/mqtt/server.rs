//! Mosquitto in the server host, configured from fixtures/mosquitto/kaspec.conf
//! (or docker-compose.yml's mosquitto service, checked to mount that file).

use super::*;

/// `mosquitto -h` prints `mosquitto version X.Y.Z` first.
pub fn broker_implementation(program: &std::path::Path) -> Implementation {
    let out = std::process::Command::new(program).arg("-h").output();
    let version = out
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.lines().find_map(|l| {
                l.strip_prefix("mosquitto version ")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    Implementation::new("mosquitto", version)
}

pub fn broker_config(fixtures: &std::path::Path) -> PathBuf {
    fixtures.join("mosquitto/kaspec.conf")
}

/// The broker's program: Mosquitto here, or the container's on the docker
/// testbed (its version the image's).
pub fn broker_program(ctx: &Ctx) -> Result<PathBuf> {
    match ctx.docker {
        None => require_program("mosquitto", "mosquitto"),
        Some(_) => Ok("mosquitto".into()),
    }
}

/// Mosquitto with fixtures/'s configuration on `tb` (docker-compose.yml's
/// mosquitto, checked to mount that file, on the docker testbed).
pub fn start_broker(
    ctx: &Ctx,
    tb: &kaspec_harness::testbed::Testbed,
    program: PathBuf,
) -> Result<(Server, SocketAddrV4)> {
    let conf = broker_config(&ctx.fixtures);
    if !conf.is_file() {
        return Err(Error::Other(format!(
            "broker configuration {} is missing",
            conf.display()
        )));
    }
    let addr = SocketAddrV4::new(tb.server.addr, tb.server_port(PORT));
    let broker = Server::start(
        tb,
        &ServerSpec {
            name: "mosquitto".into(),
            program,
            args: vec!["-c".into(), conf.display().to_string()],
            addr,
            ready_within: Duration::from_secs(10),
            container: Some(ContainerCheck {
                service: "mosquitto".into(),
                files: vec![("/mosquitto/config/mosquitto.conf".into(), conf.clone())],
                ..Default::default()
            }),
            ..Default::default()
        },
    )?;
    Ok((broker, addr))
}
