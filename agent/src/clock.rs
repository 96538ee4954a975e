//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.

use std::time::{Duration, SystemTime};

/// Nanoseconds on CLOCK_MONOTONIC, the kernel programs' clock.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Converts a monotonic timestamp to wall-clock time, relative to now.
pub fn to_system_time(mono_ns: u64) -> SystemTime {
    let now_mono = monotonic_ns();
    let now = SystemTime::now();
    if mono_ns <= now_mono {
        now - Duration::from_nanos(now_mono - mono_ns)
    } else {
        now + Duration::from_nanos(mono_ns - now_mono)
    }
}

/// RFC 3339 UTC with millisecond precision, the `time` field of events: what humantime's
/// `format_rfc3339_millis` writes, without going through `fmt` (every event has two or three
/// of these, and `analyze` writes hundreds of thousands of events).
pub fn rfc3339(t: SystemTime) -> String {
    let Some(since) = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .filter(|d| d.as_secs() < MAX_SECS)
    else {
        return humantime::format_rfc3339_millis(t).to_string();
    };
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = (secs % 86_400) as u32;
    let mut text = *b"0000-00-00T00:00:00.000Z";
    for (at, width, value) in [
        (0, 4, year),
        (5, 2, month),
        (8, 2, day),
        (11, 2, in_day / 3600),
        (14, 2, in_day / 60 % 60),
        (17, 2, in_day % 60),
        (20, 3, since.subsec_millis()),
    ] {
        let mut v = value;
        for d in text[at..at + width].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    // Only ASCII digits and separators.
    std::str::from_utf8(&text).unwrap_or_default().to_owned()
}

/// The first second of year 10000: four digits of year go up to here.
const MAX_SECS: u64 = 253_402_300_800;

/// Year, month and day of the `days`-th day after 1970-01-01 (Howard Hinnant's algorithm,
/// proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_past_maps_to_wall_past() {
        let now = monotonic_ns();
        let t = to_system_time(now - 2_000_000_000);
        let ago = SystemTime::now().duration_since(t).unwrap_or_default();
        assert!((1_900..2_500).contains(&ago.as_millis()), "{ago:?}");
    }

    #[test]
    fn rfc3339_is_utc_with_millis() {
        let s = rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        assert_eq!(s, "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn rfc3339_writes_what_humantime_writes() {
        // Leap days, century years, the ends of years and of the range, in uneven steps.
        let mut at = 0u64;
        while at < MAX_SECS * 1000 {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(at);
            assert_eq!(
                rfc3339(t),
                humantime::format_rfc3339_millis(t).to_string(),
                "{at} ms"
            );
            at += 86_399_999 + at / 7;
        }
        for day in [
            59u64, 60, 365, 789, 10_956, 11_016, 11_017, 47_540, 2_932_896,
        ] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(day * 86_400 + 86_399);
            assert_eq!(rfc3339(t), humantime::format_rfc3339_millis(t).to_string());
        }
    }
}
