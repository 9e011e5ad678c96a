//! Schedules in virtual time: instants given as UTC, answers in the schedule's zone.

use super::*;

fn at(utc: &str) -> i64 {
    utc.parse::<Timestamp>().unwrap().as_second()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn london() -> Schedule {
    Schedule::new(
        "support",
        "Europe/London",
        &pairs(&[("mon-fri", "08:00-20:00"), ("sat", "09:00-13:00")]),
        &["2026-12-25".into(), "01-01".into()],
        &pairs(&[("2026-12-24", "08:00-12:00"), ("2026-12-31", "closed")]),
    )
    .unwrap()
}

#[test]
fn weekday_hours_in_winter_time() {
    let s = london();
    // Friday 27 March 2026, GMT (UTC+0).
    assert_eq!(s.status(at("2026-03-27T07:59:00Z")), Status::Closed);
    assert_eq!(s.status(at("2026-03-27T08:00:00Z")), Status::Open);
    assert_eq!(s.status(at("2026-03-27T19:59:00Z")), Status::Open);
    assert_eq!(s.status(at("2026-03-27T20:00:00Z")), Status::Closed);
    // Saturday morning only; Sunday closed.
    assert!(s.is_open(at("2026-03-28T10:00:00Z")));
    assert!(!s.is_open(at("2026-03-28T13:30:00Z")));
    assert!(!s.is_open(at("2026-03-29T10:00:00Z")));
}

#[test]
fn hours_follow_the_clock_across_the_spring_change() {
    let s = london();
    // Clocks go forward on Sunday 29 March 2026: from Monday 08:00 local is 07:00 UTC.
    assert!(s.is_open(at("2026-03-30T07:00:00Z")));
    assert!(!s.is_open(at("2026-03-30T06:59:00Z")));
    assert!(!s.is_open(at("2026-03-30T19:00:00Z")));
    // The same UTC minute was closed the Friday before.
    assert!(!s.is_open(at("2026-03-27T07:00:00Z")));
}

#[test]
fn hours_follow_the_clock_across_the_autumn_change() {
    let s = london();
    // Friday 23 October 2026 (BST): 08:00 local = 07:00 UTC.
    assert!(s.is_open(at("2026-10-23T07:00:00Z")));
    // Monday 26 October (GMT again): 07:00 UTC is 07:00 local, closed.
    assert!(!s.is_open(at("2026-10-26T07:00:00Z")));
    assert!(s.is_open(at("2026-10-26T08:00:00Z")));
}

#[test]
fn new_york_changes_on_its_own_date() {
    let s = Schedule::new(
        "ny",
        "America/New_York",
        &pairs(&[("weekdays", "09:00-17:00")]),
        &[],
        &[],
    )
    .unwrap();
    // Monday 2 March 2026 (EST, UTC-5): 09:00 local = 14:00 UTC.
    assert!(!s.is_open(at("2026-03-02T13:30:00Z")));
    assert!(s.is_open(at("2026-03-02T14:00:00Z")));
    // Monday 9 March 2026 (EDT since the 8th, UTC-4): 09:00 local = 13:00 UTC.
    assert!(s.is_open(at("2026-03-09T13:30:00Z")));
    // London has not changed yet that week: its own hours are unaffected.
    assert!(!london().is_open(at("2026-03-09T07:30:00Z")));
}

#[test]
fn holidays_and_exceptions() {
    let s = london();
    // Christmas Day (a Friday) is a holiday all day.
    assert_eq!(s.status(at("2026-12-25T10:00:00Z")), Status::Holiday);
    assert!(s.is_holiday_at(at("2026-12-25T23:59:00Z")));
    // New Year's Day, every year (2027-01-01 is a Friday; 2030-01-01 a Tuesday).
    assert_eq!(s.status(at("2027-01-01T10:00:00Z")), Status::Holiday);
    assert_eq!(s.status(at("2030-01-01T10:00:00Z")), Status::Holiday);
    assert_eq!(s.status(at("2030-01-02T10:00:00Z")), Status::Open);
    // Christmas Eve: open the morning only.
    assert!(s.is_open(at("2026-12-24T11:00:00Z")));
    assert_eq!(s.status(at("2026-12-24T13:00:00Z")), Status::Closed);
    // New Year's Eve: closed by exception, said like a holiday.
    assert_eq!(s.status(at("2026-12-31T10:00:00Z")), Status::Holiday);
    // An ordinary day in between.
    assert!(s.is_open(at("2026-12-29T10:00:00Z")));
}

#[test]
fn night_shifts_run_past_midnight() {
    let s = Schedule::new(
        "nights",
        "Europe/Berlin",
        &pairs(&[("mon-fri", "22:00-06:00")]),
        &["2026-12-25".into()],
        &[],
    )
    .unwrap();
    // Monday 23:00 and Tuesday 05:00 local (CET, UTC+1).
    assert!(s.is_open(at("2026-11-30T22:00:00Z")));
    assert!(s.is_open(at("2026-12-01T04:00:00Z")));
    assert!(!s.is_open(at("2026-12-01T05:30:00Z")));
    // Friday night runs into Saturday morning.
    assert!(s.is_open(at("2026-12-05T03:00:00Z")));
    // Saturday night has no shift.
    assert!(!s.is_open(at("2026-12-05T23:00:00Z")));
    // Thursday 24th's shift runs into the holiday morning; the holiday's own is off.
    assert!(s.is_open(at("2026-12-25T03:00:00Z")));
    assert_eq!(s.status(at("2026-12-25T22:00:00Z")), Status::Holiday);
    assert!(!s.is_open(at("2026-12-26T03:00:00Z")));
}

#[test]
fn bad_input_is_named() {
    let bad = |zone: &str, days: &str, hours: &str, hol: &str| {
        Schedule::new("x", zone, &pairs(&[(days, hours)]), &[hol.into()], &[])
            .unwrap_err()
            .to_string()
    };
    assert!(bad("Mars/Olympus", "mon", "08:00-09:00", "12-25").contains("Mars/Olympus"));
    assert!(bad("UTC", "funday", "08:00-09:00", "12-25").contains("funday"));
    assert!(bad("UTC", "mon", "8-9", "12-25").contains("8-9"));
    assert!(bad("UTC", "mon", "25:00-26:00", "12-25").contains("25:00"));
    assert!(bad("UTC", "mon", "08:00-09:00", "2026-02-30").contains("2026-02-30"));
    assert!(bad("UTC", "mon", "08:00-09:00", "13-01").contains("13-01"));
    assert_eq!(parse_days("sat-mon").unwrap(), vec![5, 6, 0]);
    assert_eq!(
        parse_hours("24h").unwrap(),
        vec![Span {
            start: 0,
            end: 1440
        }]
    );
    assert!(parse_hours("closed").unwrap().is_empty());
    assert!(parse_holiday("02-29").is_ok());
    // Found by fuzzing: hours that overflow minutes, months that wrap in an i8.
    assert!(parse_hours("9999:00-10:00").is_err());
    assert!(parse_hours("65535:00-1:00").is_err());
    assert!(parse_holiday("268-25").is_err());
    assert!(parse_holiday("2026-268-25").is_err());
}
