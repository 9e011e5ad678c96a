//! Caller memory: what ivrd remembers of returning callers, keyed by the caller ID the
//! network gave (never by anything they said): the name they prefer, their last intent and
//! call, notes. Filled by calls (last intent and time), the admin API and CSV imports;
//! erased by number on request, and after `callers.retention_days` untouched.
//! Numbers never reach logs or the audit trail in clear: [`number_tag`] stands for them.

use super::sqlite::SqliteStore;
#[cfg(test)]
use super::Store;
use super::StoreError;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One caller's record as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallerRow {
    pub number: String,
    pub name: Option<String>,
    pub last_intent: Option<String>,
    pub last_call_at: Option<i64>,
    pub notes: Option<String>,
    pub updated_at: i64,
}

/// What an admin sets (API, CSV import). `None` leaves a field as it is; an empty string
/// clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerEdit {
    #[serde(default)]
    pub number: String,
    pub name: Option<String>,
    pub notes: Option<String>,
}

/// Longest name and notes kept.
pub(super) const MAX_NAME: usize = 80;
pub(super) const MAX_NOTES: usize = 1000;

/// A caller ID ivrd may remember: a phone number (digits, an optional leading `+`), not
/// `anonymous` or a SIP user name.
pub fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (3..=32).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

/// Stands for a number in logs and the audit trail: a keyed hash (the key is this
/// install's, so the tag cannot be reversed by hashing every number).
pub fn number_tag(key: &[u8], number: &str) -> String {
    let mut h = Sha256::new();
    h.update(key);
    h.update(number.as_bytes());
    let d = h.finalize();
    let hex: String = d[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("caller-{hex}")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: u64,
    pub message: String,
}

/// Reads `number,name,notes` rows (a header line first; `name` and `notes` may be left
/// out as columns). Every bad row is reported with its line.
pub fn parse_csv(text: &str) -> Result<Vec<CallerEdit>, Vec<CsvError>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![CsvError {
                line: 1,
                message: e.to_string(),
            }])
        }
    };
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(number_col) = col("number") else {
        return Err(vec![CsvError {
            line: 1,
            message: "the header needs a 'number' column (and optionally 'name', 'notes')".into(),
        }]);
    };
    let (name_col, notes_col) = (col("name"), col("notes"));
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for rec in reader.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(CsvError {
                    line,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let number = rec.get(number_col).unwrap_or("").to_string();
        if !is_number(&number) {
            errors.push(CsvError {
                line,
                message: format!("'{number}' is not a phone number (digits, optional leading +)"),
            });
            continue;
        }
        let field = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::to_string);
        rows.push(CallerEdit {
            number,
            name: field(name_col),
            notes: field(notes_col),
        });
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

pub(super) fn clip(s: &Option<String>, max: usize) -> Option<String> {
    s.as_ref().map(|v| {
        v.chars()
            .filter(|c| !c.is_control())
            .take(max)
            .collect::<String>()
            .trim()
            .to_string()
    })
}

impl SqliteStore {
    pub fn caller_row(&self, number: &str) -> Result<Option<CallerRow>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT number, name, last_intent, last_call_at, notes, updated_at FROM callers WHERE number = ?1",
            [number],
            row,
        )
        .optional()
        .map_err(|e| self.db_err(e))
    }

    /// Records, most recently updated first.
    pub fn callers(&self, limit: usize, offset: usize) -> Result<Vec<CallerRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT number, name, last_intent, last_call_at, notes, updated_at FROM callers
                 ORDER BY updated_at DESC, number LIMIT ?1 OFFSET ?2",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([limit as i64, offset as i64], row)
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
    }

    /// A call from `number` ended: its time, and its intent when it had one.
    pub fn remember_call(
        &self,
        number: &str,
        intent: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO callers (number, last_intent, last_call_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (number) DO UPDATE SET
               last_intent = COALESCE(excluded.last_intent, callers.last_intent),
               last_call_at = excluded.last_call_at,
               updated_at = excluded.updated_at",
            params![number, intent, at],
        )
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Sets names and notes for many numbers in one transaction (all or nothing), with one
    /// audit row. Returns how many rows were written.
    pub fn put_callers(
        &self,
        edits: &[CallerEdit],
        actor: &str,
        action_target: &str,
        at: i64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db_err(e))?;
        for e in edits {
            tx.execute(
                "INSERT INTO callers (number, name, notes, updated_at) VALUES (?1, NULLIF(?2, ''), NULLIF(?3, ''), ?4)
                 ON CONFLICT (number) DO UPDATE SET
                   name = CASE WHEN ?2 IS NULL THEN callers.name ELSE NULLIF(?2, '') END,
                   notes = CASE WHEN ?3 IS NULL THEN callers.notes ELSE NULLIF(?3, '') END,
                   updated_at = ?4",
                params![e.number, clip(&e.name, MAX_NAME), clip(&e.notes, MAX_NOTES), at],
            )
            .map_err(|e| self.db_err(e))?;
        }
        tx.execute(
            "INSERT INTO audit (at, actor, action, target) VALUES (?1, ?2, ?3, ?4)",
            params![at, actor, "callers.put", action_target],
        )
        .map_err(|e| self.db_err(e))?;
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(edits.len())
    }

    /// Forgets a number entirely; the audit names its tag only. False when there was nothing.
    pub fn erase_caller(
        &self,
        number: &str,
        tag: &str,
        actor: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db_err(e))?;
        let n = tx
            .execute("DELETE FROM callers WHERE number = ?1", [number])
            .map_err(|e| self.db_err(e))?;
        if n > 0 {
            tx.execute(
                "INSERT INTO audit (at, actor, action, target) VALUES (?1, ?2, 'callers.erase', ?3)",
                params![at, actor, tag],
            )
            .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(n > 0)
    }

    /// Erases records untouched since `before` (Unix seconds); how many went.
    pub fn purge_callers(&self, before: i64) -> Result<usize, StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM callers WHERE updated_at < ?1", [before])
            .map_err(|e| self.db_err(e))
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallerRow> {
    Ok(CallerRow {
        number: r.get(0)?,
        name: r.get(1)?,
        last_intent: r.get(2)?,
        last_call_at: r.get(3)?,
        notes: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "ivrd-callers-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        (Store::open(&dir).unwrap(), dir)
    }

    #[test]
    fn calls_names_and_notes_are_remembered() {
        let (s, dir) = store();
        assert_eq!(s.caller("+15551000").unwrap(), None);
        s.remember_call("+15551000", Some("billing"), 1000).unwrap();
        // A later call without an intent keeps the last one, and moves the time.
        s.remember_call("+15551000", None, 2000).unwrap();
        let c = s.caller("+15551000").unwrap().unwrap();
        assert_eq!(c.last_intent.as_deref(), Some("billing"));
        assert_eq!(c.last_call_at, Some(2000));
        assert_eq!(c.name, None);
        let edit = CallerEdit {
            number: "+15551000".into(),
            name: Some(" Ann \u{7}".into()),
            notes: None,
        };
        s.put_callers(&[edit], "admin", "caller-x", 3000).unwrap();
        let c = s.caller("+15551000").unwrap().unwrap();
        assert_eq!(c.name.as_deref(), Some("Ann"));
        assert_eq!(c.last_intent.as_deref(), Some("billing"));
        // An empty name clears it; notes left out stay.
        let clear = CallerEdit {
            number: "+15551000".into(),
            name: Some(String::new()),
            notes: Some("prefers email".into()),
        };
        s.put_callers(&[clear], "admin", "caller-x", 3100).unwrap();
        let c = s.caller("+15551000").unwrap().unwrap();
        assert_eq!((c.name, c.notes.as_deref()), (None, Some("prefers email")));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn erase_and_retention() {
        let (s, dir) = store();
        s.remember_call("5551001", Some("support"), 100).unwrap();
        s.remember_call("5551002", Some("billing"), 5000).unwrap();
        // Retention: records untouched before 1000 go; the recent one stays.
        assert_eq!(s.purge_callers(1000).unwrap(), 1);
        assert_eq!(s.caller("5551001").unwrap(), None);
        assert!(s.caller("5551002").unwrap().is_some());
        // Erase by number, audited by tag only.
        assert!(s
            .erase_caller("5551002", "caller-abc", "admin", 6000)
            .unwrap());
        assert!(!s
            .erase_caller("5551002", "caller-abc", "admin", 6001)
            .unwrap());
        assert_eq!(s.caller("5551002").unwrap(), None);
        let audit = s.audit(10).unwrap();
        assert_eq!(audit[0].action, "callers.erase");
        assert_eq!(audit[0].target, "caller-abc");
        assert!(audit.iter().all(|a| !a.target.contains("5551002")));
        // Survives reopening (a restart).
        s.remember_call("5551003", None, 7000).unwrap();
        drop(s);
        let again = Store::open(&dir).unwrap();
        assert!(again.caller("5551003").unwrap().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn csv_rows_and_their_errors() {
        let rows =
            parse_csv("number,name,notes\n+15551000,Ann,\"VIP, prefers mornings\"\n5551001,Bob,\n")
                .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].notes.as_deref(), Some("VIP, prefers mornings"));
        assert_eq!(rows[1].name.as_deref(), Some("Bob"));
        let only_names = parse_csv("Number,Name\n5551000,Ann\n").unwrap();
        assert_eq!(only_names[0].notes, None);
        let errors = parse_csv("number,name\n5551000,Ann\nanonymous,Eve\n12,Tom\n").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("'anonymous'"));
        assert!(parse_csv("name\nAnn\n").unwrap_err()[0]
            .message
            .contains("'number'"));
        let ragged = parse_csv("number,name\n5551000,Ann,extra\n").unwrap_err();
        assert_eq!(ragged[0].line, 2);
    }

    #[test]
    fn numbers_and_tags() {
        assert!(is_number("+4915112345678"));
        assert!(is_number("5551000"));
        assert!(!is_number("anonymous"));
        assert!(!is_number("12"));
        assert!(!is_number("+"));
        let a = number_tag(b"key", "5551000");
        assert_eq!(a, number_tag(b"key", "5551000"));
        assert_ne!(a, number_tag(b"other", "5551000"));
        assert!(!a.contains("5551000") && a.starts_with("caller-"));
    }
}
