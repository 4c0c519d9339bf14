//! RabbitMQ under test: the main broker and one that proposes heartbeat 0,
//! each a throw-away node (with its own epmd) shared by the run's cases, its
//! heartbeat read from its fixtures/rabbitmq/ configuration.

use super::*;

/// One RabbitMQ node of the shared testbed.
#[derive(Debug, Clone, Copy)]
pub struct Broker {
    /// The shared group's name (also its log's and data directory's).
    pub group: &'static str,
    /// Its configuration, under `fixtures/rabbitmq/`.
    pub conf: &'static str,
    pub port: u16,
    pub dist_port: u16,
    pub epmd_port: u16,
    pub node: &'static str,
}

/// What a node of an older kaspec (named `rabbit@localhost`, run in
/// kaspec's working directory) or one that crashes before it is told where
/// to write may leave: Mnesia's core dump, named after the node.
pub const STRAYS: &[kaspec_harness::cleanup::Stray] = &[
    kaspec_harness::cleanup::Stray {
        what: "RabbitMQ (Mnesia) crash dump of a kaspec node",
        prefix: "MnesiaCore.kaspec-rabbit",
        contains: b"",
    },
    // An older kaspec's node name: only with a kaspec data directory inside.
    kaspec_harness::cleanup::Stray {
        what: "RabbitMQ (Mnesia) crash dump of a kaspec node",
        prefix: "MnesiaCore.rabbit",
        contains: b"/kaspec-",
    },
];

/// The broker of the idle case and of negotiation case 1.
pub const MAIN: Broker = Broker {
    group: "rabbitmq",
    conf: "rabbitmq.conf",
    port: 5672,
    dist_port: 25672,
    epmd_port: 4369,
    node: "kaspec-rabbit@localhost",
};
/// A second node that proposes heartbeat 0 (negotiation case 2).
pub const HB0: Broker = Broker {
    group: "rabbitmq-hb0",
    conf: "rabbitmq-hb0.conf",
    port: 5673,
    dist_port: 25673,
    epmd_port: 4370,
    node: "kaspec-rabbit-hb0@localhost",
};

/// Erlang's epmd, which every node registers with.
pub(crate) fn epmd_program() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/erlang")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("erts-"))
        .map(|e| e.path().join("bin/epmd"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The `heartbeat` a configuration file sets (RabbitMQ's default if none).
pub fn heartbeat_in_conf(text: &str) -> std::result::Result<u16, String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == "heartbeat" {
                return v.trim().parse().map_err(|_| {
                    format!("heartbeat = {}: expected whole seconds 0..65535", v.trim())
                });
            }
        }
    }
    Ok(DEFAULT_SERVER_HEARTBEAT)
}

