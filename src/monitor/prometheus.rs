//! Prometheus text exposition format 0.0.4: one HELP and TYPE per family,
//! histograms as `_bucket{le=…}`, `_sum` and `_count`.

use std::fmt::Write as _;

use crate::histogram::{BOUNDS_US, HistogramSnapshot};

#[derive(Default)]
pub struct Exposition {
    out: String,
    families: Vec<String>,
}

impl Exposition {
    /// Declares a family once; later samples of it may follow any time.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        if self.families.iter().any(|f| f == name) {
            return;
        }
        self.families.push(name.to_owned());
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A histogram in seconds from microsecond buckets.
    pub fn histogram_seconds(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) {
        let mut cumulative = 0u64;
        for (index, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let le = BOUNDS_US
                .get(index)
                .map_or("+Inf".to_owned(), |us| number(*us as f64 / 1e6));
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(h.sum_us as f64 / 1e6));
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (key, value) in all {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{key}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "NaN".to_owned()
    }
}
