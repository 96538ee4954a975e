//! A progress line on stderr while `analyze` reads large captures: bytes read of the total, the
//! rate, the time left. Only on a terminal (never into logs or pipes), and only for inputs big
//! enough to wait for; the line is cleared when done, so what remains is the events and logs.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

/// Inputs smaller than this are analysed in well under a second: no line.
pub const MIN_TOTAL_BYTES: u64 = 20 * 1000 * 1000;

pub struct Progress {
    /// Bytes of all the input.
    total: u64,
    started: Instant,
    enabled: bool,
    /// A line is on screen (to clear before anything else is written to the terminal).
    shown: bool,
}

impl Progress {
    /// Progress over `total` bytes, drawn only if stderr is a terminal and the input is large.
    pub fn on_stderr(total: u64) -> Progress {
        Progress::new(total, std::io::stderr().is_terminal())
    }

    fn new(total: u64, terminal: bool) -> Progress {
        Progress {
            total,
            started: Instant::now(),
            enabled: terminal && total >= MIN_TOTAL_BYTES,
            shown: false,
        }
    }

    /// Redraws the line: `done` bytes of the input read, `frames` frames so far.
    pub fn draw(&mut self, done: u64, frames: u64) {
        if !self.enabled {
            return;
        }
        let line = render(done, self.total, frames, self.started.elapsed());
        // `\r` back to the line's start, `ESC [ K` erases what a longer previous line left.
        // A failed write to stderr is not worth stopping the analysis for.
        let _ = write!(std::io::stderr().lock(), "\r{line}\x1b[K");
        self.shown = true;
    }

    /// Removes the line, before logs or the end.
    pub fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `analyze: 734 / 1569 MB (46%), 612 MB/s, 1.6M packets/s, 1s left`; short enough for an
/// 80-column terminal, where a wrapped line could not be redrawn in place.
fn render(done: u64, total: u64, frames: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / secs;
    let percent = (done as f64 * 100.0 / total.max(1) as f64).min(100.0);
    let left = if rate > 0.0 {
        let s = (total.saturating_sub(done) as f64 / rate).ceil() as u64;
        if s >= 60 {
            format!("{}m{:02}s left", s / 60, s % 60)
        } else {
            format!("{s}s left")
        }
    } else {
        String::new()
    };
    format!(
        "analyze: {} / {} MB ({percent:.0}%), {:.0} MB/s, {:.1}M packets/s, {left}",
        done / 1_000_000,
        total / 1_000_000,
        rate / 1e6,
        frames as f64 / secs / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_gives_amount_rate_and_time_left() {
        let line = render(
            734_000_000,
            1_569_000_000,
            1_200_000,
            Duration::from_millis(1200),
        );
        assert_eq!(
            line,
            "analyze: 734 / 1569 MB (47%), 612 MB/s, 1.0M packets/s, 2s left"
        );
        assert!(line.len() < 80);
        let slow = render(10_000_000, 2_000_000_000, 1000, Duration::from_secs(10));
        assert!(slow.ends_with("33m10s left"), "{slow}");
    }

    #[test]
    fn nothing_is_drawn_off_a_terminal_or_for_small_input() {
        let mut p = Progress::new(u64::MAX, false);
        p.draw(1, 1);
        assert!(!p.shown);
        assert!(!Progress::new(MIN_TOTAL_BYTES - 1, true).enabled);
        assert!(Progress::new(MIN_TOTAL_BYTES, true).enabled);
    }
}
