use clap::{Parser, Subcommand};

/// Kubernetes operator for Microsoft Entra ID app registrations, credentials and consent.
#[derive(Parser)]
#[command(name = "entra-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of all four kinds as a multi-document YAML stream.
    Crd {
        /// Write one file per CRD into this directory instead (how `crds/` is regenerated).
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir: None } => {
            print!("{}", entra_operator::api::crds_yaml()?);
        }
        Command::Crd { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for crd in entra_operator::api::crds() {
                let path = dir.join(entra_operator::api::crd_file_name(&crd));
                std::fs::write(&path, entra_operator::api::crd_yaml(&crd)?)?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Version => println!("entra-operator {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
