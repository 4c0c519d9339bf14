//! An adapter's `[minimum]`: the least value of a duration knob its program
//! takes (mosquitto_sub refuses a Keep Alive under 5 s). `--client` with less
//! is refused in one line; a default run raises it for that adapter's run,
//! with a note.

use std::time::Duration;

use super::adapter::{parse_duration, Adapter};
use super::{one_line, Config, Kind};

/// `[minimum]` as written: (knob, least).
pub(super) fn parse(
    table: Option<&toml::Value>,
    config: &Config,
) -> Result<Vec<(&'static str, Duration)>, String> {
    let mut minimum = Vec::new();
    match table {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (k, v) in t {
                let key = config
                    .keys()
                    .iter()
                    .find(|key| key.name == k && matches!(key.kind, Kind::Secs { .. } | Kind::Millis { .. }))
                    .ok_or_else(|| format!("`minimum.{}`: not a duration knob (allowed: a duration knob such as mqtt.keep_alive)", one_line(k)))?;
                let d = v
                    .as_str()
                    .and_then(parse_duration)
                    .ok_or_else(|| format!("`minimum.{k}` = {}: must be a duration (\"5s\", \"500ms\")", one_line(&v.to_string())))?;
                minimum.push((key.name, d));
            }
        }
        Some(v) => {
            return Err(format!(
                "`minimum` = {}: must be a table [minimum] of duration knobs (\"mqtt.keep_alive\" = \"5s\")",
                one_line(&v.to_string())
            ))
        }
    }
    Ok(minimum)
}

impl Adapter {
    /// The knobs of `config` below the program's `[minimum]`: (knob, the
    /// run's value, the least it takes).
    fn below_minimum(&self, config: &Config) -> Vec<(&'static str, Duration, Duration)> {
        self.minimum
            .iter()
            .filter_map(|(name, least)| {
                let key = config.keys().iter().find(|k| k.name == *name)?;
                let v = config.dur(key);
                (v < *least).then_some((*name, v, *least))
            })
            .collect()
    }

    /// Whether the run's knobs are within what the program takes
    /// (`[minimum]`); the error names the knob, its value and the least.
    pub fn fits(&self, config: &Config) -> Result<(), String> {
        match self.below_minimum(config).first() {
            None => Ok(()),
            Some((name, v, least)) => {
                let least = humantime::format_duration(*least);
                Err(format!(
                    "client adapter {}: {name} = {}: the program takes at least {least} (`[minimum]`; e.g. --set {name}={least})",
                    self.file.display(),
                    humantime::format_duration(*v),
                ))
            }
        }
    }

    /// `config` with each knob below its `[minimum]` raised to it, and a
    /// note for each (a shipped adapter in a default run).
    pub fn raised(&self, config: &Config) -> (Config, Vec<String>) {
        let mut c = config.clone();
        let mut notes = Vec::new();
        for (name, v, least) in self.below_minimum(config) {
            let shown = humantime::format_duration(least).to_string();
            c.set(name, &shown)
                .expect("a duration within the knob's range");
            notes.push(format!(
                "shipped client {} runs with {name}={shown}: it takes no less (the run's {})",
                self.name,
                humantime::format_duration(v)
            ));
        }
        (c, notes)
    }
}
