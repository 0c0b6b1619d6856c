fn main() {
    std::process::exit(orchfile::cli::main());
}
