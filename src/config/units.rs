//! Sizes as the original writes them (`500k`, `50m`, `5g`): powers of 1024, unit optional.

const UNITS: [(char, u32); 4] = [('k', 10), ('m', 20), ('g', 30), ('t', 40)];

/// Why a size could not be read. The messages say what a size looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("a size is required; {HINT}")]
    Empty,
    #[error("`{0}` is not a size; {HINT}")]
    NotANumber(String),
    #[error("`{text}` has an unknown unit `{unit}`; {HINT}")]
    UnknownUnit { text: String, unit: String },
    #[error("`{0}` is too large; sizes go up to 16777215t")]
    TooLarge(String),
}

const HINT: &str = "expected a whole number of bytes with an optional unit k, m, g or t (for example 500k, 50m, 5g)";

/// Reads a size: `150m` is 157286400. The unit is one of k/m/g/t (powers of 1024,
/// case-insensitive) optionally followed by `b`; plain digits are bytes (`100` or `100b`).
///
/// # Errors
/// [`SizeError`] when the text is blank, has no digits, has an unknown unit or overflows `u64`.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    let lower = text.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    if number.is_empty() {
        return Err(SizeError::NotANumber(text.to_string()));
    }
    // "50 m" is what a tidy-minded person might write; the unit still means the same.
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let shift = match unit.chars().next() {
        None => 0,
        Some(c) if unit.len() == 1 => match UNITS.iter().find(|(u, _)| *u == c) {
            Some((_, shift)) => *shift,
            None => return Err(unknown_unit(text, digits_end)),
        },
        Some(_) => return Err(unknown_unit(text, digits_end)),
    };
    let too_large = || SizeError::TooLarge(text.to_string());
    let value: u64 = number.parse().map_err(|_| too_large())?;
    value.checked_mul(1u64 << shift).ok_or_else(too_large)
}

fn unknown_unit(text: &str, digits_end: usize) -> SizeError {
    SizeError::UnknownUnit {
        text: text.to_string(),
        unit: text
            .get(digits_end..)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Writes a size the way the conf files do: the largest unit that divides it exactly,
/// so `format_size(parse_size("150m")?) == "150m"`.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in UNITS.iter().rev() {
        let scale = 1u64 << shift;
        if bytes != 0 && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_table() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("100", 100),
            ("100b", 100),
            ("100B", 100),
            ("500k", 500 * 1024),
            ("500K", 500 * 1024),
            ("500kb", 500 * 1024),
            ("150m", 157_286_400),
            ("150M", 157_286_400),
            ("150MB", 157_286_400),
            ("150mB", 157_286_400),
            ("50m", 52_428_800),
            ("1024m", 1 << 30),
            (" 5g ", 5 << 30),
            ("2G", 2 << 30),
            ("1t", 1 << 40),
            ("50 m", 52_428_800),
            ("16383t", 16383 << 40),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn parse_size_rejects() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("  "), Err(SizeError::Empty));
        assert!(matches!(parse_size("m"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size("-5m"), Err(SizeError::NotANumber(_))));
        assert!(matches!(
            parse_size("1.5g"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("10mm"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("10kib"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("16777216t"),
            Err(SizeError::TooLarge(_))
        ));
        assert_eq!(parse_size("16777215t"), Ok(16_777_215 << 40));
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(SizeError::TooLarge(_))
        ));
        let err = parse_size("12q").unwrap_err();
        assert_eq!(
            err,
            SizeError::UnknownUnit {
                text: "12q".into(),
                unit: "q".into()
            }
        );
        assert!(err.to_string().contains("k, m, g or t"), "{err}");
    }

    #[test]
    fn format_size_round_trips() {
        for text in ["150m", "50m", "5g", "500k", "1t", "100", "0", "1025"] {
            let bytes = parse_size(text).unwrap();
            assert_eq!(format_size(bytes), text);
        }
        assert_eq!(format_size(1 << 30), "1g");
    }
}
