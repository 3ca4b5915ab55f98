//! The `osir-gateway` binary; everything lives in the library.

/// mimalloc: the proxy allocates many small, short-lived buffers per request
/// on several threads; glibc malloc spends measurably more CPU on that
/// pattern (heap trimming churn, arena locks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    osir_gateway::cli::main()
}
