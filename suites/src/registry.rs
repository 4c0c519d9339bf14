//! Every protocol kaspec measures, in report order. The only module that
//! imports protocol modules: a new protocol is its folder plus one line here
//! (and its `mod` line in lib.rs).

use crate::case::CaseDef;
use crate::config::Config;
use crate::protocol::Protocol;

pub static PROTOCOLS: &[&Protocol] = &[
    &crate::tcp::PROTOCOL,
    &crate::mqtt::PROTOCOL,
    &crate::websocket::PROTOCOL,
    &crate::grpc::PROTOCOL,
    &crate::postgres::PROTOCOL,
    &crate::amqp::PROTOCOL,
    &crate::redis::PROTOCOL,
    &crate::nats::PROTOCOL,
    &crate::ssh::PROTOCOL,
    &crate::mariadb::PROTOCOL,
    &crate::http::PROTOCOL,
];

/// The client configuration over every protocol's knobs, each at its
/// default: what `--set` and profiles start from.
pub fn config() -> Config {
    Config::new(
        PROTOCOLS
            .iter()
            .flat_map(|p| p.knobs.iter().copied())
            .chain(SHARED_KNOBS.iter().copied()),
    )
}

/// Knobs no single protocol owns: the fleet cases' size.
pub static SHARED_KNOBS: &[&crate::config::Key] = &[&crate::drive::fleet::CONNECTIONS];

/// Files a protocol's servers may leave outside the run's scratch
/// directories, which `kaspec clean` removes.
pub fn stray_files() -> Vec<kaspec_harness::cleanup::Stray> {
    crate::amqp::STRAYS.to_vec()
}

/// Every case, in a stable order.
pub fn all() -> Vec<&'static CaseDef> {
    PROTOCOLS
        .iter()
        .flat_map(|p| p.cases.iter().copied())
        .collect()
}

