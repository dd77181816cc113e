//! Output for people (aligned tables) and scripts (`--json`).
//!
//! Writes ignore a closed stdout (`cubeos app ls | head`): the reader has what it
//! wanted, and a CLI must not panic over it.

use std::io::Write;

use serde::Serialize;

/// Prints one line to stdout, ignoring a closed pipe.
pub fn line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let row_line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        line(padded.join("  ").trim_end());
    };
    row_line(headers.to_vec());
    for row in rows {
        row_line(row.iter().map(String::as_str).collect());
    }
}

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One line of at most `max` characters, for table cells.
pub fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    cubeos_contract::validate::truncate(line, max)
}
