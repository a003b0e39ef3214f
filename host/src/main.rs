//! The `mailwit` command line: serve, check-config, reload, queue.

fn main() {
    eprintln!("mailwit: not built yet");
    std::process::exit(1);
}