/// What the broker proposes in Connection.Tune, from its fixture.
pub fn server_heartbeat(fixtures: &Path, broker: &Broker) -> Result<u16> {
    let path = fixtures.join("rabbitmq").join(broker.conf);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    heartbeat_in_conf(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

/// lapin's negotiation (channel.rs `tune_connection_configuration`): a
/// request of 0 (or none) takes the server's value; both non-zero, the lower.
pub fn effective_heartbeat(request: u16, server: u16) -> u16 {
    if request == 0 || (server != 0 && server < request) {
        server
    } else {
        request
    }
}

impl Broker {
    /// The node's environment: everything in the throw-away directory `d`.
    fn env(&self, tb: &Testbed, d: &Path) -> Vec<(String, String)> {
        let p = |s: &str| d.join(s).display().to_string();
        vec![
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("HOME".into(), p("home")),
            (kaspec_harness::cleanup::TAG_VAR.into(), tb.tag.clone()),
            // Never start an `epmd -daemon` (it would escape the teardown):
            // our own epmd is the node's; without it the node fails to start.
            ("ERL_FLAGS".into(), "-start_epmd false".into()),
            // Crash dumps in the throw-away directory (the working
            // directory, given by `env -C`, takes Mnesia's core dump).
            ("ERL_CRASH_DUMP".into(), p("erl_crash.dump")),
            // Run the VM in place of the script, so the server's pid is
            // beam's own (freeze and crash signal it).
            ("RUNNING_UNDER_SYSTEMD".into(), "1".into()),
            ("ERL_EPMD_PORT".into(), self.epmd_port.to_string()),
            ("RABBITMQ_NODENAME".into(), self.node.into()),
            (
                "RABBITMQ_NODE_IP_ADDRESS".into(),
                tb.server.addr.to_string(),
            ),
            ("RABBITMQ_NODE_PORT".into(), self.port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), self.dist_port.to_string()),
            ("RABBITMQ_CONF_ENV_FILE".into(), p("rabbitmq-env.conf")),
            ("RABBITMQ_CONFIG_FILE".into(), p("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE".into(), p("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), p("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE".into(), p("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), p("log")),
            ("RABBITMQ_LOGS".into(), "-".into()),
            ("RABBITMQ_PID_FILE".into(), p("rabbit.pid")),
            ("RABBITMQ_MOTD_FILE".into(), p("motd")),
        ]
    }

    fn dir(&self, tb: &Testbed) -> PathBuf {
        std::env::temp_dir().join(format!(
            "{}{}-{}",
            kaspec_harness::cleanup::NS_PREFIX,
            tb.tag,
            self.group
        ))
    }

    /// `env -i VAR=... program args...`: the node sees only its own
    /// environment, never the caller's RABBITMQ_* or HOME.
    fn clean_env_args(&self, tb: &Testbed, program: &str, args: &[&str]) -> Vec<String> {
        let d = self.dir(tb);
        // The node's working directory is its throw-away directory: a
        // `MnesiaCore.*` dump lands there, never in kaspec's.
        let mut v = vec!["-i".to_string(), "-C".into(), d.display().to_string()];
        v.extend(
            self.env(tb, &d)
                .into_iter()
                .map(|(k, val)| format!("{k}={val}")),
        );
        v.push(program.into());
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// Starts epmd and the node in the testbed's server host (the shared
    /// group's start-up).
    pub fn start(&self, fixtures: &Path, tb: &Testbed) -> Result<Started> {
        if tb.is_docker() {
            // docker-compose.yml's rabbitmq mounts fixtures/rabbitmq/rabbitmq.conf (this broker's file, or the check says it differs).
            let node = Server::start(
                tb,
                &ServerSpec {
                    name: self.group.into(),
                    addr: SocketAddrV4::new(tb.server.addr, tb.server_port(self.port)),
                    ready_within: Duration::from_secs(90),
                    container: Some(ContainerCheck {
                        service: "rabbitmq".into(),
                        files: vec![(
                            "/etc/rabbitmq/rabbitmq.conf".into(),
                            fixtures.join("rabbitmq").join(self.conf),
                        )],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )?;
            return Ok(Started {
                processes: vec![node],
                dirs: Vec::new(),
            });
        }
        require_rabbitmq()?;
        let epmd = epmd_program().expect("checked");
        let env_program = kaspec_harness::caps::which("env")
            .ok_or_else(|| Error::Other("`env` not found".into()))?;
        let src = fixtures.join("rabbitmq").join(self.conf);
        let conf = std::fs::read_to_string(&src)
            .map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
        let d = kaspec_harness::cleanup::scratch_dir(&tb.tag, self.group)
            .map_err(|e| Error::io(format!("creating a data directory for {}", self.group), e))?;
        let started = (|| -> Result<Vec<Server>> {
            let io = |what: &str, e| Error::io(format!("{what} in {}", d.display()), e);
            for sub in ["home", "mnesia", "log"] {
                std::fs::create_dir(d.join(sub)).map_err(|e| io("creating a directory", e))?;
            }
            let listener = format!(
                "\n# added by kaspec\nlisteners.tcp.default = {}:{}\n",
                tb.server.addr, self.port
            );
            std::fs::write(d.join("rabbitmq.conf"), conf + &listener)
                .map_err(|e| io("writing rabbitmq.conf", e))?;
            std::fs::write(d.join("enabled_plugins"), "[].\n")
                .map_err(|e| io("writing enabled_plugins", e))?;
            // epmd in the foreground, as our child (else beam starts a
            // detached `epmd -daemon`).
            let epmd = Server::start(
                tb,
                &ServerSpec {
                    name: format!("{}-epmd", self.group),
                    program: epmd,
                    args: vec![
                        "-address".into(),
                        format!("127.0.0.1,{}", tb.server.addr),
                        "-port".into(),
                        self.epmd_port.to_string(),
                    ],
                    addr: SocketAddrV4::new(tb.server.addr, self.epmd_port),
                    ready_within: Duration::from_secs(10),
                    ..Default::default()
                },
            )?;
            let node = Server::start(
                tb,
                &ServerSpec {
                    name: self.group.into(),
                    program: env_program,
                    args: self.clean_env_args(tb, RABBITMQ_SERVER, &[]),
                    addr: SocketAddrV4::new(tb.server.addr, self.port),
                    ready_within: Duration::from_secs(90),
                    ready_log: Some("Server startup complete".into()),
                    ..Default::default()
                },
            )?;
            Ok(vec![epmd, node])
        })();
        match started {
            Ok(processes) => Ok(Started {
                processes,
                dirs: vec![d],
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&d);
                Err(e)
            }
        }
    }

    /// The heartbeat timeout (s) the node uses for each connection, by the
    /// client's port (`rabbitmqctl list_connections peer_port timeout`).
    pub fn timeouts(&self, tb: &Testbed) -> Result<Vec<(u16, u16)>> {
        let env_program = kaspec_harness::caps::which("env")
            .ok_or_else(|| Error::Other("`env` not found".into()))?;
        let args = self.clean_env_args(
            tb,
            RABBITMQCTL,
            &[
                "-q",
                "--no-table-headers",
                "list_connections",
                "peer_port",
                "timeout",
            ],
        );
        let out = tb
            .server
            .command(&env_program, &tb.tag)?
            .args(&args)
            .output()
            .map_err(|e| Error::io("running rabbitmqctl list_connections", e))?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "rabbitmqctl list_connections failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .collect())
    }
}

pub(crate) fn lease<'a>(ctx: &'a Ctx, broker: &'static Broker) -> Result<crate::shared::Lease<'a>> {
    ctx.shared.lease_in(
        &ctx.shared_bed("rabbitmq"),
        broker.group,
        || ctx.testbed_for("rabbitmq"),
        |tb| broker.start(&ctx.fixtures, tb),
    )
}
