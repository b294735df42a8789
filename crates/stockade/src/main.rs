#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    stockade::cli::main()
}
