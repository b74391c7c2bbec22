//! Floats in saved state, bit for bit. serde_json writes the shortest text that reads back
//! as the same float, but its own reader (built without the `float_roundtrip` feature) can
//! be one unit off in the last place, and a restored baseline must be the one that was
//! saved. These read the number's text as it stands in the JSON with Rust's correctly
//! rounded parser. They need the raw text: deserialize with `serde_json::from_str` or
//! `from_slice` (not `from_value` or `from_reader`). A non-finite float is written as
//! `null` by serde_json and fails to read back: the caller keeps those in an `Option`.

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

pub fn serialize<F: Serialize, S: Serializer>(value: &F, serializer: S) -> Result<S::Ok, S::Error> {
    value.serialize(serializer)
}

/// `f32` or `f64`.
pub trait Float: FromStr + Copy {
    fn is_finite(self) -> bool;
}

impl Float for f32 {
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Float for f64 {
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

pub fn deserialize<'de, F: Float, D: Deserializer<'de>>(deserializer: D) -> Result<F, D::Error> {
    let raw = <&RawValue>::deserialize(deserializer)?;
    parse(raw)
}

fn parse<F: Float, E: serde::de::Error>(raw: &RawValue) -> Result<F, E> {
    let text = raw.get();
    // Rust's parser also takes `inf` and `NaN`, and reads `1e999` as infinity.
    let number = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    match text.parse::<F>() {
        Ok(value) if number && value.is_finite() => Ok(value),
        _ => Err(E::custom(format!("expected a finite number, found {text}"))),
    }
}

/// An optional float (`null` for `None`).
pub mod option {
    use super::*;

    pub fn serialize<F: Serialize, S: Serializer>(
        value: &Option<F>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(serializer)
    }

    pub fn deserialize<'de, F: Float, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<F>, D::Error> {
        match <Option<&RawValue>>::deserialize(deserializer)? {
            None => Ok(None),
            Some(raw) => super::parse(raw).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Floats {
        #[serde(with = "super")]
        wide: f64,
        #[serde(with = "super")]
        narrow: f32,
        #[serde(with = "super::option", default)]
        maybe: Option<f64>,
    }

    /// Values whose 17-digit text serde_json's own reader gets wrong read back exactly.
    #[test]
    fn floats_read_back_bit_for_bit() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let wide = f64::from_bits(state >> 2);
            let narrow = f32::from_bits((state >> 34) as u32);
            if !wide.is_finite() || !narrow.is_finite() {
                continue;
            }
            let floats = Floats {
                wide,
                narrow,
                maybe: Some(wide / 3.0),
            };
            let text = serde_json::to_string(&floats).unwrap();
            let back: Floats = serde_json::from_str(&text).unwrap();
            assert_eq!(back.wide.to_bits(), wide.to_bits(), "{text}");
            assert_eq!(back.narrow.to_bits(), narrow.to_bits(), "{text}");
            assert_eq!(back.maybe.map(f64::to_bits), floats.maybe.map(f64::to_bits));
        }
        let none: Floats = serde_json::from_str(r#"{"wide":1,"narrow":2}"#).unwrap();
        assert_eq!(none.maybe, None);
        assert!(serde_json::from_str::<Floats>(r#"{"wide":"inf","narrow":2}"#).is_err());
        assert!(serde_json::from_str::<Floats>(r#"{"wide":null,"narrow":2}"#).is_err());
        assert!(serde_json::from_str::<Floats>(r#"{"wide":1e999,"narrow":2}"#).is_err());
        assert!(serde_json::from_str::<Floats>(r#"{"wide":1,"narrow":1e39}"#).is_err());
    }
}
