//! Running the binary the way a user does, with the service's test hooks, and as `nobody` when
//! the tests run as root (root reads any file, so an unreadable folder would not be one).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{BIN, Package, text, wait_path};

const LONG: Duration = Duration::from_secs(240);

/// Runs the binary in a package, with test hooks and, when the tests run as root, as `nobody`
/// (root reads any file, so an unreadable folder would not be unreadable).
pub struct Runner<'a> {
    pkg: &'a Package,
    as_nobody: bool,
    env: Vec<(String, String)>,
}

impl<'a> Runner<'a> {
    pub fn new(pkg: &'a Package) -> Runner<'a> {
        Runner {
            pkg,
            as_nobody: false,
            env: Vec::new(),
        }
    }

    pub fn unprivileged(mut self) -> Self {
        self.as_nobody = is_root();
        if self.as_nobody {
            open_up(self.pkg.dir.path());
        }
        self
    }

    pub fn hooks(mut self, dir: &Path, hooks: &str) -> Self {
        self.env.push(("OSSIMPORT_TEST_HOOKS".into(), hooks.into()));
        self.env
            .push(("OSSIMPORT_TEST_HOOK_DIR".into(), dir.display().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        cmd.args(args).current_dir(self.pkg.dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("binary runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stat(&self) -> String {
        String::from_utf8_lossy(&self.run(&["stat"]).stdout).into_owned()
    }

    pub fn wait_for(&self, states: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let stat = self.stat();
            if states
                .iter()
                .any(|s| stat.contains(&format!("JobState:{s}\n")))
            {
                return stat;
            }
            assert!(started.elapsed() < LONG, "waited for {states:?}: {stat}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Lets `nobody` write the package (state, logs) and read the source.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(dir) {
        let e = e.unwrap();
        let mode = if e.file_type().is_dir() { 0o777 } else { 0o666 };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A folder the hooks report to; the test releases a paused point by creating a file.
pub struct HookDir(tempfile::TempDir);

impl HookDir {
    pub fn new() -> HookDir {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o777);
        HookDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn wait_reached(&self, name: &str) {
        let reached = self.path().join(format!("{name}.reached"));
        assert!(wait_path(&reached, LONG), "hook {name} never reached");
    }

    pub fn release(&self, name: &str) {
        std::fs::write(self.path().join(format!("{name}.release")), b"").unwrap();
    }
}
