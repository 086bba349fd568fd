//! The `factorio-isr` command; everything lives in the library, see `cli`.

/// Parsing turns every log line into a handful of short strings on the host; mimalloc makes
/// those allocations markedly cheaper than the system allocator. Built without transparent
/// huge pages, which doubled the idle memory of 20 servers (see docs/architecture.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    factorio_isr::cli::main()
}
