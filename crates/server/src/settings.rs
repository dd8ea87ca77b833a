//! Run-time settings that are safe to change while the service runs (alert recipients, the
//! stuck-job threshold). Changes are recorded as `settings.update` entries in the audit log,
//! and the newest such entry is the current value, so settings survive restarts and are
//! shared by every instance without a table of their own.
//!
//! Must not hold anything that needs a restart (addresses, sources, secrets).

use serde::{Deserialize, Serialize};
use strongroom_catalog::{AuditFilter, Catalog};

/// The run-time settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSettings {
    /// Who gets alert e-mails (overrides `[notify.email] to`; empty: the configured ones).
    pub alert_emails: Vec<String>,
    /// An in-progress job whose heartbeat is older than this many minutes is stuck.
    pub stuck_after_minutes: u32,
}

/// The audit action that records a change.
pub const SETTINGS_ACTION: &str = "settings.update";

impl RuntimeSettings {
    /// The defaults from the configuration.
    pub fn defaults(config: &strongroom_config::Config, stuck_after_minutes: u32) -> Self {
        RuntimeSettings {
            alert_emails: config
                .notify
                .email
                .as_ref()
                .map(|e| e.to.clone())
                .unwrap_or_default(),
            stuck_after_minutes,
        }
    }
}

/// The current settings: the newest `settings.update` in the audit log, else `defaults`.
///
/// # Errors
/// When the catalog fails.
pub async fn load_settings(
    catalog: &Catalog,
    defaults: RuntimeSettings,
) -> Result<RuntimeSettings, strongroom_catalog::CatalogError> {
    let entries = catalog
        .audit()
        .list(&AuditFilter {
            action: Some(SETTINGS_ACTION.to_owned()),
            limit: 1,
            ..AuditFilter::default()
        })
        .await?;
    Ok(entries
        .first()
        .and_then(|e| serde_json::from_value(e.details.get("settings")?.clone()).ok())
        .unwrap_or(defaults))
}

impl crate::state::AppState {
    /// The current run-time settings (read once, then kept in memory and updated by PUT).
    pub(crate) async fn settings(&self) -> Result<RuntimeSettings, crate::error::ApiError> {
        if let Ok(g) = self.inner.settings.read()
            && let Some(s) = g.as_ref()
        {
            return Ok(s.clone());
        }
        let defaults = RuntimeSettings::defaults(self.config(), self.options().stuck_after_minutes);
        let s = load_settings(self.catalog(), defaults).await?;
        if let Ok(mut g) = self.inner.settings.write() {
            *g = Some(s.clone());
        }
        Ok(s)
    }

    pub(crate) fn set_settings(&self, s: RuntimeSettings) {
        if let Ok(mut g) = self.inner.settings.write() {
            *g = Some(s);
        }
    }
}
