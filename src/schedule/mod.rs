//! Opening hours and holiday calendars: is a line open at a given moment? Pure: the moment
//! comes in as Unix seconds, and time zones come from the tz database bundled into the
//! binary (jiff), so the answer is the same on every host and in every test.
//!
//! Hours are local wall-clock times in the schedule's zone ("we open at 08:00 London
//! time"), so daylight-saving changes move them with the clock, as callers expect. A span
//! whose end is before its start runs past midnight into the next day (a night shift).
//! Holidays close a whole day; exceptions give one date other hours (or close it).

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::collections::{HashMap, HashSet};

/// Minutes from local midnight, `start..end`; `end` may be 1440 (midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u16,
    pub end: u16,
}

/// What a schedule says of a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    /// Outside the day's hours.
    Closed,
    /// The day is a holiday (or an exception that closes it).
    Holiday,
}

/// A day that is a holiday: one date, or the same day every year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holiday {
    Date(Date),
    /// Month and day, every year.
    Yearly(i8, i8),
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    tz: TimeZone,
    /// Monday first.
    week: [Vec<Span>; 7],
    holidays: HashSet<Holiday>,
    /// Dates with other hours than their weekday's (empty: closed).
    exceptions: HashMap<Date, Vec<Span>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown time zone '{0}' (use an IANA name such as Europe/London)")]
    Zone(String),
    #[error("'{0}' is not a day or day range (mon, tue, ..., sun; mon-fri; daily)")]
    Days(String),
    #[error("'{0}' is not a list of hours such as \"08:00-12:00, 13:00-17:30\" (or \"closed\")")]
    Hours(String),
    #[error("'{0}' is not a date (YYYY-MM-DD, or MM-DD for every year)")]
    Date(String),
}

impl Schedule {
    /// A schedule from its parts as written in the config.
    /// `open`: day or day range ("mon-fri", "sat", "daily") -> hours ("08:00-20:00").
    pub fn new(
        name: &str,
        zone: &str,
        open: &[(String, String)],
        holidays: &[String],
        exceptions: &[(String, String)],
    ) -> Result<Schedule, ScheduleError> {
        let tz = TimeZone::get(zone).map_err(|_| ScheduleError::Zone(zone.to_string()))?;
        let mut week: [Vec<Span>; 7] = Default::default();
        for (days, hours) in open {
            let spans = parse_hours(hours)?;
            for d in parse_days(days)? {
                week[d].extend(spans.iter().copied());
            }
        }
        let holidays = holidays
            .iter()
            .map(|h| parse_holiday(h))
            .collect::<Result<_, _>>()?;
        let mut ex = HashMap::new();
        for (date, hours) in exceptions {
            let Holiday::Date(d) = parse_holiday(date)? else {
                return Err(ScheduleError::Date(date.clone()));
            };
            ex.insert(d, parse_hours(hours)?);
        }
        Ok(Schedule {
            name: name.to_string(),
            tz,
            week,
            holidays,
            exceptions: ex,
        })
    }

    /// The schedule's state at `unix` (seconds).
    pub fn status(&self, unix: i64) -> Status {
        let Ok(ts) = Timestamp::from_second(unix) else {
            return Status::Closed;
        };
        let local = ts.to_zoned(self.tz.clone()).datetime();
        let (date, time) = (local.date(), local.time());
        let minute = minutes(time);
        if self.is_holiday(date) {
            // A night shift that began yesterday still runs into a holiday morning.
            return if self.tail_of_yesterday(date, minute) {
                Status::Open
            } else {
                Status::Holiday
            };
        }
        let today = self.spans(date);
        let open_today = today.iter().any(|s| {
            if s.end > s.start {
                (s.start..s.end).contains(&minute)
            } else {
                minute >= s.start
            }
        });
        if open_today || self.tail_of_yesterday(date, minute) {
            Status::Open
        } else {
            Status::Closed
        }
    }

    pub fn is_open(&self, unix: i64) -> bool {
        self.status(unix) == Status::Open
    }

