//! The `souk` binary: everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    souk::cli::main()
}
