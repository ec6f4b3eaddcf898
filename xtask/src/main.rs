//! `cargo xtask dist`: builds the binary in the `dist` profile (thin LTO, stripped; see
//! Cargo.toml) and writes the package users unpack and run,
//! `target/dist/ossimport-<version>-<os>-<arch>.tar.gz`, laid out like the original's.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The package's files besides the binary, from the repository root: (source, place in it).
const FILES: [&str; 9] = [
    "conf/local_job.cfg",
    "conf/sys.properties",
    "import.sh",
    "console.sh",
    "worker.sh",
    "import.bat",
    "console.bat",
    "README.md",
    "LICENSE",
];
/// Folders copied whole.
const FOLDERS: [&str; 1] = ["sample"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dist") if args.len() == 1 => match dist() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "Usage: cargo xtask dist\n  dist  build the binary (dist profile) and write \
                 target/dist/ossimport-<version>-<os>-<arch>.tar.gz"
            );
            ExitCode::from(2)
        }
    }
}

fn dist() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the xtask folder has no parent")?
        .to_path_buf();
    let target = target_dir(&root);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo).current_dir(&root).args([
            "build",
            "--profile",
            "dist",
            // The folder this xtask resolved, whatever the caller's current folder.
            "--target-dir",
            target
                .to_str()
                .ok_or("the target folder's path is not UTF-8")?,
            "--package",
            "ossimport",
            "--bin",
            "ossimport",
        ]),
        "cargo build --profile dist",
    )?;

    let name = format!(
        "ossimport-{}-{}-{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    let dist = target.join("dist");
    let top = dist.join(&name);
    if top.exists() {
        std::fs::remove_dir_all(&top).map_err(|e| io("cannot remove", &top, e))?;
    }
    let exe = format!("ossimport{}", std::env::consts::EXE_SUFFIX);
    let bin = top.join("bin").join(&exe);
    // Stripped by the profile: the package is for running, not for profiling.
    copy(&dist.join(&exe), &bin)?;
    for file in FILES {
        copy(&root.join(file), &top.join(file))?;
    }
    for folder in FOLDERS {
        copy_tree(&root.join(folder), &top.join(folder))?;
    }
    for exec in ["bin/ossimport", "import.sh", "console.sh", "worker.sh"] {
        executable(&top.join(exec))?;
    }

    let tarball = dist.join(format!("{name}.tar.gz"));
    run(
        Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&dist)
            .arg(&name),
        "tar",
    )?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mib = |n: u64| n as f64 / f64::from(1u32 << 20);
    println!(
        "bin/{exe}: {:.1} MiB stripped; package {:.1} MiB",
        mib(size(&bin)),
        mib(size(&tarball))
    );
    println!("{}", tarball.display());
    Ok(())
}

/// Where cargo puts its builds: `CARGO_TARGET_DIR` (relative to the current folder, as cargo
/// reads it), else `target/` of the workspace.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            std::path::absolute(PathBuf::from(dir)).unwrap_or_else(|_| root.join("target"))
        }
        _ => root.join("target"),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status}); see its messages above"))
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("cannot create", parent, e))?;
    }
    std::fs::copy(from, to).map_err(|e| io("cannot copy", from, e))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| io("cannot create", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| io("cannot read", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io("cannot read", from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry
            .file_type()
            .map_err(|e| io("cannot read", &src, e))?
            .is_dir()
        {
            copy_tree(&src, &dst)?;
        } else {
            copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("cannot make executable", path, e))
}

/// Windows has no execute bit: `.bat` and `.exe` run by their names.
#[cfg(not(unix))]
fn executable(_path: &Path) -> Result<(), String> {
    Ok(())
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}
