//! The database registry sink: the bank-clients and tenant-mappings registries written into two SQL
//! tables beside the ConfigMaps (which stay the embedded default), for an API that reads them from
//! its organization database.
//!
//! Layering, so another SQL dialect (e.g. SQL Server) can be added without touching the
//! controllers:
//! - [`RegistrySink`] is what the controllers call: `sync_bank_clients` / `sync_tenant_mappings`
//!   make the rows of one namespace equal to the desired rows, and report what was written and
//!   which of those writes repaired a row someone changed by hand.
//! - [`plan_sync`] decides the writes (pure, dialect-free, unit-tested).
//! - [`RegistryBackend`] is one driver and dialect: read a namespace's rows, apply the writes in a
//!   transaction, create missing tables. [`postgres::PostgresBackend`] is the only one shipped.
//!
//! Ownership: every row the operator writes carries the resource's namespace (and name). A
//! namespace's sync deletes rows of that namespace nobody declares any more, and never touches rows
//! of other namespaces; a desired key already held by a row of another namespace is reported as a
//! conflict and left alone. Rows without a namespace (e.g. copied in by hand before the operator
//! managed the table) are adopted when the operator declares the same key.

pub mod config;
pub mod postgres;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;

/// Why a registry operation failed; the controllers map it to `RegistrySynced=False` and back off.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database could not be reached or the connection broke (retried with backoff).
    #[error("registry database unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error (missing table or column, permission, constraint).
    #[error("registry database rejected the write: {0}")]
    Rejected(String),
    /// The sink's configuration is invalid (an identifier, the URL).
    #[error("registry configuration: {0}")]
    Config(String),
}

impl RegistryError {
    /// CamelCase reason for the `RegistrySynced` condition and events.
    pub fn reason(&self) -> &'static str {
        match self {
            RegistryError::Unavailable(_) => "RegistryUnavailable",
            RegistryError::Rejected(_) => "RegistryRejected",
            RegistryError::Config(_) => "RegistryMisconfigured",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers

/// A validated SQL identifier: ASCII letter or `_`, then letters, digits or `_`, at most 63
/// characters (PostgreSQL's limit). Always written quoted, so it is used exactly as spelled
/// (case-sensitive); validation makes quoting trivially safe — no quote character can occur.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: &str) -> Result<Ident, RegistryError> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if first_ok && rest_ok && name.len() <= 63 {
            Ok(Ident(name.to_string()))
        } else {
            Err(RegistryError::Config(format!(
                "{name:?} is not an allowed SQL identifier (a letter or _, then letters, digits or _, at most 63)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `"name"` — the identifier quoted for PostgreSQL and standard SQL.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table name, optionally schema-qualified (`schema.table`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Option<Ident>,
    pub table: Ident,
}

impl TableName {
    /// `"schema"."table"` or `"table"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", s.quoted(), self.table.quoted()),
            None => self.table.quoted(),
        }
    }
}

impl FromStr for TableName {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((schema, table)) => Ok(TableName {
                schema: Some(Ident::new(schema)?),
                table: Ident::new(table)?,
            }),
            None => Ok(TableName {
                schema: None,
                table: Ident::new(s)?,
            }),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.table),
            None => write!(f, "{}", self.table),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Table layouts

/// Which registry a table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegistryTable {
    BankClients,
    TenantMappings,
}

/// The SQL type of a column, as the sink writes and compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Bool,
    /// `timestamptz` in PostgreSQL.
    Timestamp,
}

/// One column the sink manages: its role (what it holds), its name in the table, its type,
/// whether it is part of the primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub role: &'static str,
    pub name: Ident,
    pub ty: ColumnType,
    pub key: bool,
    /// `NOT NULL` in the DDL the sink creates.
    pub required: bool,
}

/// Column roles. The default column names equal the roles.
pub mod role {
    pub const CLIENT_ID: &str = "client_id";
    pub const TENANT_ID: &str = "tenant_id";
    pub const BANK_ID: &str = "bank_id";
    pub const IS_DEFAULT: &str = "is_default";
    pub const NAME: &str = "name";
    pub const NAMESPACE: &str = "namespace";
    pub const SECRET_EXPIRES_AT: &str = "secret_expires_at";
    pub const UPDATED_AT: &str = "updated_at";
}