/// The cases whose id starts with any of `prefixes` (all if none). A prefix
/// that selects nothing is an error naming it and the protocols there are.
pub fn select(prefixes: &[String]) -> Result<Vec<&'static CaseDef>, String> {
    let cases = all();
    for p in prefixes {
        if !cases.iter().any(|c| c.id.starts_with(p.as_str())) {
            return Err(format!(
                "no case id starts with `{p}` (protocols: {}; `kaspec list` shows every id)",
                PROTOCOLS
                    .iter()
                    .map(|p| format!("{}/", p.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(cases
        .into_iter()
        .filter(|c| prefixes.is_empty() || prefixes.iter().any(|p| c.id.starts_with(p.as_str())))
        .collect())
}

/// The protocols with a case that runs an external client (`--client`).
pub fn external_protocols() -> Vec<&'static str> {
    PROTOCOLS
        .iter()
        .filter(|p| !p.external.is_empty())
        .map(|p| p.name)
        .collect()
}

/// Of `cases`, those that run `adapter`'s program in place of their library
/// client; none is an error naming the adapter and the cases that would.
pub fn with_client(
    cases: &[&'static CaseDef],
    adapter: &crate::config::adapter::Adapter,
) -> Result<Vec<&'static CaseDef>, String> {
    let takes = |c: &CaseDef| {
        PROTOCOLS
            .iter()
            .any(|p| p.name == adapter.protocol && p.external.contains(&c.id))
    };
    let kept: Vec<&'static CaseDef> = cases.iter().copied().filter(|c| takes(c)).collect();
    if kept.is_empty() {
        let could: Vec<&str> = all()
            .into_iter()
            .filter(|c| takes(c))
            .map(|c| c.id)
            .collect();
        return Err(format!(
            "--client {}: no selected case runs a {} client (those that do: {})",
            adapter.file.display(),
            adapter.protocol,
            could.join(", ")
        ));
    }
    Ok(kept)
}

/// The shipped adapters (`fixtures/clients/*.toml`) that a run without
/// `--client` runs beside the library clients, in name order, and a note
/// for each one left out (its program is not installed). A shipped file
/// that does not load is a bug: its error.
pub fn shipped_clients(
    fixtures: &std::path::Path,
    config: &Config,
) -> Result<(Vec<crate::config::adapter::Adapter>, Vec<String>), String> {
    let dir = fixtures.join("clients");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: cannot list it: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let (mut kept, mut notes) = (Vec::new(), Vec::new());
    for f in files {
        let a = crate::config::adapter::Adapter::load(&f, &external_protocols(), config)?;
        match a.installed() {
            Ok(()) => kept.push(a),
            Err(why) => notes.push(format!(
                "shipped client {} left out: {why} (fixtures/bootstrap.sh installs it)",
                a.name
            )),
        }
    }
    Ok((kept, notes))
}

/// Checks, before anything starts, that every server the selected cases need
/// is installed; the error names what is missing and how to install it.
pub fn check_prerequisites(cases: &[&CaseDef]) -> kaspec_harness::Result<()> {
    kaspec_harness::caps::require_base()?;
    for p in PROTOCOLS {
        if cases.iter().any(|c| c.protocol == p.name) {
            (p.prerequisites)()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Docker;
    use kaspec_harness::fault::FaultKind;

    #[test]
    fn ids_are_unique_and_belong_to_their_protocol() {
        let mut seen = std::collections::BTreeSet::new();
        for p in PROTOCOLS {
            for c in p.cases {
                assert!(seen.insert(c.id), "{} twice", c.id);
                assert_eq!(c.protocol, p.name, "{}", c.id);
                assert!(c.id.starts_with(&format!("{}/", p.name)), "{}", c.id);
                assert!(!c.quote.trim().is_empty(), "{}: no quoted sentence", c.id);
            }
        }
    }

    #[test]
    fn every_knob_is_named_after_its_protocol_and_declared_once() {
        for p in PROTOCOLS {
            for k in p.knobs {
                assert!(
                    k.name.starts_with(&format!("{}.", p.name)),
                    "{} declares {}",
                    p.name,
                    k.name
                );
                assert!(!k.doc.is_empty(), "{}: no doc", k.name);
            }
        }
        // Config::new refuses a name twice.
        assert_eq!(
            config().keys().len(),
            PROTOCOLS.iter().map(|p| p.knobs.len()).sum::<usize>() + SHARED_KNOBS.len()
        );
    }

    #[test]
    fn the_shipped_deviations_parse_and_name_real_cases() {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/deviations.toml");
        let ids: Vec<&str> = all().iter().map(|c| c.id).collect();
        for d in crate::deviations::load(&p).unwrap() {
            let named = match &d.case {
                crate::deviations::CaseIds::One(c) => vec![c.clone()],
                crate::deviations::CaseIds::Many(cs) => cs.clone(),
            };
            for c in named {
                assert!(ids.contains(&c.as_str()), "unknown case {c}");
            }
            assert!(d.side == "client" || d.side == "server");
        }
    }

    #[test]
    fn every_case_says_where_it_runs_on_docker() {
        let compose = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml"),
        )
        .unwrap();
        for c in all() {
            match c.docker {
                Docker::Service { .. } | Docker::Services(_) => {
                    for (service, implementation) in c.docker.services() {
                        assert!(
                            !service.is_empty() && !implementation.is_empty(),
                            "{}",
                            c.id
                        );
                        assert!(
                            compose.contains(&format!("org.kaspec.service: {service}\n")),
                            "{}: no service {service} in docker-compose.yml",
                            c.id
                        );
                    }
                    assert_eq!(c.not_on_docker(FaultKind::Blackhole), None);
                    assert_eq!(c.not_on_docker(FaultKind::Reset), None);
                    assert!(c
                        .not_on_docker(FaultKind::Crash)
                        .is_some_and(|r| r.contains("compose owns")));
                }
                Docker::NotHere(why) => {
                    assert!(!why.is_empty(), "{}", c.id);
                    assert_eq!(
                        c.not_on_docker(FaultKind::None),
                        Some(format!("not on the docker testbed: {why}"))
                    );
                }
            }
        }
    }
}
