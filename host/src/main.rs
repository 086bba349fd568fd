//! The `factorio-isr` command; everything lives in the library, see `cli`.

fn main() -> std::process::ExitCode {
    factorio_isr::cli::main()
}
