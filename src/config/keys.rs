//! The table-driven reader both conf files share: one `Key` table per file names every known
//! key, its old aliases and its default, and `apply` consumes the entries of a file from it.

use std::collections::BTreeMap;
use std::path::Path;

use super::props::Entry;
use super::{ConfigError, ConfigWarning, Secret, parse_size};

/// Rejects a text value that can never work, with a message saying what is allowed.
pub(crate) type Check = fn(&str) -> Result<(), String>;

/// How the value of a known key is read. Setters receive values already checked.
pub(crate) enum Kind<C> {
    Flag(fn(&mut C, bool)),
    /// A whole number in `min..=max`; outside it is clamped with a warning when `clamp`
    /// (the original tolerates it), else an error.
    Number {
        min: i64,
        max: i64,
        clamp: bool,
        set: fn(&mut C, i64),
    },
    Size(fn(&mut C, u64)),
    /// Free text; blank stays blank. `check` rejects values that can never work.
    Text {
        check: Option<Check>,
        set: fn(&mut C, String),
    },
    Secret(fn(&mut C, Secret)),
    /// One of `words`, case-insensitive; the setter gets the word as spelt in `words`.
    Choice {
        words: &'static [&'static str],
        set: fn(&mut C, &str),
    },
    /// A feature of the original this version does not have: warned about, value unread.
    Unsupported,
}

/// A known key: its name, the names it had in older versions, and its default as it would
/// be written in the file (also what a blank value means, except for text).
pub(crate) struct Key<C> {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub default: &'static str,
    pub kind: Kind<C>,
}

// Constructors that keep each row of a key table on one or two lines.
impl<C> Key<C> {
    const fn of(name: &'static str, default: &'static str, kind: Kind<C>) -> Self {
        Key {
            name,
            aliases: &[],
            default,
            kind,
        }
    }

    /// The same key, also accepted under the names it had in older versions.
    pub const fn or_old(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    pub const fn flag(name: &'static str, default: &'static str, set: fn(&mut C, bool)) -> Self {
        Self::of(name, default, Kind::Flag(set))
    }

    /// A number outside `min..=max` is an error.
    pub const fn number(
        name: &'static str,
        default: &'static str,
        range: (i64, i64),
        set: fn(&mut C, i64),
    ) -> Self {
        Self::ranged(name, default, range, false, set)
    }

    /// A number outside `min..=max` is brought into it, with a warning.
    pub const fn clamped(
        name: &'static str,
        default: &'static str,
        range: (i64, i64),
        set: fn(&mut C, i64),
    ) -> Self {
        Self::ranged(name, default, range, true, set)
    }

    const fn ranged(
        name: &'static str,
        default: &'static str,
        (min, max): (i64, i64),
        clamp: bool,
        set: fn(&mut C, i64),
    ) -> Self {
        let kind = Kind::Number {
            min,
            max,
            clamp,
            set,
        };
        Self::of(name, default, kind)
    }

    pub const fn size(name: &'static str, default: &'static str, set: fn(&mut C, u64)) -> Self {
        Self::of(name, default, Kind::Size(set))
    }

    pub const fn text(name: &'static str, default: &'static str, set: fn(&mut C, String)) -> Self {
        Self::of(name, default, Kind::Text { check: None, set })
    }

    pub const fn checked_text(
        name: &'static str,
        default: &'static str,
        check: Check,
        set: fn(&mut C, String),
    ) -> Self {
        let check = Some(check);
        Self::of(name, default, Kind::Text { check, set })
    }

    pub const fn secret(name: &'static str, set: fn(&mut C, Secret)) -> Self {
        Self::of(name, "", Kind::Secret(set))
    }

    pub const fn choice(
        name: &'static str,
        default: &'static str,
        words: &'static [&'static str],
        set: fn(&mut C, &str),
    ) -> Self {
        Self::of(name, default, Kind::Choice { words, set })
    }

    pub const fn unsupported(name: &'static str) -> Self {
        Self::of(name, "", Kind::Unsupported)
    }
}

/// Every number a table accepts: `min` and up.
pub(crate) const AT_LEAST_0: (i64, i64) = (0, i64::MAX);
pub(crate) const AT_LEAST_1: (i64, i64) = (1, i64::MAX);

/// What reading the file found besides the values: where each key was, and warnings.
pub(crate) struct Applied {
    pub key_lines: BTreeMap<String, usize>,
    pub warnings: Vec<ConfigWarning>,
}

/// Sets every key of `table` to its default. The defaults are constants that a unit test
/// parses, so a failure here would be a bug in the table, not in anyone's file.
pub(crate) fn apply_defaults<C>(table: &[Key<C>], config: &mut C) {
    for key in table {
        let mut sink = Vec::new();
        let outcome = set_value(key, config, key.default, &mut |m| sink.push(m));
        debug_assert!(
            outcome.is_ok() && sink.is_empty(),
            "default of {}",
            key.name
        );
    }
}