    /// Whether the schedule calls `unix`'s local day a holiday.
    pub fn is_holiday_at(&self, unix: i64) -> bool {
        Timestamp::from_second(unix)
            .map(|ts| self.is_holiday(ts.to_zoned(self.tz.clone()).date()))
            .unwrap_or(false)
    }

    fn is_holiday(&self, date: Date) -> bool {
        if self.exceptions.get(&date).is_some_and(|s| s.is_empty()) {
            return true;
        }
        self.holidays.contains(&Holiday::Date(date))
            || self
                .holidays
                .contains(&Holiday::Yearly(date.month(), date.day()))
    }

    fn spans(&self, date: Date) -> &[Span] {
        match self.exceptions.get(&date) {
            Some(s) => s,
            None => &self.week[weekday_index(date.weekday())],
        }
    }

    /// Whether an overnight span of the day before still covers `minute` today.
    fn tail_of_yesterday(&self, date: Date, minute: u16) -> bool {
        let Ok(yesterday) = date.yesterday() else {
            return false;
        };
        if self.is_holiday(yesterday) {
            return false;
        }
        self.spans(yesterday)
            .iter()
            .any(|s| s.end <= s.start && minute < s.end)
    }
}

fn minutes(t: Time) -> u16 {
    t.hour() as u16 * 60 + t.minute() as u16
}

fn weekday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// "mon", "mon-fri", "sat-sun", "daily", "weekdays", "weekends", or a comma list of these.
pub fn parse_days(s: &str) -> Result<Vec<usize>, ScheduleError> {
    let err = || ScheduleError::Days(s.to_string());
    let day = |d: &str| {
        let d = d.trim().to_ascii_lowercase();
        DAYS.iter().position(|x| d.starts_with(x) && d.len() >= 3)
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim().to_ascii_lowercase();
        match part.as_str() {
            "daily" | "every day" => out.extend(0..7),
            "weekdays" => out.extend(0..5),
            "weekends" => out.extend(5..7),
            _ => match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(err)?, day(b).ok_or_else(err)?);
                    let mut d = a;
                    loop {
                        out.push(d);
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => out.push(day(&part).ok_or_else(err)?),
            },
        }
    }
    Ok(out)
}

/// "08:00-12:00, 13:00-17:30"; "closed" (or empty) is no hours; "24h" the whole day.
pub fn parse_hours(s: &str) -> Result<Vec<Span>, ScheduleError> {
    let err = || ScheduleError::Hours(s.to_string());
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() || t == "closed" {
        return Ok(Vec::new());
    }
    if t == "24h" || t == "open" {
        return Ok(vec![Span {
            start: 0,
            end: 1440,
        }]);
    }
    let clock = |c: &str| -> Option<u16> {
        let (h, m) = c.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        // `then`, not `then_some`: the sum must not be computed for hours
        // that overflow.
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then(|| h * 60 + m)
    };
    t.split(',')
        .map(|part| {
            let (a, b) = part.split_once('-').ok_or_else(err)?;
            let (start, end) = (clock(a).ok_or_else(err)?, clock(b).ok_or_else(err)?);
            if start == end || start == 1440 {
                return Err(err());
            }
            Ok(Span { start, end })
        })
        .collect()
}

/// "2026-12-25" (that day) or "12-25" (every year).
pub fn parse_holiday(s: &str) -> Result<Holiday, ScheduleError> {
    let err = || ScheduleError::Date(s.to_string());
    let parts: Vec<&str> = s.trim().split('-').collect();
    let year = |p: &str| p.parse::<i16>().map_err(|_| err());
    let num = |p: &str| p.parse::<i8>().map_err(|_| err());
    match parts.as_slice() {
        [y, m, d] => Date::new(year(y)?, num(m)?, num(d)?)
            .map(Holiday::Date)
            .map_err(|_| err()),
        [m, d] => {
            let (m, d) = (num(m)?, num(d)?);
            // Checked against a leap year so 02-29 is allowed.
            Date::new(2024, m, d).map_err(|_| err())?;
            Ok(Holiday::Yearly(m, d))
        }
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests;
