//! What each artifact needs on the build machine, checked before anything is built: a missing
//! Rust target or tool fails at once with the command that installs it, instead of deep in a
//! dependency's build (a missing musl target used to end in `E0463: can't find crate for
//! core` from libc's build).

use std::path::Path;
use std::process::Command;

/// One prerequisite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A Rust standard library for this target (`rustup target add`).
    RustTarget(&'static str),
    /// A program on `PATH`: any of `names`, unless the environment variable `env` names one.
    Tool {
        names: &'static [&'static str],
        env: Option<&'static str>,
        install: &'static str,
    },
}

const MUSL_GCC: Need = Need::Tool {
    names: &["musl-gcc", "x86_64-linux-musl-gcc"],
    env: Some("CC_x86_64_unknown_linux_musl"),
    install: "sudo apt-get install musl-tools",
};
const MINGW_GCC: Need = Need::Tool {
    names: &["x86_64-w64-mingw32-gcc"],
    env: Some("CC_x86_64_pc_windows_gnu"),
    install: "sudo apt-get install gcc-mingw-w64-x86-64",
};
pub const DPKG_DEB: Need = Need::Tool {
    names: &["dpkg-deb"],
    env: None,
    install: "sudo apt-get install dpkg",
};
pub const RPMBUILD: Need = Need::Tool {
    names: &["rpmbuild"],
    env: None,
    install: "sudo apt-get install rpm",
};

/// What building the agent for `target` needs: its standard library and, for ring's C
/// code, a C compiler for it.
pub fn for_target(target: &'static str) -> Vec<Need> {
    let mut needs = vec![Need::RustTarget(target)];
    match target {
        "x86_64-unknown-linux-musl" => needs.push(MUSL_GCC),
        "x86_64-pc-windows-gnu" => needs.push(MINGW_GCC),
        _ => {}
    }
    needs
}

/// Checks every need (each once) and reports all the missing ones together.
pub fn check(root: &Path, needs: &[Need]) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut seen = Vec::new();
    for need in needs {
        if seen.contains(need) {
            continue;
        }
        seen.push(*need);
        match *need {
            Need::RustTarget(target) => {
                if !rust_target_installed(root, target)? {
                    missing.push(format!(
                        "the Rust target {target} is not installed: rustup target add {target}"
                    ));
                }
            }
            Need::Tool {
                names,
                env,
                install,
            } => {
                let from_env = env.is_some_and(|name| std::env::var_os(name).is_some());
                if !from_env && !names.iter().any(|name| on_path(name)) {
                    missing.push(format!("{} not found: {install}", names.join(" or ")));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing prerequisites:\n  {}",
            missing.join("\n  ")
        ))
    }
}

/// Whether the toolchain the workspace uses (`rust-toolchain.toml`) has `target`'s library.
fn rust_target_installed(root: &Path, target: &str) -> Result<bool, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .current_dir(root)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{rustc} --print sysroot failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let lib = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("lib");
    Ok(lib.is_dir())
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join(name)
                .metadata()
                .is_ok_and(|m| m.is_file() && executable(&m))
        })
    })
}

#[cfg(unix)]
fn executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_: &std::fs::Metadata) -> bool {
    true
}
