//! Named points in the service where an end-to-end test can pause it or kill it, so a test of a
//! race or a crash window is deterministic instead of lucky. Inert unless the environment sets
//! `OSSIMPORT_TEST_HOOKS` (`name=pause,other=kill`) and `OSSIMPORT_TEST_HOOK_DIR`.
//!
//! - `pause`: the point writes `<dir>/<name>.reached` and waits until the test creates
//!   `<dir>/<name>.release`.
//! - `kill`: the process dies on the spot (SIGABRT: no destructor, no flush), as under `kill -9`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Pause,
    Kill,
}

struct Hooks {
    dir: PathBuf,
    actions: HashMap<String, Action>,
}

fn hooks() -> Option<&'static Hooks> {
    static HOOKS: OnceLock<Option<Hooks>> = OnceLock::new();
    HOOKS
        .get_or_init(|| {
            let spec = std::env::var("OSSIMPORT_TEST_HOOKS").ok()?;
            let dir = PathBuf::from(std::env::var_os("OSSIMPORT_TEST_HOOK_DIR")?);
            Some(Hooks {
                dir,
                actions: parse(&spec),
            })
        })
        .as_ref()
}

fn parse(spec: &str) -> HashMap<String, Action> {
    spec.split(',')
        .filter_map(|item| {
            let (name, action) = item.trim().split_once('=')?;
            let action = match action {
                "pause" => Action::Pause,
                "kill" => Action::Kill,
                _ => return None,
            };
            Some((name.to_string(), action))
        })
        .collect()
}

fn action(name: &str) -> Option<(&'static Hooks, Action)> {
    let hooks = hooks()?;
    hooks.actions.get(name).map(|a| (hooks, *a))
}

/// What a hook point does now: nothing (`None`), or wait until the returned release file
/// exists. A kill does not return.
fn arm(name: &str) -> Option<PathBuf> {
    let (hooks, action) = action(name)?;
    match action {
        Action::Kill => kill(name),
        Action::Pause => Some(reached(hooks, name)),
    }
}

/// A hook point on an async path.
pub async fn point(name: &str) {
    if let Some(release) = arm(name) {
        while !release.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A hook point on a blocking path (a command, or work on the blocking pool).
pub fn point_blocking(name: &str) {
    if let Some(release) = arm(name) {
        while !release.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn reached(hooks: &Hooks, name: &str) -> PathBuf {
    let _ = std::fs::write(hooks.dir.join(format!("{name}.reached")), b"");
    hooks.dir.join(format!("{name}.release"))
}

fn kill(name: &str) -> ! {
    eprintln!("test hook {name}: killing the process");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_actions_and_ignores_the_rest() {
        let hooks = parse("a=pause, b=kill,c=explode,d");
        assert_eq!(hooks.get("a"), Some(&Action::Pause));
        assert_eq!(hooks.get("b"), Some(&Action::Kill));
        assert_eq!(hooks.len(), 2);
    }
}
