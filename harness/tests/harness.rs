//! The harness's integration tests: one binary (try not to add more —
//! every binary links the harness again). Real namespaces, real processes:
//! needs root (CAP_NET_ADMIN), `ip` and `nft` (fixtures/bootstrap.sh). Only
//! the harness is used here; tests that need a case of the suites or a
//! kaspec-serve binary are in suites/tests.
//!
//! Index:
//! - `testbed`: a testbed leaves nothing behind — dropped, or unwound by a
//!   panicking case.
//! - `fault`: a fault that cannot be applied is a hard error naming the
//!   router, never a verdict; the rules committed over netlink are the ones
//!   reported (`nft list` reads them back as their text), and healing
//!   removes them; so is the NAT set-up; views of one testbed (the leases
//!   of a shared server, `--jobs`) fault and heal only their own flows.
//! - `topology`: the five-host proxy topology builds, carries traffic end
//!   to end through a proxy, a fault on each router cuts only its own
//!   level, and nothing is left behind.
//! - `server`: a server that does not start is a harness error with its log
//!   tail; a missing server binary is named with its package.
//! - `observe`: the release observer reads the flow's socket on both hosts.

use std::path::PathBuf;

/// Where the tests' testbeds write their server logs.
fn run_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kaspec-test-runs")
}

mod testbed {
    use super::run_dir;

    fn namespaces_with(tag: &str) -> Vec<String> {
        kaspec_harness::cleanup::existing_namespaces().into_iter().filter(|n| n.contains(tag)).collect()
    }

    #[test]
    fn testbed_drop_removes_namespaces_and_processes() {
        let dir = run_dir();
        let tb = kaspec_harness::testbed::Testbed::new(&dir).unwrap();
        let tag = tb.tag.clone();
        assert_eq!(namespaces_with(&tag).len(), 3);
        let mut sleeper = tb.server.command("sleep", &tag).unwrap().arg("600").spawn().unwrap();
        assert_eq!(kaspec_harness::cleanup::pids_in(&tb.server.ns), vec![sleeper.id() as i32]);
        drop(tb);
        assert!(namespaces_with(&tag).is_empty());
        let status = sleeper.wait().unwrap();
        assert!(!status.success(), "the process in the namespace was stopped");
    }

    fn tagged(tag: &str) -> Vec<i32> {
        kaspec_harness::cleanup::tagged_processes().into_iter().filter(|(_, t)| t == tag).map(|(p, _)| p).collect()
    }

    /// Issue 14 (the leaked `epmd -daemon`): a server that keeps starting
    /// daemons which leave its namespace (a double fork into a namespace of
    /// their own, as `epmd -daemon` outlives the name of its) is not raced
    /// by the teardown: everything carrying the tag is gone after the drop.
    #[test]
    fn teardown_kills_tagged_processes_started_meanwhile_and_outside_the_namespace() {
        let dir = run_dir();
        let tb = kaspec_harness::testbed::Testbed::new(&dir).unwrap();
        let tag = tb.tag.clone();
        let script = "trap '' TERM; while :; do (unshare -n sleep 600 &); sleep 0.05; done";
        let mut spawner = tb.server.command("sh", &tag).unwrap().args(["-c", script]).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tagged(&tag).len() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let escaped: Vec<i32> = tagged(&tag).into_iter().filter(|p| !kaspec_harness::cleanup::pids_in(&tb.server.ns).contains(p)).collect();
        assert!(!escaped.is_empty(), "the daemons live outside the testbed's namespaces");
        drop(tb);
        let _ = spawner.wait();
        assert!(namespaces_with(&tag).is_empty());
        assert!(tagged(&tag).is_empty(), "left carrying tag {tag}: {:?}", tagged(&tag));
    }

    #[test]
    fn testbed_is_removed_when_a_case_panics() {
        let dir = run_dir();
        let (tx, rx) = std::sync::mpsc::channel();
        let r = std::thread::spawn(move || {
            let tb = kaspec_harness::testbed::Testbed::new(&dir).unwrap();
            tx.send(tb.tag.clone()).unwrap();
            panic!("a case blew up");
        })
        .join();
        assert!(r.is_err());
        let tag = rx.recv().unwrap();
        assert!(namespaces_with(&tag).is_empty(), "left: {:?}", namespaces_with(&tag));
    }
}

