//! The Prometheus text exposition format 0.0.4, written by hand: `# HELP` and `# TYPE`
//! lines before a family's samples, label values escaped (`\`, `"`, newline), values as
//! Go's `strconv.FormatFloat` would print them closely enough for every parser
//! (`+Inf`, `-Inf`, `NaN`, integers without a fraction).

use std::fmt::Write;

/// The content type of the format, for the HTTP endpoint.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends families and samples to a string.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn with_capacity(bytes: usize) -> Self {
        Writer {
            out: String::with_capacity(bytes),
        }
    }

    /// Starts a metric family: `# HELP` and `# TYPE` (`counter`, `gauge`, `histogram`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value_into(text, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(value, &mut self.out);
        self.out.push('\n');
    }

    /// A histogram's samples: cumulative `_bucket{le=…}` lines ending with `+Inf`, then
    /// `_sum` and `_count`. `counts[i]` is the number of observations in bucket `i` alone
    /// (`bounds[i-1] < x <= bounds[i]`); `counts` has one more entry than `bounds`, for
    /// the observations above the last bound.
    pub fn histogram(&mut self, name: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        debug_assert_eq!(bounds.len() + 1, counts.len());
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            le.clear();
            match bounds.get(i) {
                Some(bound) => push_value(*bound, &mut le),
                None => le.push_str("+Inf"),
            }
            self.sample(&bucket, &[("le", &le)], cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], cumulative as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values: backslash, double quote and line feed are escaped.
pub fn escape_label_value_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and line feed are escaped (a double quote is not).
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn push_value(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut w = Writer::default();
        w.family("m", "gauge", "a \\ help\nline with \"quotes\"");
        w.sample("m", &[("a", "x\\y\"z\nw"), ("b", "")], 1.0);
        assert_eq!(
            w.finish(),
            "# HELP m a \\\\ help\\nline with \"quotes\"\n# TYPE m gauge\nm{a=\"x\\\\y\\\"z\\nw\",b=\"\"} 1\n"
        );
    }

    #[test]
    fn values() {
        let mut out = String::new();
        for v in [
            0.0,
            3.0,
            0.25,
            1_700_000_000.0,
            f64::INFINITY,
            f64::NAN,
            -2.5,
        ] {
            push_value(v, &mut out);
            out.push(' ');
        }
        assert_eq!(out, "0 3 0.25 1700000000 +Inf NaN -2.5 ");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut w = Writer::default();
        w.histogram("h", &[0.5, 1.0], &[2, 0, 1], 4.5);
        assert_eq!(
            w.finish(),
            "h_bucket{le=\"0.5\"} 2\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4.5\nh_count 3\n"
        );
    }
}
