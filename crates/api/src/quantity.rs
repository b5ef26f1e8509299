//! Kubernetes resource quantities (`resource.Quantity`): `100m`, `1.5`, `2Gi`, `500M`, `1e3`.
//!
//! Follows apimachinery's `resource.ParseQuantity` grammar: an optional sign, a decimal number,
//! then one suffix — binary SI (`Ki Mi Gi Ti Pi Ei`), decimal SI (`n u m "" k M G T P E`) or a
//! decimal exponent (`e3`, `E-2`). Like `Quantity.Value()` / `MilliValue()`, conversions round
//! up (towards +∞) when the quantity has more precision than the unit, so `0.1m` of CPU is 1m.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not in the quantity grammar; retrying will not help, the object must be fixed.
    #[error("quantity {0:?}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Syntax(String),
    /// In the grammar but too large to be represented in 64 bits at the requested scale.
    #[error("quantity {0:?} is too large")]
    Overflow(String),
}

/// value = mantissa × 10^exp10 × 2^exp2
struct Parsed {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

fn parse(s: &str) -> Result<Parsed, QuantityError> {
    let syntax = || QuantityError::Syntax(s.to_string());
    let overflow = || QuantityError::Overflow(s.to_string());
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(syntax());
    }
    let mut mantissa: i128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(c - b'0')))
            .ok_or_else(overflow)?;
    }
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| overflow())?;
    let (suffix_exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(syntax)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            (exp.parse::<i32>().map_err(|_| overflow())?, 0)
        }
    };
    Ok(Parsed {
        mantissa: if negative { -mantissa } else { mantissa },
        exp10: suffix_exp10 - frac_len,
        exp2,
    })
}

/// Scales a parsed quantity by 10^extra_exp10 and rounds up to an integer.
fn scaled(s: &str, extra_exp10: i32) -> Result<i64, QuantityError> {
    let overflow = || QuantityError::Overflow(s.to_string());
    let p = parse(s)?;
    let mut v = p.mantissa;
    if p.mantissa == 0 {
        return Ok(0);
    }
    v = v
        .checked_mul(1i128 << p.exp2.min(126))
        .ok_or_else(overflow)?;
    let exp = p.exp10 + extra_exp10;
    if exp >= 0 {
        for _ in 0..exp {
            v = v.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        let mut div: i128 = 1;
        for _ in 0..(-exp) {
            div = match div.checked_mul(10) {
                Some(d) => d,
                // The divisor outgrew any mantissa: the value is a sliver above or below zero.
                None => return Ok(if v > 0 { 1 } else { 0 }),
            };
        }
        // Ceiling division (towards +∞), as Quantity.Value()/MilliValue() round up.
        let q = v.div_euclid(div);
        v = if v.rem_euclid(div) != 0 { q + 1 } else { q };
    }
    i64::try_from(v).map_err(|_| overflow())
}

/// The quantity in thousandths of a unit (millicores for CPU), rounded up.
pub fn milli_value_str(s: &str) -> Result<i64, QuantityError> {
    scaled(s.trim(), 3)
}

/// The quantity in whole units (bytes for memory), rounded up.
pub fn value_str(s: &str) -> Result<i64, QuantityError> {
    scaled(s.trim(), 0)
}

/// [`milli_value_str`] for a k8s-openapi `Quantity`.
pub fn milli_value(q: &Quantity) -> Result<i64, QuantityError> {
    milli_value_str(&q.0)
}

/// [`value_str`] for a k8s-openapi `Quantity`.
pub fn value(q: &Quantity) -> Result<i64, QuantityError> {
    value_str(&q.0)
}

/// The amount of a named resource in the unit the scheduler accounts it in: millicores for
/// `cpu`, whole units (bytes, counts) for everything else — as upstream's `framework.Resource`.
pub fn resource_amount(name: &str, q: &Quantity) -> Result<i64, QuantityError> {
    if name == "cpu" {
        milli_value(q)
    } else {
        value(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_values() {
        for (s, want) in [
            ("100m", 100),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            ("2", 2000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("0.0001", 1), // rounds up
            ("0.1m", 1),   // rounds up
            ("250u", 1),
            ("-1", -1000),
            ("+2", 2000),
            ("1k", 1_000_000),
            ("0", 0),
            (".5", 500),
            ("5.", 5000),
        ] {
            assert_eq!(milli_value_str(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn byte_values() {
        for (s, want) in [
            ("2Gi", 2 * 1024 * 1024 * 1024),
            ("500M", 500_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("123Mi", 123 * 1024 * 1024),
            ("1.5Gi", 3 * 512 * 1024 * 1024),
            ("1Ki", 1024),
            ("1k", 1000),
            ("100m", 1), // 0.1 rounds up to 1
            ("1Ei", 1 << 60),
            ("10", 10),
        ] {
            assert_eq!(value_str(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "", "abc", "1.2.3", "1Qi", "1e", "1e+", "Gi", "1 Gi", "1ki", "--1", ".",
        ] {
            assert!(
                matches!(value_str(s), Err(QuantityError::Syntax(_))),
                "{s} should be a syntax error"
            );
        }
    }

    #[test]
    fn overflow_is_reported() {
        assert!(matches!(
            value_str("100Ei"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            milli_value_str("1e30"),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn cpu_in_millis_others_in_units() {
        assert_eq!(resource_amount("cpu", &Quantity("2".into())), Ok(2000));
        assert_eq!(resource_amount("memory", &Quantity("1Ki".into())), Ok(1024));
        assert_eq!(
            resource_amount("nvidia.com/gpu", &Quantity("2".into())),
            Ok(2)
        );
    }
}
