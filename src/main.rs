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
    /// Run the operator: all controllers, the admin server and leader election.
    Run(Box<entra_operator::runtime::config::RunArgs>),
    /// Start both emulators and the operator in one process, apply the examples, and show each
    /// resource's progress until it is Ready. No cluster and no tenant needed.
    #[cfg(feature = "sandbox")]
    Sandbox(entra_operator::runtime::sandbox::SandboxArgs),
    /// Print every managed credential (expiry, next rotation, state) and every customer tenant's
    /// consent across the cluster, most urgent first, read from the resources' status.
    Report(entra_operator::report::ReportArgs),
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            // Before the runtime starts its threads: arenas made before stay.
            let tuning = entra_operator::runtime::allocator::tune();
            entra_operator::runtime::run::init_logging(args.log_format, &args.log_level)?;
            tracing::debug!(?tuning, "allocator");
            let runtime = tokio::runtime::Runtime::new()?;
            if let Err(e) = runtime.block_on(entra_operator::runtime::run::run(*args)) {
                tracing::error!(error = %e, "entra-operator stopped");
                return Err(e.into());
            }
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let code = runtime.block_on(entra_operator::runtime::sandbox::sandbox(args))?;
            // Emulator and controller tasks are not joined: leave at once with the result.
            std::process::exit(code);
        }
        Command::Report(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(entra_operator::report::run(args))?;
        }
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