/// Reads `entries` into `config` (which starts at its defaults) following `table`.
pub(crate) fn apply<C>(
    table: &[Key<C>],
    config: &mut C,
    entries: Vec<Entry>,
    path: &Path,
) -> Result<Applied, ConfigError> {
    let mut warnings = Vec::new();
    let warn = |warnings: &mut Vec<ConfigWarning>, line, key: &str, message: String| {
        warnings.push(ConfigWarning {
            path: path.to_path_buf(),
            line: Some(line),
            key: key.to_string(),
            message,
        })
    };
    // canonical name -> (entry, whether it was written under an old name)
    let mut chosen: BTreeMap<&'static str, (Entry, bool)> = BTreeMap::new();
    for entry in entries {
        let Some((spec, old_name)) = lookup(table, &entry.key) else {
            let hint = table
                .iter()
                .find(|k| k.name.eq_ignore_ascii_case(&entry.key))
                .map(|k| format!(" (did you mean `{}`? key names are case-sensitive)", k.name))
                .unwrap_or_default();
            warn(
                &mut warnings,
                entry.line,
                &entry.key,
                format!("unknown key, ignored{hint}"),
            );
            continue;
        };
        if let Kind::Unsupported = spec.kind {
            let msg = "not supported by ossimport-rs; ignored".to_string();
            warn(&mut warnings, entry.line, &entry.key, msg);
            continue;
        }
        if old_name {
            let msg = format!("old name of `{}`; rename the key", spec.name);
            warn(&mut warnings, entry.line, &entry.key, msg);
        }
        match chosen.get(spec.name) {
            Some((earlier, earlier_old)) if old_name && !earlier_old => {
                let msg = format!(
                    "ignored because `{}` is set on line {}",
                    spec.name, earlier.line
                );
                warn(&mut warnings, entry.line, &entry.key, msg);
                continue;
            }
            Some((earlier, earlier_old)) if !old_name && *earlier_old => {
                let msg = format!(
                    "ignored because `{}` is set on line {}",
                    spec.name, entry.line
                );
                warn(&mut warnings, earlier.line, &earlier.key, msg);
            }
            Some((earlier, _)) => {
                let msg = format!(
                    "set again (first on line {}); the last value is used",
                    earlier.line
                );
                warn(&mut warnings, entry.line, &entry.key, msg);
            }
            None => {}
        }
        chosen.insert(spec.name, (entry, old_name));
    }

    // In file order, so the first error and the warnings read top to bottom.
    let mut chosen: Vec<_> = table
        .iter()
        .filter_map(|spec| chosen.remove(spec.name).map(|(entry, _)| (spec, entry)))
        .collect();
    chosen.sort_by_key(|(_, entry)| entry.line);
    let mut key_lines = BTreeMap::new();
    for (spec, entry) in chosen {
        key_lines.insert(spec.name.to_string(), entry.line);
        let value = entry.value.trim();
        let blank_means_default = !matches!(spec.kind, Kind::Text { .. } | Kind::Secret(_));
        let value = if value.is_empty() && blank_means_default {
            spec.default
        } else {
            value
        };
        let mut clamped = |message: String| warn(&mut warnings, entry.line, &entry.key, message);
        set_value(spec, config, value, &mut clamped).map_err(|message| {
            ConfigError::new(path, message)
                .at_line(Some(entry.line))
                .for_key(entry.key.clone())
        })?;
    }
    warnings.sort_by_key(|w| w.line);
    Ok(Applied {
        key_lines,
        warnings,
    })
}

fn lookup<'t, C>(table: &'t [Key<C>], name: &str) -> Option<(&'t Key<C>, bool)> {
    table.iter().find_map(|k| {
        if k.name == name {
            Some((k, false))
        } else if k.aliases.contains(&name) {
            Some((k, true))
        } else {
            None
        }
    })
}

/// Parses `value` for `spec` and stores it; an `Err` is the message (what is allowed).
fn set_value<C>(
    spec: &Key<C>,
    config: &mut C,
    value: &str,
    warn: &mut dyn FnMut(String),
) -> Result<(), String> {
    let default = spec.default;
    match &spec.kind {
        Kind::Flag(set) => {
            let flag = if value.eq_ignore_ascii_case("true") {
                true
            } else if value.eq_ignore_ascii_case("false") {
                false
            } else {
                return Err(format!(
                    "`{value}` is not a boolean; expected true or false (default {default})"
                ));
            };
            set(config, flag);
        }
        Kind::Number {
            min,
            max,
            clamp,
            set,
        } => {
            let allowed = if *max == i64::MAX {
                format!("{min} or more")
            } else {
                format!("{min} to {max}")
            };
            let Ok(number) = value.parse::<i64>() else {
                let digits = value.trim_start_matches(['-', '+']);
                let what = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    "is too large"
                } else {
                    "is not a whole number"
                };
                return Err(format!(
                    "`{value}` {what}; expected {allowed} (default {default})"
                ));
            };
            let fitted = number.clamp(*min, *max);
            if fitted != number {
                if !clamp {
                    return Err(format!(
                        "`{value}` is out of range; expected {allowed} (default {default})"
                    ));
                }
                warn(format!(
                    "`{value}` is out of range {allowed}; using {fitted}"
                ));
            }
            set(config, fitted);
        }
        Kind::Size(set) => {
            let bytes = parse_size(value).map_err(|e| format!("{e} (default {default})"))?;
            set(config, bytes);
        }
        Kind::Text { check, set } => {
            if let Some(check) = check {
                check(value)?;
            }
            set(config, value.to_string());
        }
        Kind::Secret(set) => set(config, Secret::new(value)),
        Kind::Choice { words, set } => {
            let Some(word) = words.iter().find(|w| w.eq_ignore_ascii_case(value)) else {
                return Err(format!(
                    "`{value}` is not allowed; expected one of {} (default {default})",
                    words.join(", ")
                ));
            };
            set(config, word);
        }
        Kind::Unsupported => {}
    }
    Ok(())
}

/// Narrows a number the table has already bounded to the field's type.
pub(crate) fn to_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(if n < 0 { 0 } else { u32::MAX })
}

/// Same as [`to_u32`] for `u64` fields.
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