/// A table as the sink sees it: name, managed columns (keys first), the namespace column that
/// marks the operator's rows, and an optional `updated_at` column set on every write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableLayout {
    pub kind: RegistryTable,
    pub table: TableName,
    /// Keys first, then the value columns (the namespace column among them).
    pub columns: Vec<Column>,
    pub updated_at: Option<Ident>,
}

/// Column names as configured: `role=name` pairs, comma-separated; `role=-` leaves an optional
/// column out (only `name`, `secret_expires_at` and `updated_at` are optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnNames(pub BTreeMap<String, String>);

impl FromStr for ColumnNames {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = BTreeMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (role, name) = pair.split_once('=').ok_or_else(|| {
                RegistryError::Config(format!("column mapping {pair:?} is not role=name"))
            })?;
            out.insert(role.trim().to_string(), name.trim().to_string());
        }
        Ok(ColumnNames(out))
    }
}

const OPTIONAL_ROLES: [&str; 3] = [role::NAME, role::SECRET_EXPIRES_AT, role::UPDATED_AT];

impl TableLayout {
    fn build(
        kind: RegistryTable,
        table: &str,
        names: &ColumnNames,
        roles: &[(&'static str, ColumnType, bool, bool)],
    ) -> Result<TableLayout, RegistryError> {
        let known: Vec<&str> = roles
            .iter()
            .map(|r| r.0)
            .chain([role::UPDATED_AT])
            .collect();
        if let Some(unknown) = names.0.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(RegistryError::Config(format!(
                "unknown column role {unknown:?} for table {table}; known: {}",
                known.join(", ")
            )));
        }
        let name_of = |role: &str| -> Result<Option<Ident>, RegistryError> {
            match names.0.get(role).map(String::as_str) {
                Some("-") if OPTIONAL_ROLES.contains(&role) => Ok(None),
                Some("-") => Err(RegistryError::Config(format!(
                    "column {role} of table {table} cannot be left out"
                ))),
                Some(name) => Ident::new(name).map(Some),
                None => Ident::new(role).map(Some),
            }
        };
        let mut columns = Vec::new();
        for &(role, ty, key, required) in roles {
            if let Some(name) = name_of(role)? {
                columns.push(Column {
                    role,
                    name,
                    ty,
                    key,
                    required,
                });
            }
        }
        let updated_at = name_of(role::UPDATED_AT)?;
        let mut seen: Vec<&Ident> = columns.iter().map(|c| &c.name).collect();
        seen.extend(updated_at.iter());
        seen.sort();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(RegistryError::Config(format!(
                "column {} is named twice in table {table}",
                w[0]
            )));
        }
        Ok(TableLayout {
            kind,
            table: table.parse()?,
            columns,
            updated_at,
        })
    }

    /// The bank-clients table: `client_id` (primary key) → `bank_id`, with the BankClient's name
    /// and namespace and the client secret's expiry.
    pub fn bank_clients(table: &str, names: &ColumnNames) -> Result<TableLayout, RegistryError> {
        use ColumnType::*;
        Self::build(
            RegistryTable::BankClients,
            table,
            names,
            &[
                (role::CLIENT_ID, Text, true, true),
                (role::BANK_ID, Text, false, true),
                (role::NAME, Text, false, false),
                (role::NAMESPACE, Text, false, false),
                (role::SECRET_EXPIRES_AT, Timestamp, false, false),
            ],
        )
    }

    /// The tenant-mappings table: (`tenant_id`, `bank_id`) primary key, `is_default`, with the
    /// TenantMapping's name and namespace.
    pub fn tenant_mappings(table: &str, names: &ColumnNames) -> Result<TableLayout, RegistryError> {
        use ColumnType::*;
        Self::build(
            RegistryTable::TenantMappings,
            table,
            names,
            &[
                (role::TENANT_ID, Text, true, true),
                (role::BANK_ID, Text, true, true),
                (role::IS_DEFAULT, Bool, false, true),
                (role::NAME, Text, false, false),
                (role::NAMESPACE, Text, false, false),
            ],
        )
    }