mod fault {
    use super::run_dir;
    use kaspec_harness::fault::FaultKind;

    #[test]
    fn faults_are_hard_errors_when_they_cannot_apply() {
        // A flow nft cannot express (port 0 on the server side is fine; a
        // missing table is not): remove the table behind the testbed's back.
        let dir = run_dir();
        let tb = kaspec_harness::testbed::Testbed::new(&dir).unwrap();
        let table = format!("kaspec_{}", tb.tag);
        kaspec_harness::cmd::run("test", "ip", &["netns", "exec", &tb.router.ns, "nft", "delete", "table", "inet", &table], None).unwrap();
        let flow = kaspec_harness::fault::Flow { client: "198.18.0.2:40000".parse().unwrap(), server: "198.19.0.2:7000".parse().unwrap() };
        let err = tb.apply_fault(FaultKind::Blackhole, &flow, None).unwrap_err().to_string();
        assert!(err.contains("applying fault blackhole") && err.contains(&tb.router.ns), "{err}");
    }

    /// The `faults` chain as `nft` lists it: one rule a line, without the
    /// counters' values.
    fn listed(tb: &kaspec_harness::testbed::Testbed) -> Vec<String> {
        let table = format!("kaspec_{}", tb.tag);
        let out = kaspec_harness::cmd::run("test", "ip", &["netns", "exec", &tb.router.ns, "nft", "list", "chain", "inet", &table, "faults"], None).unwrap();
        out.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("ip "))
            .map(|l| l.replace(" packets 0 bytes 0", ""))
            .collect()
    }

    #[test]
    fn rules_committed_over_netlink_read_back_as_reported_and_heal_removes_them() {
        let dir = run_dir();
        let tb = kaspec_harness::testbed::Testbed::new(&dir).unwrap();
        let table = format!("kaspec_{}", tb.tag);
        let head = kaspec_harness::cmd::run("test", "ip", &["netns", "exec", &tb.router.ns, "nft", "list", "table", "inet", &table], None).unwrap();
        assert!(head.contains(&format!("comment \"kaspec run {}\"", tb.tag)), "{head}");
        assert!(head.contains("type filter hook forward priority filter; policy accept;"), "{head}");
        for (flow, kinds) in [
            ("198.18.0.2:40000", [FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset]),
            ("198.18.0.2:0", [FaultKind::Blackhole, FaultKind::BlackholeUp, FaultKind::BlackholeDown, FaultKind::Reset]),
        ] {
            let flow = kaspec_harness::fault::Flow { client: flow.parse().unwrap(), server: "198.19.0.2:7000".parse().unwrap() };
            for kind in kinds {
                let applied = tb.apply_fault(kind, &flow, None).unwrap();
                assert!(!applied.rules.is_empty());
                assert_eq!(listed(&tb), applied.rules, "{kind} on {flow:?}");
                tb.heal().unwrap();
                assert!(listed(&tb).is_empty(), "healed");
            }
        }
    }

    #[test]
    fn the_nat_set_up_committed_over_netlink_reads_back_as_nft_writes_it() {
        let dir = run_dir();
        let tb = kaspec_harness::testbed::Testbed::with_nat(&dir, Some(std::time::Duration::from_secs(3))).unwrap();
        let table = format!("kaspec_{}", tb.tag);
        let out = kaspec_harness::cmd::run("test", "ip", &["netns", "exec", &tb.router.ns, "nft", "list", "table", "inet", &table], None).unwrap();
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let forgotten = format!("ct state invalid counter packets 0 bytes 0 drop comment \"kaspec {} nat: forgotten flow\"", tb.tag);
        for want in [
            "policy = { established : 3, fin_wait : 3, close_wait : 3, last_ack : 3 }",
            "type filter hook prerouting priority filter; policy accept;",
            "ct timeout set \"nat-idle\"",
            "type filter hook forward priority filter - 10; policy accept;",
            "type filter hook input priority filter - 10; policy accept;",
            &forgotten,
            "type nat hook postrouting priority srcnat; policy accept;",
            &format!("oifname \"kr-{}-s\" masquerade", tb.tag),
        ] {
            assert!(lines.contains(&want), "missing `{want}` in:\n{out}");
        }
        assert_eq!(lines.iter().filter(|l| **l == forgotten).count(), 2, "forward and input");
    }

    /// Whether `conn` still carries data: one byte out, an echo back
    /// within `ms` (Err: the kind of failure).
    fn echoes_within(conn: &mut std::net::TcpStream, ms: u64) -> Result<(), std::io::ErrorKind> {
        use std::io::{Read, Write};
        conn.set_read_timeout(Some(std::time::Duration::from_millis(ms))).unwrap();
        conn.write_all(b"x").map_err(|e| e.kind())?;
        let mut b = [0u8; 1];
        match conn.read(&mut b) {
            Ok(1) => Ok(()),
            Ok(_) => Err(std::io::ErrorKind::UnexpectedEof),
            Err(e) => Err(e.kind()),
        }
    }

    fn echoes(conn: &mut std::net::TcpStream) -> Result<(), std::io::ErrorKind> {
        echoes_within(conn, 300)
    }

    /// `--jobs`: two cases leasing one shared server at once each get a
    /// view of its testbed; each view's faults hit only its own flow, and
    /// healing or dropping one view leaves the other's rule in force.
    #[test]
    fn views_of_one_testbed_fault_and_heal_only_their_own_flows() {
        use std::net::{SocketAddr, SocketAddrV4};
        let tb = kaspec_harness::testbed::Testbed::new(&run_dir()).unwrap();
        let server: SocketAddrV4 = "198.19.0.2:7200".parse().unwrap();
        let listener = tb.server.run(move || std::net::TcpListener::bind(server)).unwrap().unwrap();
        std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut c);
                });
            }
        });
        let connect = || tb.client.run(move || std::net::TcpStream::connect(server)).unwrap().unwrap();
        let (mut a, mut b) = (connect(), connect());
        let flow = |c: &std::net::TcpStream| {
            let SocketAddr::V4(client) = c.local_addr().unwrap() else { panic!("IPv4") };
            kaspec_harness::fault::Flow { client, server }
        };
        let (va, vb) = (tb.view(0).unwrap(), tb.view(1).unwrap());
        let tables = || kaspec_harness::cmd::run("test", "ip", &["netns", "exec", &tb.router.ns, "nft", "list", "tables"], None).unwrap();
        assert!(tables().contains(&format!("kaspec_{}_0", tb.tag)) && tables().contains(&format!("kaspec_{}_1", tb.tag)), "{}", tables());

        va.apply_fault(FaultKind::Blackhole, &flow(&a), None).unwrap();
        assert_eq!(echoes(&mut b), Ok(()), "the other lease's flow still carries data");
        assert!(echoes(&mut a).is_err(), "this lease's flow is blackholed");
        vb.apply_fault(FaultKind::Reset, &flow(&b), None).unwrap();
        assert!(echoes(&mut b).is_err(), "the second view's reset is in force");
        // The first lease heals: its flow comes back (its unanswered byte
        // is retransmitted, at the latest 1.4 s after it was sent), the
        // second's reset stays in force.
        va.heal().unwrap();
        drop(va);
        assert_eq!(echoes_within(&mut a, 3000), Ok(()), "healed: flow A carries data again");
        let mut c = connect();
        assert_eq!(echoes(&mut c), Ok(()), "a new flow is not touched by B's rule");
        assert!(!tables().contains(&format!("kaspec_{}_0", tb.tag)), "a dropped view removes its table: {}", tables());
        drop(vb);
        let left: Vec<String> = tables().lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        assert_eq!(left, [format!("table inet kaspec_{}", tb.tag)], "only the testbed's own table is left");
    }
}

