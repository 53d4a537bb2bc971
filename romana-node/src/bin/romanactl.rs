//! `romanactl`: parse, run one command, print; errors as one line on stderr
//! with exit code 1.

use clap::Parser;
use romana_node::ctl::{execute, Cli};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("romanactl: {e}");
            std::process::exit(1);
        }
    }
}
