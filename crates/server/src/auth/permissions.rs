//! The permission table: what each role may do, and the scope names API tokens use. Every
//! route declares one [`Permission`] when it is registered (see `routes.rs`); this table and
//! `docs/permissions.md` must say the same thing (a test renders this table and compares).
//!
//! Must not contain any per-route exception: a route that needs something else needs a new
//! permission here.

use strongroom_catalog::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Anyone, without credentials (login, the OpenAPI document).
    Public,
    /// Any signed-in user, whatever the role (who am I, log out, change my password).
    Authenticated,
    /// Read backups, jobs, progress, schedules, health and events.
    Read,
    /// Start backups, verifications and test restores, cancel jobs, run schedules now,
    /// enable and disable schedules.
    RunBackups,
    /// Download (export) a backup's content.
    Download,
    /// Create, change and delete schedules.
    ManageSchedules,
    /// Restore a backup over live data.
    Restore,
    /// Delete backups.
    Delete,
    /// Manage users and API tokens.
    ManageUsers,
    /// Read the audit log.
    ReadAudit,
    /// Read and change the run-time settings.
    Settings,
    /// Read the Prometheus metrics (admins, or any token with the `metrics:read` scope).
    Metrics,
}

impl Permission {
    /// Every permission, in table order.
    pub const ALL: &'static [Permission] = &[
        Permission::Public,
        Permission::Authenticated,
        Permission::Read,
        Permission::RunBackups,
        Permission::Download,
        Permission::ManageSchedules,
        Permission::Restore,
        Permission::Delete,
        Permission::ManageUsers,
        Permission::ReadAudit,
        Permission::Settings,
        Permission::Metrics,
    ];

    /// The name used in docs, errors and as the token scope.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Public => "public",
            Permission::Authenticated => "authenticated",
            Permission::Read => "read",
            Permission::RunBackups => "backups:run",
            Permission::Download => "backups:download",
            Permission::ManageSchedules => "schedules:write",
            Permission::Restore => "backups:restore",
            Permission::Delete => "backups:delete",
            Permission::ManageUsers => "users:manage",
            Permission::ReadAudit => "audit:read",
            Permission::Settings => "settings:write",
            Permission::Metrics => "metrics:read",
        }
    }

    /// A permission by its name.
    pub fn from_name(name: &str) -> Option<Permission> {
        Self::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// Names a token may carry as scopes.
    pub fn scopes() -> impl Iterator<Item = &'static str> {
        Self::ALL
            .iter()
            .filter(|p| !matches!(p, Permission::Public | Permission::Authenticated))
            .map(|p| p.name())
    }

    /// Whether the role has the permission.
    pub fn role_allows(self, role: Role) -> bool {
        match self {
            Permission::Public | Permission::Authenticated | Permission::Read => true,
            Permission::RunBackups | Permission::Download => {
                matches!(role, Role::Staff | Role::Admin)
            }
            Permission::ManageSchedules
            | Permission::Restore
            | Permission::Delete
            | Permission::ManageUsers
            | Permission::ReadAudit
            | Permission::Settings
            | Permission::Metrics => role == Role::Admin,
        }
    }

    /// One line describing it.
    pub fn description(self) -> &'static str {
        match self {
            Permission::Public => "no credentials needed",
            Permission::Authenticated => "any signed-in user",
            Permission::Read => "read backups, jobs, progress, schedules, health and events",
            Permission::RunBackups => {
                "start backups, verifications and test restores; cancel jobs; run, enable and disable schedules"
            }
            Permission::Download => "download (export) a backup's content",
            Permission::ManageSchedules => "create, change and delete schedules",
            Permission::Restore => "restore a backup (with a confirmation token)",
            Permission::Delete => "delete backups",
            Permission::ManageUsers => "manage users and API tokens",
            Permission::ReadAudit => "read the audit log",
            Permission::Settings => "read and change run-time settings",
            Permission::Metrics => "read Prometheus metrics (or any token scoped metrics:read)",
        }
    }
}

/// The permission table as a Markdown table (the one in `docs/permissions.md`).
pub fn markdown_table() -> String {
    let mut s = String::from(
        "| permission | admin | staff | viewer | what it allows |\n|---|---|---|---|---|\n",
    );
    for p in Permission::ALL {
        let mark = |r| if p.role_allows(r) { "yes" } else { "no" };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            p.name(),
            mark(Role::Admin),
            mark(Role::Staff),
            mark(Role::Viewer),
            p.description()
        ));
    }
    s
}