mod topology {
    use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
    use std::time::Duration;

    use super::run_dir;
    use kaspec_harness::fault::{FaultKind, Flow};
    use kaspec_harness::testbed::{Testbed, PROXY, PROXY_HOST, ROUTER, UPSTREAM_ROUTER};

    /// Echoes every connection of `listener` (one thread each).
    fn echo(listener: TcpListener) {
        std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut c);
                });
            }
        });
    }

    /// A TCP relay in the proxy host: each accepted connection gets its
    /// own connection to `upstream`, from the proxy's upstream address
    /// (the thread lives in the proxy host, where it connects).
    fn relay(proxy: &kaspec_harness::host::Host, listener: TcpListener, upstream: SocketAddrV4) {
        let _ = proxy.spawn_thread("relay", move || {
            for down in listener.incoming().flatten() {
                // Threads spawned here live in the proxy host too.
                std::thread::spawn(move || {
                    let Ok(up) = TcpStream::connect_timeout(&upstream.into(), Duration::from_secs(2)) else { return };
                    for (mut from, mut to) in [(down.try_clone().unwrap(), up.try_clone().unwrap()), (up, down)] {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Write);
                        });
                    }
                });
            }
        });
    }

    fn round_trip(conn: &mut TcpStream) -> bool {
        use std::io::{Read, Write};
        conn.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
        let mut b = [0u8; 1];
        conn.write_all(b"x").is_ok() && matches!(conn.read(&mut b), Ok(1))
    }

    fn v4(a: SocketAddr) -> SocketAddrV4 {
        let SocketAddr::V4(a) = a else { panic!("IPv4") };
        a
    }

    #[test]
    fn the_proxy_topology_carries_traffic_through_the_proxy_and_each_router_cuts_only_its_level() {
        let tb = Testbed::with_topology(&run_dir(), &PROXY).unwrap();
        let tag = tb.tag.clone();
        let names = tb.namespaces();
        assert_eq!(names.len(), 5, "{names:?}");
        let on_machine = |n: &String| kaspec_harness::cleanup::existing_namespaces().contains(n);
        assert!(names.iter().all(on_machine), "{names:?}");
        let proxy = tb.proxy().unwrap().clone();
        let (front, server) = (SocketAddrV4::new(proxy.addr, 8080), SocketAddrV4::new(tb.server.addr, 9000));
        assert_eq!((front.to_string(), server.to_string()), ("198.19.0.2:8080".into(), "198.19.2.2:9000".into()));
        echo(tb.server.run(move || TcpListener::bind(server)).unwrap().unwrap());
        relay(&proxy, proxy.run(move || TcpListener::bind(front)).unwrap().unwrap(), server);
        // The client reaches the server only through the proxy.
        let direct = tb.client.run(move || TcpStream::connect_timeout(&server.into(), Duration::from_millis(300))).unwrap();
        assert!(direct.is_err(), "no route from the client to the server but the proxy");
        let connect = || tb.client.run(move || TcpStream::connect_timeout(&front.into(), Duration::from_secs(1))).unwrap().unwrap();
        let mut a = connect();
        assert!(round_trip(&mut a), "client -> proxy -> server and back");
        let upstream_src = tb.addr_towards(PROXY_HOST, UPSTREAM_ROUTER).unwrap();
        let upstream = proxy.run(move || TcpStream::connect(server)).unwrap().unwrap();
        assert_eq!(*v4(upstream.local_addr().unwrap()).ip(), upstream_src, "the proxy's upstream address");
        let mut upstream = upstream;

        // The upstream router cuts the proxy -> server level only.
        let up_flow = Flow { client: SocketAddrV4::new(upstream_src, 0), server };
        let applied = tb.apply_fault_at(UPSTREAM_ROUTER, FaultKind::Blackhole, &up_flow, None).unwrap();
        assert!(applied.rules.iter().all(|r| r.contains("198.19.1.2") && r.contains("198.19.2.2")), "{:?}", applied.rules);
        assert!(!round_trip(&mut upstream), "the upstream level is cut");
        assert!(!round_trip(&mut a), "the client's request dies one level down");
        let fresh = tb.client.run(move || TcpStream::connect_timeout(&front.into(), Duration::from_millis(500))).unwrap();
        assert!(fresh.is_ok(), "the client's level is untouched: the proxy still accepts");
        tb.heal().unwrap();

        // The client-side router cuts the client -> proxy level only.
        let mut b = connect();
        assert!(round_trip(&mut b));
        let down_flow = Flow { client: v4(b.local_addr().unwrap()), server: front };
        tb.apply_fault_at(ROUTER, FaultKind::Blackhole, &down_flow, None).unwrap();
        assert!(!round_trip(&mut b), "the client's level is cut");
        let mut c = connect();
        assert!(round_trip(&mut c), "another client flow and the upstream level are untouched");
        let mut up2 = proxy.run(move || TcpStream::connect(server)).unwrap().unwrap();
        assert!(round_trip(&mut up2));
        let err = tb.apply_fault_at("no-such-router", FaultKind::Blackhole, &down_flow, None).unwrap_err().to_string();
        assert!(err.contains("no-such-router") && err.contains("upstream-router"), "{err}");

        drop((a, b, c, upstream, up2));
        drop(tb);
        assert!(!names.iter().any(on_machine), "left: {names:?}");
        let tagged = kaspec_harness::cleanup::tagged_processes();
        assert!(!tagged.iter().any(|(_, t)| *t == tag), "{tagged:?}");
    }

    #[test]
    fn the_proxy_topology_is_removed_when_a_case_panics() {
        let (tx, rx) = std::sync::mpsc::channel();
        let r = std::thread::spawn(move || {
            let tb = Testbed::with_topology(&run_dir(), &PROXY).unwrap();
            tx.send(tb.namespaces()).unwrap();
            panic!("a case blew up");
        })
        .join();
        assert!(r.is_err());
        let names = rx.recv().unwrap();
        let left: Vec<_> = kaspec_harness::cleanup::existing_namespaces().into_iter().filter(|n| names.contains(n)).collect();
        assert!(left.is_empty(), "left: {left:?}");
    }
}

