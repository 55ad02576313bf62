//! When a scheduled snapshot is due: a cron expression read in an IANA time zone.
//!
//! An expression has five fields (`minute hour day-of-month month day-of-week`, as in
//! `0 0 * * FRI`) or six with seconds first. It is matched against the zone's wall clock,
//! and each match becomes one instant:
//!
//! - a wall-clock time that happens twice (the night the clocks go back) runs once, at its
//!   first occurrence;
//! - a wall-clock time that never happens (the night the clocks go forward, e.g. 02:30 in
//!   Europe/Berlin on the last Sunday of March) runs once, when the clocks change; several
//!   such times (every 15 minutes) still run once.
//!
//! After downtime a missed run is made up once, not once per miss ([`Schedule::due`]).
//! Nothing here reads a clock: the caller says what time it is.

use std::str::FromStr;

use chrono::{Duration, LocalResult, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use time::OffsetDateTime;

/// A cron expression that could not be used, naming what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// Not five or six fields.
    #[error("a cron expression has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; {0:?} has {1}")]
    FieldCount(String, usize),
    /// One field does not parse.
    #[error("cron field {field} is invalid: {value:?}")]
    Field { field: &'static str, value: String },
    /// The fields parse, but no date ever matches them (`0 0 30 2 *`).
    #[error("the cron expression {0:?} never fires: no date has its day-of-month in its month")]
    Never(String),
    /// Not an IANA time zone name.
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Berlin or UTC")]
    Zone(String),
}

/// The field names of a five-field expression, in order.
const FIVE: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
/// The field names of a six-field expression, in order.
const SIX: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

/// A parsed schedule: when, and in which zone's wall clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Parses `expression` (5 or 6 fields; month and weekday names allowed) in `zone`.
    pub fn parse(expression: &str, zone: &str) -> Result<Self, ScheduleError> {
        let zone = Tz::from_str(zone.trim()).map_err(|_| ScheduleError::Zone(zone.to_owned()))?;
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let names: &[&str] = match fields.len() {
            5 => &FIVE,
            6 => &SIX,
            n => return Err(ScheduleError::FieldCount(expression.to_owned(), n)),
        };
        let parser = CronParser::builder()
            .seconds(if fields.len() == 6 {
                Seconds::Required
            } else {
                Seconds::Disallowed
            })
            .year(Year::Disallowed)
            .build();
        let cron = match parser.parse(&fields.join(" ")) {
            Ok(cron) => cron,
            Err(_) => return Err(blame(&parser, &fields, names)),
        };
        let schedule = Schedule {
            expression: fields.join(" "),
            cron,
            zone,
        };
        // One that never matches fails its first search (croner looks years ahead).
        let probe = NaiveDateTime::default();
        if schedule.cron.find_next_occurrence(&probe, false).is_err() {
            return Err(ScheduleError::Never(schedule.expression));
        }
        Ok(schedule)
    }

    /// The expression, its fields separated by single spaces.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone's IANA name.
    pub fn zone(&self) -> &str {
        self.zone.name()
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        // Matches are searched on the wall clock from the local time of `after`; one that
        // maps to an instant at or before `after` (the second pass of a repeated hour) is
        // passed over. No earlier wall-clock time can map to a later instant: a repeated
        // time runs at its first occurrence, a skipped one at the change.
        let mut wall = self.wall(after)?;
        for _ in 0..10_000 {
            let next = self.cron.find_next_occurrence(&wall, false).ok()?;
            if let Some(at) = self.instant(next) {
                if at > after {
                    return Some(at);
                }
            }
            wall = next;
        }
        None
    }

    /// The next `n` runs after `after`.
    pub fn upcoming(&self, after: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
        let mut runs = Vec::with_capacity(n);
        let mut from = after;
        while runs.len() < n {
            match self.next_after(from) {
                Some(at) => {
                    runs.push(at);
                    from = at;
                }
                None => break,
            }
        }
        runs
    }

    /// The run to make now, if one fell due after `last` (the previous run, or when the
    /// schedule was made) and at or before `now`: the latest such, once, however many were
    /// missed while nothing ran.
    pub fn due(&self, last: OffsetDateTime, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.latest_at_or_before(now).filter(|at| *at > last)
    }

    /// The latest run at or before `now`.
    fn latest_at_or_before(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let mut wall = self.wall(now)?;
        let mut inclusive = true;
        for _ in 0..10_000 {
            let previous = self.cron.find_previous_occurrence(&wall, inclusive).ok()?;
            if let Some(at) = self.instant(previous) {
                if at <= now {
                    return Some(at);
                }
            }
            wall = previous;
            inclusive = false;
        }
        None
    }

    /// The zone's wall-clock time at `at`.
    fn wall(&self, at: OffsetDateTime) -> Option<NaiveDateTime> {
        let utc = chrono::DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond())?;
        Some(utc.with_timezone(&self.zone).naive_local())
    }

    /// The instant a wall-clock match runs at, per the rules in the module's docs.
    fn instant(&self, wall: NaiveDateTime) -> Option<OffsetDateTime> {
        let at = match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(t) => t,
            // Twice: the first.
            LocalResult::Ambiguous(first, _) => first,
            // Skipped: the first wall-clock minute that exists after it, which is the
            // change itself (zones change on whole minutes).
            LocalResult::None => {
                let minute = wall.with_second(0)?.with_nanosecond(0)?;
                let mut probe = minute;
                loop {
                    probe += Duration::minutes(1);
                    if probe - minute > Duration::hours(25) {
                        return None;
                    }
                    match self.zone.from_local_datetime(&probe) {
                        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => break t,
                        LocalResult::None => {}
                    }
                }
            }
        };
        OffsetDateTime::from_unix_timestamp(at.timestamp()).ok()
    }
}