    pub fn keys(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| !c.key)
    }

    pub fn namespace_column(&self) -> &Ident {
        &self
            .columns
            .iter()
            .find(|c| c.role == role::NAMESPACE)
            .expect("the namespace column is required")
            .name
    }

    /// A row restricted to this layout's columns, in column order (roles the layout leaves out
    /// are dropped; missing roles become NULL).
    pub fn project(&self, row: &Row) -> Row {
        Row(self
            .columns
            .iter()
            .map(|c| (c.role, row.get(c.role).cloned().unwrap_or(Value::Null)))
            .collect())
    }

    /// The primary key of a (projected) row, in key-column order.
    pub fn key_of(&self, row: &Row) -> RowKey {
        RowKey(
            self.keys()
                .map(|c| match row.get(c.role) {
                    Some(Value::Text(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                })
                .collect(),
        )
    }

    /// `client_id=…` / `tenant_id=…, bank_id=…` for messages.
    pub fn describe_key(&self, key: &RowKey) -> String {
        self.keys()
            .zip(&key.0)
            .map(|(c, v)| format!("{}={v}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

/// A column value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Bool(bool),
    Timestamp(jiff::Timestamp),
    Null,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Timestamp(t) => write!(f, "{t}"),
            Value::Null => f.write_str("NULL"),
        }
    }
}

/// One row by column role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row(pub Vec<(&'static str, Value)>);

impl Row {
    pub fn get(&self, role: &str) -> Option<&Value> {
        self.0.iter().find(|(r, _)| *r == role).map(|(_, v)| v)
    }

    pub fn namespace(&self) -> Option<&str> {
        match self.get(role::NAMESPACE) {
            Some(Value::Text(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

/// A row's primary key (the key columns' text values).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey(pub Vec<String>);

/// One BankClient's row in the bank-clients table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankClientRow {
    /// The bank's app registration's appId (the `azp` of its tokens).
    pub client_id: String,
    pub bank_id: String,
    /// The BankClient's name and namespace.
    pub name: String,
    pub namespace: String,
    /// When the current client secret expires.
    pub secret_expires_at: Option<jiff::Timestamp>,
}

impl From<&BankClientRow> for Row {
    fn from(r: &BankClientRow) -> Row {
        Row(vec![
            (role::CLIENT_ID, Value::Text(r.client_id.clone())),
            (role::BANK_ID, Value::Text(r.bank_id.clone())),
            (role::NAME, Value::Text(r.name.clone())),
            (role::NAMESPACE, Value::Text(r.namespace.clone())),
            (
                role::SECRET_EXPIRES_AT,
                r.secret_expires_at
                    .map(|t| Value::Timestamp(truncate_to_micros(t)))
                    .unwrap_or(Value::Null),
            ),
        ])
    }
}

/// One (tenant, bank) pair of a TenantMapping in the tenant-mappings table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantMappingRow {
    /// Lowercase tenant ID (the `tid` claim).
    pub tenant_id: String,
    pub bank_id: String,
    /// The tenant's default BankId.
    pub is_default: bool,
    /// The TenantMapping's name and namespace.
    pub name: String,
    pub namespace: String,
}

impl From<&TenantMappingRow> for Row {
    fn from(r: &TenantMappingRow) -> Row {
        Row(vec![
            (role::TENANT_ID, Value::Text(r.tenant_id.clone())),
            (role::BANK_ID, Value::Text(r.bank_id.clone())),
            (role::IS_DEFAULT, Value::Bool(r.is_default)),
            (role::NAME, Value::Text(r.name.clone())),
            (role::NAMESPACE, Value::Text(r.namespace.clone())),
        ])
    }
}

/// PostgreSQL stores microseconds: what is written must compare equal to what is read back.
pub fn truncate_to_micros(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

// ---------------------------------------------------------------------------------------------
// Planning a sync

/// What a sync does to one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Insert the row, or overwrite the row with its key (upsert).
    Upsert(Row),
    /// Delete the row with this key.
    Delete(RowKey),
}

/// What a sync wrote to one row, and whether that repaired a row someone changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowChange {
    pub key: RowKey,
    pub action: Action,
    /// The table held something the operator had not written: the row was edited, deleted or
    /// inserted by hand (or by another writer) and is now restored.
    pub repaired: bool,
    /// For an update that is a repair: the columns whose value in the table was not the one the
    /// operator last wrote (the edited ones), as opposed to columns that changed because the
    /// resource did.
    pub restored: Vec<&'static str>,
}

/// The kind of write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Inserted,
    /// The columns (roles) whose values changed.
    Updated(Vec<&'static str>),
    Deleted,
}

/// A desired key already held by a row of another namespace: left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyConflict {
    pub key: RowKey,
    pub held_by_namespace: String,
    pub held_by_name: Option<String>,
}

/// The writes of one sync and what they mean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    pub writes: Vec<Write>,
    pub changes: Vec<RowChange>,
    pub conflicts: Vec<KeyConflict>,
}

/// Decide the writes that make the namespace's rows equal `desired`.
///
/// `existing`: the table's rows of `namespace` plus any row holding a desired key. `confirmed`:
/// per key, the rows the operator last wrote or found in place for this namespace in this
/// process (`None` when this process has not synced the namespace yet). A write is a *repair*
/// when the desired row did not change since it was confirmed — so the difference came from the
/// table, not from the resource:
/// - a confirmed row that is missing, or differs from what was confirmed;
/// - a row that differs from the desired one although the operator never confirmed it (after a
///   restart: rows only change through the operator, so a difference is an edit);
/// - a row in the namespace that nothing declares, when the namespace was synced before without
///   it (inserted by hand). Right after a restart such a row is deleted as a plain change: it may
///   be the row of a resource that went while the operator was away.
///
/// New desired rows and rows whose resource changed are plain changes, not repairs.
pub fn plan_sync(
    layout: &TableLayout,
    namespace: &str,
    desired: &[Row],
    existing: &[Row],
    confirmed: Option<&HashMap<RowKey, Row>>,
) -> SyncPlan {
    let empty = HashMap::new();
    let known = confirmed.is_some();
    let confirmed = confirmed.unwrap_or(&empty);
    let mut plan = SyncPlan::default();
    let desired: BTreeMap<RowKey, Row> = desired
        .iter()
        .map(|r| {
            let r = layout.project(r);
            (layout.key_of(&r), r)
        })
        .collect();
    let existing: BTreeMap<RowKey, Row> = existing
        .iter()
        .map(|r| {
            let r = layout.project(r);
            (layout.key_of(&r), r)
        })
        .collect();
    for (key, want) in &desired {
        let remembered = confirmed.get(key);
        match existing.get(key) {
            None => {
                plan.writes.push(Write::Upsert(want.clone()));
                plan.changes.push(RowChange {
                    key: key.clone(),
                    action: Action::Inserted,
                    repaired: remembered.is_some(),
                    restored: Vec::new(),
                });
            }
            Some(have) if have == want => {}
            Some(have) => {
                if let Some(other) = have.namespace().filter(|ns| *ns != namespace) {
                    plan.conflicts.push(KeyConflict {
                        key: key.clone(),
                        held_by_namespace: other.to_string(),
                        held_by_name: match have.get(role::NAME) {
                            Some(Value::Text(n)) => Some(n.clone()),
                            _ => None,
                        },
                    });
                    continue;
                }
                let columns: Vec<&'static str> = layout
                    .values()
                    .filter(|c| have.get(c.role) != want.get(c.role))
                    .map(|c| c.role)
                    .collect();
                // Per column: edited when the table's value is not what the operator last wrote
                // (never confirmed: every difference is an edit). A column whose desired value
                // changed while the table kept the last written one is the resource's change.
                let restored: Vec<&'static str> = columns
                    .iter()
                    .copied()
                    .filter(|role| remembered.is_none_or(|r| r.get(role) != have.get(role)))
                    .collect();
                plan.writes.push(Write::Upsert(want.clone()));
                plan.changes.push(RowChange {
                    key: key.clone(),
                    action: Action::Updated(columns),
                    repaired: !restored.is_empty(),
                    restored,
                });
            }
        }
    }
    for (key, have) in &existing {
        if desired.contains_key(key) || have.namespace() != Some(namespace) {
            continue;
        }
        plan.writes.push(Write::Delete(key.clone()));
        plan.changes.push(RowChange {
            key: key.clone(),
            action: Action::Deleted,
            repaired: known && !confirmed.contains_key(key),
            restored: Vec::new(),
        });
    }
    plan
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The table, as configured (`schema.table`).
    pub table: String,
    pub changes: Vec<RowChange>,
    pub conflicts: Vec<KeyConflict>,
    /// Desired rows now in the table.
    pub rows: usize,
    /// Human-readable key of each change, in `changes` order.
    pub described: Vec<String>,
}

impl SyncReport {
    /// The changes that repaired a row changed by hand, as sentences for an event.
    pub fn repairs(&self) -> Vec<String> {
        self.changes
            .iter()
            .zip(&self.described)
            .filter(|(c, _)| c.repaired)
            .map(|(c, key)| match &c.action {
                Action::Inserted => format!("re-inserted the deleted row {key}"),
                Action::Updated(_) => {
                    format!("restored {} of row {key}", c.restored.join(", "))
                }
                Action::Deleted => format!("deleted the undeclared row {key}"),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Backends and the sink

/// One SQL driver and dialect.
#[async_trait]
pub trait RegistryBackend: Send + Sync {
    /// In one transaction: read the rows of `namespace` and the rows holding `keys` (locking
    /// them), let `plan` decide, apply its writes, commit. Returns the plan applied.
    async fn sync(
        &self,
        layout: &TableLayout,
        namespace: &str,
        keys: &[RowKey],
        plan: &(dyn for<'r> Fn(&'r [Row]) -> SyncPlan + Send + Sync),
    ) -> Result<SyncPlan, RegistryError>;

    /// Create the tables (and schemas) that do not exist yet; existing ones are left as they are.
    async fn create_missing_tables(&self, layouts: &[&TableLayout]) -> Result<(), RegistryError>;

    /// The DDL `create_missing_tables` runs, for the README and `--help`.
    fn ddl(&self, layout: &TableLayout) -> String;
}

/// One namespace's turn on one table (see [`RegistrySink::turn`]).
type Turn = Arc<tokio::sync::Mutex<()>>;

/// The registry sink the controllers call.
pub struct RegistrySink {
    backend: Box<dyn RegistryBackend>,
    bank_clients: TableLayout,
    tenant_mappings: TableLayout,
    /// Per table and namespace: the rows confirmed by the last successful sync.
    confirmed: Mutex<HashMap<(RegistryTable, String), HashMap<RowKey, Row>>>,
    /// Per table and namespace: held from computing the desired rows until the sync commits, so
    /// two reconciles of one namespace cannot interleave (a sync planned from an older listing
    /// would otherwise write stale values over a newer sync's and call the difference an edit).
    turns: Mutex<HashMap<(RegistryTable, String), Turn>>,
    /// Create missing tables before the first sync (`--registry-database-migrate`).
    migrate: bool,
    migrated: AtomicBool,
}

impl RegistrySink {
    pub fn new(
        backend: Box<dyn RegistryBackend>,
        bank_clients: TableLayout,
        tenant_mappings: TableLayout,
    ) -> RegistrySink {
        RegistrySink {
            backend,
            bank_clients,
            tenant_mappings,
            confirmed: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            migrate: false,
            migrated: AtomicBool::new(false),
        }
    }

    /// Create the tables that do not exist before the first sync (and after a failed attempt,
    /// before the next one), so a database that is down at startup is migrated when it returns.
    pub fn with_migrate(mut self, migrate: bool) -> RegistrySink {
        self.migrate = migrate;
        self
    }

    pub fn bank_clients_layout(&self) -> &TableLayout {
        &self.bank_clients
    }

    pub fn tenant_mappings_layout(&self) -> &TableLayout {
        &self.tenant_mappings
    }

    /// Create the tables that do not exist (`--registry-database-migrate`).
    pub async fn migrate(&self) -> Result<(), RegistryError> {
        self.backend
            .create_missing_tables(&[&self.bank_clients, &self.tenant_mappings])
            .await
    }

    /// Wait for the namespace's turn on `table`: hold the guard from listing the resources that
    /// make the desired rows until the sync returns.
    pub async fn turn(&self, table: RegistryTable, namespace: &str) -> OwnedMutexGuard<()> {
        let lock = self
            .turns
            .lock()
            .expect("registry memory poisoned")
            .entry((table, namespace.to_string()))
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Make the namespace's bank-client rows equal `rows`.
    pub async fn sync_bank_clients(
        &self,
        namespace: &str,
        rows: &[BankClientRow],
    ) -> Result<SyncReport, RegistryError> {
        let rows: Vec<Row> = rows.iter().map(Row::from).collect();
        self.sync(RegistryTable::BankClients, namespace, &rows)
            .await
    }

    /// Make the namespace's tenant-mapping rows equal `rows`.
    pub async fn sync_tenant_mappings(
        &self,
        namespace: &str,
        rows: &[TenantMappingRow],
    ) -> Result<SyncReport, RegistryError> {
        let rows: Vec<Row> = rows.iter().map(Row::from).collect();
        self.sync(RegistryTable::TenantMappings, namespace, &rows)
            .await
    }

    async fn sync(
        &self,
        table: RegistryTable,
        namespace: &str,
        desired: &[Row],
    ) -> Result<SyncReport, RegistryError> {
        if self.migrate && !self.migrated.load(Ordering::Acquire) {
            self.migrate().await?;
            self.migrated.store(true, Ordering::Release);
        }
        let layout = match table {
            RegistryTable::BankClients => &self.bank_clients,
            RegistryTable::TenantMappings => &self.tenant_mappings,
        };
        let desired: Vec<Row> = desired.iter().map(|r| layout.project(r)).collect();
        let keys: Vec<RowKey> = desired.iter().map(|r| layout.key_of(r)).collect();
        let slot = (table, namespace.to_string());
        let confirmed = self
            .confirmed
            .lock()
            .expect("registry memory poisoned")
            .get(&slot)
            .cloned();
        let planner =
            |existing: &[Row]| plan_sync(layout, namespace, &desired, existing, confirmed.as_ref());
        let plan = self
            .backend
            .sync(layout, namespace, &keys, &planner)
            .await?;
        // Committed: what is in the table for this namespace is now the desired rows (minus
        // conflicts, which stay unconfirmed so they are re-examined).
        let conflicted: Vec<&RowKey> = plan.conflicts.iter().map(|c| &c.key).collect();
        let now_confirmed: HashMap<RowKey, Row> = desired
            .iter()
            .map(|r| (layout.key_of(r), r.clone()))
            .filter(|(k, _)| !conflicted.contains(&k))
            .collect();
        let rows = now_confirmed.len();
        self.confirmed
            .lock()
            .expect("registry memory poisoned")
            .insert(slot, now_confirmed);
        Ok(SyncReport {
            table: layout.table.to_string(),
            described: plan
                .changes
                .iter()
                .map(|c| layout.describe_key(&c.key))
                .collect(),
            changes: plan.changes,
            conflicts: plan.conflicts,
            rows,
        })
    }

    /// The DDL of both tables as `--registry-database-migrate` creates them.
    pub fn ddl(&self) -> String {
        format!(
            "{}\n\n{}",
            self.backend.ddl(&self.bank_clients),
            self.backend.ddl(&self.tenant_mappings)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(client: &str, bank: &str, ns: &str) -> Row {
        Row::from(&BankClientRow {
            client_id: client.into(),
            bank_id: bank.into(),
            name: bank.into(),
            namespace: ns.into(),
            secret_expires_at: None,
        })
    }

    fn layout() -> TableLayout {
        TableLayout::bank_clients("bank_clients", &ColumnNames::default()).unwrap()
    }

    fn key(s: &str) -> RowKey {
        RowKey(vec![s.into()])
    }

    #[test]
    fn identifiers_are_validated_and_quoted() {
        assert_eq!(
            Ident::new("BankClients").unwrap().quoted(),
            "\"BankClients\""
        );
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x\"; DROP TABLE y; --",
            "a.b",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?} accepted");
        }
        let t: TableName = "org.BankClients".parse().unwrap();
        assert_eq!(t.quoted(), "\"org\".\"BankClients\"");
        assert!("a.b.c".parse::<TableName>().is_err());
        assert!("\"x\"".parse::<TableName>().is_err());
    }

    #[test]
    fn column_names_are_configurable_and_checked() {
        let names: ColumnNames = "client_id=ClientId, bank_id=BankId,secret_expires_at=-"
            .parse()
            .unwrap();
        let l = TableLayout::bank_clients("dbo.BankClients", &names).unwrap();
        let cols: Vec<&str> = l.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cols, ["ClientId", "BankId", "name", "namespace"]);
        assert_eq!(l.updated_at.as_ref().unwrap().as_str(), "updated_at");
        assert!(
            TableLayout::bank_clients("t", &"bank_id=-".parse().unwrap()).is_err(),
            "required column left out"
        );
        assert!(TableLayout::bank_clients("t", &"colour=x".parse().unwrap()).is_err());
        assert!(TableLayout::bank_clients("t", &"name=bank_id".parse().unwrap()).is_err());
        assert!(TableLayout::bank_clients("t", &"name=x;--".parse().unwrap()).is_err());
        assert!("client_id".parse::<ColumnNames>().is_err());
    }

    #[test]
    fn new_rows_are_inserted_and_undeclared_rows_of_the_namespace_deleted() {
        let desired = [bank("c1", "nordbank", "ns")];
        let existing = [bank("c2", "fjord", "ns"), bank("c3", "other", "elsewhere")];
        let mut confirmed = HashMap::new();
        confirmed.insert(key("c2"), bank("c2", "fjord", "ns"));
        let plan = plan_sync(&layout(), "ns", &desired, &existing, Some(&confirmed));
        assert_eq!(
            plan.writes,
            [
                Write::Upsert(bank("c1", "nordbank", "ns")),
                Write::Delete(key("c2"))
            ]
        );
        assert!(plan.changes.iter().all(|c| !c.repaired), "{plan:?}");
    }

    #[test]
    fn hand_edits_are_repairs_resource_changes_are_not() {
        let want = bank("c1", "nordbank", "ns");
        let mut confirmed = HashMap::new();
        confirmed.insert(key("c1"), want.clone());
        // Edited by hand.
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&want),
            &[bank("c1", "evil", "ns")],
            Some(&confirmed),
        );
        assert_eq!(
            plan.changes[0].action,
            Action::Updated(vec![role::BANK_ID, role::NAME])
        );
        assert!(plan.changes[0].repaired);
        // Deleted by hand.
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&want),
            &[],
            Some(&confirmed),
        );
        assert!(plan.changes[0].repaired);
        // Inserted by hand into the namespace.
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&want),
            &[want.clone(), bank("c9", "x", "ns")],
            Some(&confirmed),
        );
        assert_eq!(plan.writes, [Write::Delete(key("c9"))]);
        assert!(plan.changes[0].repaired);
        // The resource changed (new expiry): a change, not a repair.
        let mut changed = BankClientRow {
            client_id: "c1".into(),
            bank_id: "nordbank".into(),
            name: "nordbank".into(),
            namespace: "ns".into(),
            secret_expires_at: None,
        };
        changed.secret_expires_at = Some("2028-01-01T00:00:00.1234567Z".parse().unwrap());
        let changed = Row::from(&changed);
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&changed),
            std::slice::from_ref(&want),
            Some(&confirmed),
        );
        assert_eq!(
            plan.changes[0].action,
            Action::Updated(vec![role::SECRET_EXPIRES_AT])
        );
        assert!(!plan.changes[0].repaired);
        // Edited by hand while the resource changed too: still a repair, naming only the edited
        // column (the expiry changed because the resource did).
        let mut edited = want.clone();
        edited
            .0
            .iter_mut()
            .filter(|(r, _)| *r == role::BANK_ID)
            .for_each(|(_, v)| *v = Value::Text("evil".into()));
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&changed),
            std::slice::from_ref(&edited),
            Some(&confirmed),
        );
        assert!(plan.changes[0].repaired, "{plan:?}");
        assert_eq!(plan.changes[0].restored, [role::BANK_ID]);
        // Nothing to do when the table already matches.
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&want),
            std::slice::from_ref(&want),
            None,
        );
        assert!(plan.writes.is_empty());
    }

    #[test]
    fn a_key_held_by_another_namespace_is_a_conflict_and_rows_without_namespace_are_adopted() {
        let want = bank("c1", "nordbank", "ns");
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&want),
            &[bank("c1", "nordbank", "other")],
            None,
        );
        assert!(plan.writes.is_empty());
        assert_eq!(plan.conflicts[0].held_by_namespace, "other");
        let mut by_hand = bank("c1", "nordbank", "");
        by_hand.0.retain(|(r, _)| *r != role::NAME);
        let plan = plan_sync(
            &layout(),
            "ns",
            std::slice::from_ref(&want),
            &[by_hand],
            None,
        );
        assert_eq!(plan.writes, [Write::Upsert(want)]);
    }

    #[test]
    fn timestamps_are_truncated_to_what_postgres_stores() {
        let t: jiff::Timestamp = "2028-01-01T00:00:00.1234567Z".parse().unwrap();
        assert_eq!(
            truncate_to_micros(t).to_string(),
            "2028-01-01T00:00:00.123456Z"
        );
    }
}
