//! `romana-node bench`: placeholder replaced below.
use crate::error::Error;
use clap::Args;
#[derive(Args, Debug)]
pub struct BenchArgs {}
pub async fn run(_args: BenchArgs) -> Result<(), Error> {
    Ok(())
}
