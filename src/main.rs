//! The `osir-gateway` binary; everything lives in the library.
fn main() -> std::process::ExitCode {
    osir_gateway::cli::main()
}