mod server {
    use super::run_dir;

    #[test]
    fn a_server_that_does_not_start_is_a_harness_error_with_its_log_tail() {
        let dir = run_dir();
        let tb = kaspec_harness::testbed::Testbed::new(&dir).unwrap();
        let spec = kaspec_harness::server::ServerSpec {
            name: "broken".into(),
            program: "sh".into(),
            args: vec!["-c".into(), "echo 'Error: unable to open config'; exit 3".into()],
            addr: "198.19.0.2:9".parse().unwrap(),
            ready_within: std::time::Duration::from_secs(3),
            ..Default::default()
        };
        let err = kaspec_harness::server::Server::start(&tb, &spec).err().expect("must not start").to_string();
        assert!(err.contains("server broken did not become ready") && err.contains("exit status: 3"), "{err}");
        assert!(err.contains("unable to open config"), "log tail: {err}");
    }

    #[test]
    fn a_missing_server_binary_is_named_with_its_package() {
        let err = kaspec_harness::caps::require_program("no-such-broker", "no-such-package").unwrap_err().to_string();
        assert!(err.contains("no-such-broker") && err.contains("apt-get install no-such-package"), "{err}");
    }
}

mod observe {
    use std::net::{SocketAddr, SocketAddrV4};

    use super::run_dir;
    use kaspec_harness::observe::release::releases;

    #[test]
    fn releases_reads_the_flow_on_both_hosts() {
        let tb = kaspec_harness::testbed::Testbed::new(&run_dir()).unwrap();
        let server: SocketAddrV4 = "198.19.0.2:7100".parse().unwrap();
        let listener = tb.server.run(move || std::net::TcpListener::bind(server)).unwrap().unwrap();
        let client = tb.client.run(move || std::net::TcpStream::connect(server)).unwrap().unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let SocketAddr::V4(local) = client.local_addr().unwrap() else { panic!("IPv4") };
        let open = releases(&tb, local, server);
        let (c, s) = (open.client.expect("client side read"), open.server.expect("server side read"));
        assert_eq!((c.state.as_str(), c.clean), ("ESTABLISHED", false), "{c:?}");
        assert_eq!((s.state.as_str(), s.clean), ("ESTABLISHED", false), "{s:?}");
        drop(client);
        drop(accepted);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let closed = releases(&tb, local, server);
        assert!(closed.client.as_ref().is_some_and(|r| r.clean), "{closed:?}");
        assert!(closed.server.as_ref().is_some_and(|r| r.clean), "{closed:?}");
    }
}
