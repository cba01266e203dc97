//! `ptsel info`: what an index or corpus holds.

use anyhow::Result;
use ptsel::Engine;
use std::io::Write as _;
use std::path::PathBuf;

/// Arguments of `ptsel info`.
#[derive(clap::Args)]
pub struct Args {
    /// Index file or corpus folder.
    pub path: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `ptsel info`.
pub fn run(args: Args) -> Result<()> {
    let info = Engine::open(&args.path)?.info()?;
    match args.json {
        true => outln!("{}", serde_json::to_string_pretty(&info)?)?,
        // The text ends with its last line's newline.
        false => write!(std::io::stdout().lock(), "{info}")?,
    }
    Ok(())
}
