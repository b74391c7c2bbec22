//! Tables for people that fit the terminal: columns as wide as their cells, and when the
//! whole is wider than the terminal the flexible columns (entities, summaries) are cut with
//! `…` so no line wraps. Cells arrive escaped (`escape_for_terminal`); widths are display
//! widths (a CJK character takes two columns).

use std::io::IsTerminal;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

pub struct Column {
    pub title: &'static str,
    pub right: bool,
    /// May be cut to fit (otherwise always shown whole).
    pub flex: bool,
    /// Among flexible columns, lower ranks get their width first.
    pub rank: u8,
}

impl Column {
    pub const fn fixed(title: &'static str) -> Self {
        Column {
            title,
            right: false,
            flex: false,
            rank: 0,
        }
    }

    pub const fn number(title: &'static str) -> Self {
        Column {
            title,
            right: true,
            flex: false,
            rank: 0,
        }
    }

    /// A column cut to fit, served after flexible columns of lower `rank`.
    pub const fn flex(title: &'static str, rank: u8) -> Self {
        Column {
            title,
            right: false,
            flex: true,
            rank,
        }
    }
}

/// Narrowest a cut column gets: enough to recognise an address prefix.
const MIN_FLEX: usize = 6;

/// The terminal's width: `$COLUMNS` when set, else the terminal's own when stdout is one;
/// `None` (no limit) when printing to a pipe or a file.
pub fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize struct passed by pointer; stdout is a terminal.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col as usize)
}

/// Widths per column so the table fits `width` (when given and possible): fixed columns
/// keep their cells' width; flexible ones, by rank, get theirs while what is left still
/// leaves the later ones `MIN_FLEX`, and the last takes the rest (summaries go last).
fn widths(columns: &[Column], rows: &[Vec<String>], width: Option<usize>) -> Vec<usize> {
    let natural: Vec<usize> = (0..columns.len())
        .map(|c| {
            let cells = rows.iter().map(|row| row[c].width()).max().unwrap_or(0);
            cells.max(columns[c].title.width())
        })
        .collect();
    let Some(width) = width else {
        return natural;
    };
    let gaps = columns.len().saturating_sub(1);
    if natural.iter().sum::<usize>() + gaps <= width {
        return natural;
    }
    let fixed: usize = (columns.iter().zip(&natural))
        .filter(|(column, _)| !column.flex)
        .map(|(_, w)| w)
        .sum();
    let mut left = width.saturating_sub(fixed + gaps);
    let mut flex: Vec<usize> = (0..columns.len()).filter(|&c| columns[c].flex).collect();
    flex.sort_by_key(|&c| columns[c].rank);
    let mut out = natural.clone();
    for (n, &c) in flex.iter().enumerate() {
        let later = flex.len() - n - 1;
        let room = if later == 0 {
            left
        } else {
            left.saturating_sub(later * MIN_FLEX)
        };
        out[c] = natural[c].min(room).max(MIN_FLEX.min(natural[c]));
        left = left.saturating_sub(out[c]);
    }
    out
}

/// `text` cut to `width` display columns, ending in `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// The header and the rows, each a line without trailing spaces.
pub fn render(columns: &[Column], rows: &[Vec<String>], width: Option<usize>) -> Vec<String> {
    let widths = widths(columns, rows, width);
    let titles: Vec<String> = columns.iter().map(|c| c.title.to_owned()).collect();
    std::iter::once(&titles)
        .chain(rows)
        .map(|row| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let cell = cut(cell, widths[c]);
                let pad = widths[c].saturating_sub(cell.width());
                if c > 0 {
                    line.push(' ');
                }
                if columns[c].right {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&cell);
                } else {
                    line.push_str(&cell);
                    if c + 1 < row.len() {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [
        Column::fixed("ID"),
        Column::flex("ENTITY", 0),
        Column::flex("SUMMARY", 1),
    ];

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec![
                "a1".into(),
                "2001:db8:ffff:ffff:ffff:ffff:ffff:1".into(),
                "x".repeat(90),
            ],
            vec!["b2".into(), "203.0.113.7".into(), "short".into()],
        ]
    }

    #[test]
    fn a_table_that_fits_is_left_alone() {
        let lines = render(&COLUMNS, &rows(), None);
        assert_eq!(lines[2], "b2 203.0.113.7                         short");
        assert!(lines[1].ends_with(&"x".repeat(90)));
    }

    #[test]
    fn a_wide_table_is_cut_to_the_width_with_an_ellipsis() {
        for width in [40, 60, 80] {
            for line in render(&COLUMNS, &rows(), Some(width)) {
                assert!(line.width() <= width, "{width}: {line:?}");
            }
        }
        let lines = render(&COLUMNS, &rows(), Some(60));
        assert!(lines[1].contains('…'), "{lines:?}");
        assert!(
            lines[2].contains("203.0.113.7"),
            "short cells stay whole: {lines:?}"
        );
    }

    #[test]
    fn wide_characters_count_twice() {
        assert_eq!(cut("日本語のテキスト", 7), "日本語…");
        assert_eq!(cut("abc", 3), "abc");
    }
}
