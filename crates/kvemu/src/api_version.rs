//! The api-version rule of SPEC §9: `7.0`–`7.6`, and every `YYYY-MM-DD` or
//! `YYYY-MM-DD-preview` dated 2025-06-01 or later; anything else is rejected.

/// Whether the vault accepts this `api-version` query value.
pub fn accepted(v: &str) -> bool {
    if let Some(minor) = v.strip_prefix("7.") {
        return minor.len() == 1 && matches!(minor.as_bytes()[0], b'0'..=b'6');
    }
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &date[r];
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return false;
    }
    (y, m, d) >= (2025, 6, 1)
}

#[cfg(test)]
mod tests {
    use super::accepted;

    #[test]
    fn rule() {
        for ok in [
            "7.0",
            "7.4",
            "7.6",
            "2025-06-01",
            "2025-07-01",
            "2026-04-01",
            "2026-03-01-preview",
        ] {
            assert!(accepted(ok), "{ok}");
        }
        for bad in [
            "",
            "7.7",
            "7.10",
            "6.0",
            "2016-10-01",
            "2025-05-31",
            "2025-13-01",
            "2025-06-1",
            "2025-06-01-beta",
            "latest",
            "7.4 ",
            "2025-06-01preview",
        ] {
            assert!(!accepted(bad), "{bad}");
        }
    }
}
