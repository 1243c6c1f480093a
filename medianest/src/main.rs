//! The `medianest` binary: see `medianest --help`.

fn main() -> std::process::ExitCode {
    medianest::cli::main()
}
