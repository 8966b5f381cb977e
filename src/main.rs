fn main() -> std::process::ExitCode {
    peerhash::cli::main()
}
