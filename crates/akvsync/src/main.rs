//! The `akvsync` binary: everything lives in the library; this only hands it the arguments.

fn main() -> std::process::ExitCode {
    akvsync::cli::main_with(std::env::args_os())
}
