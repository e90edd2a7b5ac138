//! Money: currencies as configured, and amounts as exact integers of minor
//! units parsed from and rendered to decimal strings (never floating point).

use crate::config::{Currencies, CurrencySpec};
use crate::error::{Error, Result};
use crate::ids::truncate;

/// An enabled currency: made from the configuration (`Currency::from_spec`)
/// or from a client's code by `currency`, which refuses a code not enabled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency {
    pub code: String,
    pub decimals: u32,
}

impl Currency {
    pub fn from_spec(spec: &CurrencySpec) -> Currency {
        Currency {
            code: spec.code.clone(),
            decimals: spec.decimals,
        }
    }
}

/// Looks up an enabled currency by its code, as a client sends it.
pub fn currency(currencies: &Currencies, field: &str, code: &str) -> Result<Currency> {
    currencies
        .0
        .iter()
        .find(|c| c.code == code)
        .map(Currency::from_spec)
        .ok_or_else(|| {
            let enabled: Vec<&str> = currencies.0.iter().map(|c| c.code.as_str()).collect();
            Error::invalid_field(
                field,
                format!(
                    "currency `{}` is not enabled (enabled: {})",
                    truncate(code, 20),
                    enabled.join(", ")
                ),
            )
        })
}

/// A positive amount in minor units. No `Add`: arithmetic is checked where
/// it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// Parses `"12.5"` in `currency`'s major unit: digits, at most one point
    /// followed by 1..=decimals digits; no sign, exponent or spaces; > 0.
    pub fn parse(field: &str, text: &str, currency: &Currency) -> Result<Amount> {
        let minor = parse_units(field, text, currency)?;
        if minor == 0 {
            return Err(Error::invalid_field(
                field,
                format!("{field} must be greater than zero"),
            ));
        }
        Ok(Amount(minor))
    }

    pub fn from_minor(minor: i64) -> Option<Amount> {
        (minor > 0).then_some(Amount(minor))
    }

    pub fn minor(self) -> i64 {
        self.0
    }
}

/// Parses a non-negative amount (zero allowed: e.g. one side of an escrow
/// resolution) into minor units, with the same rules as `Amount::parse`.
pub fn parse_units(field: &str, text: &str, currency: &Currency) -> Result<i64> {
    parse_minor(text, currency.decimals).map_err(|why| {
        Error::invalid_field(field, format!("{field} `{}` {why}", truncate(text, 40)))
    })
}

fn parse_minor(text: &str, decimals: u32) -> std::result::Result<i64, String> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(
            "is not a plain decimal number like \"0.5\" (no sign, exponent or spaces)".into(),
        );
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > decimals as usize {
        return Err(format!("has more than {decimals} decimal places"));
    }
    let too_large = || "is too large".to_owned();
    let scale = 10i64.checked_pow(decimals).ok_or_else(too_large)?;
    let mut value: i64 = 0;
    for b in whole.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    value = value.checked_mul(scale).ok_or_else(too_large)?;
    let mut frac_value: i64 = 0;
    for b in fraction.bytes() {
        frac_value = frac_value * 10 + i64::from(b - b'0');
    }
    let pad = 10i64.pow(decimals - fraction.len() as u32);
    value.checked_add(frac_value * pad).ok_or_else(too_large)
}

/// Renders minor units with exactly `decimals` places: `50000000` btc → "0.50000000".
pub fn format_minor(minor: i128, decimals: u32) -> String {
    let mut text = [0u8; SHORT_TEXT];
    if let Some(short) = render_short(&mut text, minor, decimals) {
        return short.to_owned();
    }
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u128.pow(decimals);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

/// An amount as a JSON string, rendered as `format_minor` does into a
/// stack buffer (no allocation when it fits 64 bits, as every balance
/// does): for bodies that show many amounts.
pub struct MinorText {
    pub minor: i128,
    pub decimals: u32,
}

impl serde::Serialize for MinorText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; SHORT_TEXT];
        match render_short(&mut text, self.minor, self.decimals) {
            Some(short) => serializer.serialize_str(short),
            None => serializer.serialize_str(&format_minor(self.minor, self.decimals)),
        }
    }
}

