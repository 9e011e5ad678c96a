//! What a waiting caller hears about their place and the wait, assembled from recorded
//! phrases ("You are number" "three". "The expected wait is about" "four" "minutes.").
//! Generic over the phrase type so the rules are tested with plain strings.

use std::time::Duration;

/// The recorded pieces. `numbers[n]` says the number n for 1..=19 and `tens[t]` the tens
/// (20, 30, ... 90 at index 2..=9); numbers between are said as tens then units.
#[derive(Debug, Clone)]
pub struct Phrases<T> {
    /// "You are next in line."
    pub next_in_line: T,
    /// "You are number"
    pub you_are_number: T,
    /// "in line."
    pub in_line: T,
    /// "There are many callers ahead of you." (beyond 99)
    pub many_ahead: T,
    pub numbers: Vec<T>,
    pub tens: Vec<T>,
    /// "The expected wait is about"
    pub wait_about: T,
    pub minute: T,
    pub minutes: T,
    /// "The wait should be less than a minute."
    pub under_a_minute: T,
    /// "The wait may be more than an hour."
    pub over_an_hour: T,
    /// "We will be with you as soon as we can." (no estimate yet)
    pub no_estimate: T,
}

/// The announcement for a caller at `position` (1 = next) with this estimate.
pub fn announcement<T: Clone>(
    position: usize,
    estimate: Option<Duration>,
    p: &Phrases<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    match position {
        0 | 1 => out.push(p.next_in_line.clone()),
        2..=99 => {
            out.push(p.you_are_number.clone());
            out.extend(number(position, p));
            out.push(p.in_line.clone());
        }
        _ => out.push(p.many_ahead.clone()),
    }
    match estimate {
        None => out.push(p.no_estimate.clone()),
        Some(d) => {
            // Rounded to the nearest minute: "about 4 minutes" for 3 min 40 s.
            let minutes = ((d.as_secs() + 30) / 60) as usize;
            match minutes {
                0 => out.push(p.under_a_minute.clone()),
                1..=59 => {
                    out.push(p.wait_about.clone());
                    out.extend(number(minutes, p));
                    out.push(if minutes == 1 {
                        p.minute.clone()
                    } else {
                        p.minutes.clone()
                    });
                }
                _ => out.push(p.over_an_hour.clone()),
            }
        }
    }
    out
}

/// The words for 1..=99.
fn number<T: Clone>(n: usize, p: &Phrases<T>) -> Vec<T> {
    if n < 20 {
        return p.numbers.get(n).cloned().into_iter().collect();
    }
    let mut out: Vec<T> = p.tens.get(n / 10).cloned().into_iter().collect();
    if n % 10 != 0 {
        out.extend(p.numbers.get(n % 10).cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrases() -> Phrases<String> {
        let words = [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ];
        let tens = [
            "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
        ];
        let s = |x: &str| x.to_string();
        Phrases {
            next_in_line: s("next"),
            you_are_number: s("you are number"),
            in_line: s("in line"),
            many_ahead: s("many"),
            numbers: words.iter().map(|w| s(w)).collect(),
            tens: tens.iter().map(|w| s(w)).collect(),
            wait_about: s("about"),
            minute: s("minute"),
            minutes: s("minutes"),
            under_a_minute: s("under a minute"),
            over_an_hour: s("over an hour"),
            no_estimate: s("soon"),
        }
    }

    fn say(position: usize, secs: Option<u64>) -> String {
        announcement(position, secs.map(Duration::from_secs), &phrases()).join(" ")
    }

    #[test]
    fn position_and_wait_in_words() {
        assert_eq!(say(1, Some(20)), "next under a minute");
        assert_eq!(
            say(3, Some(220)),
            "you are number three in line about four minutes"
        );
        assert_eq!(
            say(42, Some(60)),
            "you are number forty two in line about one minute"
        );
        assert_eq!(
            say(20, Some(30 * 60)),
            "you are number twenty in line about thirty minutes"
        );
        assert_eq!(say(150, Some(3 * 3600)), "many over an hour");
    }

    #[test]
    fn no_handle_times_no_number() {
        assert_eq!(say(2, None), "you are number two in line soon");
    }
}
