//! Spans of time as kubectl prints ages: `45s`, `12m`, `5h`, `3d`.

/// `secs` (sign ignored) in the largest unit that keeps two significant digits or so.
pub fn short(secs: i64) -> String {
    let s = secs.unsigned_abs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn picks_the_unit_kubectl_would() {
        assert_eq!(short(45), "45s");
        assert_eq!(short(-45), "45s");
        assert_eq!(short(12 * 60), "12m");
        assert_eq!(short(5 * 3600), "5h");
        assert_eq!(short(3 * 86400), "3d");
    }
}
