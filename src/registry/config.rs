//! Flags of the database registry sink (part of `entra-operator run`).

use clap::Args;

use super::postgres::PostgresBackend;
use super::{ColumnNames, RegistryError, RegistrySink, TableLayout};

/// Database registry sink flags. Without `--registry-database-url` there is no sink: the
/// registries are ConfigMaps only.
#[derive(Args, Clone, Default)]
pub struct RegistryArgs {
    /// Connection URL of the database that receives the bank registries, e.g.
    /// `postgres://user:password@host:5432/bp_organizations_db?sslmode=require`. Unset: the
    /// registries are written to ConfigMaps only.
    #[arg(long, env = "REGISTRY_DATABASE_URL", hide_env_values = true)]
    pub registry_database_url: Option<String>,

    /// Create the registry tables (and their schema) where they do not exist yet.
    #[arg(long, env = "REGISTRY_DATABASE_MIGRATE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub registry_database_migrate: bool,

    /// The bank-clients table, optionally `schema.table`.
    #[arg(
        long,
        env = "REGISTRY_BANK_CLIENTS_TABLE",
        default_value = "bank_clients"
    )]
    pub registry_bank_clients_table: String,

    /// Column names of the bank-clients table where they differ from the defaults, as
    /// `role=name` pairs: roles `client_id`, `bank_id`, `name`, `namespace`, `secret_expires_at`,
    /// `updated_at`; `role=-` leaves out `name`, `secret_expires_at` or `updated_at`.
    #[arg(long, env = "REGISTRY_BANK_CLIENTS_COLUMNS", default_value = "")]
    pub registry_bank_clients_columns: String,

    /// The tenant-mappings table, optionally `schema.table`.
    #[arg(
        long,
        env = "REGISTRY_TENANT_MAPPINGS_TABLE",
        default_value = "tenant_bank_mappings"
    )]
    pub registry_tenant_mappings_table: String,

    /// Column names of the tenant-mappings table where they differ from the defaults: roles
    /// `tenant_id`, `bank_id`, `is_default`, `name`, `namespace`, `updated_at`.
    #[arg(long, env = "REGISTRY_TENANT_MAPPINGS_COLUMNS", default_value = "")]
    pub registry_tenant_mappings_columns: String,
}

impl std::fmt::Debug for RegistryArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RegistryArgs")
            .field(
                "registry_database_url",
                &self.registry_database_url.as_ref().map(|_| "<set>"),
            )
            .field("registry_database_migrate", &self.registry_database_migrate)
            .field(
                "registry_bank_clients_table",
                &self.registry_bank_clients_table,
            )
            .field(
                "registry_bank_clients_columns",
                &self.registry_bank_clients_columns,
            )
            .field(
                "registry_tenant_mappings_table",
                &self.registry_tenant_mappings_table,
            )
            .field(
                "registry_tenant_mappings_columns",
                &self.registry_tenant_mappings_columns,
            )
            .finish()
    }
}

impl RegistryArgs {
    /// The table layouts these flags describe.
    pub fn layouts(&self) -> Result<(TableLayout, TableLayout), RegistryError> {
        Ok((
            TableLayout::bank_clients(
                &self.registry_bank_clients_table,
                &self.registry_bank_clients_columns.parse()?,
            )?,
            TableLayout::tenant_mappings(
                &self.registry_tenant_mappings_table,
                &self
                    .registry_tenant_mappings_columns
                    .parse::<ColumnNames>()?,
            )?,
        ))
    }

    /// The sink, or `None` when no database URL is configured. Nothing connects yet.
    pub fn build(&self) -> Result<Option<RegistrySink>, RegistryError> {
        let Some(url) = self
            .registry_database_url
            .as_deref()
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let (bank_clients, tenant_mappings) = self.layouts()?;
        let backend = PostgresBackend::new(url)?;
        Ok(Some(
            RegistrySink::new(Box::new(backend), bank_clients, tenant_mappings)
                .with_migrate(self.registry_database_migrate),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        registry: RegistryArgs,
    }

    #[test]
    fn no_url_means_no_sink_and_flags_parse() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert!(cli.registry.build().unwrap().is_none());
        let cli = Cli::try_parse_from([
            "x",
            "--registry-database-url",
            "postgres://op:pw@db:5432/orgs",
            "--registry-database-migrate",
            "--registry-bank-clients-table",
            "dbo.BankClients",
            "--registry-bank-clients-columns",
            "client_id=ClientId,bank_id=BankId",
        ])
        .unwrap();
        assert!(cli.registry.registry_database_migrate);
        let sink = cli.registry.build().unwrap().unwrap();
        assert_eq!(
            sink.bank_clients_layout().table.to_string(),
            "dbo.BankClients"
        );
        assert!(!format!("{:?}", cli.registry).contains("pw@"));
        let bad = Cli::try_parse_from([
            "x",
            "--registry-database-url",
            "postgres://db/orgs",
            "--registry-tenant-mappings-table",
            "x; DROP TABLE y",
        ])
        .unwrap();
        assert!(matches!(
            bad.registry.build(),
            Err(RegistryError::Config(_))
        ));
    }
}
