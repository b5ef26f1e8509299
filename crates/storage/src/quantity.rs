//! Just enough of Kubernetes' `resource.Quantity` to size tmpfs volumes and render the
//! downward API's `resourceFieldRef`: parsing to an exact integer of nano-units.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// The quantity times 10^9, exact (quantities below a nano-unit round up, as upstream does).
pub fn parse_nanos(q: &str) -> Result<i128, QuantityError> {
    let bad = || QuantityError(q.to_string());
    let s = q.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let digits: i128 = format!("{int_part}{frac_part}")
        .parse()
        .map_err(|_| bad())?;
    // value = digits * 10^(exp10) * mult
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut mult: i128 = 1;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => mult = 1 << 10,
        "Mi" => mult = 1 << 20,
        "Gi" => mult = 1 << 30,
        "Ti" => mult = 1 << 40,
        "Pi" => mult = 1 << 50,
        "Ei" => mult = 1 << 60,
        s if s.starts_with(['e', 'E']) => {
            exp10 += s[1..].parse::<i32>().map_err(|_| bad())?;
        }
        _ => return Err(bad()),
    }
    exp10 += 9;
    let scaled = if exp10 >= 0 {
        10i128
            .checked_pow(exp10 as u32)
            .and_then(|p| digits.checked_mul(p))
            .and_then(|v| v.checked_mul(mult))
            .ok_or_else(bad)?
    } else {
        let div = 10i128.checked_pow((-exp10) as u32).ok_or_else(bad)?;
        let v = digits.checked_mul(mult).ok_or_else(bad)?;
        (v + div - 1) / div
    };
    Ok(if neg { -scaled } else { scaled })
}

/// Integer value rounded up (upstream's `Quantity.Value()`).
pub fn value(q: &Quantity) -> Result<i128, QuantityError> {
    Ok(ceil_div(parse_nanos(&q.0)?, 1_000_000_000))
}

/// Milli-units rounded up (upstream's `Quantity.MilliValue()`).
pub fn milli_value(q: &Quantity) -> Result<i128, QuantityError> {
    Ok(ceil_div(parse_nanos(&q.0)?, 1_000_000))
}

pub(crate) fn ceil_div(a: i128, b: i128) -> i128 {
    let d = a / b;
    if a % b != 0 && ((a < 0) == (b < 0)) {
        d + 1
    } else {
        d
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_nanos("1").unwrap(), 1_000_000_000);
        assert_eq!(parse_nanos("500m").unwrap(), 500_000_000);
        assert_eq!(parse_nanos("1Ki").unwrap(), 1024 * 1_000_000_000);
        assert_eq!(parse_nanos("1.5Gi").unwrap(), 1_610_612_736 * 1_000_000_000);
        assert_eq!(parse_nanos("2k").unwrap(), 2_000_000_000_000);
        assert_eq!(parse_nanos("1e3").unwrap(), 1_000_000_000_000);
        assert_eq!(value(&Quantity("1m".into())).unwrap(), 1);
        assert_eq!(milli_value(&Quantity("250m".into())).unwrap(), 250);
        assert!(parse_nanos("abc").is_err());
        assert!(parse_nanos("1Qi").is_err());
    }
}
