//! Resource quantities for volume sizes and downward-API values: parsed by
//! `deckhand_api::quantity` (values round up, as upstream), widened to `i128` for the divisions
//! done here.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use deckhand_api::quantity::QuantityError;

/// Integer value rounded up (upstream's `Quantity.Value()`).
pub fn value(q: &Quantity) -> Result<i128, QuantityError> {
    deckhand_api::quantity::value(q).map(i128::from)
}

/// Milli-units rounded up (upstream's `Quantity.MilliValue()`).
pub fn milli_value(q: &Quantity) -> Result<i128, QuantityError> {
    deckhand_api::quantity::milli_value(q).map(i128::from)
}

/// `a / b` rounded towards +∞ (a divisor of a downward-API resource value).
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
    fn values_round_up_and_divisions_too() {
        let q = |s: &str| Quantity(s.into());
        assert_eq!(value(&q("1.5Gi")).unwrap(), 1_610_612_736);
        assert_eq!(milli_value(&q("1")).unwrap(), 1000);
        assert_eq!(milli_value(&q("0.1m")).unwrap(), 1);
        assert!(value(&q("abc")).is_err());
        assert_eq!(ceil_div(1001, 1000), 2);
        assert_eq!(ceil_div(1000, 1000), 1);
        assert_eq!(ceil_div(-1001, 1000), -1);
    }
}
