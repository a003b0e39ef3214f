//! `mailwit dkim …`: make a key and print the DNS record to publish, or show the records of a
//! configuration's selectors (generating the keys of selectors without a key file, as the
//! server does on first start).

use super::keys;
use crate::config::Config;
use crate::config::mailauth::KeyAlgorithm;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct DkimArgs {
    #[command(subcommand)]
    pub command: Option<DkimCommand>,
    /// The configuration whose `[[dkim.sign]]` selectors to show (default: the embedded quickstart).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Overrides `[server] state_dir` (where keys without a `key` file live).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DkimCommand {
    /// Write a new private key (mode 0600) and print the TXT record to publish.
    Generate {
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: Algorithm,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        selector: String,
        /// The key file to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print domain, selector, key file and TXT record of each configured selector (the default).
    Show,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

pub fn run(args: DkimArgs) -> anyhow::Result<()> {
    match args.command.unwrap_or(DkimCommand::Show) {
        DkimCommand::Generate {
            algorithm,
            domain,
            selector,
            out,
        } => {
            let algorithm = match algorithm {
                Algorithm::Rsa => KeyAlgorithm::Rsa,
                Algorithm::Ed25519 => KeyAlgorithm::Ed25519,
            };
            let pem = keys::generate(algorithm)?;
            keys::write_new(&out, &pem)?;
            let key = keys::parse_pem(pem.as_bytes())?;
            eprintln!(
                "wrote {} ({} key); publish this record:",
                out.display(),
                algorithm.name()
            );
            println!("{}", keys::txt_record(&domain, &selector, &key));
            Ok(())
        }
        DkimCommand::Show => {
            let mut config = match &args.config {
                Some(path) => Config::load(path)?,
                None => Config::quickstart(),
            };
            if let Some(dir) = args.state_dir {
                config.server.state_dir = dir;
            }
            let signers = super::sign::Signers::from_config(&config)?;
            if signers.is_empty() {
                println!("no [[dkim.sign]] selectors configured");
            }
            for key in signers.keys() {
                println!(
                    "# domain {} selector {} key {}",
                    key.domain,
                    key.selector,
                    key.key_path.display()
                );
                println!("{}", key.record);
            }
            Ok(())
        }
    }
}