/// Which field of `fields` makes the expression fail: each is tried alone, the others `*`.
fn blame(parser: &CronParser, fields: &[&str], names: &[&'static str]) -> ScheduleError {
    for (i, field) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if i == j { *field } else { "*" })
            .collect();
        if parser.parse(&alone.join(" ")).is_err() {
            return ScheduleError::Field {
                field: names[i],
                value: (*field).to_owned(),
            };
        }
    }
    // Each field parses alone but not together (day-of-month with day-of-week `?` rules).
    ScheduleError::Field {
        field: names[names.len() - 3],
        value: fields[fields.len() - 3].to_owned(),
    }
}

/// A snapshot name from a template and the run's time in the schedule's zone:
/// `{date}` (2026-12-04), `{time}` (0000 or 000000 with seconds), `{datetime}`
/// (2026-12-04-0000), `{year}`, `{month}`, `{day}`, `{week}` (ISO week, 49), `{weekday}` (fri).
pub fn render_name(template: &str, schedule: &Schedule, at: OffsetDateTime) -> String {
    let utc = chrono::DateTime::from_timestamp(at.unix_timestamp(), 0).unwrap_or_default();
    let local = utc.with_timezone(&schedule.zone);
    let seconds = schedule.expression.split(' ').count() == 6;
    let time = if seconds {
        local.format("%H%M%S").to_string()
    } else {
        local.format("%H%M").to_string()
    };
    let date = local.format("%Y-%m-%d").to_string();
    template
        .replace("{datetime}", &format!("{date}-{time}"))
        .replace("{date}", &date)
        .replace("{time}", &time)
        .replace("{year}", &local.format("%Y").to_string())
        .replace("{month}", &local.format("%m").to_string())
        .replace("{day}", &local.format("%d").to_string())
        .replace("{week}", &local.format("%V").to_string())
        .replace("{weekday}", &local.format("%a").to_string().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn runs(expr: &str, zone: &str, after: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
        Schedule::parse(expr, zone).unwrap().upcoming(after, n)
    }

    #[test]
    fn fridays_at_midnight_in_utc() {
        let r = runs("0 0 * * FRI", "UTC", datetime!(2026-12-07 13:00 UTC), 3);
        assert_eq!(
            r,
            vec![
                datetime!(2026-12-11 00:00 UTC),
                datetime!(2026-12-18 00:00 UTC),
                datetime!(2026-12-25 00:00 UTC)
            ]
        );
    }

    #[test]
    fn the_zone_s_wall_clock_is_what_matches() {
        let r = runs(
            "0 9 * * *",
            "Europe/Berlin",
            datetime!(2026-12-07 13:00 UTC),
            1,
        );
        assert_eq!(r, vec![datetime!(2026-12-08 08:00 UTC)]);
        let r = runs(
            "0 9 * * *",
            "America/New_York",
            datetime!(2026-07-01 00:00 UTC),
            1,
        );
        assert_eq!(r, vec![datetime!(2026-07-01 13:00 UTC)]);
    }

    #[test]
    fn a_skipped_time_runs_once_when_the_clocks_change() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let r = runs(
            "30 2 * * *",
            "Europe/Berlin",
            datetime!(2026-03-28 12:00 UTC),
            3,
        );
        assert_eq!(
            r,
            vec![
                datetime!(2026-03-29 01:00 UTC),
                datetime!(2026-03-30 00:30 UTC),
                datetime!(2026-03-31 00:30 UTC)
            ]
        );
        // Every 15 minutes through the gap: one run at the change, then on as usual.
        let r = runs(
            "*/15 * * * *",
            "Europe/Berlin",
            datetime!(2026-03-29 00:50 UTC),
            3,
        );
        assert_eq!(
            r,
            vec![
                datetime!(2026-03-29 01:00 UTC),
                datetime!(2026-03-29 01:15 UTC),
                datetime!(2026-03-29 01:30 UTC)
            ]
        );
    }

    #[test]
    fn a_repeated_time_runs_once() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        let r = runs(
            "30 2 * * *",
            "Europe/Berlin",
            datetime!(2026-10-24 12:00 UTC),
            2,
        );
        assert_eq!(
            r,
            vec![
                datetime!(2026-10-25 00:30 UTC),
                datetime!(2026-10-26 01:30 UTC)
            ]
        );
        // Hourly through the repeated hour: 02:00 CEST runs, the wall clock's second 02:00
        // (CET) does not, 03:00 CET does: no wall-clock time runs twice.
        let r = runs(
            "0 * * * *",
            "Europe/Berlin",
            datetime!(2026-10-24 23:30 UTC),
            4,
        );
        assert_eq!(
            r,
            vec![
                datetime!(2026-10-25 00:00 UTC),
                datetime!(2026-10-25 02:00 UTC),
                datetime!(2026-10-25 03:00 UTC),
                datetime!(2026-10-25 04:00 UTC)
            ]
        );
    }

    #[test]
    fn seconds_come_first_in_six_fields() {
        let r = runs(
            "*/20 * * * * *",
            "UTC",
            datetime!(2026-12-07 13:00:05 UTC),
            3,
        );
        assert_eq!(
            r,
            vec![
                datetime!(2026-12-07 13:00:20 UTC),
                datetime!(2026-12-07 13:00:40 UTC),
                datetime!(2026-12-07 13:01:00 UTC)
            ]
        );
    }

    #[test]
    fn a_missed_run_is_made_up_once() {
        let s = Schedule::parse("0 * * * *", "UTC").unwrap();
        // Down from 10:30 to 15:10: five runs missed, one made up, the latest.
        let due = s.due(
            datetime!(2026-12-07 10:30 UTC),
            datetime!(2026-12-07 15:10 UTC),
        );
        assert_eq!(due, Some(datetime!(2026-12-07 15:00 UTC)));
        assert_eq!(
            s.due(
                datetime!(2026-12-07 15:00 UTC),
                datetime!(2026-12-07 15:10 UTC)
            ),
            None
        );
        // A schedule every second, missed for days, is still one run.
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let due = s.due(
            datetime!(2026-12-01 00:00 UTC),
            datetime!(2026-12-07 15:10 UTC),
        );
        assert_eq!(due, Some(datetime!(2026-12-07 15:10 UTC)));
    }

    #[test]
    fn bad_expressions_name_the_field() {
        let field = |e: &str| match Schedule::parse(e, "UTC") {
            Err(ScheduleError::Field { field, .. }) => field,
            other => panic!("{e}: {other:?}"),
        };
        assert_eq!(field("61 0 * * *"), "minute");
        assert_eq!(field("0 25 * * *"), "hour");
        assert_eq!(field("0 0 32 * *"), "day-of-month");
        assert_eq!(field("0 0 * 13 *"), "month");
        assert_eq!(field("0 0 * * FRIDAY"), "day-of-week");
        assert_eq!(field("70 0 0 * * *"), "second");
        assert!(matches!(
            Schedule::parse("0 0 * *", "UTC"),
            Err(ScheduleError::FieldCount(_, 4))
        ));
        assert!(matches!(
            Schedule::parse("0 0 0 * * * 2027", "UTC"),
            Err(ScheduleError::FieldCount(_, 7))
        ));
        assert!(matches!(
            Schedule::parse("0 0 30 2 *", "UTC"),
            Err(ScheduleError::Never(_))
        ));
        assert!(matches!(
            Schedule::parse("0 0 * * *", "Mars/Olympus"),
            Err(ScheduleError::Zone(_))
        ));
        let message = Schedule::parse("0 25 * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert_eq!(message, "cron field hour is invalid: \"25\"");
    }

    #[test]
    fn names_from_templates() {
        let s = Schedule::parse("0 0 * * FRI", "Europe/Berlin").unwrap();
        let at = datetime!(2026-12-10 23:00 UTC);
        assert_eq!(render_name("weekly-{date}", &s, at), "weekly-2026-12-11");
        assert_eq!(
            render_name("w{week}-{weekday}-{datetime}", &s, at),
            "w50-fri-2026-12-11-0000"
        );
    }
}