/// Digits `render_short` has room for: u64's 20, or `decimals` and a
/// leading zero.
const SHORT_DIGITS: usize = 40;
/// Its text: a sign, the digits and a point.
const SHORT_TEXT: usize = SHORT_DIGITS + 2;

/// `minor` with `decimals` places into `text`, when its magnitude fits 64
/// bits and its digits SHORT_DIGITS: by u64 arithmetic (u128 division and
/// `format!` padding cost more than the rest of a cached wallet read).
fn render_short(text: &mut [u8; SHORT_TEXT], minor: i128, decimals: u32) -> Option<&str> {
    let mut abs = u64::try_from(minor.unsigned_abs()).ok()?;
    let decimals = decimals as usize;
    if decimals >= SHORT_DIGITS {
        return None;
    }
    let mut digits = [b'0'; SHORT_DIGITS];
    let mut start = SHORT_DIGITS;
    while abs > 0 {
        start -= 1;
        digits[start] = b'0' + (abs % 10) as u8;
        abs /= 10;
    }
    // At least one digit before the point (zero-padded after it).
    let start = start.min(SHORT_DIGITS - decimals - 1);
    let point = SHORT_DIGITS - decimals;
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        text[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    if minor < 0 {
        put(b"-");
    }
    put(&digits[start..point]);
    if decimals > 0 {
        put(b".");
        put(&digits[point..]);
    }
    // ASCII digits, a sign and a point only.
    std::str::from_utf8(&text[..len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> Currency {
        Currency {
            code: "btc".into(),
            decimals: 8,
        }
    }
    fn xmr() -> Currency {
        Currency {
            code: "xmr".into(),
            decimals: 12,
        }
    }

    #[test]
    fn parses_exactly_and_round_trips() {
        assert_eq!(
            Amount::parse("a", "0.5", &btc()).unwrap().minor(),
            50_000_000
        );
        assert_eq!(
            Amount::parse("a", "0.00012345", &btc()).unwrap().minor(),
            12_345
        );
        assert_eq!(
            Amount::parse("a", "0.000000000001", &xmr())
                .unwrap()
                .minor(),
            1
        );
        assert_eq!(
            Amount::parse("a", "21000000", &btc()).unwrap().minor(),
            2_100_000_000_000_000
        );
        assert_eq!(format_minor(50_000_000, 8), "0.50000000");
        assert_eq!(format_minor(1, 12), "0.000000000001");
        assert_eq!(format_minor(0, 8), "0.00000000");
        assert_eq!(format_minor(7, 0), "7");
        assert_eq!(
            format_minor(i128::from(i64::MAX) * 2, 8),
            "184467440737.09551614"
        );
    }

    /// The general rendering the 64-bit path must agree with.
    fn format_wide(minor: i128, decimals: u32) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        if decimals == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u128.pow(decimals);
        let width = decimals as usize;
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale)
    }

    #[test]
    fn the_64_bit_rendering_agrees_with_the_general_one() {
        let mut values = vec![0i128, 1, 9, 10, 99, 100, 12_345, i128::from(u64::MAX)];
        values.extend((0..19).map(|p| 10i128.pow(p)));
        values.extend((1..19).map(|p| 10i128.pow(p) - 1));
        values.extend([i128::from(i64::MAX), i128::from(i64::MIN)]);
        let negated: Vec<i128> = values.iter().map(|v| -v).collect();
        values.extend(negated);
        for decimals in [0, 1, 2, 8, 12, 18, 19, 20, 24, 38] {
            for &v in &values {
                assert_eq!(
                    format_minor(v, decimals),
                    format_wide(v, decimals),
                    "{v} with {decimals} decimals"
                );
            }
        }
    }

    #[test]
    fn rejects_every_other_form() {
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "+1",
            "1e3",
            "1E3",
            " 1",
            "1 ",
            ".5",
            "5.",
            "1.2.3",
            "0x10",
            "1,5",
            "0.000000001",
            "92233720368.54775808",
            "99999999999999999999",
            "NaN",
            "inf",
            "１",
        ] {
            assert!(
                Amount::parse("amount", bad, &btc()).is_err(),
                "{bad:?} must be rejected"
            );
        }
        assert!(
            Amount::parse("amount", "92233720368.54775807", &btc()).is_ok(),
            "i64::MAX itself fits"
        );
    }
}
