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

/// RFC 3339 UTC with millisecond precision, the `time` field of events.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
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
}
