//! The service log, `logs/ossimport2.log`: rotated at the first write of each new day (UTC)
//! to `ossimport2.log.YYYY-MM-DD`, the newest 7 of those kept. The current file keeps its
//! plain name, so `tail -f logs/ossimport2.log` and the scripts that point people at it stay
//! right; tracing-appender's own rolling appender would date the current file as well.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Rotated files kept besides the current one.
pub const KEEP: usize = 7;

pub struct DailyLog {
    dir: PathBuf,
    name: String,
    file: Option<File>,
    /// The day (days since 1970, UTC) the open file's lines belong to.
    day: i64,
    /// The clock, replaceable in tests.
    now: fn() -> SystemTime,
}

impl DailyLog {
    /// Opens (appends to) `dir/name`, first rotating it away if it was last written on an
    /// earlier day.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(dir: PathBuf, name: &str) -> io::Result<DailyLog> {
        DailyLog::with_clock(dir, name, SystemTime::now)
    }

    fn with_clock(dir: PathBuf, name: &str, now: fn() -> SystemTime) -> io::Result<DailyLog> {
        let mut log = DailyLog {
            dir,
            name: name.to_string(),
            file: None,
            day: day_of(now()),
            now,
        };
        let current = log.dir.join(&log.name);
        if let Ok(written) = fs::metadata(&current).and_then(|m| m.modified()) {
            let was = day_of(written);
            if was < log.day {
                log.rotate(was)?;
            }
        }
        log.reopen()?;
        Ok(log)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let path = self.dir.join(&self.name);
        self.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
        Ok(())
    }

    /// Moves the current file to its day's name and drops the oldest beyond [`KEEP`].
    fn rotate(&mut self, day: i64) -> io::Result<()> {
        self.file = None;
        let dated = format!("{}.{}", self.name, date(day));
        fs::rename(self.dir.join(&self.name), self.dir.join(dated))?;
        let prefix = format!("{}.", self.name);
        let mut old: Vec<String> = fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        // Dated names sort by date.
        old.sort();
        let excess = old.len().saturating_sub(KEEP);
        for name in &old[..excess] {
            let _ = fs::remove_file(self.dir.join(name));
        }
        Ok(())
    }
}

impl Write for DailyLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let today = day_of((self.now)());
        if today > self.day {
            let ended = self.day;
            self.day = today;
            // A failed rotation must not lose the line: it goes on in the current file.
            if let Err(e) = self.rotate(ended) {
                eprintln!("cannot rotate {}: {e}", self.name);
            }
            self.reopen()?;
        }
        match self.file.as_mut() {
            Some(file) => file.write(buf),
            None => Err(io::Error::other("the log file is not open")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

fn day_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

/// `YYYY-MM-DD` of a day since 1970 (UTC).
fn date(day: i64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(day.max(0) as u64 * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    static CLOCK: AtomicU64 = AtomicU64::new(0);

    fn clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(CLOCK.load(Ordering::SeqCst))
    }

    #[test]
    fn a_new_day_moves_the_log_to_its_date_and_keeps_seven() {
        let dir = tempfile::tempdir().unwrap();
        let day0 = 20_000 * 86_400; // 2024-10-04
        CLOCK.store(day0 + 3600, Ordering::SeqCst);
        let mut log =
            DailyLog::with_clock(dir.path().to_path_buf(), "ossimport2.log", clock).unwrap();
        for d in 0..10u64 {
            CLOCK.store(day0 + d * 86_400 + 7200, Ordering::SeqCst);
            writeln!(log, "line of day {d}").unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        // Days 2..=8 rotated (7 kept), day 9 current.
        assert_eq!(names.len(), 1 + KEEP, "{names:?}");
        assert_eq!(names[0], "ossimport2.log");
        assert_eq!(names[1], format!("ossimport2.log.{}", date(20_002)));
        assert_eq!(names[KEEP], format!("ossimport2.log.{}", date(20_008)));
        let current = fs::read_to_string(dir.path().join("ossimport2.log")).unwrap();
        assert_eq!(current, "line of day 9\n");
        let day8 = fs::read_to_string(dir.path().join(&names[KEEP])).unwrap();
        assert_eq!(day8, "line of day 8\n");
        assert_eq!(date(20_000), "2024-10-04");
    }
}
