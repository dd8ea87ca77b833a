//! The JSON API v1 under `/api/v1`: backups and jobs, schedules, health, users and tokens,
//! the audit log, settings, authentication and events. Each submodule registers its routes
//! (with their permissions and OpenAPI facts) through the route registry.
//!
//! Must not register routes any other way.

mod admin;
mod auth;
mod backups;
mod health;
pub(crate) mod ops;
pub(crate) mod schedules;
mod users;

use crate::routes::Registry;

pub(crate) fn register(r: &mut Registry) {
    auth::register(r);
    backups::register(r);
    schedules::register(r);
    health::register(r);
    users::register(r);
    admin::register(r);
    crate::events::register(r);
}
