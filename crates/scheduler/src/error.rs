//! Why a schedule or a time zone was rejected.
//!
//! Every message says what is wrong and gives a working example, because these errors are
//! shown to the person who typed the schedule (in the config file, the CLI or the web form).
//! What it must not do: hold anything but the user's own schedule text (no secrets pass here).

/// One example of each accepted form, appended to errors that cannot point at one field.
pub const FORMS: &str = "accepted forms: a 5-field cron expression such as `30 2 * * *`, \
     `@daily` / `@hourly` / `@weekly` / `@monthly` / `@yearly`, `daily 02:30`, \
     `weekly sun 02:30`, `monthly 1 02:30` (or `monthly last 02:30`), `hourly :15`";

/// Why a schedule specification or time zone was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The specification is empty.
    #[error("the schedule is empty; {FORMS}")]
    Empty,
    /// The time zone is not an IANA name known to the compiled-in database.
    #[error(
        "unknown time zone `{name}`{hint}; use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`"
    )]
    UnknownTimeZone {
        /// The name as given.
        name: String,
        /// `" (did you mean `X`?)"` when a name differs only in case, else empty.
        hint: String,
    },
    /// A cron expression without exactly five fields.
    #[error(
        "a cron expression has 5 fields (minute hour day-of-month month day-of-week) but `{spec}` has {found}; e.g. `30 2 * * *` runs at 02:30 every day"
    )]
    FieldCount {
        /// The expression.
        spec: String,
        /// How many fields it has.
        found: usize,
    },
    /// One field of a cron expression is malformed or out of range.
    #[error("cron field {position} ({field}) `{value}`: {reason}; e.g. `{example}`")]
    CronField {
        /// 1-based position of the field.
        position: usize,
        /// The field's name ("minute", "hour", "day of month", "month", "day of week").
        field: &'static str,
        /// The field's text.
        value: String,
        /// What is wrong with it.
        reason: String,
        /// A valid value for this field.
        example: &'static str,
    },
    /// An `@name` that is not a known preset.
    #[error(
        "unknown preset `{0}`; known presets: @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually)"
    )]
    UnknownPreset(String),
    /// A simple form (`daily …`, `weekly …`, `monthly …`, `hourly …`) that is malformed.
    #[error("`{spec}`: {reason}; e.g. `{example}`")]
    SimpleForm {
        /// The specification.
        spec: String,
        /// What is wrong with it.
        reason: String,
        /// A valid specification of the same kind.
        example: &'static str,
    },
    /// Text that is neither cron nor a simple form.
    #[error("`{spec}` is not a schedule; {FORMS}")]
    Unrecognised {
        /// The specification.
        spec: String,
    },
    /// A well-formed expression that can never fire (e.g. the 31st of February).
    #[error("`{spec}` never runs: {reason}")]
    NeverRuns {
        /// The specification.
        spec: String,
        /// Why.
        reason: String,
    },
}
